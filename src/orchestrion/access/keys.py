"""API keys: create, verify, list and revoke, over the ``api_keys`` table.

A key looks like ``orc_<key_id>_<secret>``. Only its sha256 is stored, so a leaked database does
not leak working keys; ``key_id`` is the public part shown in listings and used to revoke.
Roles: ``write`` may send events and items, ``admin`` may also read stats and manage keys,
``user`` is reserved for reading one user's own data (``user_id``). A write key may belong to a
*source* (an app, a shop) with a *domain*: events sent with it record the source and take the
domain unless they carry one (:func:`set_source` changes both later).

Once any key has ever been created, the API requires one (:func:`auth_required`); revoking every
key therefore locks the API rather than opening it again.

>>> import duckdb
>>> from orchestrion.store import Store
>>> con = Store.open(":memory:").con
>>> new = create_key(con, "write")
>>> verify_key(con, new.key).role
'write'
>>> _ = revoke_key(con, new.info.key_id)
>>> verify_key(con, new.key) is None
True
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal, cast, get_args

import duckdb

from orchestrion.access.sessions import end_sessions
from orchestrion.errors import NotFoundError, UsageError
from orchestrion.ingest.events import CONTROL_PATTERN
from orchestrion.store import utcnow

__all__ = [
    "ROLES",
    "ApiKey",
    "NewKey",
    "Role",
    "auth_required",
    "create_key",
    "hash_key",
    "list_keys",
    "revoke_key",
    "set_source",
    "verify_key",
]

Role = Literal["write", "admin", "user"]
ROLES: Final[tuple[str, ...]] = get_args(Role)
KEY_PREFIX: Final = "orc_"
_COLUMNS: Final = "key_id, role, user_id, created_at, revoked_at, source, domain"


@dataclass(frozen=True)
class ApiKey:
    """What is known about a key without the key itself."""

    key_id: str
    role: Role
    user_id: str | None
    created_at: datetime
    revoked_at: datetime | None = None
    source: str | None = None
    domain: str | None = None

    @property
    def can_write(self) -> bool:
        return self.role in ("write", "admin")


@dataclass(frozen=True)
class NewKey:
    """A freshly created key: ``key`` is shown once and never stored."""

    key: str
    info: ApiKey


def hash_key(key: str) -> str:
    """The stored form of a key (hex sha256). Keys are long random strings, so no salt is needed."""
    return hashlib.sha256(key.encode()).hexdigest()


def _row_to_key(row: tuple[object, ...]) -> ApiKey:
    key_id, role, user_id, created_at, revoked_at, source, domain = row
    assert isinstance(created_at, datetime)
    return ApiKey(
        key_id=str(key_id),
        role=cast(Role, role),
        user_id=None if user_id is None else str(user_id),
        created_at=created_at,
        revoked_at=revoked_at if isinstance(revoked_at, datetime) else None,
        source=None if source is None else str(source),
        domain=None if domain is None else str(domain),
    )


def _source_fields(role: str, source: str | None, domain: str | None) -> tuple[str | None, str | None]:
    source, domain = (source or "").strip() or None, (domain or "").strip() or None
    if role == "user" and (source or domain):
        raise UsageError("a key with role 'user' reads data and has no source or domain; leave them out")
    for name, text in (("source", source), ("domain", domain)):
        if text is not None and (len(text) > 64 or re.search(CONTROL_PATTERN, text)):
            raise UsageError(f"{name} {text!r} must be 1 to 64 characters without control characters, e.g. shop")
    return source, domain


def create_key(
    con: duckdb.DuckDBPyConnection,
    role: str,
    *,
    user_id: str | None = None,
    source: str | None = None,
    domain: str | None = None,
    now: datetime | None = None,
) -> NewKey:
    """Create and store a key; the returned ``key`` is the only copy of the secret."""
    if role not in ROLES:
        raise UsageError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if role == "user" and not user_id:
        raise UsageError("a key with role 'user' needs the user_id whose data it may read")
    if role != "user" and user_id:
        raise UsageError(f"user_id is only for role 'user', not {role!r}; leave it out")
    source, domain = _source_fields(role, source, domain)
    key_id = secrets.token_hex(6)
    key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    created = now or utcnow()
    con.execute(
        "INSERT INTO api_keys (key_id, key_hash, role, user_id, created_at, source, domain) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [key_id, hash_key(key), role, user_id, created, source, domain],
    )
    return NewKey(key, ApiKey(key_id, cast(Role, role), user_id, created, source=source, domain=domain))


def verify_key(con: duckdb.DuckDBPyConnection, key: str) -> ApiKey | None:
    """The active key matching ``key``, or None for an unknown or revoked one."""
    # fetchall, not fetchone: DuckDB 2 refuses other work on a connection mid-result
    rows = con.execute(
        f"SELECT {_COLUMNS} FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL",
        [hash_key(key)],
    ).fetchall()
    return _row_to_key(rows[0]) if rows else None


def list_keys(con: duckdb.DuckDBPyConnection) -> list[ApiKey]:
    """Every key ever created, revoked ones included, oldest first."""
    rows = con.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, key_id").fetchall()
    return [_row_to_key(row) for row in rows]


def revoke_key(
    con: duckdb.DuckDBPyConnection, key_id: str, *, now: datetime | None = None
) -> ApiKey:
    """Revoke ``key_id`` (idempotent: an already revoked key keeps its first revocation time).

    The web sessions signed in with the key end with it, in the same transaction.
    """
    now = now or utcnow()
    con.execute("UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL", [now, key_id])
    end_sessions(con, key_id=key_id, now=now, why="key revoked")
    rows = con.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE key_id = ?", [key_id]).fetchall()
    if not rows:
        raise NotFoundError(f"no API key {key_id!r}; `orchestrion keys list` shows the key ids")
    return _row_to_key(rows[0])


def set_source(con: duckdb.DuckDBPyConnection, key_id: str, changes: Mapping[str, str | None]) -> ApiKey:
    """Change the ``source`` and/or ``domain`` of ``key_id`` (a key left out of ``changes`` keeps
    its value; None or "" clears it). Events already stored keep theirs."""
    rows = con.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE key_id = ?", [key_id]).fetchall()
    if not rows:
        raise NotFoundError(f"no API key {key_id!r}; `orchestrion keys list` shows the key ids")
    unknown = set(changes) - {"source", "domain"}
    if unknown:
        raise UsageError(f"a key's {', '.join(sorted(unknown))} cannot be changed; only source and domain")
    current = _row_to_key(rows[0])
    source, domain = _source_fields(
        current.role, changes.get("source", current.source), changes.get("domain", current.domain)
    )
    con.execute("UPDATE api_keys SET source = ?, domain = ? WHERE key_id = ?", [source, domain, key_id])
    rows = con.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE key_id = ?", [key_id]).fetchall()
    return _row_to_key(rows[0])


def auth_required(con: duckdb.DuckDBPyConnection) -> bool:
    """True once any key was ever created: from then on every request needs a valid key."""
    return con.execute("SELECT EXISTS (SELECT 1 FROM api_keys)").fetchall() == [(True,)]
