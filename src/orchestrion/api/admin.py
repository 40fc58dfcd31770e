"""Operator routes: health (open), store stats, API keys and web sign-ins (admin keys only).

Keys are created and revoked through the running server because it holds the only write handle
on the database; revoking here also evicts the key from the in-memory cache, so it stops working
on the next request, and ends the web sessions signed in with it. Sign-in links and a user's
web sessions are revoked here too.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import duckdb
from fastapi import APIRouter, Depends, Path, Security
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from orchestrion.access import keys, sessions
from orchestrion.api.auth import BasicDoc, BearerDoc
from orchestrion.api.context import PRINTABLE, USER_ID_PATTERN, ApiContext, UserId
from orchestrion.api.receipts import ApiError, Refusal
from orchestrion.errors import UsageError
from orchestrion.ingest.segment_spec import known_types
from orchestrion.ingest.stats import store_stats
from orchestrion.store import utcnow

_LINK_ID = re.compile(r"[0-9a-f]{16}")
"""A sign-in link's id: ``secrets.token_hex(8)`` (``web.session``)."""

__all__ = ["build_router"]


class Health(BaseModel):
    """Liveness and how well the writer groups requests."""

    status: Literal["ok", "unavailable"]
    auth_required: bool = Field(description="False while no API key exists (loopback only).")
    commits: int
    jobs: int
    events_per_commit: float
    pending: int


class StoreStats(BaseModel):
    """What the store holds (see ``orchestrion stats``)."""

    model_config = ConfigDict(extra="allow")

    events: int
    failed_events: int
    users: int
    items: int
    first_event: str | None
    last_event: str | None


SourceName = Annotated[str, Field(max_length=64, pattern=PRINTABLE)]
"""A key's source or domain: at most 64 characters, no control characters (as ids)."""

KeyUser = UserId
"""A user key's user id, as events carry it."""


class KeyRequest(BaseModel):
    """The key to create."""

    # the schema says what create_key checks: user_id with role user only (so clients, and
    # schemathesis, know a user key without user_id is refused rather than find out by 400)
    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [
        {"required": ["role", "user_id"],
         "properties": {"role": {"const": "user"}, "user_id": {"type": "string", "minLength": 1},
                        "source": {"type": "null"}, "domain": {"type": "null"}}},
        {"properties": {"role": {"enum": ["write", "admin"]}, "user_id": {"type": "null"}}},
    ]})

    role: Literal["write", "admin", "user"] = "write"
    user_id: KeyUser | None = Field(None, description="Only for role 'user': whose data it may read.")
    source: SourceName | None = Field(None, description="The source (app, shop) whose events the key sends.")
    domain: SourceName | None = Field(None, description="The domain of the source's events that carry none.")


class SourceRequest(BaseModel):
    """The source and/or domain to set on a key (a field left out is kept, null clears it)."""

    model_config = ConfigDict(extra="forbid")

    source: SourceName | None = None
    domain: SourceName | None = None


class KeyInfo(BaseModel):
    """A key without its secret."""

    key_id: str
    role: str
    user_id: str | None
    created_at: datetime
    revoked_at: datetime | None
    source: SourceName | None = None
    domain: SourceName | None = None


class CreatedKey(KeyInfo):
    """A new key: ``key`` is shown this once and never stored."""

    key: str


class LinkRevoked(BaseModel):
    """A revoked sign-in link and how many web sessions it had started that ended with it."""

    link_id: str
    sessions_ended: int


class SignedOut(BaseModel):
    """A user signed out of the web page everywhere."""

    user_id: str
    sessions_ended: int


def _aware(ts: datetime | None) -> datetime | None:
    """Stored timestamps are naive UTC; RFC 3339 (and so OpenAPI's date-time) wants the offset."""
    return None if ts is None else ts.replace(tzinfo=UTC)


def _info(key: keys.ApiKey) -> dict[str, Any]:
    return {"key_id": key.key_id, "role": key.role, "user_id": key.user_id,
            "created_at": _aware(key.created_at), "revoked_at": _aware(key.revoked_at),
            "source": key.source, "domain": key.domain}


