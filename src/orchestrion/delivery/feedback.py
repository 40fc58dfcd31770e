"""Feedback: thumbs on deliverables and their items, item exclusions, and bulk import.

A thumb on a deliverable is the ranker's label for the goal behind it; a thumb down on an item
excludes that item from the user's future goals (a later thumb up on it lifts the exclusion).
Feedback rows are appended, never updated: the latest thumb on a deliverable is its label.

The thumbs are the goal ranker's labels: :func:`orchestrion.training.fits.train_ranker` trains on them.

Once feedback has committed, :func:`trim_pending` rejects a deliverable thumbed down while it waits
for approval and takes each thumbed-down item out of that user's carts still waiting for approval —
the one step every path (API, web page, bulk import) calls.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import duckdb
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrion.config import Settings
from orchestrion.delivery.deliverables import drop_items, reject_waiting
from orchestrion.errors import IngestError, NotFoundError, UsageError
from orchestrion.store import Store

__all__ = [
    "Feedback",
    "FeedbackReceipt",
    "ImportResult",
    "ItemThumb",
    "deliverable_owner",
    "excluded_items",
    "import_feedback",
    "lift_exclusions",
    "record_feedback",
    "thumb_rows",
    "thumbs_per_day",
    "trim_pending",
]

Thumb = Literal["up", "down"]


class ItemThumb(BaseModel):
    """A thumb on one item of a deliverable."""

    model_config = ConfigDict(extra="forbid")

    item_id: str = Field(min_length=1, max_length=256)
    thumb: Thumb


class Feedback(BaseModel):
    """The body of ``POST /v1/deliverables/{id}/feedback`` (and one line of an import file).

    >>> Feedback.model_validate({"thumb": "down", "items": [{"item_id": "a", "thumb": "down"}]}).thumb
    'down'
    """

    model_config = ConfigDict(extra="forbid")

    thumb: Thumb | None = Field(None, description="On the whole deliverable; may be left out when items are rated.")
    reason: str | None = Field(None, max_length=2000)
    items: list[ItemThumb] = Field(default_factory=list, max_length=1000)


@dataclass(frozen=True)
class FeedbackReceipt:
    """What one piece of feedback changed."""

    deliverable_id: str
    user_id: str
    thumb: str | None
    excluded: list[str]
    restored: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "deliverable_id": self.deliverable_id,
            "user_id": self.user_id,
            "thumb": self.thumb,
            "excluded_items": self.excluded,
            "restored_items": self.restored,
        }


def deliverable_owner(con: duckdb.DuckDBPyConnection, deliverable_id: str) -> str:
    """The user a deliverable was made for; NotFoundError when there is no such deliverable."""
    rows = con.execute("SELECT user_id FROM deliverables WHERE deliverable_id = ?", [deliverable_id]).fetchall()
    row = rows[0] if rows else None
    if row is None:
        raise NotFoundError(
            f"no deliverable {deliverable_id!r}; ids look like d_… and are listed by "
            "`orchestrion goals show USER --date D`"
        )
    return str(row[0])


def record_feedback(
    con: duckdb.DuckDBPyConnection,
    deliverable_id: str,
    feedback: Feedback,
    *,
    source: str,
    now: datetime,
) -> FeedbackReceipt:
    """Store ``feedback`` on a deliverable inside the caller's transaction; update exclusions."""
    if feedback.thumb is None and not feedback.items:
        raise UsageError("feedback needs a thumb ('up' or 'down') or at least one item thumb")
    user_id = deliverable_owner(con, deliverable_id)
    if feedback.items:
        _check_items(con, deliverable_id, {i.item_id for i in feedback.items})
    items_json = json.dumps([i.model_dump() for i in feedback.items]) if feedback.items else None
    con.execute(
        "INSERT INTO feedback (deliverable_id, user_id, thumb, reason, items, source, received_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [deliverable_id, user_id, feedback.thumb, feedback.reason, items_json, source, now],
    )
    down = sorted({i.item_id for i in feedback.items if i.thumb == "down"})
    up = sorted({i.item_id for i in feedback.items if i.thumb == "up"} - set(down))
    for item_id in down:
        con.execute(
            "INSERT INTO item_exclusions VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [user_id, item_id, deliverable_id, now],
        )
    lift_exclusions(con, user_id, up)
    return FeedbackReceipt(deliverable_id, user_id, feedback.thumb, down, up)


