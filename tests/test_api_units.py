"""The pieces behind the API, on a real in-memory DuckDB: writer, keys, users, Segment mapping."""

from __future__ import annotations

import doctest
import json
import threading
from concurrent.futures import Future
from datetime import datetime, timedelta
from types import ModuleType

import duckdb
import pytest

from orchestrion.access import keys
from orchestrion.api.segment import SegmentBody, decode_batch_body, map_messages
from orchestrion.errors import NotFoundError, RetryableError, UsageError
from orchestrion.ingest import users, writer
from orchestrion.ingest.events import EventBatch, decode_native
from orchestrion.ingest.writer import EventWrite, Writer, write_event_groups
from orchestrion.store import Store, utcnow

NOW = datetime(2024, 5, 1, 12, 0, 0)


def batch(*events: dict[str, object]) -> EventBatch:
    return decode_native([json.dumps(e).encode() for e in events], received_at=NOW, max_event_bytes=10_000)


def ev(event_id: str | None, **fields: object) -> dict[str, object]:
    base: dict[str, object] = {"user_id": "u", "type": "play", **fields}
    return base if event_id is None else {"event_id": event_id, **base}


@pytest.mark.parametrize("module", [keys, users, writer])
def test_docstring_examples_run(module: ModuleType) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_group_write_counts_each_request_exactly(store: Store) -> None:
    first = EventWrite(batch(ev("a"), ev("b"), {"bad": 1}), "s1", NOW)
    second = EventWrite(batch(ev("b"), ev("c"), ev("c")), "s2", NOW)
    hashed = EventWrite(batch(ev(None, item_id="x"), ev("a")), "s3", NOW)
    empty = EventWrite(batch(), "s4", NOW)
    with store.transaction() as con:
        results = write_event_groups(con, [first, second, hashed, empty])
    assert sum(r.accepted for r in results) == 4 == store.scalar("SELECT count(*) FROM events")
    assert [r.accepted + r.duplicates for r in results] == [2, 3, 2, 0]
    assert (results[1].accepted, results[1].duplicates) == (1, 2)  # b from the first request, c twice
    assert [r.rejected for r in results] == [1, 0, 0, 0]
    with store.transaction() as con:
        again = write_event_groups(con, [first, second])
    assert [(r.accepted, r.duplicates) for r in again] == [(0, 2), (0, 3)]
    assert store.scalar("SELECT count(*) FROM failed_events WHERE source = 's1'") == 2


def test_writer_groups_concurrent_requests_into_few_commits(store: Store) -> None:
    w = Writer(store, max_events=100_000, max_delay_ms=200)
    w.start()
    try:
        futures = [w.submit_events(EventWrite(batch(ev(f"e{i}"), ev(f"e{i + 1}")), "t", NOW))
                   for i in range(20)]
        results = [f.result(timeout=30) for f in futures]
    finally:
        w.close()
    assert sum(r.accepted for r in results) == 21
    assert sum(r.duplicates for r in results) == 19
    assert w.stats.jobs == 20 and w.stats.commits < 20


def test_a_failing_job_does_not_fail_its_group(store: Store) -> None:
    w = Writer(store, max_events=100_000, max_delay_ms=200)
    w.start()

    def bad(con: duckdb.DuckDBPyConnection) -> None:
        con.execute("INSERT INTO users VALUES ('ghost', 'UTC', NULL, now(), now())")
        raise ValueError("boom")

    try:
        good = w.submit_events(EventWrite(batch(ev("g1")), "t", NOW))
        failing = w.submit(bad)
        sql_error = w.submit(lambda con: con.execute("SELECT * FROM no_such_table").fetchall())
        later = w.submit_events(EventWrite(batch(ev("g2")), "t", NOW))
        assert good.result(timeout=30).accepted == 1 and later.result(timeout=30).accepted == 1
        with pytest.raises(ValueError, match="boom"):
            failing.result(timeout=30)
        with pytest.raises(RetryableError, match="nothing was stored"):
            sql_error.result(timeout=30)
    finally:
        w.close()
    assert store.scalar("SELECT count(*) FROM users") == 0  # rolled back
    assert store.scalar("SELECT count(*) FROM events") == 2


def test_writer_refuses_when_flooded_or_closed(store: Store) -> None:
    w = Writer(store, max_events=10, max_delay_ms=0, max_pending=5)
    gate, started = threading.Event(), threading.Event()
    w.start()

    def block(con: duckdb.DuckDBPyConnection) -> bool:
        started.set()
        return gate.wait(30)

    try:
        blocker = w.submit(block)
        assert started.wait(30)
        queued = w.submit(lambda con: 1, size=5)
        with pytest.raises(RetryableError, match="retry"):
            w.submit(lambda con: 2, size=5)
        gate.set()
        assert blocker.result(timeout=30) is True and queued.result(timeout=30) == 1
    finally:
        gate.set()
        w.close()
    with pytest.raises(RetryableError, match="shutting down"):
        w.submit(lambda con: 3)


