"""Who may call the API: write and admin keys, as a bearer token or Segment's basic auth.

Segment libraries send the write key as the basic-auth username with an empty password; any
other client sends ``Authorization: Bearer <key>``. With no key ever created the API is open,
which ``orchestrion serve`` allows on loopback only.

Verified keys are cached in memory (by hash) so a request costs one sha256, not a query. The
cache needs no expiry: while the server runs it holds the only write handle on the database,
so a key can only be revoked through this process (``DELETE /v1/keys/{key_id}``), which evicts
it at once.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Awaitable, Callable
from typing import Final

from fastapi.openapi.models import HTTPBase as HTTPBaseModel
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from orchestrion.access.keys import ApiKey, auth_required, hash_key, verify_key
from orchestrion.api.receipts import ApiError
from orchestrion.store import Store

__all__ = ["CHALLENGE", "Authenticator", "BasicDoc", "BearerDoc"]

CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="orchestrion", Basic realm="orchestrion"'}
_HOW: Final = (
    "send 'Authorization: Bearer <key>' (or HTTP basic auth with the key as the username, as "
    "Segment libraries do); an operator creates keys with `orchestrion keys create --role write` (apps "
    "sending events) or `--role admin` (the operator's commands), with ORCHESTRION_API_KEY set to their "
    "admin key while the server runs (a store's first key is an admin key, made with the server stopped)"
)


def _article(word: str) -> str:
    """'an admin', 'a write'."""
    return "an" if word[:1] in ("a", "e", "i", "o", "u") else "a"


class BearerDoc(SecurityBase):
    """Documents bearer auth in the OpenAPI schema; the check itself is :class:`Authenticator`."""

    def __init__(self) -> None:
        self.model = HTTPBearerModel(description="An orchestrion API key: `Authorization: Bearer orc_…`.")
        self.scheme_name = "apiKeyBearer"

    async def __call__(self) -> None:
        return None


class BasicDoc(SecurityBase):
    """Documents Segment-style basic auth (key as username, empty password) in the OpenAPI schema."""

    def __init__(self) -> None:
        self.model = HTTPBaseModel(scheme="basic", description="Segment style: the key as username.")
        self.scheme_name = "segmentWriteKey"

    async def __call__(self) -> None:
        return None


def _key_from_header(header: str) -> str | None:
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        username, _, password = decoded.partition(":")
        return username or password or None
    return None


class Authenticator:
    """Checks keys for one app; ``require("write")`` and ``require("admin")`` are route dependencies."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._cache: dict[str, ApiKey] = {}
        self._lock = threading.Lock()
        self._required = False
        # Bumped by every revocation: a lookup that started before it must not be cached.
        self._generation = 0

    def load(self) -> None:
        """Read whether keys exist (at startup, and after the first key is created)."""
        cursor = self._store.cursor()
        try:
            self._required = auth_required(cursor)
        finally:
            cursor.close()

    @property
    def required(self) -> bool:
        return self._required

    def key_created(self) -> None:
        """From the first key on, every request needs one."""
        self._required = True

    def forget(self, key_id: str) -> None:
        """Evict a revoked key so that it stops working at once."""
        with self._lock:
            self._generation += 1
            for digest in [d for d, k in self._cache.items() if k.key_id == key_id]:
                del self._cache[digest]

    def _lookup(self, key: str) -> ApiKey | None:
        cursor = self._store.cursor()
        try:
            return verify_key(cursor, key)
        finally:
            cursor.close()

    async def authenticate(self, request: Request) -> ApiKey | None:
        """The caller's key; None when the API is open. Raises :class:`ApiError` 401 otherwise."""
        if not self._required:
            return None
        header = request.headers.get("authorization")
        if not header:
            raise ApiError(401, f"this endpoint needs an API key: {_HOW}", CHALLENGE)
        key = _key_from_header(header)
        if key is None:
            raise ApiError(401, f"the Authorization header is not Bearer or Basic: {_HOW}", CHALLENGE)
        digest = hash_key(key)
        found = self._cache.get(digest)
        if found is None:
            generation = self._generation
            found = await run_in_threadpool(self._lookup, key)
            if found is None:
                raise ApiError(401, f"the API key is unknown or revoked: {_HOW}", CHALLENGE)
            with self._lock:
                if generation == self._generation:
                    self._cache[digest] = found
        return found

    def require(self, role: str) -> Callable[[Request], Awaitable[ApiKey | None]]:
        """A dependency admitting keys of ``role`` (admin keys are admitted everywhere)."""

        async def check(request: Request) -> ApiKey | None:
            key = await self.authenticate(request)
            if key is not None and key.role != "admin" and not (role == "write" and key.can_write):
                raise ApiError(
                    403,
                    f"key {key.key_id} has role {key.role!r}; this needs {_article(role)} {role} key "
                    f"(`orchestrion keys create --role {role}`)",
                )
            return key

        return check
