"""Deliverables over HTTP: a user's feed, their goals of a day ("why this" and what was not chosen),
one deliverable, and a person's approve / reject / cancel.

Who may call: an ``admin`` key for anyone; a ``user`` key (``orchestrion users token USER``) only
for that user's own feed and deliverables — another user's deliverable answers 404, as an unknown
one does, so that ids cannot be probed. While no key exists (loopback only) the API is open.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Security
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from orchestrion.access.keys import ApiKey
from orchestrion.api.auth import BasicDoc, BearerDoc
from orchestrion.api.context import ApiContext, IsoDate
from orchestrion.api.receipts import ApiError, Refusal
from orchestrion.config import Format
from orchestrion.delivery.deliverables import decide, feed, get_deliverable
from orchestrion.delivery.rendering import MEDIA_TYPES, render, with_status_text
from orchestrion.encoding import to_json_bytes
from orchestrion.errors import AlreadyDecidedError, NotFoundError, PermissionDeniedError, RetryableError, UsageError
from orchestrion.proposals.day import day_goals
from orchestrion.proposals.record import Deliverable
from orchestrion.store import Store, utcnow

__all__ = ["build_router"]

_HOW = "use that user's key (`orchestrion users token USER`) or an admin key"


DeliveryDay = Annotated[
    IsoDate | None, Query(alias="date", description="The delivery day, YYYY-MM-DD (default today, UTC).")
]
"""The ``?date=`` of a user's feed and goals."""


def _viewer(key: ApiKey | None, user_id: str | None = None) -> str | None:
    """The user id a key may see (None: everyone); 403 for write keys and other users."""
    if key is None or key.role == "admin":
        return None
    if key.role != "user" or key.user_id is None:
        raise ApiError(403, f"key {key.key_id} (role {key.role!r}) may not read deliverables; {_HOW}")
    if user_id is not None and user_id != key.user_id:
        raise ApiError(403, f"key {key.key_id} belongs to another user; {_HOW}")
    return key.user_id


def _day_goals(ctx: ApiContext, user_id: str, day: date) -> dict[str, Any]:
    cursor = ctx.store.cursor()
    try:
        return with_status_text(day_goals(Store(cursor, None), user_id, day))
    finally:
        cursor.close()


