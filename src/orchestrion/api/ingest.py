"""Ingestion routes: native events, Segment's track/identify/batch, and catalog items.

Each route reads the raw body, decodes and validates it here (off the writer, ~1 ms per 1000
events), hands one job to the group-commit writer, and answers with the receipt once the shared
transaction has committed. See :mod:`orchestrion.api.receipts` for the status codes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

import duckdb
import msgspec
from fastapi import APIRouter, Depends, Security
from starlette.requests import Request
from starlette.responses import Response

from orchestrion.access.keys import ApiKey
from orchestrion.api import bodies
from orchestrion.api.auth import BasicDoc, BearerDoc
from orchestrion.api.context import ApiContext
from orchestrion.api.receipts import ApiError, Receipt, Refusal, receipt_response
from orchestrion.api.segment import Origin, SegmentBody, decode_batch_body, decode_message_body, map_messages
from orchestrion.ingest.catalog import ITEM_COLUMNS, normalize_items, upsert_items
from orchestrion.ingest.events import (
    EVENT_SCHEMA,
    MAX_ID_CHARS,
    EventBatch,
    Rejection,
    WriteResult,
    control_error,
    decode_native,
    nesting_error,
    split_body,
    write_events,
)
from orchestrion.ingest.users import upsert_users
from orchestrion.ingest.writer import EventWrite
from orchestrion.money import check_currency
from orchestrion.store import utcnow

__all__ = ["RESPONSES", "build_router"]

RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    400: {"model": Refusal, "description": "The body could not be read (malformed JSON, wrong shape); "
          "nothing was stored."},
    401: {"model": Refusal, "description": "Missing, unknown or revoked API key."},
    403: {"model": Refusal, "description": "The key's role may not do this."},
    413: {"model": Refusal, "description": "The body is over ORCHESTRION_MAX_BODY_BYTES; nothing stored."},
    503: {"model": Refusal, "description": "The write did not commit (or the server is busy or "
          "stopping); nothing was stored: resend the same body."},
}
_BAD_ARRAY: Final = (
    "the body is not a JSON array of {what} ({error}); nothing was stored: send [{{...}}, ...], "
    "or one object per line with Content-Type: application/x-ndjson"
)


class _Item(msgspec.Struct, forbid_unknown_fields=True):
    """One catalog item as sent to ``POST /v1/items``."""

    item_id: str | int
    domain: str | None = None
    title: str | None = None
    creator: str | None = None
    price: float | None = None
    currency: str | None = None
    category: str | None = None
    tags: list[str] | str | None = None
    text: str | None = None
    properties: msgspec.Raw = msgspec.Raw(b"null")


_item_decoder: Final = msgspec.json.Decoder(_Item)


_SURROGATE: Final = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _split(body: bytes, request: Request, what: str) -> list[bytes]:
    try:
        return split_body(body, ndjson=bodies.is_ndjson(request.headers.get("content-type")))
    except msgspec.DecodeError as exc:
        error = str(exc).replace("`", "'")
        if ("hex escape" in error or "surrogate" in error) and _SURROGATE.search(body):
            error += (
                "; a \\uD800-\\uDFFF escape is half of a character and must be followed by its other half "
                "(a lone surrogate is not text: drop it, or send the character itself as UTF-8)"
            )
        raise ApiError(400, _BAD_ARRAY.format(what=what, error=error)) from exc


def _item_id_of(raw: bytes) -> str | None:
    """The ``item_id`` of a rejected item when it can be read as short printable text, else None."""
    if len(raw) > 1 << 20 or nesting_error(raw) is not None:
        return None
    try:
        value = msgspec.json.decode(raw)
    except (msgspec.DecodeError, ValueError, RecursionError):
        return None
    item_id = value.get("item_id") if isinstance(value, dict) else None
    if isinstance(item_id, int) and not isinstance(item_id, bool):
        item_id = str(item_id)
    if not isinstance(item_id, str) or not 0 < len(item_id.strip()) <= 80 or not item_id.isprintable():
        return None
    return item_id.strip()


def _decode_items(
    raws: list[bytes], *, max_bytes: int
) -> tuple[dict[str, list[Any]], list[Rejection]]:
    """Validated item columns and the rejected items (catalog.normalize_items does the rest)."""
    cols: dict[str, list[Any]] = {name: [] for name in _Item.__struct_fields__}
    rejected: list[Rejection] = []
    for index, raw in enumerate(raws):
        try:
            if len(raw) > max_bytes:
                raise ValueError(f"item is {len(raw)} bytes, over the {max_bytes}-byte limit")
            deep = nesting_error(raw)
            if deep is not None:
                raise ValueError(deep)
            item = _item_decoder.decode(raw)
            item_id = str(item.item_id).strip()
            if not item_id or len(item_id) > MAX_ID_CHARS:
                raise ValueError(f"item_id must be 1 to {MAX_ID_CHARS} characters")
            control = control_error(item_id, "item_id") or control_error(item.domain, "domain")
            if control is not None:
                raise ValueError(control)
            props = bytes(item.properties)
            if props != b"null" and not props.lstrip().startswith(b"{"):
                raise ValueError("properties must be a JSON object")
            tags = item.tags.split(",") if isinstance(item.tags, str) else item.tags
            currency = None if item.currency is None else check_currency(item.currency)
            if item.price is not None and not item.price >= 0:
                raise ValueError(f"price must be a number of at least 0 (in the item's currency); got {item.price}")
            row = {
                **{name: getattr(item, name) for name in _Item.__struct_fields__},
                "item_id": item_id,
                "currency": currency,
                "tags": None if tags is None else [t.strip() for t in tags],
                "properties": None if props == b"null" else props.decode(),
            }
        except (msgspec.DecodeError, ValueError, UnicodeDecodeError) as exc:
            reason = str(exc).replace("`", "'")
            named = _item_id_of(raw)
            if named is not None:  # the receipt names the item, not only its place in the body
                reason = f"item {named!r}: {reason}"
            rejected.append(Rejection(index, None, reason, raw.decode(errors="replace")))
            continue
        for name, value in row.items():
            cols[name].append(value)
    return cols, rejected


def build_router(ctx: ApiContext) -> APIRouter:
    """The ingestion routes of one app, bound to its context."""
    settings = ctx.settings
    writer_only = Depends(ctx.auth.require("write"))
    rules = {rule.event: rule for rule in settings.mappings}
    documented = [Security(BearerDoc()), Security(BasicDoc())]
    router = APIRouter(tags=["ingest"], dependencies=documented, responses=RESPONSES)

    @router.post("/v1/events", response_model=Receipt, openapi_extra=bodies.EVENTS_BODY,
                 summary="Send native events")
    async def post_events(request: Request, key: ApiKey | None = writer_only) -> Response:
        """Store a batch of native events; duplicates (same event_id, ever) are counted, not stored."""
        body = await bodies.read_body(request, settings.max_body_bytes)
        received_at = utcnow()
        raws = _split(body, request, "events")
        batch = decode_native(raws, received_at=received_at, max_event_bytes=settings.max_event_bytes,
                              default_domain=key.domain if key else None,
                              source=key.source if key and key.source else "http:/v1/events")
        result = await ctx.write_events(EventWrite(batch, "http:/v1/events", received_at))
        return receipt_response(result, batch.rejected)

    async def segment(
        request: Request, key: ApiKey | None, path: str, body_of: Callable[[bytes], SegmentBody]
    ) -> Response:
        body = await bodies.read_body(request, settings.max_body_bytes)
        received_at = utcnow()
        try:
            parsed = body_of(body)
        except (msgspec.DecodeError, ValueError) as exc:
            raise ApiError(400, f"the body is not a Segment {path} request ({exc}); "
                                "nothing was stored".replace("`", "'")) from exc
        sender = Origin(key.source if key else None, key.domain if key else None, rules, f"http:/v1/{path}")
        mapped = map_messages(parsed, received_at=received_at, max_event_bytes=settings.max_event_bytes,
                              sender=sender)


        def identify(con: duckdb.DuckDBPyConnection) -> WriteResult:
            return WriteResult(upsert_users(con, mapped.users, now=received_at), 0, 0)

        # What the events say about their products is merged by the writer with them (not counted).
        events = EventWrite(mapped.batch, f"http:/v1/{path}", received_at, mapped.items)
        result = await ctx.write_events(events, identify if mapped.users else None)
        return receipt_response(result, mapped.batch.rejected)

    @router.post("/v1/track", response_model=Receipt, openapi_extra=bodies.MESSAGE_BODY,
                 summary="Segment track")
    async def post_track(request: Request, key: ApiKey | None = writer_only) -> Response:
        """One Segment ``track`` message, mapped to canonical events (docs/event-streams.md)."""
        return await segment(request, key, "track", lambda b: decode_message_body(b, "track"))

    @router.post("/v1/identify", response_model=Receipt, openapi_extra=bodies.MESSAGE_BODY,
                 summary="Segment identify")
    async def post_identify(request: Request, key: ApiKey | None = writer_only) -> Response:
        """One Segment ``identify`` message: its traits are merged into the user's row."""
        return await segment(request, key, "identify", lambda b: decode_message_body(b, "identify"))

    @router.post("/v1/batch", response_model=Receipt, openapi_extra=bodies.BATCH_BODY,
                 summary="Segment batch")
    async def post_batch(request: Request, key: ApiKey | None = writer_only) -> Response:
        """A Segment batch of track, identify, page and screen messages."""
        return await segment(request, key, "batch", decode_batch_body)

    @router.post("/v1/items", response_model=Receipt, openapi_extra=bodies.ITEMS_BODY,
                 dependencies=[writer_only], summary="Upsert catalog items")
    async def post_items(request: Request) -> Response:
        """Insert or update items by item_id, field by field (a field left out keeps its stored value);
        repeated ids in one body count as duplicates (last wins)."""
        import polars as pl

        body = await bodies.read_body(request, settings.max_body_bytes)
        received_at = utcnow()
        raws = _split(body, request, "items")
        cols, rejected = _decode_items(raws, max_bytes=settings.max_event_bytes)
        valid, _ = normalize_items(pl.DataFrame(cols, schema=ITEM_COLUMNS))
        sent = len(cols["item_id"])
        failed = EventBatch(EVENT_SCHEMA.empty_table(), rejected)

        def work(con: duckdb.DuckDBPyConnection) -> WriteResult:
            accepted = upsert_items(con, valid, merge=True)
            write_events(con, failed, source="http:/v1/items", received_at=received_at)
            return WriteResult(accepted, sent - accepted, len(rejected))

        result = await ctx.write(work, size=max(len(raws), 1))
        return receipt_response(result, rejected)

    return router
