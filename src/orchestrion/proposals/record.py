"""The deliverable record: one typed model for what crosses rooms (the API, the web page, the CLI,
the channels and the renderers).

:func:`orchestrion.delivery.deliverables.get_deliverable`, ``feed`` and ``decide`` return it;
:meth:`Deliverable.as_dict` is its JSON form, the record the API answers with (the same keys, in
the same order, as before it was typed) and the renderers and channels take.

>>> from datetime import datetime
>>> at = datetime(2024, 1, 2, 6, 0)
>>> d = Deliverable("d_1", "g_1", "u1", "2024-01-02", "reorder", "Reorder", None, ["i1"], "delivered",
...                 None, None, None, "offline", None, 0, 0.0, None, 1, None, at, at, "you buy these", "Delivered")
>>> d.as_dict()["status"], list(d.as_dict())[-2:]
('delivered', ['status_text', 'actions'])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any, Final, Literal

import polars as pl

from orchestrion.encoding import canonical, to_json
from orchestrion.store import registered

__all__ = [
    "CONFIRMING_SQL",
    "PENDING_COLUMNS",
    "REFUSAL_COLUMNS",
    "Deliverable",
    "Status",
    "busiest_users",
    "card_rows",
    "days_with_deliverables",
    "final_items",
    "insert_pending",
    "insert_refusals",
    "latest_day",
    "open_proposed",
    "owner_of",
    "status_once_done",
    "user_actions",
    "write_cart",
    "write_decision",
    "write_reconciled",
    "write_records",
    "write_recovered",
]

Status = Literal[
    "proposed", "planned", "awaiting_approval", "delivered", "not_done", "cancelled", "rejected", "failed"
]
"""A deliverable's lifecycle: ``proposed → planned → awaiting_approval → delivered | not_done |
cancelled | rejected | failed`` (see :mod:`orchestrion.delivery.deliverables`)."""


@dataclass(frozen=True)
class Deliverable:
    """A deliverable as stored, with its goal's "why this", its status in words and the actions
    waiting for (or decided by) a person. JSON columns come decoded (``content`` holds the results
    of its effects under ``effects``); ``date`` is the ISO day."""

    deliverable_id: str
    goal_id: str
    user_id: str
    date: str
    template: str
    title: str
    summary: str | None
    items: list[str] | None
    status: Status
    content: dict[str, Any] | None
    plan: dict[str, Any] | None
    trace: list[dict[str, Any]] | None
    planner: str | None
    fallback: str | None
    tokens: int | None
    cost: float | None
    review: dict[str, Any] | None
    attempts: int | None
    error: str | None
    created_at: datetime
    updated_at: datetime | None
    why: str | None
    status_text: str
    actions: tuple[dict[str, Any], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data (``actions`` a list), in field order: what the API answers."""
        record = asdict(self)
        record["actions"] = list(record["actions"])
        return record


def open_proposed(con: Any, day: date, goals: str) -> None:
    """Open a ``proposed`` deliverable for each chosen goal of ``day`` in the registered relation
    ``goals`` (the goals :func:`orchestrion.proposals.day.record_goals` is recording, inside its
    transaction) that has none yet. Its id is the goal's (``g_…`` → ``d_…``). The anti-join is on
    the day, not ``INSERT OR IGNORE`` (which DuckDB plans against every deliverable ever made)."""
    con.execute(
        "INSERT INTO deliverables (deliverable_id, goal_id, user_id, date, template, title, items, status, "
        "created_at) SELECT 'd_' || substr(goal_id, 3), goal_id, user_id, date, template, title, items, "
        f"'proposed', created_at FROM {goals} n WHERE n.date = $day AND n.status = 'chosen' "
        "AND n.goal_id NOT IN (SELECT goal_id FROM deliverables WHERE date = $day)",
        {"day": day},
    )


PENDING_COLUMNS = (
    "action_id",
    "deliverable_id",
    "user_id",
    "action",
    "arguments",
    "tier",
    "status",
    "due_at",
    "created_at",
    "detail",
)


