"""Event ingestion: decode, validate and write events, losing none.

Every path (HTTP, bulk files, dataset loaders) ends in :func:`write_events`: valid events go to
``events`` with ``ON CONFLICT DO NOTHING`` on ``event_id`` (so an id stored once is a duplicate
forever, and duplicates inside one batch keep the first), invalid ones go to ``failed_events``
with the reason and the payload as received. An event without ``event_id`` gets a deterministic
one (``h:`` + md5 of its content), so resending it is still a duplicate.

Callers own the transaction: the HTTP writer groups many requests into one commit and
acknowledges each request only after that commit.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import duckdb
import msgspec
import pyarrow as pa

__all__ = [
    "CONTROL_PATTERN",
    "EVENT_SCHEMA",
    "MAX_JSON_DEPTH",
    "EventBatch",
    "EventColumns",
    "NativeEvent",
    "Rejection",
    "WriteResult",
    "control_error",
    "decode_native",
    "insert_registered",
    "member_span",
    "nesting_error",
    "rejections_table",
    "to_utc",
    "validate_events",
    "write_events",
]

EVENT_SCHEMA: Final = pa.schema(
    [
        ("event_id", pa.string()),
        ("user_id", pa.string()),
        ("type", pa.string()),
        ("item_id", pa.string()),
        ("domain", pa.string()),
        ("ts", pa.timestamp("us")),
        ("received_at", pa.timestamp("us")),
        ("value", pa.float64()),
        ("properties", pa.string()),
        ("source", pa.string()),
    ]
)
_FAILED_SCHEMA: Final = pa.schema(
    [
        ("received_at", pa.timestamp("us")),
        ("source", pa.string()),
        ("event_id", pa.string()),
        ("reason", pa.string()),
        ("payload", pa.string()),
    ]
)
MAX_ID_CHARS: Final = 256
MAX_TYPE_CHARS: Final = 64
MAX_JSON_DEPTH: Final = 32
"""The deepest nesting of objects and arrays in one event, Segment message or item, counting the
event object itself as level 1 (so ``properties`` may nest 31 levels). Deeper values are rejected
one by one with the field named: recursive decoders (msgspec, json, DuckDB's JSON functions) would
otherwise fail on them with RecursionError, and nothing legitimate nests that deep."""
CONTROL_PATTERN: Final = r"[\x00-\x1f\x7f-\x9f]"
"""C0 controls, DEL and C1 controls: refused in ids and types (Python ``re`` and polars syntax)."""
_CONTROL: Final = re.compile(CONTROL_PATTERN)
# A JSON string (an unterminated one runs to the end, so scanning stays linear) or a structural byte.
_JSON_TOKENS: Final = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\Z)|[\[\]{},]', re.DOTALL)
# Quotes and brackets kept, every other byte deleted: what the depth count sees (see _shallow).
_NOT_MARKS: Final = bytes(b for b in range(256) if b not in b'"[]{}')
_QUOTED: Final = re.compile(rb'"[^"]*(?:"|\Z)')  # a string among the marks (no escapes left there)
_BRACKETS: Final = bytes.maketrans(b"[{]}", b"(())")  # openers to "(", closers to ")"
_TYPE_LENGTH: Final = f'type must be 1 to {MAX_TYPE_CHARS} characters, e.g. "play"'
_EARLIEST: Final = datetime(1900, 1, 1)
_EARLIEST_UTC: Final = _EARLIEST.replace(tzinfo=UTC)
_FUTURE_SLACK: Final = timedelta(days=1)

_INSERT_EVENTS: Final = """
INSERT INTO events
SELECT coalesce(event_id, 'h:' || md5(concat_ws('|', user_id, type, coalesce(item_id, ''),
                strftime(ts, '%Y-%m-%dT%H:%M:%S.%f'), coalesce(CAST(value AS VARCHAR), ''),
                coalesce(properties, '')))),
       user_id, type, item_id, domain, ts, received_at, value, properties, source
FROM _orchestrion_batch
ON CONFLICT DO NOTHING
"""


class NativeEvent(msgspec.Struct, forbid_unknown_fields=True):
    """One event as sent to ``POST /v1/events`` (see docs/api.md)."""

    user_id: str | int
    type: str
    event_id: str | int | None = None
    item_id: str | int | None = None
    domain: str | None = None
    ts: datetime | int | float | None = None
    value: float | None = None
    properties: msgspec.Raw = msgspec.Raw(b"null")


@dataclass(frozen=True)
class Rejection:
    """An event that was not stored in ``events``, kept in ``failed_events`` with its reason."""

    index: int
    event_id: str | None
    reason: str
    payload: str


@dataclass
class EventBatch:
    """Validated events as a table in :data:`EVENT_SCHEMA`, plus the rejected ones."""

    table: pa.Table
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def size(self) -> int:
        return int(self.table.num_rows) + len(self.rejected)


@dataclass(frozen=True)
class EventColumns:
    """Events built in Python that share their user, type, time and domain (the lines of one
    order), as columns, for :func:`validate_events`: the same events as one dict each, without
    building the dicts.

    ``properties`` are the JSON texts of objects as ``msgspec.json.encode`` writes them (the
    builder encodes them; they are stored as given).
    """

    user_id: Any
    type: Any
    ts: Any
    domain: Any
    event_ids: list[Any]
    item_ids: list[Any]
    values: list[Any]
    properties: list[str]

    def encoded(self) -> list[bytes]:
        """The events one by one, as JSON (their properties as given)."""
        return [
            msgspec.json.encode({"event_id": event_id, "user_id": self.user_id, "type": self.type,
                                 "item_id": item_id, "domain": self.domain, "ts": self.ts, "value": value,
                                 "properties": msgspec.Raw(props.encode())})
            for event_id, item_id, value, props in zip(
                self.event_ids, self.item_ids, self.values, self.properties, strict=True
            )
        ]


@dataclass(frozen=True)
class WriteResult:
    """What :func:`write_events` did with one batch."""

    accepted: int
    duplicates: int
    rejected: int

    def __add__(self, other: WriteResult) -> WriteResult:
        return WriteResult(
            self.accepted + other.accepted,
            self.duplicates + other.duplicates,
            self.rejected + other.rejected,
        )


def to_utc(value: datetime | int | float, *, received_at: datetime) -> datetime:
    """A timestamp (aware, naive = UTC, or unix seconds; > 1e11 means milliseconds) as naive UTC.

    Raises ValueError with a message that says what is accepted.
    """
    if isinstance(value, datetime):
        ts = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    else:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("ts must be a finite number of seconds since 1970-01-01 UTC")
        seconds = value / 1000 if abs(value) > 1e11 else value
        try:
            ts = datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)
        except (OverflowError, OSError, ValueError) as exc:
            raise ValueError(f"ts {value!r} is out of range; send unix seconds or RFC 3339") from exc
    if ts < _EARLIEST or ts > received_at + _FUTURE_SLACK:
        raise ValueError(
            f"ts {ts.isoformat()} is implausible (before 1900 or more than a day ahead); "
            "send RFC 3339 with an offset, e.g. 2024-05-01T10:00:00Z"
        )
    return ts


def control_error(text: str | None, name: str) -> str | None:
    """Why ``text`` (an id or a type) is refused for a control character (C0, DEL, C1), or None.

    Ids travel into URL paths, file names, logs and terminals, where NUL, newlines or escape
    sequences would truncate, split or forge them.
    """
    found = None if text is None else _CONTROL.search(text)
    if found is None:
        return None
    return (
        f"{name} contains the control character U+{ord(found[0]):04X} at position {found.start()}; "
        "ids and types must be printable text"
    )


def nesting_error(raw: bytes, limit: int = MAX_JSON_DEPTH) -> str | None:
    """Why the JSON value ``raw`` nests deeper than ``limit`` levels (naming the top-level field
    that does), or None. Linear, and free for the usual event (fewer openers than the limit)."""
    if raw.count(b"[") + raw.count(b"{") <= limit or _shallow(raw, limit):
        return None
    depth = 0
    field: bytes | None = None
    for token in _JSON_TOKENS.finditer(raw):
        first = raw[token.start()]
        if first == 0x22:  # a string; at level 1 of an object, the last one before a nested value is its key
            if depth == 1:
                field = token.group()
        elif first in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                where = "the value"
                if field is not None and raw.lstrip()[:1] == b"{":
                    where = repr(field.strip(b'"').decode(errors="replace"))
                return (
                    f"{where} nests deeper than {limit} levels of objects and arrays (the limit, "
                    "MAX_JSON_DEPTH); flatten it"
                )
        elif first in (0x5D, 0x7D):
            depth -= 1
    return None


def _shallow(raw: bytes, limit: int) -> bool:
    """True when ``raw`` surely nests no deeper than ``limit`` (False: count it exactly).

    The brackets outside strings, with each innermost pair removed per round: an opener still
    there after ``limit`` rounds is unmatched or sits under more than ``limit`` levels. Done in C
    (replaces and translations): 6 µs for an Online Retail order message, against 17–38 µs when a
    regular expression cut the strings out:

    * escaped backslashes, then escaped quotes, are removed (left to right, as JSON reads them),
      so every quote left opens or closes a string;
    * only quotes and brackets are kept, and adjacent quote pairs dropped: when no quote is left,
      every bracket had an even number of quotes before it, i.e. stood outside the strings (a
      bracket inside one has its opening quote, and an odd count, before it); otherwise the
      strings left are cut out pairwise (dropping adjacent pairs kept each bracket's parity).

    >>> _shallow(b'{"a": "[[[", "b": ["\\\\\\"]"]}', 2), _shallow(b'{"a": [[1]]}', 2)
    (True, False)
    """
    text = raw.replace(b"\\\\", b"").replace(b'\\"', b"") if b"\\" in raw else raw
    marks = text.translate(None, _NOT_MARKS).replace(b'""', b"")
    if b'"' in marks:
        marks = _QUOTED.sub(b"", marks)
    brackets = marks.translate(_BRACKETS)
    for _ in range(limit):
        if b"(" not in brackets:
            return True
        brackets = brackets.replace(b"()", b"")
    return b"(" not in brackets


def _text_id(value: str | int | None, name: str, *, required: bool) -> str | None:
    if value is None:
        if required:
            raise ValueError(f"{name} is required")
        return None
    text = str(value).strip()
    if not text:
        raise ValueError(f"{name} must not be empty")
    if len(text) > MAX_ID_CHARS:
        raise ValueError(f"{name} is longer than {MAX_ID_CHARS} characters")
    return text


_event_decoder: Final = msgspec.json.Decoder(NativeEvent)
_raw_list_decoder: Final = msgspec.json.Decoder(list[msgspec.Raw])


_ID_MEMBER: Final = re.compile(rb'"(?:event_id|messageId)"\s*:\s*"((?:[^"\\]|\\.){1,256})"')


def _raw_id(raw: bytes) -> str | None:
    r"""The event_id of an undecodable event, when one can be read, for the receipt: from the JSON,
    or, when the JSON itself cannot be read (a number out of range, bytes that are not UTF-8), as
    the text of its ``"event_id"`` member.

    >>> _raw_id(b'{"event_id": "e-1", "value": 1e400}'), _raw_id(b'{"event_id": "e\xe9", "type": 1}')
    ('e-1', 'e�')
    """
    try:
        obj = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        found = _ID_MEMBER.search(raw)
        return None if found is None else found.group(1).decode(errors="replace")
    if isinstance(obj, dict):
        value = obj.get("event_id") or obj.get("messageId")
        return None if value is None else str(value)
    return None


def split_body(body: bytes, *, ndjson: bool) -> list[bytes]:
    r"""The raw events of a JSON-array or NDJSON body. A malformed array raises msgspec.DecodeError;
    malformed NDJSON lines come back as they are and are rejected one by one. A UTF-8 byte order
    mark before the body (as some Windows tools write files) is read past (RFC 8259 §8.1).

    >>> split_body(b'\xef\xbb\xbf[{"a": 1}]', ndjson=False)
    [b'{"a": 1}']
    """
    body = body.removeprefix(b"\xef\xbb\xbf")
    if ndjson:
        return [line for line in body.splitlines() if line.strip()]
    try:
        return [bytes(raw) for raw in _raw_list_decoder.decode(body)]
    except RecursionError:  # an element nests past the decoder's stack: find the elements by scanning
        return _split_array(body)


def member_span(body: bytes, name: str) -> tuple[int, int] | None:
    """Where the value of the top-level member ``name`` of the JSON object ``body`` starts and ends,
    found without recursion (for bodies too deep for the decoder); None when it is not there."""
    key = msgspec.json.encode(name)
    depth = 0
    start: int | None = None
    for token in _JSON_TOKENS.finditer(body):
        first = body[token.start()]
        if start is None:
            if depth == 1 and first == 0x22 and token.group() == key:
                after = body[token.end():].lstrip()
                if after[:1] == b":":
                    start = len(body) - len(after) + 1
                    continue
        elif depth == 1 and first in (0x2C, 0x7D):  # the value was a scalar
            return start, token.start()
        if first in (0x5B, 0x7B):
            depth += 1
        elif first in (0x5D, 0x7D):
            depth -= 1
            if start is not None and depth == 1:
                return start, token.end()
    return None


def _split_array(body: bytes) -> list[bytes]:
    """The elements of the JSON array ``body``, found without recursion (each one is then decoded,
    or rejected for its depth, on its own). Raises msgspec.DecodeError when it is not an array."""
    start = len(body) - len(body.lstrip())
    if body[start:start + 1] != b"[":
        raise msgspec.DecodeError("JSON is malformed: expected '['")
    elements: list[bytes] = []
    depth = 0
    begin = start + 1
    for token in _JSON_TOKENS.finditer(body, start):
        first = body[token.start()]
        if first in (0x5B, 0x7B):
            depth += 1
        elif first in (0x5D, 0x7D):
            depth -= 1
            if depth == 0:
                last = body[begin:token.start()].strip()
                if body[token.end():].strip():
                    raise msgspec.DecodeError("JSON is malformed: trailing characters after the array")
                return [*elements, last] if last or elements else elements
        elif first == 0x2C and depth == 1:
            elements.append(body[begin:token.start()].strip())
            begin = token.end()
    raise msgspec.DecodeError(
        f"JSON is malformed: the body ends inside {depth} unclosed arrays or objects (truncated?)"
    )


def decode_native(
    raws: list[bytes],
    *,
    received_at: datetime,
    max_event_bytes: int,
    default_domain: str | None = None,
    source: str | None = None,
) -> EventBatch:
    """Validate native events one by one into columns; nothing is dropped silently.

    This is the hot path of HTTP ingestion (~1000 events per request), so the common case (ids
    already trimmed, ``ts`` in UTC) is checked inline and only unusual values go through
    :func:`_text_id` and :func:`to_utc`, which also produce the error messages. ``default_domain``
    fills a missing ``domain`` and ``source`` is recorded on every event (both from the key's source).
    """
    event_ids: list[str | None] = []
    user_ids: list[str | None] = []
    types: list[str] = []
    item_ids: list[str | None] = []
    domains: list[str | None] = []
    stamps: list[datetime] = []  # naive UTC or aware
    values: list[float | None] = []
    properties: list[str | None] = []
    rejected: list[Rejection] = []
    latest = received_at + _FUTURE_SLACK
    latest_utc = latest.replace(tzinfo=UTC)
    decode = _event_decoder.decode
    for index, raw in enumerate(raws):
        try:
            if len(raw) > max_event_bytes:
                raise ValueError(
                    f"event is {len(raw)} bytes, over the {max_event_bytes}-byte limit; "
                    "move large content to the catalog (POST /v1/items) and send its item_id"
                )
            if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH:  # else it cannot be too deep
                deep = nesting_error(raw)
                if deep is not None:
                    raise ValueError(deep)
            event = decode(raw)
            props = bytes(event.properties)
            if props == b"null":
                props_text = None
            elif props.lstrip().startswith(b"{"):
                props_text = props.decode()
            else:
                raise ValueError("properties must be a JSON object")
            event_type = event.type.strip()
            if not event_type or len(event_type) > MAX_TYPE_CHARS:
                raise ValueError(_TYPE_LENGTH)
            event_id = event.event_id
            if event_id is not None:
                event_id = event_id.strip() if type(event_id) is str else str(event_id).strip()
                if not event_id or len(event_id) > MAX_ID_CHARS:
                    _text_id(event.event_id, "event_id", required=False)
            user_id = event.user_id
            user_id = user_id.strip() if type(user_id) is str else str(user_id).strip()
            if not user_id or len(user_id) > MAX_ID_CHARS:
                _text_id(event.user_id, "user_id", required=True)
            item_id = event.item_id
            if item_id is not None:
                item_id = item_id.strip() if type(item_id) is str else str(item_id).strip()
                if not item_id or len(item_id) > MAX_ID_CHARS:
                    _text_id(event.item_id, "item_id", required=False)
            # how a control character can arrive in JSON: an escape, a DEL byte, or C1 (0xC2 0x80-0x9F)
            if (b"\\" in raw or b"\x7f" in raw or b"\xc2" in raw) and _CONTROL.search(
                f"{event_id or ''}{user_id}{event_type}{item_id or ''}{event.domain or ''}"
            ):
                for name, text in (("event_id", event_id), ("user_id", user_id), ("type", event_type),
                                   ("item_id", item_id), ("domain", event.domain)):
                    control = control_error(text, name)
                    if control is not None:
                        raise ValueError(control)
            ts = event.ts
            if ts is None:
                ts = received_at
            elif type(ts) is datetime:
                # An aware datetime is kept as is: Arrow converts it to UTC in bulk, ~4x faster
                # than datetime.replace per event. to_utc raises the out-of-range message.
                if ts.tzinfo is None:
                    if ts < _EARLIEST or ts > latest:
                        to_utc(ts, received_at=received_at)
                elif ts < _EARLIEST_UTC or ts > latest_utc:
                    to_utc(ts, received_at=received_at)
            else:
                ts = to_utc(ts, received_at=received_at)
        except (msgspec.DecodeError, ValueError, UnicodeDecodeError) as exc:
            reason = str(exc).replace("`", "'")
            if reason == "Expected 'object', got 'array'":
                reason += (
                    ": an event is one JSON object (in NDJSON, one object per line; "
                    "a JSON array of events is sent with Content-Type: application/json)"
                )
            rejected.append(Rejection(index, _raw_id(raw), reason, raw.decode(errors="replace")))
            continue
        event_ids.append(event_id)
        user_ids.append(user_id)
        types.append(event_type)
        item_ids.append(item_id)
        domains.append(event.domain or default_domain)
        stamps.append(ts)
        values.append(event.value)
        properties.append(props_text)
    columns = [event_ids, user_ids, types, item_ids, domains, stamps, received_at, values, properties, source]
    return EventBatch(_table(columns), rejected)


def _table(columns: list[Any]) -> pa.Table:
    """The :data:`EVENT_SCHEMA` table of per-event lists (``received_at`` and ``source``: one value)."""
    rows = len(columns[0])
    arrays = [
        pa.array(column, type=f.type) if isinstance(column, list) else pa.repeat(pa.scalar(column, type=f.type), rows)
        for column, f in zip(columns, EVENT_SCHEMA, strict=True)
    ]
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)


def validate_events(
    events: list[dict[str, Any] | bytes | EventColumns],
    *,
    received_at: datetime,
    default_domain: str | None = None,
    source: str | None = None,
) -> EventBatch:
    """:func:`decode_native` for events built in Python (the Segment mapping's): the same columns
    and the same rejections, without encoding each event to JSON and decoding it again.

    An event is a dict of :class:`NativeEvent`'s fields, ``ts`` a naive UTC datetime and
    ``properties`` a dict or None, or its JSON when the caller cannot vouch for its depth. A dict
    is taken as it is only when nothing in it needs a second look (ids of 1 to 256 printable
    characters, a type of 1 to 64, a plausible ``ts``, a finite ``value``); anything else, and
    every bytes event, goes through :func:`decode_native` itself, so a rejection reads the same
    on both paths. There is no size limit: the caller measured what was sent.

    The Segment mapping's events share their user, type, time and domain per message, so those
    are checked once per distinct object. An :class:`EventColumns` (an order's lines) is taken
    whole when its ids are already what the dict path would store (trimmed, 1 to 256 printable
    characters) and its values finite floats, each column checked at once; otherwise its events
    go one by one through :func:`decode_native`. Its rejections carry its own index.
    """
    event_ids: list[str | None] = []
    user_ids: list[str | None] = []
    types: list[str] = []
    item_ids: list[str | None] = []
    domains: list[str | None] = []
    stamps: list[datetime] = []
    values: list[float | None] = []
    properties: list[str | None] = []
    columns: tuple[list[Any], ...] = (event_ids, user_ids, types, item_ids, domains, stamps, values, properties)
    rejected: list[Rejection] = []
    latest = received_at + _FUTURE_SLACK
    encode = msgspec.json.encode
    control = _CONTROL.search
    shared: tuple[Any, ...] = ()  # (user_id, type, ts, domain) last checked, as objects
    fine: tuple[str, str, str | None] | None = None  # what they came to, or None if they need a second look
    for index, event in enumerate(events):
        if type(event) is EventColumns:
            said = (event.user_id, event.type, event.ts, event.domain)
            if said != shared:
                shared, fine = said, _shared_fields(*said, latest=latest)
            if fine is not None and _trimmed_ids(event.event_ids) and _trimmed_ids(event.item_ids) \
                    and _finite(event.values):
                lines = len(event.event_ids)
                event_ids.extend(event.event_ids)
                user_ids.extend([fine[0]] * lines)
                types.extend([fine[1]] * lines)
                item_ids.extend(event.item_ids)
                domains.extend([fine[2] or default_domain] * lines)
                stamps.extend([event.ts] * lines)
                values.extend(event.values)
                properties.extend(event.properties)
                continue
            for raw in event.encoded():
                one = decode_native([raw], received_at=received_at, max_event_bytes=2**31,
                                    default_domain=default_domain, source=source)
                _take(one, index, columns, rejected)
            continue
        if type(event) is dict:
            event_id = event.get("event_id")
            item_id = event.get("item_id")
            value = event.get("value")
            props = event.get("properties")
            now: tuple[Any, ...] = (event.get("user_id"), event.get("type"), event.get("ts"), event.get("domain"))
            if now != shared:  # the same message: compared by identity first
                shared, fine = now, _shared_fields(*now, latest=latest)
            if fine is not None and event.keys() <= _NATIVE_FIELDS:
                if type(event_id) is str:
                    event_id = event_id.strip()
                elif type(event_id) is int:
                    event_id = str(event_id)
                elif event_id is not None:
                    event_id = ""
                if type(item_id) is str:
                    item_id = item_id.strip()
                elif type(item_id) is int:
                    item_id = str(item_id)
                elif item_id is not None:
                    item_id = ""
                if (
                    (event_id is None or 0 < len(event_id) <= MAX_ID_CHARS)
                    and (item_id is None or 0 < len(item_id) <= MAX_ID_CHARS)
                    and (value is None or (type(value) is float and math.isfinite(value)))
                    and (props is None or type(props) is dict)
                    and (event_id is None or control(event_id) is None)
                    and (item_id is None or control(item_id) is None)
                ):
                    event_ids.append(event_id)
                    user_ids.append(fine[0])
                    types.append(fine[1])
                    item_ids.append(item_id)
                    domains.append(fine[2] or default_domain)
                    stamps.append(now[2])  # a naive datetime: _shared_fields checked it
                    values.append(value)
                    properties.append(None if props is None else encode(props).decode())
                    continue
        one = decode_native(
            [event if isinstance(event, bytes) else encode(event)],
            received_at=received_at,
            max_event_bytes=2**31,
            default_domain=default_domain,
            source=source,
        )
        _take(one, index, columns, rejected)
    return EventBatch(_table([*columns[:6], received_at, *columns[6:], source]), rejected)


def _take(one: EventBatch, index: int, columns: tuple[list[Any], ...], rejected: list[Rejection]) -> None:
    """Append the one event :func:`decode_native` read (or its rejection, as event ``index``)."""
    if one.rejected:
        rejected.append(dataclasses.replace(one.rejected[0], index=index))
    else:
        row = one.table.to_pylist()[0]
        for column, name in zip(columns, _FIELD_ORDER, strict=True):
            column.append(row[name])


def _trimmed_ids(ids: list[Any]) -> bool:
    """Whether every id is text the dict path stores as it is: trimmed, 1 to MAX_ID_CHARS
    characters, no control character (each check over the whole column at once)."""
    if not ids:
        return True
    return (
        set(map(type, ids)) == {str}
        and min(map(len, ids)) > 0
        and max(map(len, ids)) <= MAX_ID_CHARS
        and list(map(str.strip, ids)) == ids
        and _CONTROL.search("".join(ids)) is None
    )


def _finite(values: list[Any]) -> bool:
    return not values or (set(map(type, values)) == {float} and all(map(math.isfinite, values)))


_NATIVE_FIELDS: Final = frozenset(NativeEvent.__struct_fields__)
_FIELD_ORDER: Final = ("event_id", "user_id", "type", "item_id", "domain", "ts", "value", "properties")


def _shared_fields(
    user_id: Any, event_type: Any, ts: Any, domain: Any, *, latest: datetime
) -> tuple[str, str, str | None] | None:
    """The stored user_id, type and domain when these need no second look, else None."""
    if type(user_id) is not str or type(event_type) is not str or type(ts) is not datetime:
        return None
    if domain is not None and type(domain) is not str:
        return None
    user_id, event_type = user_id.strip(), event_type.strip()
    if not (0 < len(user_id) <= MAX_ID_CHARS and 0 < len(event_type) <= MAX_TYPE_CHARS):
        return None
    if ts.tzinfo is not None or ts < _EARLIEST or ts > latest:
        return None
    if _CONTROL.search(f"{user_id}{event_type}{domain or ''}"):
        return None
    return user_id, event_type, domain



def write_events(
    con: duckdb.DuckDBPyConnection, batch: EventBatch, *, source: str, received_at: datetime
) -> WriteResult:
    """Insert a batch inside the caller's transaction; returns accepted / duplicates / rejected."""
    table = batch.table
    inserted = 0
    if table.num_rows:
        con.register("_orchestrion_batch", table)
        try:
            row = con.execute(_INSERT_EVENTS).fetchone()
        finally:
            con.unregister("_orchestrion_batch")
        inserted = int(row[0]) if row else 0
    if batch.rejected:
        write_failed(con, rejections_table([(received_at, source, r) for r in batch.rejected]))
    return WriteResult(inserted, int(table.num_rows) - inserted, len(batch.rejected))


def rejections_table(rejections: list[tuple[datetime, str, Rejection]]) -> pa.Table:
    """Rows for ``failed_events`` from (received_at, source, rejection) triples."""
    return pa.table(
        {
            "received_at": [received for received, _, _ in rejections],
            "source": [source for _, source, _ in rejections],
            "event_id": [r.event_id for _, _, r in rejections],
            "reason": [r.reason for _, _, r in rejections],
            "payload": [r.payload for _, _, r in rejections],
        },
        schema=_FAILED_SCHEMA,
    )


def write_failed(con: duckdb.DuckDBPyConnection, failed: pa.Table) -> None:
    """Append rows (received_at, source, event_id, reason, payload) to ``failed_events``."""
    con.register("_orchestrion_failed", failed)
    try:
        con.execute(
            "INSERT INTO failed_events (received_at, source, event_id, reason, payload) "
            "SELECT received_at, source, event_id, reason, payload FROM _orchestrion_failed"
        )
    finally:
        con.unregister("_orchestrion_failed")


def insert_registered(con: duckdb.DuckDBPyConnection, name: str, *, skip_seen: bool = False) -> list[str] | None:
    """Insert the events of the registered relation ``name`` (in :data:`EVENT_SCHEMA`'s columns)
    inside the caller's transaction: the one statement besides :func:`write_events` that writes
    ``events`` (group commit, bulk files). ``skip_seen``: ids stored already are skipped and the ids
    inserted are returned; else a stored id raises DuckDB's ``ConstraintException``."""
    if skip_seen:
        return [str(row[0]) for row in con.execute(
            f"INSERT INTO events SELECT * FROM {name} ON CONFLICT DO NOTHING RETURNING event_id"
        ).fetchall()]
    con.execute(f"INSERT INTO events SELECT * FROM {name}").fetchall()
    return None