def build_router(ctx: ApiContext) -> APIRouter:
    """The deliverable routes of one app."""
    router = APIRouter(tags=["deliverables"])
    refusals: dict[int | str, dict[str, Any]] = {
        400: {"model": Refusal, "description": "Nothing to decide, or the wrong decision for these actions."},
        401: {"model": Refusal, "description": "Missing, unknown or revoked API key."},
        403: {"model": Refusal, "description": "Another user's feed, or a key that may not read deliverables."},
        404: {"model": Refusal, "description": "No such deliverable, or another user's."},
        409: {
            "model": Refusal,
            "description": "Already decided (the first decision wins), or an approval is still carrying it out; "
            "`deliverable` is its current state.",
        },
        422: {"model": Refusal, "description": "An invalid date or decision."},
        503: {"model": Refusal, "description": "A provider did not answer; the action will be reconciled."},
    }
    security = [Security(BearerDoc()), Security(BasicDoc())]

    def read(fn: Any, *args: Any, **kwargs: Any) -> Any:
        cursor = ctx.store.cursor()
        try:
            return fn(cursor, *args, **kwargs)
        finally:
            cursor.close()

    async def guarded(fn: Any, *args: Any, hidden: str | None = None, **kwargs: Any) -> Any:
        """Run ``fn`` off the loop, its errors as refusals; ``hidden``: the deliverable id whose refusal is 404."""
        try:
            return await run_in_threadpool(fn, *args, **kwargs)
        except PermissionDeniedError as exc:
            if hidden is not None:  # another user's deliverable: the same answer as an unknown id
                raise ApiError(404, f"no deliverable {hidden!r}; list a user's with GET /v1/users/{{id}}/feed") from exc
            raise ApiError(403, f"{exc}; {_HOW}") from exc
        except NotFoundError as exc:
            raise ApiError(404, str(exc)) from exc
        except AlreadyDecidedError as exc:
            current = exc.current
            body = {"detail": str(exc), "stored": False, "status": current.get("status"), "deliverable": current}
            return Response(to_json_bytes(body), status_code=409, media_type="application/json")
        except RetryableError as exc:
            raise ApiError(503, str(exc), {"Retry-After": "5"}) from exc
        except UsageError as exc:
            raise ApiError(400, str(exc)) from exc

    # ``:path`` so that any id ingestion accepts can be asked for: a percent-encoded ``/`` arrives
    # decoded, and a plain ``{user_id}`` would then match nothing (``.`` and ``..`` as %2E).
    @router.get("/v1/users/{user_id:path}/feed", dependencies=security, responses=refusals)
    async def get_feed(
        user_id: str,
        request: Request,
        day: DeliveryDay = None,
    ) -> Any:
        """A user's deliverables of a day, with their actions and "why this"."""
        key = await ctx.auth.authenticate(request)
        _viewer(key, user_id)
        chosen = day or utcnow().date()
        return {
            "user_id": user_id,
            "date": chosen.isoformat(),
            "deliverables": [record.as_dict() for record in await guarded(read, feed, user_id, chosen)],
        }

    @router.get("/v1/users/{user_id:path}/goals", dependencies=security, responses=refusals)
    async def get_goals(
        user_id: str,
        request: Request,
        day: DeliveryDay = None,
    ) -> Any:
        """A user's goals of a day for people: the chosen ones with "why this" (as written for what was
        finally delivered) and how they were chosen, then what was not chosen and why."""
        key = await ctx.auth.authenticate(request)
        chosen = day or utcnow().date()
        try:
            _viewer(key, user_id)
        except ApiError as exc:  # another user's day: the same answer as a day with nothing, so none is probed
            if exc.status != 403 or key is None or key.role != "user":
                raise
            raise ApiError(404, f"no goals for {user_id!r} on {chosen.isoformat()}") from None
        return await guarded(_day_goals, ctx, user_id, chosen)

    rendered: dict[int | str, dict[str, Any]] = {
        200: {
            "description": "The deliverable: JSON by default, or rendered as `?format=md` or `?format=html`.",
            "content": {MEDIA_TYPES["md"].split(";")[0]: {}, MEDIA_TYPES["html"].split(";")[0]: {}},
        }
    }

    @router.get("/v1/deliverables/{deliverable_id}", dependencies=security, responses={**refusals, **rendered})
    async def get_one(
        deliverable_id: str,
        request: Request,
        fmt: Format = Query(
            "json", alias="format", description="json (the record), md (Markdown) or html (a page, as in the outbox)."
        ),
    ) -> Any:
        """One deliverable: content, plan, trace, review, actions; or rendered as Markdown or HTML."""
        key = await ctx.auth.authenticate(request)
        found = await guarded(read, get_deliverable, deliverable_id, viewer=_viewer(key), hidden=deliverable_id)
        record = found.as_dict()
        if fmt == "json":
            return record
        body, media_type = render(record, fmt, locale=ctx.settings.locale, base_url=ctx.settings.web_url)
        return Response(body, media_type=media_type)

    @router.post("/v1/deliverables/{deliverable_id}/{decision}", dependencies=security, responses=refusals)
    async def post_decision(
        deliverable_id: str, decision: Literal["approve", "reject", "cancel"], request: Request
    ) -> Any:
        """A person's decision on the actions waiting in a deliverable (an approved action runs once)."""
        key = await ctx.auth.authenticate(request)
        viewer = _viewer(key)
        by = f"key:{key.key_id}" if key else "open-api"
        try:
            decided = await guarded(
                decide, ctx.store, ctx.settings, deliverable_id, decision, by=by, viewer=viewer, now=utcnow(),
                hidden=deliverable_id,
            )
        except ApiError as exc:
            if exc.status != 503:
                raise
            # The provider did not answer: the approval stands (its claim is open), so this is not
            # a refusal that stored nothing; it says what the deliverable is now and what to do.
            current = await guarded(read, get_deliverable, deliverable_id)
            stands = current.status_text.startswith("Approved:")
            body = {"detail": f"{exc.detail}; " + ("the approval stands: approve again later to finish it (nothing "
                                                   "is done twice)" if stands else "nothing was decided: try again"),
                    "status": current.status, "deliverable": current.as_dict()}
            return Response(to_json_bytes(body), status_code=503, media_type="application/json",
                            headers={"Retry-After": "5"})
        return decided.as_dict() if isinstance(decided, Deliverable) else decided  # else the 409 answer

    return router