def insert_pending(con: Any, rows: list[list[Any]]) -> None:
    """Write actions left waiting (approve, notify); a row already there is kept."""
    if not rows:
        return
    with registered(con, rows, PENDING_COLUMNS) as name:
        con.execute(
            f"INSERT INTO pending_actions ({', '.join(PENDING_COLUMNS)}) SELECT action_id, deliverable_id, "
            "user_id, action, arguments, tier, status, CAST(due_at AS TIMESTAMP), "
            f"CAST(created_at AS TIMESTAMP), detail FROM {name} ON CONFLICT DO NOTHING"
        )


REFUSAL_COLUMNS: Final = ("deliverable_id", "user_id", "action", "rule", "detail", "arguments", "created_at")
"""A row of ``policy_decisions``: an action the policy refused (:func:`orchestrion.delivery.actions.refusal_row`)."""


def insert_refusals(con: Any, rows: Sequence[Sequence[Any]]) -> None:
    """Record actions the policy refused (inside the caller's transaction)."""
    if not rows:
        return
    with registered(con, rows, REFUSAL_COLUMNS) as name:
        con.execute(
            f"INSERT INTO policy_decisions ({', '.join(REFUSAL_COLUMNS)}) SELECT deliverable_id, user_id, "
            f"action, rule, detail, arguments, CAST(created_at AS TIMESTAMP) FROM {name}"
        )


def write_records(
    con: Any,
    day: date,
    records: Mapping[str, Mapping[str, Any]],
    status: Mapping[str, str],
    errors: Mapping[str, str | None],
    now: datetime,
    *,
    outcome_only: bool = False,
) -> list[tuple[str, date, str, str]]:
    """Write ``records`` with their status (inside the caller's transaction); a ``failed`` one counts
    one more failure. ``outcome_only``: only the status, the error and the effects' results — the
    content, plan and trace were written before the effects ran (rewriting those large columns of
    rows updated moments before cost DuckDB seconds per batch).

    Returns the deliverables retitled by this write, ``(user_id, date, old title, new title)``, for
    the not-chosen reasons that name them (``proposals.day.retitle_reasons``)."""
    if not records:
        return []
    if outcome_only:
        rows = [[d_id, status[d_id], errors.get(d_id), to_json(r.get("effects") or {})] for d_id, r in records.items()]
        with registered(con, rows, ("d", "s", "e", "x")) as name:
            con.execute(
                f"UPDATE deliverables AS d SET status = u.s, error = u.e, effects = u.x, updated_at = $now, "
                "failures = coalesce(d.failures, 0) + CASE WHEN u.s = 'failed' THEN 1 ELSE 0 END "
                f"FROM {name} u WHERE d.date = $day AND d.deliverable_id = u.d",
                {"now": now, "day": day},
            )
        return []

    def js(value: Any) -> str | None:
        return None if value is None else to_json(value)

    frame = pl.DataFrame(
        [
            {
                "deliverable_id": d_id,
                "status": status[d_id],
                "title": r.get("title"),
                "summary": r.get("summary"),
                "content": js(r.get("content")),
                "effects": js(r.get("effects") or ({} if r.get("content") else None)),
                "plan": js(r.get("plan")),
                "trace": js(r.get("trace")),
                "planner": r.get("planner"),
                "fallback": r.get("fallback"),
                "tokens": int(r.get("tokens") or 0),
                "cost": float(r.get("cost") or 0.0),
                "review": js(r.get("review")),
                "attempts": int(r.get("attempts") or 0),
                "error": errors.get(d_id),
                "why": r.get("why"),
                "items": final_items(r.get("content")),
            }
            for d_id, r in records.items()
        ],
        schema={
            "deliverable_id": pl.String,
            "status": pl.String,
            "title": pl.String,
            "summary": pl.String,
            "content": pl.String,
            "effects": pl.String,
            "plan": pl.String,
            "trace": pl.String,
            "planner": pl.String,
            "fallback": pl.String,
            "tokens": pl.Int64,
            "cost": pl.Float64,
            "review": pl.String,
            "attempts": pl.Int32,
            "error": pl.String,
            "why": pl.String,
            "items": pl.List(pl.String),
        },
    )
    name = f"_orchestrion_delivered_{id(frame)}"
    con.register(name, frame.to_arrow())
    try:
        # Titles as they were before this write: the not-chosen reasons that name them follow the final ones.
        retitled = con.execute(
            f"SELECT d.user_id, d.date, d.title, u.title FROM deliverables d JOIN {name} u USING (deliverable_id) "
            "WHERE d.date = $day AND u.title IS NOT NULL AND u.title <> d.title",
            {"day": day},
        ).fetchall()
        con.execute(
            f"""
            UPDATE deliverables AS d SET
                status = u.status, title = coalesce(u.title, d.title), summary = u.summary,
                content = u.content, effects = u.effects, plan = u.plan, trace = u.trace, planner = u.planner,
                fallback = u.fallback, tokens = u.tokens, cost = u.cost, review = u.review,
                attempts = u.attempts, error = u.error, updated_at = $now,
                why = coalesce(u.why, d.why), items = coalesce(u.items, d.items),
                failures = coalesce(d.failures, 0) + CASE WHEN u.status = 'failed' THEN 1 ELSE 0 END
            FROM {name} u WHERE d.date = $day AND d.deliverable_id = u.deliverable_id
            """,
            {"now": now, "day": day},
        )
    finally:
        con.unregister(name)
    return [(str(u), d, str(old), str(new)) for u, d, old, new in retitled]


