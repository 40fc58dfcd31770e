"""Ingestion over HTTP against a real server: receipts, status codes, and what ends up stored."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from launcher import Server, serve
from orchestrion.store import utcnow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with serve(tmp_path) as running:
        yield running


def post(server: Server, path: str, body: object, **kwargs: object) -> httpx.Response:
    return httpx.post(server.url + path, content=json.dumps(body), timeout=30, **kwargs)  # type: ignore[arg-type]


def event(n: int, **fields: object) -> dict[str, object]:
    return {"event_id": f"e{n}", "user_id": f"u{n % 3}", "type": "play", "item_id": f"t{n}",
            "ts": "2024-05-01T10:00:00Z", "value": 1.0, "properties": {"ms": n}, **fields}


def test_events_are_stored_once_and_counted_as_duplicates_after(server: Server) -> None:
    first = post(server, "/v1/events", [event(i) for i in range(5)])
    assert first.status_code == 200
    assert first.json() == {"accepted": 5, "duplicates": 0, "rejected": 0, "errors": []}
    again = post(server, "/v1/events", [event(i) for i in range(3, 8)])
    assert again.json() == {"accepted": 3, "duplicates": 2, "rejected": 0, "errors": []}
    ndjson = "\n".join(json.dumps(event(i)) for i in range(7, 10)) + "\n{not json\n"
    lines = httpx.post(server.url + "/v1/events", content=ndjson,
                       headers={"Content-Type": "application/x-ndjson"}, timeout=30)
    assert lines.status_code == 200
    receipt = lines.json()
    assert (receipt["accepted"], receipt["duplicates"], receipt["rejected"]) == (2, 1, 1)
    assert receipt["errors"][0]["index"] == 3
    server.stop()
    with server.open_store() as store:
        assert store.scalar("SELECT count(*) FROM events") == 10
        row = store.con.execute(
            "SELECT user_id, type, item_id, ts, value, properties->>'ms' FROM events WHERE event_id = 'e4'"
        ).fetchall()
        assert row == [("u1", "play", "t4", datetime(2024, 5, 1, 10), 1.0, "4")]


def test_invalid_events_are_rejected_in_the_receipt_and_kept_with_reasons(server: Server) -> None:
    big = "x" * (33 * 1024)
    body = [
        event(1),
        event(2, user_id=None),                      # wrong type for a required field
        {"event_id": "e3", "type": "play"},          # missing user_id
        event(4, ts="yesterday"),                    # unreadable timestamp
        event(5, ts="1850-01-01T00:00:00Z"),          # implausible timestamp
        event(6, colour="red"),                      # unknown field
        event(7, properties={"blob": big}),          # over 32 KB
        event(8, value="high"),                      # wrong type
        "not an object",
        event(10),
    ]
    response = post(server, "/v1/events", body)
    assert response.status_code == 200
    receipt = response.json()
    assert (receipt["accepted"], receipt["duplicates"], receipt["rejected"]) == (2, 0, 8)
    reasons = {e["index"]: e["reason"] for e in receipt["errors"]}
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert "user_id" in reasons[2] and "user_id" in reasons[1]
    assert "RFC3339" in reasons[3] and "implausible" in reasons[4]
    assert "colour" in reasons[5] and "32768-byte limit" in reasons[6] and "value" in reasons[7]
    assert {e["event_id"] for e in receipt["errors"] if e["index"] in (2, 3, 5)} == {"e3", "e4", "e6"}
    assert httpx.get(server.url + "/v1/health", timeout=5).status_code == 200
    server.stop()
    with server.open_store() as store:
        failed = store.con.execute(
            "SELECT source, event_id, reason, payload FROM failed_events ORDER BY failed_id"
        ).fetchall()
        assert len(failed) == 8 and {row[0] for row in failed} == {"http:/v1/events"}
        assert any(row[1] == "e6" and "colour" in row[2] and json.loads(row[3])["colour"] == "red" for row in failed)
        assert store.scalar("SELECT count(*) FROM events") == 2


def test_unreadable_bodies_are_400_and_store_nothing(server: Server) -> None:
    for body in (b'[{"user_id": "u1", "type": ', b'{"user_id": "u1", "type": "play"}', b"", b"null"):
        response = httpx.post(server.url + "/v1/events", content=body, timeout=30)
        assert response.status_code == 400, body
        refusal = response.json()
        assert refusal["stored"] is False and refusal["accepted"] == 0
        assert "JSON array" in refusal["detail"] and "nothing was stored" in refusal["detail"]
    batch = httpx.post(server.url + "/v1/batch", content=b'{"messages": []}', timeout=30)
    assert batch.status_code == 400 and "batch" in batch.json()["detail"]
    gzip_headers = {"Content-Encoding": "gzip"}
    corrupt = httpx.post(server.url + "/v1/events", content=b"not gzip", headers=gzip_headers, timeout=30)
    assert corrupt.status_code == 400 and "gzip" in corrupt.json()["detail"]
    zipped = gzip.compress(json.dumps([event(1), event(2)]).encode())
    assert httpx.post(server.url + "/v1/events", content=zipped, headers=gzip_headers,
                      timeout=30).json()["accepted"] == 2
    bomb = gzip.compress(b"[" + b" " * (600 * 1024) + b"]")
    assert httpx.post(server.url + "/v1/events", content=bomb, headers=gzip_headers,
                      timeout=30).status_code == 413
    assert post(server, "/v1/events", [event(1)]).json()["duplicates"] == 1
    # a file saved with a UTF-8 byte order mark (Windows tools) is read past it, as JSON and as NDJSON
    bom = b"\xef\xbb\xbf"
    marked = httpx.post(server.url + "/v1/events", content=bom + json.dumps([event(30)]).encode(), timeout=30)
    assert marked.status_code == 200 and marked.json()["accepted"] == 1, marked.text
    lines = httpx.post(server.url + "/v1/events", content=bom + json.dumps(event(31)).encode() + b"\n",
                       headers={"Content-Type": "application/x-ndjson"}, timeout=30)
    assert lines.status_code == 200 and lines.json()["accepted"] == 1, lines.text
    server.stop()
    with server.open_store() as store:
        assert store.scalar("SELECT count(*) FROM failed_events") == 0


def test_oversize_bodies_are_413_before_and_while_reading(server: Server) -> None:
    events = [event(i, properties={"pad": "p" * 1000}) for i in range(600)]
    too_big = json.dumps(events).encode()
    assert len(too_big) > 500 * 1024
    declared = httpx.post(server.url + "/v1/events", content=too_big, timeout=30)
    assert declared.status_code == 413
    assert "512000-byte limit" in declared.json()["detail"] and declared.json()["stored"] is False

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(too_big), 64 * 1024):
            yield too_big[start:start + 64 * 1024]

    chunked = httpx.post(server.url + "/v1/events", content=chunks(), timeout=30)
    assert chunked.status_code == 413
    assert post(server, "/v1/events", events[:100]).json()["accepted"] == 100
    server.stop()
    with server.open_store() as store:
        assert store.scalar("SELECT count(*) FROM events") == 100


def test_segment_track_identify_and_batch(server: Server) -> None:
    now = utcnow()
    device_ahead = timedelta(hours=1)  # the device clock is an hour fast
    happened = now - timedelta(minutes=10)

    def device(ts: datetime) -> str:
        return (ts + device_ahead).isoformat() + "Z"

    track = {
        "type": "track", "messageId": "m1", "userId": "ada", "event": "Song Played",
        "properties": {"item_id": "t1", "ms": 1234}, "timestamp": device(happened),
        "sentAt": device(now), "context": {"ip": "10.0.0.1", "library": {"name": "analytics.js"}},
        "integrations": {"All": True}, "originalTimestamp": device(happened), "version": 2,
    }
    assert post(server, "/v1/track", track).json() == {
        "accepted": 1, "duplicates": 0, "rejected": 0, "errors": []}
    assert post(server, "/v1/track", track).json()["duplicates"] == 1
    identify = {"userId": "ada", "traits": {"timezone": "Europe/Paris", "name": "Ada"}}
    assert post(server, "/v1/identify", identify).json()["accepted"] == 1
    batch = {
        "batch": [
            {"type": "identify", "userId": "ada", "traits": {"plan": "pro"}, "messageId": "m2"},
            {"type": "page", "anonymousId": "anon-1", "name": "Home", "messageId": "m3"},
            {"type": "identify", "userId": "bob", "traits": {"timezone": "Mars/Olympus"}},
            {"type": "alias", "userId": "ada", "previousId": "anon-1"},
            {"type": "track", "event": "Added", "messageId": "m4"},
            {"type": "track", "userId": "bob", "event": "Added", "messageId": "m5",
             "properties": {"product_id": "sku-9"}},
        ],
        "sentAt": now.isoformat() + "Z",
        "context": {"library": {"name": "analytics-python"}},
    }
    receipt = post(server, "/v1/batch", batch).json()
    assert (receipt["accepted"], receipt["rejected"]) == (3, 3)
    reasons = {e["index"]: e["reason"] for e in receipt["errors"]}
    assert "timezone" in reasons[2] and "alias" in reasons[3] and "userId" in reasons[4]
    assert [e["event_id"] for e in receipt["errors"]] == [None, None, "m4"]
    server.stop()
    with server.open_store() as store:
        rows = store.con.execute(
            "SELECT event_id, user_id, type, item_id, ts, properties FROM events ORDER BY event_id"
        ).fetchall()
        assert [r[:4] for r in rows] == [
            ("m1", "ada", "Song Played", "t1"), ("m3", "anon-1", "page", None), ("m5", "bob", "Added", "sku-9")]
        assert abs(rows[0][4] - happened) < timedelta(seconds=30)  # skew corrected
        properties = json.loads(rows[0][5])
        assert properties["ms"] == 1234 and properties["context"]["ip"] == "10.0.0.1"
        assert json.loads(rows[1][5])["name"] == "Home"
        user = store.con.execute("SELECT timezone, traits FROM users WHERE user_id = 'ada'").fetchall()
        assert user[0][0] == "Europe/Paris" and json.loads(user[0][1]) == {"timezone": "Europe/Paris",
                                                                             "name": "Ada", "plan": "pro"}
        assert store.scalar("SELECT count(*) FROM users WHERE user_id = 'bob'") == 0
        sources = store.con.execute("SELECT DISTINCT source FROM failed_events").fetchall()
        assert sources == [("http:/v1/batch",)]


def test_items_are_upserted_by_id(server: Server) -> None:
    items = [
        {"item_id": "t1", "domain": "music", "title": "First", "tags": "rock, live", "price": 1.5},
        {"item_id": "t2", "title": "Second", "tags": ["jazz"], "properties": {"bpm": 120}},
        {"item_id": "t1", "title": "First (remaster)"},
        {"title": "no id"},
        {"item_id": "t3", "price": "cheap"},
    ]
    receipt = post(server, "/v1/items", items).json()
    assert (receipt["accepted"], receipt["duplicates"], receipt["rejected"]) == (2, 1, 2)
    assert [e["index"] for e in receipt["errors"]] == [3, 4]
    ndjson = json.dumps({"item_id": "t2", "title": "Second, again"}) + "\n"
    again = httpx.post(server.url + "/v1/items", content=ndjson,
                       headers={"Content-Type": "application/x-ndjson"}, timeout=30)
    assert again.json()["accepted"] == 1
    stats = httpx.get(server.url + "/v1/stats", timeout=30).json()
    assert stats["items"] == 2
    server.stop()
    with server.open_store() as store:
        rows = store.con.execute("SELECT item_id, title, tags, properties FROM items ORDER BY item_id").fetchall()
        # a later row changes the fields it gives and keeps the others (it wiped them: a price
        # update alone left a cart line without its title); within one body the last row wins
        assert rows == [("t1", "First (remaster)", None, None), ("t2", "Second, again", ["jazz"], '{"bpm": 120}')]