def build_router(ctx: ApiContext) -> APIRouter:
    """The operator routes of one app."""
    documented = [Security(BearerDoc()), Security(BasicDoc())]
    admin = Depends(ctx.auth.require("admin"))
    refusals: dict[int | str, dict[str, Any]] = {
        401: {"model": Refusal, "description": "Missing, unknown or revoked API key."},
        403: {"model": Refusal, "description": "Not an admin key."},
    }
    router = APIRouter(tags=["admin"])
    known = known_types(ctx.settings.mappings, [rule.event_type for rule in ctx.settings.triggers])

    @router.get("/v1/health", response_model=Health, responses={503: {"model": Health}})
    async def health() -> Any:
        """Liveness for load balancers and tests; needs no key."""
        stats = ctx.writer.stats
        body = Health(
            status="ok" if ctx.writer.alive else "unavailable",
            auth_required=ctx.auth.required,
            commits=stats.commits,
            jobs=stats.jobs,
            events_per_commit=stats.units / stats.commits if stats.commits else 0.0,
            pending=stats.pending_units,
        )
        if not ctx.writer.alive:
            return Response(body.model_dump_json(), status_code=503, media_type="application/json")
        return body

    @router.head("/v1/health", include_in_schema=False)
    async def health_head() -> Response:
        """``GET /v1/health``'s status without its body (load balancers probe with HEAD)."""
        return Response(status_code=200 if ctx.writer.alive else 503)

    def read_stats() -> dict[str, Any]:
        cursor = ctx.store.cursor()
        try:
            return store_stats(cursor, known)
        finally:
            cursor.close()

    @router.get("/v1/stats", response_model=StoreStats, dependencies=[*documented, admin],
                responses=refusals)
    async def stats() -> Any:
        """Counts of events, failed events, users and items (admin)."""
        return await run_in_threadpool(read_stats)

    @router.post("/v1/keys", response_model=CreatedKey, status_code=201,
                 dependencies=[*documented, admin],
                 responses={**refusals,
                            400: {"model": Refusal, "description": "Unreadable body or bad role/user_id."},
                            422: {"model": Refusal, "description": "Invalid field values."}})
    async def create_key(request: KeyRequest) -> Any:
        """Create an API key (admin; open while no key exists). The key is in the answer only."""

        def work(con: duckdb.DuckDBPyConnection) -> keys.NewKey:
            if request.role != "admin" and not any(k.revoked_at is None for k in keys.list_keys(con)):
                # The API is open only while no key exists: a first key that is not an admin's
                # would close it with nobody able to create keys through it.
                raise UsageError(
                    "role: the first key must be the operator's admin key, since from the first key on only an "
                    "admin key can create keys; send role 'admin' first (or run `orchestrion keys create "
                    "--role admin` with the server stopped)"
                )
            return keys.create_key(con, request.role, user_id=request.user_id, source=request.source,
                                   domain=request.domain)

        new = await ctx.write(work)
        ctx.auth.key_created()
        return {**_info(new.info), "key": new.key}

    @router.get("/v1/keys", response_model=list[KeyInfo], dependencies=[*documented, admin],
                responses=refusals)
    async def list_keys() -> Any:
        """Every key, revoked ones included, without secrets (admin)."""

        def read() -> list[keys.ApiKey]:
            cursor = ctx.store.cursor()
            try:
                return keys.list_keys(cursor)
            finally:
                cursor.close()

        return [_info(key) for key in await run_in_threadpool(read)]

    @router.patch("/v1/keys/{key_id}", response_model=KeyInfo, dependencies=[*documented, admin],
                  responses={**refusals, 404: {"model": Refusal, "description": "No such key."},
                             400: {"model": Refusal, "description": "Bad source or domain."},
                             422: {"model": Refusal, "description": "Invalid field values."}})
    async def set_source(key_id: str, request: SourceRequest) -> Any:
        """Set a key's source and domain; its next request uses them (admin)."""

        def work(con: duckdb.DuckDBPyConnection) -> keys.ApiKey:
            return keys.set_source(con, key_id, request.model_dump(exclude_unset=True))

        updated = await ctx.write(work)
        ctx.auth.forget(key_id)
        return _info(updated)

    @router.delete("/v1/keys/{key_id}", response_model=KeyInfo, dependencies=[*documented, admin],
                   responses={**refusals, 404: {"model": Refusal, "description": "No such key."}})
    async def revoke_key(key_id: str) -> Any:
        """Revoke a key; it stops working on the next request (admin)."""

        def work(con: duckdb.DuckDBPyConnection) -> keys.ApiKey:
            return keys.revoke_key(con, key_id)

        revoked = await ctx.write(work)
        ctx.auth.forget(key_id)
        return _info(revoked)

    @router.delete("/v1/signin-links/{link_id}", response_model=LinkRevoked, dependencies=[*documented, admin],
                   responses={**refusals, 404: {"model": Refusal, "description": "Not a link id as `orchestrion users "
                              "link` prints it (16 hexadecimal characters)."},
                              422: {"model": Refusal, "description": "A link id over 64 characters."}})
    async def revoke_link(
        link_id: str = Path(min_length=1, max_length=64, description="As `orchestrion users link` prints it."),
    ) -> Any:
        """Revoke a sign-in link, used or not: it signs no one in, and the sessions it started end (admin)."""
        if not _LINK_ID.fullmatch(link_id):
            # A mistyped id answered 200 and the real link went on signing in: links are not stored
            # until used, so only their form can be checked here.
            raise ApiError(
                404,
                f"no sign-in link {link_id!r}: a link id is the 16 hexadecimal characters `orchestrion users link` "
                "prints (\"link id …\"); copy it again",
            )
        now = utcnow()
        ended = await ctx.write(lambda con: sessions.revoke_link(con, link_id, now=now))
        return {"link_id": link_id, "sessions_ended": ended}

    @router.delete("/v1/users/{user_id:path}/sessions", response_model=SignedOut, dependencies=[*documented, admin],
                   responses={**refusals, 422: {"model": Refusal, "description": "Not a user id."}})
    async def sign_out_user(
        user_id: str = Path(
            min_length=1, max_length=256, pattern=USER_ID_PATTERN, description="A user id as events carry it."
        ),
    ) -> Any:
        """Sign a user out of the web page everywhere: their sessions end and every sign-in link made for
        them so far stops working (admin). With revoking their user keys, this removes a person's access."""
        now = utcnow()
        ended = await ctx.write(lambda con: sessions.sign_out_user(con, user_id, now=now))
        return {"user_id": user_id, "sessions_ended": ended}

    return router