def final_items(content: Any) -> list[str] | None:
    """The item ids of built content (what the deliverable finally holds), None when nothing was built."""
    if not isinstance(content, Mapping) or not content.get("items"):
        return None
    return [str(i.get("item_id")) for i in content["items"] if isinstance(i, Mapping) and i.get("item_id")]


def write_decision(
    con: Any,
    deliverable_id: str,
    updates: Sequence[tuple[str, str]],
    final: str,
    error: str | None,
    *,
    by: str,
    now: datetime,
    max_attempts: int,
) -> None:
    """A person's decision (inside the caller's transaction): each decided action's new status
    (``updates``: action id, status; only actions still waiting change) and the deliverable's."""
    con.executemany(
        "UPDATE pending_actions SET status = ?, decided_at = ?, decided_by = ? WHERE action_id = ? "
        "AND status = 'waiting'",
        [[status, now, by, action_id] for action_id, status in updates],
    )
    # A person's approved action that failed is theirs to see, not a run's to try again.
    con.execute(
        "UPDATE deliverables SET status = ?, updated_at = ?, error = CASE WHEN ? = 'not_done' THEN ? "
        "WHEN ? = 'delivered' THEN NULL ELSE coalesce(?, error) END, failures = CASE "
        "WHEN ? = 'failed' THEN greatest(coalesce(failures, 0), ?) ELSE failures END WHERE deliverable_id = ?",
        [final, now, final, error, final, error, final, max_attempts, deliverable_id],
    )


def write_reconciled(con: Any, action_id: str, deliverable_id: str, now: datetime) -> None:
    """An action waiting for a person found done by reconciling its claim (inside the caller's
    transaction): ``executed``, and its deliverable ``delivered`` once nothing of it waits."""
    con.execute(
        "UPDATE pending_actions SET status = 'executed', decided_at = ?, decided_by = 'reconciled' "
        "WHERE action_id = ? AND status = 'waiting'",
        [now, action_id],
    )
    con.execute(
        "UPDATE deliverables SET status = 'delivered', updated_at = ? WHERE deliverable_id = ? AND NOT EXISTS "
        "(SELECT 1 FROM pending_actions WHERE deliverable_id = ? AND status = 'waiting')",
        [now, deliverable_id, deliverable_id],
    )


