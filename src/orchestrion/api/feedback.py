"""``POST /v1/deliverables/{deliverable_id}/feedback``: thumbs on a deliverable and its items.

Who may send it: an ``admin`` key for any deliverable, a ``user`` key (``orchestrion keys create
--role user --user-id U``) only for U's own deliverables. ``write`` keys — the applications that
send events — may not: a thumb is a person's judgement, not an event stream. While no key exists
(loopback only) the API is open. The feedback is written through the group-commit writer and the
answer is sent after it committed.
"""

from __future__ import annotations

from typing import Any

import duckdb
from fastapi import APIRouter, Security
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from orchestrion.api.auth import BasicDoc, BearerDoc
from orchestrion.api.bodies import read_body
from orchestrion.api.context import ApiContext
from orchestrion.api.receipts import ApiError, Refusal
from orchestrion.delivery.feedback import Feedback, FeedbackReceipt, deliverable_owner, record_feedback, trim_pending
from orchestrion.errors import NotFoundError
from orchestrion.store import utcnow

__all__ = ["FeedbackAnswer", "build_router"]


class FeedbackAnswer(BaseModel):
    """What the feedback changed (sent after it committed)."""

    deliverable_id: str
    user_id: str
    thumb: str | None
    excluded_items: list[str] = Field(description="Items this user's future goals will not use.")
    restored_items: list[str] = Field(description="Items thumbed up again: no longer excluded.")


def _unknown(deliverable_id: str) -> str:
    return f"no deliverable {deliverable_id!r}; a user's deliverables are listed by GET /v1/users/{{id}}/feed"


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    """``schema`` with its ``#/$defs/...`` references replaced by the definitions themselves."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _inline(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
        return {k: _inline(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline(v, defs) for v in schema]
    return schema


_SCHEMA = Feedback.model_json_schema()
FEEDBACK_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": _inline(_SCHEMA, _SCHEMA.get("$defs", {}))}}}}
"""The body as documented; it is read as JSON whatever the Content-Type (as events are), so that
``curl -d '{"thumb": "up"}'`` works without ``-H 'Content-Type: application/json'``."""


def build_router(ctx: ApiContext) -> APIRouter:
    """The feedback route of one app (mount it with ``app.include_router``)."""
    router = APIRouter(tags=["feedback"])
    refusals: dict[int | str, dict[str, Any]] = {
        400: {"model": Refusal, "description": "The body is not valid JSON."},
        401: {"model": Refusal, "description": "Missing, unknown or revoked API key."},
        403: {"model": Refusal, "description": "Neither a user key nor an admin key."},
        404: {"model": Refusal, "description": "No such deliverable, or another user's."},
        422: {"model": Refusal, "description": "Invalid feedback body."},
    }

    def owner_of(deliverable_id: str) -> str:
        cursor = ctx.store.cursor()
        try:
            return deliverable_owner(cursor, deliverable_id)
        finally:
            cursor.close()

    async def feedback_body(request: Request) -> Feedback:
        raw = await read_body(request, ctx.settings.max_body_bytes)
        try:
            return Feedback.model_validate_json(raw)
        except ValidationError as exc:
            if any(e["type"] == "json_invalid" for e in exc.errors()):
                raise ApiError(400, f"the body is not valid JSON: {exc.errors()[0]['msg']}") from exc
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from exc

    @router.post(
        "/v1/deliverables/{deliverable_id}/feedback",
        response_model=FeedbackAnswer,
        dependencies=[Security(BearerDoc()), Security(BasicDoc())],
        responses=refusals,
        openapi_extra=FEEDBACK_BODY,
    )
    async def post_feedback(deliverable_id: str, request: Request) -> Any:
        """A thumb on a deliverable (and on its items: a thumbed-down item is excluded from the
        user's future goals). Admin keys, or the deliverable's own user's key."""
        key = await ctx.auth.authenticate(request)
        if key is not None and key.role not in ("admin", "user"):
            raise ApiError(
                403,
                f"key {key.key_id} (role {key.role!r}) may not give feedback: only a deliverable's user (a key made "
                "with `orchestrion keys create --role user --user-id USER`) or an admin key may",
            )
        body = await feedback_body(request)  # read only once the key is known: no key, a 401 whatever the body
        try:
            owner = await run_in_threadpool(owner_of, deliverable_id)
        except NotFoundError as exc:
            raise ApiError(404, _unknown(deliverable_id)) from exc
        if key is not None and key.role == "user" and key.user_id != owner:
            # another user's deliverable answers word for word as an unknown one: ids cannot be probed
            raise ApiError(404, _unknown(deliverable_id))
        now = utcnow()

        def work(con: duckdb.DuckDBPyConnection) -> FeedbackReceipt:
            return record_feedback(con, deliverable_id, body, source="api", now=now)

        receipt = await ctx.write(work)
        if receipt.excluded or receipt.thumb == "down":  # a cart turned down is not ordered; an item leaves carts
            await run_in_threadpool(trim_pending, ctx.store, ctx.settings, [receipt], now=now)
        return receipt.as_dict()

    return router
