"""Web sessions and single-use sign-in links, over ``web_sessions``, ``web_links`` and ``web_signouts``.

A session is a random token in a cookie; only its sha256 is stored (as with API keys), so a
leaked database opens no session. Every request looks the session up: it is refused once it was
ended (signed out, its API key or sign-in link revoked, its user signed out everywhere), past
its lifetime, or idle for longer than the idle limit. The caller passes the clock in.

>>> from datetime import datetime, timedelta
>>> from orchestrion.store import Store
>>> con = Store.open(":memory:").con
>>> t0 = datetime(2026, 1, 1, 9)
>>> token, made = start_session(con, "user", "alice", key_id="k1", now=t0, lifetime=timedelta(days=7))
>>> find_session(con, token, now=t0 + timedelta(hours=1), idle=timedelta(hours=12)).user_id
'alice'
>>> end_sessions(con, key_id="k1", now=t0, why="key revoked")
1
>>> find_session(con, token, now=t0 + timedelta(hours=1), idle=timedelta(hours=12)) is None
True
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal, cast

import duckdb

from orchestrion.errors import PermissionDeniedError

__all__ = [
    "Kind",
    "StoredSession",
    "end_session",
    "end_sessions",
    "find_session",
    "redeem_link",
    "revoke_link",
    "session_hash",
    "sign_out_user",
    "start_session",
    "touch_session",
]

Kind = Literal["user", "admin"]
_COLUMNS: Final = "session_hash, kind, user_id, key_id, link_id, form_token, created_at, seen_at, expires_at"


@dataclass(frozen=True)
class StoredSession:
    """A live session as stored (without its token)."""

    session_hash: str
    kind: Kind
    user_id: str | None
    key_id: str | None
    link_id: str | None
    form_token: str
    created_at: datetime
    seen_at: datetime
    expires_at: datetime


def session_hash(token: str) -> str:
    """The stored form of a session token (hex sha256; tokens are long and random, so no salt)."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def start_session(
    con: duckdb.DuckDBPyConnection,
    kind: Kind,
    user_id: str | None,
    *,
    key_id: str | None = None,
    link_id: str | None = None,
    now: datetime,
    lifetime: timedelta,
) -> tuple[str, StoredSession]:
    """Store a new session; returns the cookie token (the only copy) and the session."""
    token = secrets.token_urlsafe(32)
    made = StoredSession(
        session_hash(token), kind, user_id, key_id, link_id, secrets.token_urlsafe(24), now, now, now + lifetime
    )
    con.execute(
        f"INSERT INTO web_sessions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [made.session_hash, kind, user_id, key_id, link_id, made.form_token, now, now, made.expires_at],
    )
    return token, made


def find_session(
    con: duckdb.DuckDBPyConnection, token: str, *, now: datetime, idle: timedelta
) -> StoredSession | None:
    """The live session of a cookie token, or None: unknown, ended, expired, or idle too long."""
    rows = con.execute(
        f"SELECT {_COLUMNS} FROM web_sessions WHERE session_hash = ? AND ended_at IS NULL "
        "AND expires_at > ? AND seen_at > ?",
        [session_hash(token), now, now - idle],
    ).fetchall()
    if not rows:
        return None
    h, kind, user_id, key_id, link_id, form_token, created_at, seen_at, expires_at = rows[0]
    return StoredSession(
        str(h), cast(Kind, kind), user_id, key_id, link_id, str(form_token), created_at, seen_at, expires_at
    )


def touch_session(con: duckdb.DuckDBPyConnection, hashed: str, *, now: datetime) -> None:
    """Record activity on a session (what idle expiry counts from)."""
    con.execute("UPDATE web_sessions SET seen_at = ? WHERE session_hash = ? AND seen_at < ?", [now, hashed, now])


def end_session(con: duckdb.DuckDBPyConnection, hashed: str, *, now: datetime, why: str = "signed out") -> None:
    """End one session (sign out)."""
    con.execute(
        "UPDATE web_sessions SET ended_at = ?, ended_why = ? WHERE session_hash = ? AND ended_at IS NULL",
        [now, why, hashed],
    )


def end_sessions(
    con: duckdb.DuckDBPyConnection,
    *,
    user_id: str | None = None,
    key_id: str | None = None,
    link_id: str | None = None,
    kind: Kind | None = None,
    now: datetime,
    why: str,
) -> int:
    """End every live session matching all the given fields (at least one); returns how many."""
    wanted = {"user_id": user_id, "key_id": key_id, "link_id": link_id, "kind": kind}
    where = {k: v for k, v in wanted.items() if v is not None}
    if not where:
        raise ValueError("end_sessions needs a user_id, key_id, link_id or kind")
    clause = " AND ".join(f"{name} = ?" for name in where)
    rows = con.execute(
        f"UPDATE web_sessions SET ended_at = ?, ended_why = ? WHERE ended_at IS NULL AND {clause} "
        "RETURNING session_hash",
        [now, why, *where.values()],
    ).fetchall()
    return len(rows)


def redeem_link(
    con: duckdb.DuckDBPyConnection, link_id: str, user_id: str, *, issued_at: datetime, now: datetime
) -> None:
    """Use a sign-in link once: refuse it when used, revoked, or issued before its user was signed out.

    Call inside the transaction that starts the session, so that two requests cannot both use it.
    """
    refused = PermissionDeniedError("this sign-in link was already used or was revoked; ask for a new one")
    if con.execute("SELECT 1 FROM web_links WHERE link_id = ?", [link_id]).fetchall():
        raise refused
    cutoff = con.execute("SELECT links_before FROM web_signouts WHERE user_id = ?", [user_id]).fetchall()
    if cutoff and issued_at <= cutoff[0][0]:
        raise refused
    con.execute("INSERT INTO web_links (link_id, user_id, used_at) VALUES (?, ?, ?)", [link_id, user_id, now])


def revoke_link(con: duckdb.DuckDBPyConnection, link_id: str, *, now: datetime) -> int:
    """Revoke a sign-in link (used or not) and end the sessions it started; returns how many ended."""
    con.execute(
        "INSERT INTO web_links (link_id, revoked_at) VALUES (?, ?) "
        "ON CONFLICT (link_id) DO UPDATE SET revoked_at = coalesce(web_links.revoked_at, excluded.revoked_at)",
        [link_id, now],
    )
    return end_sessions(con, link_id=link_id, now=now, why="link revoked")


def sign_out_user(con: duckdb.DuckDBPyConnection, user_id: str, *, now: datetime) -> int:
    """Sign a user out everywhere: end their sessions and refuse every link issued to them until now.

    This is also how an operator removes a person from the web page (with revoking their user keys).
    """
    con.execute(
        "INSERT INTO web_signouts (user_id, links_before) VALUES (?, ?) "
        "ON CONFLICT (user_id) DO UPDATE SET links_before = excluded.links_before",
        [user_id, now],
    )
    return end_sessions(con, user_id=user_id, kind="user", now=now, why="user signed out")