def status_once_done(con: Any, deliverable_id: str, key: str) -> str | None:
    """What a ``failed`` deliverable is once all its effects are completed, the one of ``key``
    counted as done (being sent again, or just settled): ``delivered``, or ``awaiting_approval``
    while an action still waits for its person. None when it is not failed or another effect is
    not done."""
    found = con.execute(
        "SELECT (SELECT count(*) FROM side_effects WHERE deliverable_id = $d AND idempotency_key <> $key "
        "AND status <> 'completed'), (SELECT count(*) FROM pending_actions WHERE deliverable_id = $d "
        "AND status = 'waiting') FROM deliverables WHERE deliverable_id = $d AND status = 'failed'",
        {"d": deliverable_id, "key": key},
    ).fetchall()
    if not found or found[0][0]:
        return None
    return "awaiting_approval" if found[0][1] else "delivered"


def write_recovered(con: Any, deliverable_id: str, key: str, now: datetime) -> bool:
    """A ``failed`` deliverable whose every effect has now completed, the one of ``key`` last (a
    webhook that answered 500 was sent again by the sweep and taken), did happen after all
    (:func:`status_once_done`). Inside the caller's transaction; True when changed."""
    status = status_once_done(con, deliverable_id, key)
    if status is None:
        return False
    con.execute(
        "UPDATE deliverables SET status = ?, error = NULL, updated_at = ? WHERE deliverable_id = ?",
        [status, now, deliverable_id],
    )
    return True


def write_cart(
    con: Any,
    deliverable_id: str,
    arguments: Mapping[str, Mapping[str, Any]],
    decided: Sequence[tuple[str, str, str | None]],
    refusals: Sequence[Sequence[Any]],
    *,
    content: Mapping[str, Any],
    items: list[str],
    title: str,
    summary: str | None,
    why: str | None,
    status: str,
    error: str | None,
    now: datetime,
) -> None:
    """A cart waiting for approval changed by a thumb down (inside the caller's transaction): its
    orders' new ``arguments`` (by action id), the orders ``decided`` by it (action, status, detail),
    the policy's ``refusals`` and the deliverable as it is now."""
    for action_id, args in arguments.items():
        con.execute(
            "UPDATE pending_actions SET arguments = ? WHERE action_id = ? AND status = 'waiting'",
            [canonical(args), action_id],
        )
    for action_id, decision, detail in decided:
        con.execute(
            "UPDATE pending_actions SET status = ?, decided_at = ?, decided_by = 'thumbs-down', detail = ? "
            "WHERE action_id = ? AND status = 'waiting'",
            [decision, now, detail, action_id],
        )
    insert_refusals(con, refusals)
    con.execute(
        "UPDATE deliverables SET content = ?, items = ?, title = ?, summary = ?, why = ?, status = ?, error = ?, "
        "updated_at = ? WHERE deliverable_id = ?",
        [canonical(content), items, title, summary, why, status, error, now, deliverable_id],
    )


CONFIRMING_SQL: Final = (
    "EXISTS (SELECT 1 FROM pending_actions a JOIN side_effects s ON s.idempotency_key = a.action_id "
    "WHERE a.deliverable_id = d.deliverable_id AND a.status = 'waiting' AND s.status = 'claimed') AS confirming, "
    "(SELECT min(a.due_at) FROM pending_actions a WHERE a.deliverable_id = d.deliverable_id "
    "AND a.status = 'waiting' AND a.tier = 'notify') AS runs_at"
)
"""Two select columns (deliverables as ``d``): ``confirming``, an action of the deliverable was
approved and its outcome is not known yet (the provider did not answer; approving again finishes
it); ``runs_at``, when a ``notify`` action waiting runs on its own unless cancelled (None: none)."""


SENT_SQL: Final = "NOT (d.status = 'cancelled' AND d.content IS NULL)"
"""A deliverable the person may be shown as one: not cancelled before anything was made (a list
mostly repeating the day's others, nothing worth doing, paused) — nothing of it was ever sent."""

_CARD_SQL: Final = """
SELECT d.deliverable_id, d.user_id, d.date, d.template, d.title, d.status, d.error, d.items, d.summary, d.content,
       coalesce(d.why, g.why) AS why, g.details, """ + CONFIRMING_SQL + """
FROM deliverables d LEFT JOIN goals g USING (goal_id)
"""