def test_a_cancelled_request_is_not_written(store: Store) -> None:
    w = Writer(store, max_events=10, max_delay_ms=0)
    gate = threading.Event()
    w.start()
    try:
        w.submit(lambda con: gate.wait(30))
        cancelled: Future[object] = w.submit_events(EventWrite(batch(ev("x")), "t", NOW))  # type: ignore[assignment]
        assert cancelled.cancel()
        gate.set()
        w.submit(lambda con: None).result(timeout=30)
    finally:
        gate.set()
        w.close()
    assert store.scalar("SELECT count(*) FROM events") == 0


def test_keys_are_hashed_verified_and_revoked(store: Store) -> None:
    con = store.con
    assert not keys.auth_required(con)
    write = keys.create_key(con, "write")
    reader = keys.create_key(con, "user", user_id="u1")
    assert keys.auth_required(con)
    assert write.key.startswith(f"orc_{write.info.key_id}_")
    found = keys.verify_key(con, write.key)
    assert found is not None and found.role == "write" and found.can_write
    assert keys.verify_key(con, reader.key) == reader.info and not reader.info.can_write
    assert keys.verify_key(con, write.key + "x") is None
    revoked = keys.revoke_key(con, write.info.key_id)
    assert revoked.revoked_at is not None
    assert keys.revoke_key(con, write.info.key_id).revoked_at == revoked.revoked_at
    assert keys.verify_key(con, write.key) is None
    assert [k.key_id for k in keys.list_keys(con)] == sorted(
        [write.info.key_id, reader.info.key_id], key=lambda k: k != write.info.key_id)
    with pytest.raises(NotFoundError, match="keys list"):
        keys.revoke_key(con, "missing")
    with pytest.raises(UsageError, match="role"):
        keys.create_key(con, "owner")
    with pytest.raises(UsageError, match="user_id"):
        keys.create_key(con, "user")
    with pytest.raises(UsageError, match="only for role"):
        keys.create_key(con, "admin", user_id="u1")


def test_user_traits_merge_and_keep_the_timezone(store: Store) -> None:
    con = store.con
    users.upsert_users(con, [users.UserTraits("u1", {"a": 1}), users.UserTraits("u1", {"b": 2}, "Asia/Tokyo")])
    users.upsert_users(con, [users.UserTraits("u1", {"a": None, "c": 3})])
    users.upsert_users(con, [users.UserTraits("u2", {})])
    rows = con.execute("SELECT user_id, timezone, traits FROM users ORDER BY 1").fetchall()
    assert [(r[0], r[1], json.loads(r[2])) for r in rows] == [
        ("u1", "Asia/Tokyo", {"b": 2, "c": 3}), ("u2", "UTC", {})]
    assert users.valid_timezone("Europe/Paris") and not users.valid_timezone("Mars/Olympus")


def test_segment_mapping_corrects_clock_skew_and_keeps_context() -> None:
    received = utcnow()
    body = decode_batch_body(json.dumps({
        "sentAt": (received + timedelta(hours=2)).isoformat() + "+00:00",
        "batch": [
            {"type": "track", "userId": 7, "event": "Viewed", "messageId": 11,
             "timestamp": (received + timedelta(hours=2, minutes=-5)).isoformat() + "Z",
             "properties": {"item_id": "i1"}, "context": {"locale": "fr"}},
            {"type": "screen", "anonymousId": "a1", "name": "Cart", "sentAt": received.isoformat() + "Z",
             "originalTimestamp": (received - timedelta(minutes=1)).isoformat() + "Z"},
            {"type": "identify", "userId": "u9", "traits": {"email": "x@y"}, "context": {"timezone": "Asia/Tokyo"}},
            {"type": "track", "userId": "u9", "event": "Viewed", "timestamp": "not a time"},
            {"type": "track", "userId": "u9", "event": "Viewed", "properties": {"item_id": {"nested": 1}}},
            {"type": "group", "userId": "u9", "groupId": "g"},
        ],
    }).encode())
    mapped = map_messages(body, received_at=received, max_event_bytes=32 * 1024)
    rows = mapped.batch.table.to_pylist()
    assert [(r["event_id"], r["user_id"], r["type"], r["item_id"]) for r in rows] == [
        ("11", "7", "Viewed", "i1"), (None, "a1", "screen", None)]
    assert abs(rows[0]["ts"] - (received - timedelta(minutes=5))) < timedelta(seconds=1)
    assert abs(rows[1]["ts"] - (received - timedelta(minutes=1))) < timedelta(seconds=1)
    assert json.loads(rows[0]["properties"])["context"] == {"locale": "fr"}
    assert mapped.users == [users.UserTraits("u9", {"email": "x@y"}, "Asia/Tokyo")]
    assert [(r.index, r.reason.split(" ")[0]) for r in mapped.batch.rejected] == [
        (3, "Invalid"), (4, "Expected"), (5, "type")]
    assert json.loads(mapped.batch.rejected[1].payload)["properties"] == {"item_id": {"nested": 1}}
    single = map_messages(SegmentBody([b'{"userId": "u", "event": "E"}'], forced_type="track"),
                          received_at=received, max_event_bytes=10)
    assert "10-byte limit" in single.batch.rejected[0].reason


