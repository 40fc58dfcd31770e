"""Request bodies: read raw under the size limit, and their schemas for the OpenAPI document.

Bodies are read as bytes and decoded by msgspec in the route, not by FastAPI: validating a
1000-event body into pydantic models would cost more than storing it. The schemas below only
document the bodies (``openapi_extra``), so that clients and schemathesis know what to send.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrion.api.receipts import ApiError, refusal_response

__all__ = [
    "BATCH_BODY",
    "EVENTS_BODY",
    "FORM_BYTES",
    "ITEMS_BODY",
    "MESSAGE_BODY",
    "BodyLimit",
    "is_ndjson",
    "read_body",
]

NDJSON_TYPES: Final = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl",
                                 "application/x-jsonlines", "application/jsonlines"})


def _too_large(size: int | str, limit: int, how: str = "") -> str:
    return (
        f"the request body is {size} bytes{' ' + how if how else ''}, over the {limit}-byte limit "
        "(ORCHESTRION_MAX_BODY_BYTES); "
        "nothing was stored: send less at once (events: split them into smaller batches)"
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The body, which :class:`BodyLimit` has already read whole and refused past ``limit``; a gzip
    body (Segment libraries may send one) is limited after decompression too."""
    body = await request.body()
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("identity", ""):
        return body
    if encoding != "gzip":
        raise ApiError(400, f"Content-Encoding {encoding!r} is not supported; send gzip or none")
    return _gunzip(body, limit)


FORM_BYTES: Final = 64 * 1024
"""The largest body outside the API (the web page's forms, none of which comes near it)."""


class BodyLimit:
    """Every request body is read here, whole, before its route runs, and refused when it should
    not be: an API request (``/v1/…``) without a valid key gets 401 before a byte of its body is
    read; a body over ``limit`` (``FORM_BYTES`` outside the API) gets 413, by its Content-Length
    before anything is read or as soon as a chunked body passes it; a body still arriving after
    ``seconds`` (``BODY_TIMEOUT_S``) gets 408, so a client trickling bytes holds no connection and
    buffer for ever; and a client that disconnects before its body ended is dropped:
    the route never sees half a body, so a cut-off upload stores nothing and runs nothing. (The
    event routes count again after gunzip: :func:`read_body`.)"""

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        authenticate: Callable[[Request], Awaitable[object]],
        seconds: float,
    ) -> None:
        self.app = app
        self.limit = limit
        self.authenticate = authenticate
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        api = str(scope.get("path", "")).startswith("/v1/")
        if api:
            try:
                await self.authenticate(Request(scope))
            except ApiError as exc:
                await _answer(scope, send, exc.status, exc.detail, exc.headers)
                return
        limit = self.limit if api else FORM_BYTES
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await self._too_large(scope, send, api, length.decode(), limit)
            return
        chunks: list[bytes] = []
        total = 0
        try:
            async with asyncio.timeout(self.seconds):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return  # gone before its body ended: nothing of it is handed on
                    chunks.append(message.get("body", b""))
                    total += len(chunks[-1])
                    if total > limit:
                        await self._too_large(scope, send, api, f"more than {limit}", limit)
                        return
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await _answer(scope, send, 408, f"the request body took more than {self.seconds:g} s to arrive "
                                            f"({total} bytes by then); nothing was stored: send it again")
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    @staticmethod
    async def _too_large(scope: Scope, send: Send, api: bool, size: str, limit: int) -> None:
        if api:
            await _answer(scope, send, 413, _too_large(size, limit))
            return
        page = HTMLResponse(
            "<!doctype html><meta charset=utf-8><title>Too large</title><p>That form was far larger than any form "
            "of this page; nothing was changed. Go back and try again.</p>",
            status_code=413, headers={"Connection": "close"},
        )
        await page(scope, _nothing, send)


async def _answer(scope: Scope, send: Send, status: int, detail: str, headers: Mapping[str, str] | None = None) -> None:
    """A refusal, closing the connection (the rest of the body is not read)."""
    await refusal_response(status, detail, {**(headers or {}), "Connection": "close"})(scope, _nothing, send)


async def _nothing() -> Message:
    return {"type": "http.disconnect"}