def card_rows(
    con: Any, *, user_id: str | None = None, day: date | None = None, deliverable_id: str | None = None
) -> list[dict[str, Any]]:
    """What the web page's cards are made of: one deliverable (``deliverable_id``) or a user's day
    (in the order its goals were chosen; only what was sent, :data:`SENT_SQL`), each with its goal's
    ``details`` (JSON text as stored)."""
    if deliverable_id is not None:
        cursor = con.execute(_CARD_SQL + "WHERE d.deliverable_id = ?", [deliverable_id])
    else:
        cursor = con.execute(
            _CARD_SQL + f"WHERE d.user_id = ? AND d.date = ? AND {SENT_SQL} ORDER BY g.slot NULLS LAST, "
            "d.deliverable_id",
            [user_id, day],
        )
    names = [d[0] for d in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def days_with_deliverables(con: Any, user_id: str, before: date, limit: int) -> list[tuple[date, int]]:
    """The user's days with deliverables sent before ``before``, newest first, and how many each had."""
    rows = con.execute(
        f"SELECT date, count(*) FROM deliverables d WHERE user_id = ? AND date < ? AND {SENT_SQL} "
        "GROUP BY date ORDER BY date DESC LIMIT ?",
        [user_id, before, limit],
    ).fetchall()
    return [(r[0], int(r[1])) for r in rows]


def latest_day(con: Any, user_id: str, on_or_before: date) -> date | None:
    """The user's latest day with deliverables (not ``proposed``) up to ``on_or_before``, or None."""
    rows = con.execute(
        f"SELECT max(date) FROM deliverables d WHERE user_id = ? AND date <= ? AND status <> 'proposed' AND {SENT_SQL}",
        [user_id, on_or_before],
    ).fetchall()
    return rows[0][0] if rows and rows[0][0] is not None else None


def owner_of(con: Any, deliverable_id: str) -> str | None:
    """The user a deliverable is for, or None when there is no such deliverable."""
    rows = con.execute("SELECT user_id FROM deliverables WHERE deliverable_id = ?", [deliverable_id]).fetchall()
    return str(rows[0][0]) if rows else None


def busiest_users(con: Any, limit: int) -> list[tuple[str, int]]:
    """The users with the most deliverables, and how many."""
    rows = con.execute(
        "SELECT user_id, count(*) FROM deliverables GROUP BY user_id ORDER BY count(*) DESC, user_id LIMIT ?",
        [limit],
    ).fetchall()
    return [(str(r[0]), int(r[1])) for r in rows]


def user_actions(con: Any, user_id: str) -> list[tuple[Any, ...]]:
    """The user's actions, waiting ones first, then by when they were decided or made: id,
    deliverable, its title, action, tier, status, arguments (JSON), due, created, decided, by whom,
    detail, the cart's currency (its content's, else its first line's item's), the deliverable's
    stored reason (why it was not done) and whether this action was approved and its outcome is
    not known yet (its ledger claim is open)."""
    rows: list[tuple[Any, ...]] = con.execute(
        """
        SELECT a.action_id, a.deliverable_id, coalesce(d.title, a.deliverable_id), a.action, a.tier, a.status,
               a.arguments, a.due_at, a.created_at, a.decided_at, a.decided_by, a.detail,
               coalesce(json_extract_string(d.content, '$.currency'), (SELECT i.currency FROM items i
                        WHERE i.item_id = json_extract_string(a.arguments, '$.lines[0][0]'))),
               d.error,
               a.status = 'waiting' AND EXISTS (SELECT 1 FROM side_effects s WHERE s.idempotency_key = a.action_id
                                                AND s.status = 'claimed')
        FROM pending_actions a LEFT JOIN deliverables d USING (deliverable_id)
        WHERE a.user_id = ?
        ORDER BY a.status = 'waiting' DESC, coalesce(a.decided_at, a.created_at) DESC, a.action_id
        """,
        [user_id],
    ).fetchall()
    return rows