def test_writer_redoes_a_plain_insert_that_meets_a_stored_event(store: Store) -> None:
    w = Writer(store, max_events=100_000, max_delay_ms=0)
    w.start()
    try:
        first = w.submit_events(EventWrite(batch(ev("a"), ev("b")), "t", NOW)).result(timeout=30)
        again = w.submit_events(EventWrite(batch(ev("b"), ev("c"), {"bad": 1}), "t", NOW)).result(timeout=30)
        third = w.submit_events(EventWrite(batch(ev("d")), "t", NOW)).result(timeout=30)
    finally:
        w.close()
    assert (first.accepted, again.accepted, again.duplicates, again.rejected, third.accepted) == (2, 1, 1, 1, 1)
    assert w.stats.conflict_retries == 1 and w.stats.failed_commits == 0
    assert store.scalar("SELECT count(*) FROM events") == 4
    assert store.scalar("SELECT count(*) FROM failed_events") == 1


def test_the_writer_merges_catalog_rows_in_queue_order_and_forgets_after_other_writes(store: Store) -> None:
    """Catalog rows merge with their events in queue order, so the latest message wins even when it
    repeats an earlier one (A, B, A: A is stored); a row that repeats what the writer merged last is
    skipped, but not after a job that writes items itself (as /v1/items does); a rollback drops
    only what its own transaction merged."""
    w = Writer(store, max_events=100_000, max_delay_ms=300)
    gate = threading.Event()
    w.start()
    stored = "SELECT item_id, title, price, category, properties FROM items ORDER BY item_id"

    def rows(i: int, *items: dict[str, object]) -> EventWrite:
        return EventWrite(batch(ev(f"m{i}")), "t", NOW, list(items))

    def replace(con: duckdb.DuckDBPyConnection) -> None:
        con.execute("INSERT OR REPLACE INTO items (item_id, title, price, properties, updated_at) "
                    "VALUES ('p1', 'Mug', 9.0, NULL, now())")

    def fail(con: duckdb.DuckDBPyConnection) -> None:
        raise ValueError("boom")

    tea = {"item_id": "p1", "title": "Tea", "price": 2.5}
    try:
        w.submit_events(rows(0, tea)).result(timeout=30)
        blocker = w.submit(lambda con: gate.wait(30))
        queued = [
            w.submit_events(rows(1, {"item_id": "p1", "price": 3.0},
                                 {"item_id": "p2", "title": "Jam", "category": "food", "image_url": "a.png"})),
            w.submit_events(rows(2, tea)),  # the same as merged before, but after a change: wins
        ]
        gate.set()
        blocker.result(timeout=30)
        for future in queued:
            future.result(timeout=30)
        assert store.con.execute(stored).fetchall() == [
            ("p1", "Tea", 2.5, None, None), ("p2", "Jam", None, "food", '{"image_url":"a.png"}')]
        # that group held another job (it may have written items): nothing remembered; now it is,
        # and a row that repeats it has nothing to merge; after another writer of items, it has
        assert w.catalog.merge(store.con, [tea]) == 1
        w.submit_events(rows(9, tea)).result(timeout=30)
        assert w.catalog.merge(store.con, [tea]) == 0
        w.submit(replace).result(timeout=30)
        w.submit_events(rows(3, tea)).result(timeout=30)
        assert store.con.execute(stored).fetchall()[0] == ("p1", "Tea", 2.5, None, None)
        # a transaction that rolls back leaves nothing remembered of it, and what was committed stays
        w.submit_events(rows(4, {"item_id": "p1", "price": 4.0}), fail).exception(timeout=30)
        assert store.scalar("SELECT price FROM items WHERE item_id = 'p1'") == 2.5
        assert w.catalog.merge(store.con, [tea]) == 0
        w.submit_events(rows(5, {"item_id": "p1", "price": 4.0})).result(timeout=30)
        assert store.scalar("SELECT price FROM items WHERE item_id = 'p1'") == 4.0
    finally:
        w.close()