def _check_items(con: duckdb.DuckDBPyConnection, deliverable_id: str, thumbed: set[str]) -> None:
    """UsageError naming the thumbed items that are not the deliverable's: what it holds, what its
    goal proposed, or what was already thumbed down on it (a page shown before a cart was trimmed)."""
    known: set[str] = set()
    for row in con.execute(
        "SELECT d.items, g.items FROM deliverables d LEFT JOIN goals g USING (goal_id) WHERE d.deliverable_id = ? "
        "UNION ALL SELECT [item_id], NULL FROM item_exclusions WHERE deliverable_id = ?",
        [deliverable_id, deliverable_id],
    ).fetchall():
        for items in row:
            known.update(str(i) for i in items or [])
    strange = sorted(thumbed - known)
    if strange:
        shown = ", ".join(repr(i) for i in strange[:3]) + (f" and {len(strange) - 3} more" if len(strange) > 3 else "")
        raise UsageError(
            f"items: {shown} {'is' if len(strange) == 1 else 'are'} not in deliverable {deliverable_id}; thumb only "
            f"its own items (GET /v1/deliverables/{deliverable_id} lists them)"
        )


def lift_exclusions(con: duckdb.DuckDBPyConnection, user_id: str, items: Sequence[str]) -> None:
    """Let ``items`` back into the user's goals (inside the caller's transaction): a thumb up on an
    item, or the control panel's "restore"."""
    if items:
        con.execute(
            "DELETE FROM item_exclusions WHERE user_id = ? AND list_contains(?, item_id)", [user_id, list(items)]
        )


def trim_pending(
    store: Store, settings: Settings, receipts: Sequence[FeedbackReceipt], *, now: datetime
) -> dict[str, str]:
    """After ``receipts`` have committed: a deliverable thumbed down while it waits for approval is
    rejected ("Not for me" on a cart means: do not order it), and each item they thumbed down leaves
    its user's carts still waiting for approval (re-priced, re-checked; an emptied cart is cancelled
    with the reason, see :func:`orchestrion.delivery.deliverables.drop_items`). An approval already
    being carried out is left to finish. Returns each changed deliverable's status.
    """
    down = [receipt.deliverable_id for receipt in receipts if receipt.thumb == "down"]
    changed = reject_waiting(store, settings, down, by="thumbs-down", now=now) if down else {}
    by_user: dict[str, set[str]] = {}
    for receipt in receipts:
        if receipt.excluded:
            by_user.setdefault(receipt.user_id, set()).update(receipt.excluded)
    for user_id in sorted(by_user):
        changed.update(drop_items(store, settings, user_id, sorted(by_user[user_id]), now=now))
    return changed


@dataclass
class ImportResult:
    """What an import did: rows stored, rows rejected (with line numbers and reasons)."""

    rows: int = 0
    stored: int = 0
    excluded_items: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    carts_changed: dict[str, str] = field(default_factory=dict)  # waiting carts trimmed: deliverable → status

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "stored": self.stored,
            "rejected": len(self.errors),
            "excluded_items": self.excluded_items,
            "carts_changed": self.carts_changed,
            "errors": self.errors[:100],
        }


