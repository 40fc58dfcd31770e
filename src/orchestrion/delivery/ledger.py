"""The side-effect ledger: every effect on the world is claimed before it runs and completed after.

The identity of an effect is its deliverable and its action (and, for publishing, the channel):
:func:`effect_key` hashes those and nothing else — not the cart, not the URL, not the raw model
arguments — so identical calls within a plan are one effect, and a re-run, a re-plan, an approval
or a retry after a crash finds the same key and never performs a second one. The key is sent to
the external system as its idempotency key. :func:`claim` inserts ``claimed`` rows in one
transaction and tells, per key, whether the effect is new, already completed (skip it, reuse its
result) or claimed by an earlier attempt that never completed (its outcome is unknown: reconcile it
with the external system, don't blindly repeat it).

>>> from orchestrion.store import Store
>>> s = Store.open(":memory:").con
>>> k = effect_key("d_1", "place_order", "order")
>>> e = Effect(k, "u1", "d_1", "place_order", {"lines": [["a", 2]]})
>>> claim(s, [e], now=datetime(2024, 5, 1))[k]
'new'
>>> complete(s, {k: {"order_id": "o1"}}, now=datetime(2024, 5, 1))
>>> claim(s, [Effect(k, "u1", "d_1", "place_order", {"lines": [["b", 9]]})], now=datetime(2024, 5, 1))[k]
'completed'
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import duckdb

from orchestrion.encoding import canonical
from orchestrion.store import registered, transaction

__all__ = [
    "ClaimState",
    "Effect",
    "Entry",
    "claim",
    "complete",
    "effect_key",
    "entries",
    "fail",
    "results",
    "settle",
    "stale_claims",
]

ClaimState = Literal["new", "completed", "unknown"]


def effect_key(deliverable_id: str, action: str, channel: str) -> str:
    """The deterministic idempotency key of a deliverable's effect: ``action`` (``place_order``,
    ``publish``) on ``channel`` (``order``, ``outbox``, ``webhook``). What the effect carries is
    not part of it: one deliverable orders once and publishes once per channel, ever."""
    whole = "|".join((deliverable_id, action, channel))
    return "fx_" + hashlib.sha256(whole.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Effect:
    """One intended side effect, in canonical form."""

    key: str
    user_id: str
    deliverable_id: str
    action: str
    effect: Mapping[str, Any]
    text: str | None = None
    """The effect's :func:`canonical` form, when already made."""


def claim(
    con: duckdb.DuckDBPyConnection,
    effects: Sequence[Effect],
    *,
    now: datetime,
    along: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
) -> dict[str, ClaimState]:
    """Claim ``effects`` (one committed transaction) and say, per key, what state each was in.

    ``along`` writes what must be committed with the claims or not at all (the actions of the same
    deliverables left waiting for a person: a crash between the two would keep the one and lose the
    other).
    """
    if not effects:
        return {}
    effects = list({e.key: e for e in effects}.values())  # one effect per key, whatever the plan repeated
    keys = [e.key for e in effects]
    with transaction(con):
        before = dict(
            con.execute(
                "SELECT idempotency_key, status FROM side_effects WHERE idempotency_key IN (SELECT unnest($k))",
                {"k": keys},
            ).fetchall()
        )
        rows = [[e.key, e.user_id, e.deliverable_id, e.action, e.text or canonical(e.effect)] for e in effects]
        with registered(con, rows, ("k", "u", "d", "a", "e")) as name:
            con.execute(
                f"INSERT INTO side_effects SELECT k, u, d, a, e, 'claimed', NULL, 1, $now, NULL FROM {name} "
                "ON CONFLICT (idempotency_key) DO UPDATE SET attempts = side_effects.attempts + 1, "
                "effect = CASE side_effects.status WHEN 'failed' THEN excluded.effect ELSE side_effects.effect END, "
                "claimed_at = CASE side_effects.status WHEN 'failed' THEN excluded.claimed_at "
                "ELSE side_effects.claimed_at END, "
                "status = CASE side_effects.status WHEN 'failed' THEN 'claimed' ELSE side_effects.status END",
                {"now": now},
            )
        if along is not None:
            along(con)
    states: dict[str, ClaimState] = {}
    for key in keys:
        status = before.get(key)
        # A failed effect certainly did not happen, so it may be tried again.
        states[key] = "completed" if status == "completed" else "unknown" if status == "claimed" else "new"
    return states


