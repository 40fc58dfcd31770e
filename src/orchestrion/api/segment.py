"""Segment's HTTP tracking API mapped onto native events, so existing Segment clients just work.

``messageId`` → ``event_id``; ``userId`` (else ``anonymousId``) → ``user_id``; ``event`` →
``type`` (``page``/``screen`` calls become types ``page``/``screen``); ``properties`` are kept, with
``item_id`` (else ``product_id``) filling ``item_id`` and the message's ``context`` stored under
``properties.context``. The time is Segment's clock-skew corrected one: ``timestamp`` (else
``originalTimestamp``) plus ``received_at - sentAt`` when ``sentAt`` is given, so a device whose
clock is off by an hour still lands at the right time. ``identify`` merges ``traits`` into
``users`` (a ``timezone`` trait, else ``context.timezone``, sets the user's timezone).
Other fields (``integrations``, ``version``, ...) are accepted and ignored. Then the published
specs (E-commerce v2, Video) and the ``[[mappings]]`` tables turn each message into canonical
events and catalog rows (:mod:`orchestrion.ingest.segment_spec`).

Each message becomes native events that go through the same validation as ``POST /v1/events``
(:func:`orchestrion.ingest.events.validate_events`, without a JSON round trip); a rejection points at the
message's index and keeps it as it was sent.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec

from orchestrion.config import MappingRule
from orchestrion.ingest.events import (
    MAX_JSON_DEPTH,
    EventBatch,
    EventColumns,
    Rejection,
    control_error,
    member_span,
    nesting_error,
    split_body,
    validate_events,
)
from orchestrion.ingest.segment_spec import Catalog, catalog_rows, expand
from orchestrion.ingest.users import UserTraits, valid_timezone

__all__ = ["Origin", "SegmentBody", "decode_batch_body", "decode_message_body", "map_messages"]

EVENT_TYPES: Final = {"track", "page", "screen"}


class _Message(msgspec.Struct):
    """The fields of a Segment message that orchestrion reads; any others are accepted."""

    type: str | None = None
    messageId: str | int | None = None
    userId: str | int | None = None
    anonymousId: str | int | None = None
    event: str | None = None
    name: str | None = None
    properties: dict[str, Any] | None = None
    traits: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    timestamp: datetime | None = None
    originalTimestamp: datetime | None = None
    sentAt: datetime | None = None


class _Batch(msgspec.Struct):
    batch: list[msgspec.Raw]
    sentAt: datetime | None = None
    context: dict[str, Any] | None = None


_message_decoder: Final = msgspec.json.Decoder(_Message)
_batch_decoder: Final = msgspec.json.Decoder(_Batch)


@dataclass
class SegmentBody:
    """The raw messages of one request, with the batch-level ``sentAt`` and ``context``."""

    raws: list[bytes]
    sent_at: datetime | None = None
    context: dict[str, Any] | None = None
    forced_type: str | None = None


@dataclass
class SegmentWrite:
    """What a Segment request writes: events (with rejections) and user traits."""

    batch: EventBatch
    users: list[UserTraits] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)


def decode_batch_body(body: bytes) -> SegmentBody:
    """``POST /v1/batch``: ``{"batch": [...], "sentAt": ..., "context": ...}``.

    Raises msgspec.DecodeError or ValueError when the body itself is unreadable.
    """
    try:
        parsed = _batch_decoder.decode(body)
    except RecursionError as exc:
        # a message nests past the decoder's stack: find the batch by scanning, so that message is
        # rejected on its own like any message deeper than MAX_JSON_DEPTH
        span = member_span(body, "batch")
        too_deep = nesting_error(body, MAX_JSON_DEPTH + 2) or "the body nests too deep"
        if span is None:
            raise ValueError(too_deep) from exc
        start, end = span
        try:
            rest = _batch_decoder.decode(body[:start] + b"[]" + body[end:])
        except RecursionError:  # the batch's own context is too deep: there is nothing to keep
            raise ValueError(too_deep) from exc
        return SegmentBody(split_body(body[start:end], ndjson=False), _naive(rest.sentAt), rest.context)
    return SegmentBody([bytes(raw) for raw in parsed.batch], _naive(parsed.sentAt), parsed.context)


def decode_message_body(body: bytes, kind: str) -> SegmentBody:
    """``POST /v1/track`` or ``/v1/identify``: one message; the route decides its type."""
    if not body.lstrip().startswith(b"{"):
        raise ValueError("the body must be one JSON object (a Segment message)")
    if nesting_error(body) is None:  # a too-deep message is rejected in the receipt (map_messages)
        msgspec.json.decode(body)  # an unreadable body is a 400, not a rejected event
    return SegmentBody([body], forced_type=kind)


def _naive(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def _text(value: str | int | None) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


MAX_CLOCK_SKEW: Final = timedelta(days=366)
"""A ``sentAt`` further than this from the message's arrival is not a device's clock skew."""


def _event_time(message: _Message, sent_at: datetime | None, received_at: datetime) -> datetime:
    """``timestamp`` corrected by the device's clock skew, ``received_at − sentAt`` (module docstring).

    >>> at = datetime(2026, 12, 3, 12)
    >>> _event_time(_Message(timestamp=datetime(2026, 12, 3, 10), sentAt=datetime(2026, 12, 3, 11)), None, at)
    datetime.datetime(2026, 12, 3, 11, 0)
    >>> _event_time(_Message(timestamp=at, sentAt=datetime(9999, 12, 31)), None, at)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: sentAt 9999-12-31T00:00:00 is 2912105 days from when the message arrived (2026-12-03T12:00:00 UTC) ...
    """
    when = _naive(message.timestamp or message.originalTimestamp)
    if when is None:
        return received_at
    sent = _naive(message.sentAt) or sent_at
    if sent is None:
        return when
    skew = received_at - sent
    if abs(skew) > MAX_CLOCK_SKEW:
        raise ValueError(
            f"sentAt {sent.isoformat()} is {abs(skew).days} days from when the message arrived "
            f"({received_at.isoformat()} UTC) and would move its timestamp as far: sentAt is the device's clock "
            "when it sent the message (it corrects the timestamp for the device's clock skew); send that, or "
            "leave sentAt out"
        )
    return when + skew


@dataclass(frozen=True)
class Origin:
    """Where a request's events come from: the key's source and domain, the custom mappings, and
    the route (recorded as the events' source when the key has none)."""

    source: str | None = None
    domain: str | None = None
    rules: dict[str, MappingRule] = field(default_factory=dict)
    route: str | None = None


def _to_native(
    message: _Message, kind: str, body: SegmentBody, received_at: datetime, origin: Origin
) -> tuple[list[dict[str, Any] | bytes | EventColumns], Catalog]:
    properties = dict(message.properties or {})
    if kind == "track":
        if not message.event:
            raise ValueError("a track message needs 'event', the event name, e.g. \"Song Played\"")
        event_type = message.event
    else:
        event_type = kind
        if message.name is not None:
            properties.setdefault("name", message.name)
    context = message.context if message.context is not None else body.context
    if context is not None:
        properties.setdefault("context", context)
    item = properties.get("item_id", properties.get("product_id"))
    native = {
        "event_id": message.messageId,
        "user_id": _text(message.userId) or _text(message.anonymousId),
        "type": event_type,
        "item_id": item,
        "ts": _event_time(message, body.sent_at, received_at),
        "properties": properties or None,
    }
    events, items = expand(event_type, kind, native, message.properties or {}, context, rules=origin.rules,
                           default_domain=origin.domain, source=origin.source, columns=True)
    # The message was no deeper than MAX_JSON_DEPTH, so its events are not either, unless the
    # context they carry in their properties (one level further down) reaches the limit (an
    # order's lines do not carry it).
    if context is not None and nesting_error(msgspec.json.encode(context), MAX_JSON_DEPTH - 2) is not None:
        return [event if isinstance(event, EventColumns) else msgspec.json.encode(event) for event in events], items
    return list(events), items


def _traits(message: _Message, user_id: str) -> UserTraits:
    # RudderStack's SDKs send an identify's traits as context.traits, Segment's at the top level.
    nested = (message.context or {}).get("traits")
    traits = dict(message.traits or (nested if isinstance(nested, dict) else None) or {})
    timezone = traits.get("timezone")
    if timezone is not None and (not isinstance(timezone, str) or not valid_timezone(timezone)):
        raise ValueError(f"traits.timezone {timezone!r} is not an IANA timezone such as 'Europe/Paris'")
    if timezone is None and message.context is not None:
        device_zone = message.context.get("timezone")
        if isinstance(device_zone, str) and valid_timezone(device_zone):
            timezone = device_zone
    return UserTraits(user_id, traits, timezone)


def map_messages(
    body: SegmentBody, *, received_at: datetime, max_event_bytes: int, sender: Origin | None = None
) -> SegmentWrite:
    """Map and validate every message; nothing is dropped silently."""
    where_from = sender or Origin()
    natives: list[dict[str, Any] | bytes | EventColumns] = []
    origin: list[int] = []
    rows: list[tuple[int, Catalog]] = []
    users: list[UserTraits] = []
    rejected: list[Rejection] = []
    for index, raw in enumerate(body.raws):
        message_id: str | None = None
        try:
            if len(raw) > max_event_bytes:
                raise ValueError(
                    f"message is {len(raw)} bytes, over the {max_event_bytes}-byte limit; "
                    "move large content to the catalog (POST /v1/items) and send its item_id"
                )
            deep = nesting_error(raw)
            if deep is not None:
                raise ValueError(deep)
            message = _message_decoder.decode(raw)
            message_id = _text(message.messageId)
            kind = body.forced_type or message.type
            user_id = _text(message.userId) or _text(message.anonymousId)
            if user_id is None:
                raise ValueError("userId or anonymousId is required")
            for name, text in (("messageId", message_id), ("userId", user_id)):
                control = control_error(text, name)
                if control is not None:
                    raise ValueError(control)
            if kind == "identify":
                users.append(_traits(message, user_id))
            elif kind in EVENT_TYPES:
                mapped, catalog = _to_native(message, kind, body, received_at, where_from)
                natives.extend(mapped)
                origin.extend([index] * len(mapped))
                rows.append((index, catalog))
            else:
                raise ValueError(
                    f"type {kind!r} is not supported; send track, identify, page or screen"
                )
        except (msgspec.DecodeError, ValueError, TypeError, OverflowError) as exc:
            reason = str(exc).replace("`", "'")
            rejected.append(Rejection(index, message_id, reason, raw.decode(errors="replace")))
    # No size limit: the message itself was measured above, its mapping may be longer.
    decoded = validate_events(natives, received_at=received_at, default_domain=where_from.domain,
                              source=where_from.source or where_from.route)
    for rejection in decoded.rejected:
        index = origin[rejection.index]
        rejected.append(
            dataclasses.replace(
                rejection, index=index, payload=body.raws[index].decode(errors="replace")
            )
        )
    rejected.sort(key=lambda r: r.index)
    refused = {r.index for r in rejected}
    items = catalog_rows([said for index, catalog in rows if index not in refused for said in catalog])
    return SegmentWrite(EventBatch(decoded.table, rejected), users, items)
