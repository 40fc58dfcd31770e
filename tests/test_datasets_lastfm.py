"""Last.fm HetRec loader: exact counts on the real files, fixed play timestamp, old tag dates kept."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest

from conftest import dataset_path
from orchestrion.datasets import LoadResult, load_dataset
from orchestrion.datasets.lastfm import PLAYS_TS
from orchestrion.store import Store

NOW = datetime(2024, 6, 1, 12, 0)


@pytest.fixture(scope="module")
def loaded() -> Iterator[tuple[Store, LoadResult]]:
    with Store.open(":memory:") as store:
        yield store, load_dataset(store, "lastfm-hetrec-2k", dataset_path("lastfm-hetrec-2k"), now=NOW)


def test_every_play_count_and_tag_assignment_is_an_event(loaded: tuple[Store, LoadResult]) -> None:
    # Expected figures from the raw files with awk (header skipped), independently of polars:
    #   user_artists.dat: 92834 rows, sum of weight 69183975; user_taggedartists.dat: 186479 rows;
    #   users in either file: 1892; artists.dat: 17632 rows.
    store, result = loaded
    assert (result.accepted, result.duplicates, result.rejected) == (92_834 + 186_479, 0, 0)
    assert (result.items, result.users) == (17_632, 1892)
    by_type = store.con.execute(
        "SELECT type, count(*), sum(value), count(DISTINCT user_id) FROM events "
        "WHERE domain = 'music' GROUP BY type ORDER BY type"
    ).fetchall()
    assert by_type == [("play", 92_834, 69_183_975.0, 1892), ("tag", 186_479, None, 1892)]
    assert store.scalar("SELECT count(*) FROM users") == 1892
    assert store.scalar("SELECT count(*) FROM items WHERE domain = 'music'") == 17_632
    assert store.scalar("SELECT count(*) FROM failed_events") == 0


def test_plays_have_the_documented_fixed_timestamp(loaded: tuple[Store, LoadResult]) -> None:
    store, _ = loaded
    assert datetime(2011, 5, 1) == PLAYS_TS
    assert store.con.execute("SELECT DISTINCT ts FROM events WHERE type = 'play'").fetchall() == [(PLAYS_TS,)]
    assert store.con.execute("SELECT value FROM events WHERE event_id = 'lastfm:play:2:51'").fetchall() == [(13_883.0,)]


def test_implausible_tag_dates_are_kept_as_published(loaded: tuple[Store, LoadResult]) -> None:
    # awk -F'\t' 'NR>1 && $6<2000' user_taggedartists.dat | wc -l -> 5 (1956 x3, 1957, 1979).
    store, _ = loaded
    assert store.scalar("SELECT count(*) FROM events WHERE type = 'tag' AND ts < '2000-01-01'") == 5
    assert store.scalar("SELECT min(ts) FROM events WHERE type = 'tag'") == datetime(1956, 6, 1)
    first = store.con.execute(
        "SELECT item_id, ts, properties->>'tag', properties->>'tag_id' FROM events "
        "WHERE event_id = 'lastfm:tag:2:52:13'"
    ).fetchone()
    assert first == ("lastfm:52", datetime(2009, 4, 1), "chillout", "13")


def test_artists_carry_name_url_and_top_tags(loaded: tuple[Store, LoadResult]) -> None:
    store, _ = loaded
    row = store.con.execute(
        "SELECT title, creator, tags[1:3], properties->>'url' FROM items WHERE item_id = 'lastfm:89'"
    ).fetchone()
    assert row == ("Lady Gaga", "Lady Gaga", ["pop", "dance", "electronic"], "http://www.last.fm/music/Lady+Gaga")


def test_loading_again_stores_nothing_new(loaded: tuple[Store, LoadResult]) -> None:
    store, _ = loaded
    again = load_dataset(store, "lastfm-hetrec-2k", dataset_path("lastfm-hetrec-2k"), now=NOW)
    assert (again.accepted, again.duplicates) == (0, 279_313)
    assert store.scalar("SELECT count(*) FROM events") == 279_313
    assert store.scalar("SELECT count(*) FROM users") == 1892