def complete(con: duckdb.DuckDBPyConnection, outcomes: Mapping[str, Mapping[str, Any]], *, now: datetime) -> None:
    """Mark effects completed with their results (one transaction)."""
    if not outcomes:
        return
    with transaction(con):
        settle(con, "completed", {key: canonical(result) for key, result in outcomes.items()}, now)


def fail(con: duckdb.DuckDBPyConnection, errors: Mapping[str, str], *, now: datetime) -> None:
    """Mark effects that certainly did not happen (the provider said no) as failed."""
    if not errors:
        return
    with transaction(con):
        settle(con, "failed", {key: canonical({"error": error}) for key, error in errors.items()}, now)


def settle(con: duckdb.DuckDBPyConnection, status: str, results: Mapping[str, str], now: datetime) -> None:
    """Set ``status`` and the JSON ``results`` of claimed effects, in one statement (inside a transaction)."""
    if not results:
        return
    with registered(con, list(results.items()), ("k", "r")) as name:
        con.execute(
            f"UPDATE side_effects SET status = $status, result = t.r, completed_at = $now FROM {name} t "
            "WHERE idempotency_key = t.k",
            {"status": status, "now": now},
        )


def results(con: duckdb.DuckDBPyConnection, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The stored results of completed effects among ``keys``."""
    if not keys:
        return {}
    rows = con.execute(
        "SELECT idempotency_key, result FROM side_effects "
        "WHERE status = 'completed' AND idempotency_key IN (SELECT unnest($k))",
        {"k": list(keys)},
    ).fetchall()
    return {str(k): json.loads(r) if r else {} for k, r in rows}


@dataclass(frozen=True)
class Entry:
    """One row of the ledger as stored."""

    key: str
    user_id: str
    deliverable_id: str
    action: str
    effect: dict[str, Any]
    status: str
    result: dict[str, Any] | None
    attempts: int
    claimed_at: datetime


_ENTRY = "idempotency_key, user_id, deliverable_id, action, effect, status, result, attempts, claimed_at"


def _entry(row: Sequence[Any]) -> Entry:
    return Entry(
        str(row[0]), str(row[1]), str(row[2]), str(row[3]), json.loads(row[4]), str(row[5]),
        json.loads(row[6]) if row[6] else None, int(row[7]), row[8],
    )


def entries(con: duckdb.DuckDBPyConnection, deliverable_ids: Sequence[str]) -> dict[str, list[Entry]]:
    """The ledger rows of ``deliverable_ids``, per deliverable, in the order they were claimed."""
    if not deliverable_ids:
        return {}
    rows = con.execute(
        f"SELECT {_ENTRY} FROM side_effects WHERE deliverable_id IN (SELECT unnest($d)) "
        "ORDER BY claimed_at, idempotency_key",
        {"d": list(deliverable_ids)},
    ).fetchall()
    found: dict[str, list[Entry]] = {}
    for row in rows:
        entry = _entry(row)
        found.setdefault(entry.deliverable_id, []).append(entry)
    return found


def stale_claims(con: duckdb.DuckDBPyConnection, *, before: datetime) -> list[Entry]:
    """Entries still ``claimed`` that were claimed before ``before`` (their outcome is unknown)."""
    rows = con.execute(
        f"SELECT {_ENTRY} FROM side_effects WHERE status = 'claimed' AND claimed_at < $before "
        "ORDER BY claimed_at, idempotency_key",
        {"before": before},
    ).fetchall()
    return [_entry(r) for r in rows]
