from __future__ import annotations

import gzip
import json
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from orchestrion.errors import IngestError
from orchestrion.ingest.bulk import file_format, ingest_event_files, ingest_item_files
from orchestrion.store import Store

NOW = datetime(2024, 6, 1, 12, 0, 0)


def clock() -> datetime:
    return NOW


def rows(store: Store, sql: str) -> list[tuple[object, ...]]:
    return store.con.execute(sql).fetchall()


def test_parquet_events_are_stored_and_a_rerun_stores_nothing(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    pl.DataFrame(
        {
            "event_id": ["e1", "e2", "e3", "e3"],
            "user_id": ["u1", "u1", "u2", "u2"],
            "type": ["play", "play", "purchase", "purchase"],
            "item_id": ["a", "b", "c", "c"],
            "ts": [datetime(2024, 5, 1, 10), datetime(2024, 5, 2), datetime(2024, 5, 3), datetime(2024, 5, 3)],
            "value": [1.0, 2.0, 3.0, 3.0],
        }
    ).write_parquet(path)
    first = ingest_event_files(store, [path], now=clock, chunk_rows=2)
    assert (first.rows, first.accepted, first.duplicates, first.rejected) == (4, 3, 1, 0)
    second = ingest_event_files(store, [path], now=clock)
    assert (second.accepted, second.duplicates) == (0, 4)
    assert rows(store, "SELECT event_id, user_id, ts, value, received_at FROM events ORDER BY 1")[0] == (
        "e1", "u1", datetime(2024, 5, 1, 10), 1.0, NOW
    )


def test_csv_gz_bad_rows_go_to_failed_events_with_reasons(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "events.csv.gz"
    lines = [
        "event_id,user_id,type,item_id,ts,value,store",
        "e1,0012,purchase,sku-1,2024-05-01T10:00:00+02:00,2,leeds",
        "e2,,purchase,sku-1,2024-05-01 10:00:00,2,york",
        "e3,u3,purchase,sku-2,yesterday,1,york",
        "e4,u4,purchase,sku-2,2024-05-01,lots,york",
        "e5,u5,purchase,sku-2,1714557600,1,york",
    ]
    path.write_bytes(gzip.compress("\n".join(lines).encode()))
    result = ingest_event_files(store, [path], now=clock)
    assert (result.accepted, result.rejected) == (2, 3)
    stored = rows(store, "SELECT user_id, ts, properties::VARCHAR FROM events ORDER BY event_id")
    # ids keep leading zeros (CSV cells stay strings); offsets become UTC; extra columns -> properties
    assert stored[0] == ("0012", datetime(2024, 5, 1, 8), '{"store":"leeds"}')
    assert stored[1][1] == datetime(2024, 5, 1, 10)
    reasons = dict(rows(store, "SELECT event_id, reason FROM failed_events"))
    assert reasons["e2"] == "user_id is required"
    assert reasons["e3"].startswith("ts is not a timestamp")
    assert reasons["e4"] == "value is not a number"
    payload = json.loads(str(store.scalar("SELECT payload FROM failed_events WHERE event_id = 'e4'")))
    assert payload["value"] == "lots"


def test_ndjson_follows_the_http_rules(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    path.write_text(
        '{"event_id":"n1","user_id":"u1","type":"view","ts":"2024-05-01T00:00:00Z"}\n'
        "\n"
        '{"event_id":"n2","user_id":"u1","type":"view","colour":"red"}\n'
        "{not json\n"
    )
    result = ingest_event_files(store, [path], now=clock)
    assert (result.rows, result.accepted, result.rejected) == (3, 1, 2)
    reasons = [r[0] for r in rows(store, "SELECT reason FROM failed_events ORDER BY failed_id")]
    assert "unknown field 'colour'" in reasons[0]


def test_a_file_without_user_id_is_refused_whole(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("customer,type\n1,play\n")
    with pytest.raises(IngestError, match="no user_id column"):
        ingest_event_files(store, [path], now=clock)
    assert store.scalar("SELECT count(*) FROM events") == 0


def test_items_upsert_by_id(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text("item_id,title,price,tags\ni1,Old,1.5,\"a,b\"\ni1,New,2.5,c\n,Nameless,1,\n")
    result = ingest_item_files(store, [path], now=clock)
    assert (result.accepted, result.rejected) == (1, 1)
    assert rows(store, "SELECT title, price, tags FROM items") == [("New", 2.5, ["c"])]
    assert store.scalar("SELECT reason FROM failed_events") == "item_id is required"


def test_unknown_extension_says_what_is_accepted(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match=r"\.parquet, \.csv"):
        file_format(tmp_path / "events.xlsx")