def _lines(path: Path) -> list[tuple[int, dict[str, Any] | str]]:
    """Each NDJSON line that is not blank, by line number: its object, or why it is not one (a bad
    line is reported with its number; the others are still imported)."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    out: list[tuple[int, dict[str, Any] | str]] = []
    with opener(path, "rt", encoding="utf-8", errors="replace") as text:
        for number, line in enumerate(text, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                out.append((number, f"not JSON ({exc.msg} at character {exc.pos + 1}); each line is one JSON object"))
                continue
            out.append((number, value if isinstance(value, dict) else "each line is one JSON object, {...}"))
    return out


def _rows(path: Path) -> list[tuple[int, dict[str, Any] | str]]:
    """NDJSON (``.ndjson``/``.jsonl``) lines or CSV rows as dicts, by line (row) number, or why a line is
    not a row; CSV ``items`` cells hold JSON."""
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".ndjson", ".jsonl", ".json")):
        return _lines(path)
    if name.endswith((".csv", ".tsv")):
        frame = pl.read_csv(path, separator="\t" if name.endswith(".tsv") else ",", infer_schema=False)
        rows = frame.to_dicts()
        for row in rows:
            if isinstance(row.get("items"), str) and row["items"].strip():
                try:
                    row["items"] = json.loads(row["items"])
                except json.JSONDecodeError:
                    row["items"] = "(not JSON)"
            elif "items" in row and not row["items"]:
                row.pop("items")
        return list(enumerate(rows, start=1))
    raise IngestError(f"{path}: feedback files are NDJSON (.ndjson, .jsonl) or CSV (.csv, .tsv)")


def import_feedback(store: Store, settings: Settings, path: Path, *, now: datetime) -> ImportResult:
    """Import feedback rows (``deliverable_id, thumb, reason, items`` and optionally ``user_id``).

    Each valid row is stored as if it came through the API (source ``import``); a row naming an
    unknown deliverable, another user than the deliverable's, or an invalid thumb is rejected
    with its line number and reason, and the rest of the file is still imported (one transaction).
    Then, as after a thumb through the API, the thumbed-down items leave their users' carts still
    waiting for approval (:func:`trim_pending`).
    """
    if not path.is_file():
        raise NotFoundError(f"feedback file {path} not found")
    try:
        rows = _rows(path)
    except (pl.exceptions.ComputeError, pl.exceptions.PolarsError, json.JSONDecodeError) as exc:
        raise IngestError(f"{path} cannot be read as feedback: {exc}") from exc
    result = ImportResult(rows=len(rows))
    receipts: list[FeedbackReceipt] = []
    with store.transaction() as con:
        for line, given in rows:
            if isinstance(given, str):
                result.errors.append({"line": line, "deliverable_id": None, "reason": given})
                continue
            row = {k: v for k, v in given.items() if v is not None}
            deliverable = str(row.pop("deliverable_id", "") or "")
            claimed = row.pop("user_id", None)
            try:
                if not deliverable:
                    raise UsageError("deliverable_id is required")
                owner = deliverable_owner(con, deliverable)
                if claimed is not None and str(claimed) != owner:
                    raise UsageError(f"deliverable {deliverable} belongs to another user, not {claimed!r}")
                receipt = record_feedback(con, deliverable, Feedback.model_validate(row), source="import", now=now)
            except (UsageError, ValidationError) as exc:
                message = (
                    str(exc).splitlines()[0]
                    if isinstance(exc, UsageError)
                    else "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                )
                result.errors.append({"line": line, "deliverable_id": deliverable or None, "reason": message})
                continue
            result.stored += 1
            result.excluded_items += len(receipt.excluded)
            receipts.append(receipt)
    result.carts_changed = trim_pending(store, settings, receipts, now=now)
    return result


def thumb_rows(con: duckdb.DuckDBPyConnection, deliverable_ids: list[str]) -> list[tuple[str, str | None, str | None]]:
    """Every feedback on ``deliverable_ids`` in the order it came: deliverable, thumb, item thumbs (JSON)."""
    rows = con.execute(
        "SELECT deliverable_id, thumb, items FROM feedback WHERE list_contains(?, deliverable_id) ORDER BY feedback_id",
        [list(deliverable_ids)],
    ).fetchall()
    return [(str(d), t, i) for d, t, i in rows]


def thumbs_per_day(con: duckdb.DuckDBPyConnection, days: int) -> list[tuple[Any, int, int, int]]:
    """Per delivery day, newest first (the last ``days`` with deliverables): deliverables, and how
    many got a thumb up or down (their latest)."""
    rows = con.execute(
        """
        WITH latest AS (
            SELECT deliverable_id, arg_max(thumb, feedback_id) AS thumb
            FROM feedback WHERE thumb IS NOT NULL GROUP BY deliverable_id
        )
        SELECT d.date, count(*), count(*) FILTER (l.thumb = 'up'), count(*) FILTER (l.thumb = 'down')
        FROM deliverables d LEFT JOIN latest l USING (deliverable_id)
        GROUP BY d.date ORDER BY d.date DESC LIMIT ?
        """,
        [days],
    ).fetchall()
    return [(r[0], int(r[1]), int(r[2]), int(r[3])) for r in rows]


def excluded_items(con: duckdb.DuckDBPyConnection, user_id: str) -> list[tuple[str, str]]:
    """The items ``user_id`` thumbed down (excluded), newest first: id and title (the id when unknown)."""
    rows = con.execute(
        "SELECT e.item_id, coalesce(i.title, e.item_id) FROM item_exclusions e LEFT JOIN items i USING (item_id) "
        "WHERE e.user_id = ? ORDER BY e.created_at DESC, e.item_id",
        [user_id],
    ).fetchall()
    return [(str(i), str(t)) for i, t in rows]
