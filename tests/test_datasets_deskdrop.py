"""DeskDrop loader: exact counts on the real files, double-logged views, 64-bit ids kept exact."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from conftest import dataset_path
from orchestrion.datasets import LoadResult, load_dataset
from orchestrion.store import Store

NOW = datetime(2024, 6, 1, 12, 0)


@pytest.fixture(scope="module")
def loaded() -> Iterator[tuple[Store, LoadResult]]:
    with Store.open(":memory:") as store:
        yield store, load_dataset(store, "deskdrop", dataset_path("deskdrop"), now=NOW)


def test_one_event_per_distinct_interaction(loaded: tuple[Store, LoadResult]) -> None:
    # Expected figures from the raw files with Python's csv module, independently of polars:
    #   72312 rows; 70028 distinct (personId, contentId, eventType, timestamp, sessionId), i.e. 2284
    #   repeats, all VIEW (61086 - 2284 = 58802); 1895 distinct personId; articles.csv: 213 rows.
    store, result = loaded
    assert (result.accepted, result.duplicates, result.rejected) == (70_028, 2284, 0)
    assert (result.items, result.users) == (213, 1895)
    assert dict(store.con.execute("SELECT type, count(*) FROM events WHERE domain = 'news' GROUP BY 1").fetchall()) == {
        "view": 58_802,
        "like": 5745,
        "bookmark": 2463,
        "comment": 1611,
        "follow": 1407,
    }
    assert store.scalar("SELECT count(*) FROM users") == 1895
    assert store.scalar("SELECT count(*) FROM failed_events") == 0
    assert store.con.execute(
        "SELECT properties->>'language', count(*) FROM items WHERE domain = 'news' GROUP BY 1 ORDER BY 1"
    ).fetchall() == [("en", 122), ("pt", 91)]


def test_ids_are_exact_64_bit_integers_and_the_richer_copy_is_kept(loaded: tuple[Store, LoadResult]) -> None:
    # Lines 10 and 54 of the file are the same view, once without client fields, once with them.
    store, _ = loaded
    row = store.con.execute(
        "SELECT user_id, item_id, ts, properties->>'user_agent', properties->>'country' FROM events "
        "WHERE event_id = 'deskdrop:344280948527967603:310515487419366995:view:1465413762:-3167637573980064150'"
    ).fetchone()
    assert row is not None
    assert row[:3] == ("deskdrop:344280948527967603", "deskdrop:310515487419366995", datetime(2016, 6, 8, 19, 22, 42))
    assert row[3].startswith("Mozilla/5.0 (Windows NT 6.1; WOW64)") and row[4] == "BR"
    # 19-digit ids survive exactly (a float64 would round them to 16 significant digits)
    assert store.scalar("SELECT count(*) FROM users WHERE user_id = 'deskdrop:-8845298781299428018'") == 1
    title = store.scalar("SELECT title FROM items WHERE item_id = 'deskdrop:-4029704725707465084'")
    assert title == "former google career coach shares a visual trick for figuring out what to do with your life"


def test_loading_again_stores_nothing_new(loaded: tuple[Store, LoadResult]) -> None:
    store, _ = loaded
    again = load_dataset(store, "deskdrop", dataset_path("deskdrop"), now=NOW)
    assert (again.accepted, again.duplicates) == (0, 72_312)
    assert store.scalar("SELECT count(*) FROM events") == 70_028


def test_unknown_event_types_are_rejected_with_the_row(store: Store, tmp_path: Path) -> None:
    (tmp_path / "users_interactions.csv").write_text(
        "timestamp,eventType,contentId,personId,sessionId,userAgent,userRegion,userCountry\n"
        "1465413032,VIEW,-3499919498720038879,-8845298781299428018,1264196770339959068,,,\n"
        "1465413033,COMMENT CREATED,-3499919498720038879,9223372036854775807,1,UA,SP,BR\n"
        "1465413034,SHARE,-3499919498720038879,1,1,,,\n"
    )
    (tmp_path / "articles.csv").write_text("contentId,shared_timestamp,url,title,text,lang\n")
    result = load_dataset(store, "deskdrop", tmp_path, now=NOW)
    assert (result.accepted, result.rejected, result.items, result.users) == (2, 1, 0, 2)
    assert store.con.execute("SELECT user_id, type FROM events ORDER BY ts").fetchall() == [
        ("deskdrop:-8845298781299428018", "view"),
        ("deskdrop:9223372036854775807", "comment"),
    ]
    assert store.scalar("SELECT payload->>'eventType' FROM failed_events") == "SHARE"
