"""The edges of HTTP input against a real server: deep nesting, multi-member gzip, control
characters in ids, and ids with URL-special characters read back through the API.

Each case answers a receipt or a 4xx naming the field, never a 500, and nothing is lost silently.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from launcher import Server, serve
from orchestrion.ingest.events import MAX_JSON_DEPTH

NDJSON = {"Content-Type": "application/x-ndjson"}
GZIP_NDJSON = {"Content-Encoding": "gzip", **NDJSON}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with serve(tmp_path) as running:
        yield running


def send(server: Server, path: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(server.url + path, content=body, headers=headers, timeout=30)


def nested(levels: int) -> object:
    """A value ``levels`` deep: [[[...]]] (one level = one array)."""
    value: object = []
    for _ in range(levels - 1):
        value = [value]
    return value


def deep_text(levels: int) -> str:
    return "[" * levels + "]" * levels


def test_deep_nesting_is_refused_per_event_or_with_400_never_500(server: Server) -> None:
    props = '{"x": ' + deep_text(1000) + "}"
    event = '{"user_id": "u1", "type": "play", "properties": ' + props + "}"
    message = '{"userId": "u1", "event": "played", "type": "track", "properties": ' + props + "}"
    bodies: dict[str, list[tuple[bytes, dict[str, str] | None]]] = {
        "/v1/events": [(f"[{event}]".encode(), None), (event.encode(), NDJSON)],
        "/v1/items": [(('[{"item_id": "i1", "properties": ' + props + "}]").encode(), None)],
        "/v1/track": [(message.encode(), None)],
        "/v1/identify": [(('{"userId": "u1", "traits": ' + props + "}").encode(), None)],
        "/v1/batch": [(('{"batch": [' + message + "]}").encode(), None),
                      (('{"context": {"k": 1}, "batch": [' + message + "]}").encode(), None)],
    }
    for path, cases in bodies.items():
        for body, headers in cases:
            response = send(server, path, body, headers)
            assert response.status_code == 200, (path, response.text)
            receipt = response.json()
            assert (receipt["accepted"], receipt["rejected"]) == (0, 1), (path, receipt)
            reason = receipt["errors"][0]["reason"]
            field = "'traits'" if path == "/v1/identify" else "'properties'"
            assert field in reason and f"deeper than {MAX_JSON_DEPTH} levels" in reason, (path, reason)
    deep_context = send(server, "/v1/batch", ('{"batch": [], "context": ' + props + "}").encode())
    assert deep_context.status_code == 400 and "'context' nests deeper" in deep_context.json()["detail"]
    hostile = [b"[" * 100_000, deep_text(100_000).encode(), b"{" * 100_000, b'{"batch": ' + b"[" * 100_000]
    routes = ["/v1/events", "/v1/items", "/v1/track", "/v1/identify", "/v1/batch",
              "/v1/keys", "/v1/runs", "/v1/deliverables/d_x/feedback"]
    for path in routes:
        for body in hostile:
            assert len(body) < 500 * 1024
            response = send(server, path, body)
            assert response.status_code < 500, (path, body[:20], response.text[:300])
            if response.status_code == 200:  # read, and the too-deep value rejected in the receipt
                assert response.json()["rejected"] == 1 and response.json()["accepted"] == 0
        # an NDJSON line of 100,000 '[' is one rejected event (over the 32 KB event limit, too)
        lines = send(server, path, b"[" * 100_000 + b"\n", NDJSON)
        assert lines.status_code < 500, (path, lines.text[:300])
    # a balanced 100,000-level event in a JSON array: the body is still read, that event rejected
    mixed = b'[{"user_id": "u1", "type": "play"}, ' + deep_text(100_000).encode() + b"]"
    receipt = send(server, "/v1/events", mixed).json()
    assert (receipt["accepted"], receipt["rejected"]) == (1, 1) and receipt["errors"][0]["index"] == 1
    assert httpx.get(server.url + "/v1/health", timeout=10).status_code == 200
    assert "Traceback" not in server.log, server.log[-3000:]


def test_the_nesting_limit_is_32_levels_counting_the_event(server: Server) -> None:
    def event(n: int, levels: int) -> dict[str, object]:
        # the event is level 1, properties level 2, so properties.x holds levels - 2 more
        return {"event_id": f"d{n}", "user_id": "u1", "type": "play", "properties": {"x": nested(levels - 2)}}

    body = json.dumps([event(1, MAX_JSON_DEPTH), event(2, MAX_JSON_DEPTH + 1)]).encode()
    receipt = send(server, "/v1/events", body).json()
    assert (receipt["accepted"], receipt["rejected"]) == (1, 1)
    assert receipt["errors"][0]["event_id"] == "d2" and "'properties'" in receipt["errors"][0]["reason"]
    item = {"item_id": "deep", "properties": {"x": nested(MAX_JSON_DEPTH - 1)}}
    items = send(server, "/v1/items", json.dumps([item]).encode()).json()
    assert items["rejected"] == 1 and "'properties'" in items["errors"][0]["reason"]
    # a price in a currency nobody knows is refused with what to write (a cart adds up one currency)
    odd = send(server, "/v1/items", json.dumps([{"item_id": "y:a", "price": 5, "currency": "XXXX"}]).encode()).json()
    assert odd["rejected"] == 1 and "ISO 4217" in odd["errors"][0]["reason"], odd
    owed = send(server, "/v1/items", json.dumps([{"item_id": "neg", "price": -5, "currency": "GBP"}]).encode()).json()
    assert owed["rejected"] == 1 and "price must be a number of at least 0" in owed["errors"][0]["reason"], owed
    assert owed["errors"][0]["reason"].startswith("item 'neg': "), owed  # which item, not only where it was
    server.stop()
    with server.open_store() as store:
        assert store.scalar("SELECT list(event_id) FROM events") == ["d1"]
        assert store.scalar("SELECT count(*) FROM failed_events") == 4  # deep event and item, odd currency, price
        assert store.scalar("SELECT count(*) FROM items") == 0


def test_every_gzip_member_is_read_and_a_corrupt_one_refuses_the_body(server: Server) -> None:
    def line(n: int) -> bytes:
        return json.dumps({"event_id": f"m{n}", "user_id": "u1", "type": "play"}).encode() + b"\n"

    two = gzip.compress(line(1)) + gzip.compress(line(2))
    receipt = send(server, "/v1/events", two, GZIP_NDJSON).json()
    assert (receipt["accepted"], receipt["rejected"]) == (2, 0)
    # a JSON array cut across three members is still one array
    array = b"[" + line(3) + b","
    pieces = gzip.compress(array) + gzip.compress(line(4)) + gzip.compress(b"]")
    assert send(server, "/v1/events", pieces, {"Content-Encoding": "gzip"}).json()["accepted"] == 2
    corrupt_second = gzip.compress(line(5)) + gzip.compress(line(6))[:-12] + b"garbage-not-gzip"
    refused = send(server, "/v1/events", corrupt_second, GZIP_NDJSON)
    assert refused.status_code == 400 and "gzip" in refused.json()["detail"], refused.text
    truncated = gzip.compress(line(7)) + gzip.compress(line(8))[:20]
    assert send(server, "/v1/events", truncated, GZIP_NDJSON).status_code == 400
    trailing = gzip.compress(line(9)) + b"\x00\x01junk"
    assert send(server, "/v1/events", trailing, GZIP_NDJSON).status_code == 400
    server.stop()
    with server.open_store() as store:
        assert store.scalar("SELECT list(event_id ORDER BY event_id) FROM events") == ["m1", "m2", "m3", "m4"]
        assert store.scalar("SELECT count(*) FROM failed_events") == 0


def test_control_characters_are_refused_in_ids_and_types(server: Server) -> None:
    for char in ("\x00", "\x1b", "\n", "\x7f", "\x85", "\x9b"):
        refuse_everywhere(server, f"a{char}b")
    server.stop()
    with server.open_store() as store:
        pattern = "[\\x00-\\x1f\\x7f-\\x9f]"
        for table, columns in (("events", ("event_id", "user_id", "type", "item_id", "domain")),
                               ("items", ("item_id",)), ("users", ("user_id",))):
            where = " OR ".join(f"regexp_matches(coalesce({c}, ''), '{pattern}')" for c in columns)
            assert store.scalar(f"SELECT count(*) FROM {table} WHERE {where}") == 0, table


def refuse_everywhere(server: Server, bad: str) -> None:
    """Send ``bad`` as every id and type on every ingestion route; each is refused by name."""
    events = [
        {"event_id": "ok", "user_id": "u1", "type": "play"},
        {"user_id": bad, "type": "play"},
        {"user_id": "u1", "type": bad},
        {"user_id": "u1", "type": "play", "item_id": bad},
        {"event_id": bad, "user_id": "u1", "type": "play"},
        {"user_id": "u1", "type": "play", "domain": bad},
    ]
    for body, headers in ((json.dumps(events).encode(), None),
                          (b"\n".join(json.dumps(e, ensure_ascii=False).encode() for e in events), NDJSON)):
        receipt = send(server, "/v1/events", body, headers).json()
        assert (receipt["accepted"] + receipt["duplicates"], receipt["rejected"]) == (1, 5), receipt
        named = [e["reason"].split(" ")[0] for e in receipt["errors"]]
        assert named == ["user_id", "type", "item_id", "event_id", "domain"], receipt["errors"]
        assert all("control character" in e["reason"] for e in receipt["errors"])
    segment = [
        ("/v1/track", {"userId": bad, "event": "played"}, "userId"),
        ("/v1/track", {"userId": "u1", "event": bad}, "type"),
        ("/v1/track", {"userId": "u1", "messageId": bad, "event": "played"}, "messageId"),
        ("/v1/identify", {"userId": bad, "traits": {"name": "x"}}, "userId"),
        ("/v1/batch", {"batch": [{"type": "track", "anonymousId": bad, "event": "played"}]}, "userId"),
    ]
    for path, message, field in segment:
        receipt = send(server, path, json.dumps(message).encode()).json()
        assert receipt["rejected"] == 1 and receipt["errors"][0]["reason"].startswith(field), (path, receipt)
    items = send(server, "/v1/items", json.dumps([{"item_id": bad}, {"item_id": "fine"}]).encode()).json()
    assert items["rejected"] == 1 and items["errors"][0]["reason"].startswith("item_id")
    # a run for such a user is refused too (it could serve nobody), naming the field
    for path in ("/v1/runs", "/v1/deliver"):
        run = httpx.post(server.url + path, json={"date": "2011-11-01", "users": [bad]}, timeout=30)
        assert run.status_code == 422 and "users" in run.text, (path, run.status_code, run.text[:300])


ODD_IDS = ["a/b", "/lead", "trail/", "50%", "100%25", "q?x=1", "h#1", "sp ace", "..", ".", "..x",
           "a/../b", "ünï", "日本", "x/feed", "a+b", "semi;colon", "back\\slash"]


def path_id(user_id: str) -> str:
    """A path segment for any id: percent-encode everything, dots too (clients would drop `.`/`..`)."""
    return quote(user_id, safe="").replace(".", "%2E")


def test_every_id_ingestion_accepts_is_readable_through_the_api(server: Server) -> None:
    events = [{"event_id": f"o{n}", "user_id": uid, "type": "play"} for n, uid in enumerate(ODD_IDS)]
    receipt = send(server, "/v1/events", json.dumps(events).encode()).json()
    assert receipt["accepted"] == len(ODD_IDS), receipt
    for uid in ODD_IDS:
        answer = httpx.get(f"{server.url}/v1/users/{path_id(uid)}/feed", timeout=30)
        assert answer.status_code == 200, (uid, answer.text)
        assert answer.json()["user_id"] == uid
    admin = httpx.post(server.url + "/v1/keys", json={"role": "admin"}, timeout=30).json()["key"]
    auth = {"Authorization": f"Bearer {admin}"}
    for uid in ("a/b", "..", "q?x=1"):
        created = httpx.post(server.url + "/v1/keys", json={"role": "user", "user_id": uid}, headers=auth, timeout=30)
        assert created.status_code == 201, created.text
        mine = {"Authorization": f"Bearer {created.json()['key']}"}
        own = httpx.get(f"{server.url}/v1/users/{path_id(uid)}/feed", headers=mine, timeout=30)
        assert own.status_code == 200 and own.json()["user_id"] == uid, (uid, own.text)
        other = httpx.get(f"{server.url}/v1/users/{path_id(uid + 'x')}/feed", headers=mine, timeout=30)
        assert other.status_code == 403, (uid, other.text)
    assert "Traceback" not in server.log, server.log[-3000:]