def _gunzip(body: bytes, limit: int) -> bytes:
    """Every member of a gzip body, joined (as ``gzip.decompress`` and ``zcat`` read it): a client
    that compresses in pieces sends several; reading only the first would drop the others' events."""
    parts: list[bytes] = []
    size = 0
    rest = body
    while True:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            part = inflater.decompress(rest, limit + 1 - size)
        except zlib.error as exc:
            where = f" in member {len(parts) + 1}" if parts else ""
            raise ApiError(400, f"the gzip body is corrupt{where} ({exc}); nothing was stored") from exc
        size += len(part)
        if size > limit:
            raise ApiError(413, _too_large(f"more than {limit}", limit, "once gunzipped"))
        if not inflater.eof:
            raise ApiError(400, "the gzip body is truncated; nothing was stored")
        parts.append(part)
        rest = inflater.unused_data
        if not rest.strip(b"\0"):  # the end, or the zero padding some writers add
            return b"".join(parts)


def is_ndjson(content_type: str | None) -> bool:
    """True for the NDJSON media types; anything else is read as a JSON document."""
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() in NDJSON_TYPES


_ID: Final = {"anyOf": [{"type": "string", "minLength": 1, "maxLength": 256}, {"type": "integer"}]}
_OPT_ID: Final = {"anyOf": [*_ID["anyOf"], {"type": "null"}]}
_TS: Final = {
    "anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}, {"type": "null"}],
    "description": "RFC 3339 (naive = UTC) or unix seconds (milliseconds above 1e11); default: now.",
}
_OBJECT_OR_NULL: Final = {"anyOf": [{"type": "object"}, {"type": "null"}]}
_TIME_OR_NULL: Final = {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]}

NATIVE_EVENT: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["user_id", "type"],
    "additionalProperties": False,
    "properties": {
        "event_id": {**_OPT_ID, "description": "Deduplication key, forever; default: a content hash."},
        "user_id": _ID,
        "type": {"type": "string", "minLength": 1, "maxLength": 64, "examples": ["play"]},
        "item_id": _OPT_ID,
        "domain": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "ts": _TS,
        "value": {"anyOf": [{"type": "number"}, {"type": "null"}]},
        "properties": _OBJECT_OR_NULL,
    },
}

ITEM: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["item_id"],
    "additionalProperties": False,
    "properties": {
        "item_id": _ID,
        **{name: {"anyOf": [{"type": "string"}, {"type": "null"}]}
           for name in ("domain", "title", "creator", "currency", "category", "text")},
        "price": {"anyOf": [{"type": "number"}, {"type": "null"}]},
        "tags": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"},
                           {"type": "null"}], "description": "A list, or a comma-separated string."},
        "properties": _OBJECT_OR_NULL,
    },
}

SEGMENT_MESSAGE: Final[dict[str, Any]] = {
    "type": "object",
    "description": "A Segment message; fields not listed here are accepted and ignored.",
    "properties": {
        "type": {"type": "string", "enum": ["track", "identify", "page", "screen"]},
        "messageId": _ID,
        "userId": _ID,
        "anonymousId": _ID,
        "event": {"type": "string"},
        "name": {"type": "string"},
        "properties": _OBJECT_OR_NULL,
        "traits": _OBJECT_OR_NULL,
        "context": _OBJECT_OR_NULL,
        "timestamp": _TIME_OR_NULL,
        "sentAt": _TIME_OR_NULL,
    },
}


def _array_body(item: dict[str, Any], what: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": f"A JSON array of {what}, or NDJSON (one per line) with "
            "Content-Type: application/x-ndjson. May be gzip-encoded.",
            "content": {"application/json": {"schema": {"type": "array", "items": item}}},
        }
    }


EVENTS_BODY: Final = _array_body(NATIVE_EVENT, "native events")
ITEMS_BODY: Final = _array_body(ITEM, "catalog items")
MESSAGE_BODY: Final = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": SEGMENT_MESSAGE}}}
}
BATCH_BODY: Final = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["batch"],
                    "properties": {
                        "batch": {"type": "array", "items": SEGMENT_MESSAGE},
                        "sentAt": _TIME_OR_NULL,
                        "context": _OBJECT_OR_NULL,
                    },
                }
            }
        },
    }
}
