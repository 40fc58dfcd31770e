"""Users: traits and the timezone that decides when "their local morning" is.

Rows are created by an ``identify`` (Segment) or any caller that knows traits. Traits are merged
(JSON merge patch: a new value replaces the old one, ``null`` removes it), so each identify only
needs to carry what changed.

>>> from orchestrion.store import Store
>>> con = Store.open(":memory:").con
>>> upsert_users(con, [UserTraits("u1", {"plan": "pro"}, "Europe/Paris")])
1
>>> upsert_users(con, [UserTraits("u1", {"name": "Ada"})])
1
>>> con.execute("SELECT timezone, traits FROM users").fetchone()
('Europe/Paris', '{"plan":"pro","name":"Ada"}')
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb
import pyarrow as pa

from orchestrion.store import utcnow

__all__ = ["UserTraits", "insert_new_users", "known_user", "timezone_of", "upsert_users", "valid_timezone"]

_UPSERT: Final = """
INSERT INTO users (user_id, timezone, traits, created_at, updated_at)
SELECT user_id, coalesce(timezone, 'UTC'), traits, ts, ts FROM _orchestrion_users
ON CONFLICT (user_id) DO UPDATE SET
    traits = json_merge_patch(coalesce(users.traits, '{}'), excluded.traits),
    updated_at = excluded.updated_at
"""
# ON CONFLICT cannot tell a sent 'UTC' from the default one, so a sent timezone is set apart.
_SET_TIMEZONE: Final = """
UPDATE users SET timezone = u.timezone
FROM _orchestrion_users u WHERE users.user_id = u.user_id AND u.timezone IS NOT NULL
"""


@dataclass(frozen=True)
class UserTraits:
    """Traits to merge into one user's row; ``timezone`` None keeps the current one."""

    user_id: str
    traits: dict[str, Any] = field(default_factory=dict)
    timezone: str | None = None


def known_user(con: duckdb.DuckDBPyConnection, user_id: str) -> bool:
    """True when ``user_id`` has a row in ``users`` (an identify, a dataset) or any stored event."""
    row = con.execute(
        "SELECT EXISTS (SELECT 1 FROM users WHERE user_id = $u) OR EXISTS (SELECT 1 FROM events WHERE user_id = $u)",
        {"u": user_id},
    ).fetchone()
    return bool(row and row[0])


def timezone_of(con: duckdb.DuckDBPyConnection, user_id: str) -> str | None:
    """The user's stored IANA timezone, or None (no row, or none stored)."""
    rows = con.execute("SELECT timezone FROM users WHERE user_id = ?", [user_id]).fetchall()
    return str(rows[0][0]) if rows and rows[0][0] else None


def insert_new_users(con: duckdb.DuckDBPyConnection, table: pa.Table, *, now: datetime) -> None:
    """Insert a dataset's users (``user_id, timezone, traits``), keeping every user already stored
    (inside the caller's transaction): a bulk load never overwrites what an identify said."""
    con.register("_orchestrion_users", table)
    try:
        con.execute(
            "INSERT INTO users (user_id, timezone, traits, created_at, updated_at) "
            "SELECT user_id, timezone, traits, ?, ? FROM _orchestrion_users ON CONFLICT DO NOTHING",
            [now, now],
        )
    finally:
        con.unregister("_orchestrion_users")


def valid_timezone(name: str) -> bool:
    """True for an IANA timezone name such as ``Europe/Paris``."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file name
        return False
    return True


def upsert_users(
    con: duckdb.DuckDBPyConnection, updates: list[UserTraits], *, now: datetime | None = None
) -> int:
    """Merge ``updates`` into ``users`` inside the caller's transaction; returns how many were given.

    Several updates of one user are folded first (later ones win), because one statement may not
    update the same row twice.
    """
    if not updates:
        return 0
    merged: dict[str, UserTraits] = {}
    for update in updates:
        before = merged.get(update.user_id)
        if before is not None:
            update = UserTraits(
                update.user_id,
                {**before.traits, **update.traits},
                update.timezone or before.timezone,
            )
        merged[update.user_id] = update
    ts = now or utcnow()
    table = pa.table(
        {
            "user_id": [u.user_id for u in merged.values()],
            "timezone": [u.timezone for u in merged.values()],
            "traits": [json.dumps(u.traits, separators=(",", ":")) for u in merged.values()],
            "ts": [ts] * len(merged),
        },
        schema=pa.schema(
            [("user_id", pa.string()), ("timezone", pa.string()), ("traits", pa.string()),
             ("ts", pa.timestamp("us"))]
        ),
    )
    con.register("_orchestrion_users", table)
    try:
        con.execute(_UPSERT)
        con.execute(_SET_TIMEZONE)
    finally:
        con.unregister("_orchestrion_users")
    return len(updates)
