"""validate_events (the Segment path's events, built in Python) stores and rejects exactly what
decode_native does with the same events sent as JSON: same columns, same reasons."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrion.ingest.events import EventColumns, decode_native, validate_events
from orchestrion.ingest.segment_spec import expand

NOW = datetime(2024, 5, 1, 12, 0, 0)

_text = st.one_of(
    st.sampled_from(["u1", " p 2 ", "", "   ", "x" * 256, "x" * 257, "a\x00b", "t\x7f", "c\x85", "é"]),
    st.text(max_size=12),
)
_id = st.one_of(st.none(), _text, st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.booleans(),
                st.lists(st.integers(), max_size=2))
_ts = st.one_of(
    st.datetimes(min_value=datetime(1800, 1, 1), max_value=datetime(2100, 1, 1)),
    st.sampled_from([NOW, NOW + timedelta(days=1), NOW + timedelta(days=1, microseconds=1), datetime(1900, 1, 1)]),
)
_event = st.fixed_dictionaries(
    {"user_id": st.one_of(_text, st.integers(0, 99)), "type": st.one_of(_text, st.just("x" * 65)), "ts": _ts},
    optional={
        "event_id": _id,
        "item_id": _id,
        "domain": st.one_of(st.none(), _text),
        "value": st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False), st.integers(-5, 5)),
        "properties": st.one_of(st.none(), st.dictionaries(st.text(max_size=4), st.integers(), max_size=3),
                                st.lists(st.integers(), max_size=2)),
        "unknown": st.integers(),
    },
)


def _as_json(event: dict[str, Any]) -> bytes:
    sent = dict(event)
    sent["ts"] = event["ts"].isoformat() + "Z"
    return msgspec.json.encode(sent)


@settings(max_examples=400, deadline=None)
@given(st.lists(_event, min_size=1, max_size=4))
def test_the_same_rows_and_reasons_as_the_json_path(events: list[dict[str, Any]]) -> None:
    direct = validate_events(list(events), received_at=NOW, default_domain="shop", source="s")
    decoded = decode_native([_as_json(e) for e in events], received_at=NOW, max_event_bytes=2**31,
                            default_domain="shop", source="s")
    assert direct.table.to_pylist() == decoded.table.to_pylist()
    assert [(r.index, r.event_id, r.reason) for r in direct.rejected] == [
        (r.index, r.event_id, r.reason) for r in decoded.rejected
    ]


_VALID = {"event_id": "e1", "user_id": "u1", "type": "purchase", "item_id": "p1", "domain": "retail",
          "ts": NOW, "value": 2.0, "properties": {"order_id": "o1"}}
_ODD = [None, "", "  x  ", "x" * 256, "x" * 257, "a\x00b", "t\x7f", "c\x85", 7, 2**70, 1.5, True, [1], {"a": 1}]


@pytest.mark.parametrize("field", [*_VALID, "unknown"])
def test_one_odd_field_at_a_time(field: str) -> None:
    odd: list[Any] = list(_ODD)
    if field == "ts":
        odd = [NOW + timedelta(days=1), NOW + timedelta(days=1, microseconds=1), datetime(1899, 12, 31, 23, 59),
               datetime(1900, 1, 1), None]
    events = [{**_VALID, field: value} for value in odd]
    events += [{k: v for k, v in _VALID.items() if k != field}]
    direct = validate_events(events, received_at=NOW, default_domain="shop", source="s")
    decoded = decode_native([_as_json(e) if e.get("ts") else msgspec.json.encode(e) for e in events],
                            received_at=NOW, max_event_bytes=2**31, default_domain="shop", source="s")
    assert direct.table.to_pylist() == decoded.table.to_pylist()
    assert [(r.index, r.event_id, r.reason) for r in direct.rejected] == [
        (r.index, r.event_id, r.reason) for r in decoded.rejected
    ]


def test_a_shared_user_and_time_are_checked_for_every_event() -> None:
    """Two events of one message share objects; a later one with a bad user is still refused."""
    good = {"user_id": "u1", "type": "purchase", "ts": NOW, "item_id": "p1", "value": 1.0}
    bad = {**good, "user_id": "u\x00"}
    batch = validate_events([good, bad, good], received_at=NOW)
    assert batch.table.num_rows == 2
    assert [(r.index, r.reason.split(";")[0]) for r in batch.rejected] == [
        (1, "user_id contains the control character U+0000 at position 1")
    ]


def test_json_events_are_decoded_as_sent() -> None:
    """Bytes (an event the caller cannot vouch for) go through decode_native, depth check included."""
    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(40):
        deep = {"d": deep}
    raw = msgspec.json.encode({"user_id": "u1", "type": "play", "properties": deep})
    batch = validate_events([raw], received_at=NOW)
    assert batch.table.num_rows == 0
    assert "nests deeper than 32 levels" in batch.rejected[0].reason


_line = st.fixed_dictionaries(
    {"product_id": st.one_of(st.sampled_from(["p1", "p2", "p1", " p3", "p\x00", "x" * 257, ""]), st.integers(0, 9),
                             st.text(max_size=6)),
     "price": st.one_of(st.floats(allow_nan=True), st.integers(-3, 3), st.none())},
    optional={
        "quantity": st.one_of(st.none(), st.floats(allow_nan=True), st.integers(-3, 3)),
        "name": st.text(max_size=4),
        "color": st.sampled_from(["red", None]),
    },
)
_order = st.fixed_dictionaries(
    {"products": st.lists(_line, min_size=1, max_size=5),
     "order_id": st.sampled_from(["o1", "o 2", "o\x01", 7, None]), "currency": st.sampled_from(["EUR", 3, None])},
)


@settings(max_examples=400, deadline=None)
@given(_order, st.sampled_from(["shop", " shop", None]), st.sampled_from(["u1", "u\x00", "x" * 257]))
def test_an_orders_lines_as_columns_store_and_reject_what_its_dicts_do(
    order: dict[str, Any], source: str | None, user: str
) -> None:
    """expand(columns=True) gives the usual order's lines as one EventColumns; validate_events
    stores the same rows and refuses them with the same reasons as the lines one dict each."""
    base = {"event_id": "m1", "user_id": user, "ts": NOW, "properties": None}
    try:
        as_dicts, catalog = expand("Order Completed", "track", dict(base), order, source=source)
    except ValueError:
        with pytest.raises(ValueError):
            expand("Order Completed", "track", dict(base), order, source=source, columns=True)
        return
    as_columns, same_catalog = expand("Order Completed", "track", dict(base), order, source=source, columns=True)
    assert same_catalog == catalog
    usual = order["order_id"] is not None and order["currency"] is not None and all(
        isinstance(line.get("price"), int | float) and set(line) <= {"product_id", "price", "quantity", "name"}
        for line in order["products"]
    )
    assert [type(e) for e in as_columns] == ([EventColumns] if usual else [dict] * len(as_dicts))
    one = validate_events(list(as_dicts), received_at=NOW, default_domain="shop", source="s")
    other = validate_events(list(as_columns), received_at=NOW, default_domain="shop", source="s")
    assert other.table.to_pylist() == one.table.to_pylist()
    assert [(r.event_id, r.reason) for r in other.rejected] == [(r.event_id, r.reason) for r in one.rejected]
