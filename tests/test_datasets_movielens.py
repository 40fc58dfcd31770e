"""MovieLens loader: exact counts on the real ml-100k, and the two other GroupLens layouts by hand."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from conftest import dataset_path
from orchestrion.datasets import LoadResult, load_dataset
from orchestrion.errors import DatasetNotFoundError
from orchestrion.store import Store

NOW = datetime(2024, 6, 1, 12, 0)


@pytest.fixture(scope="module")
def loaded() -> Iterator[tuple[Store, LoadResult]]:
    with Store.open(":memory:") as store:
        yield store, load_dataset(store, "movielens-100k", dataset_path("movielens-100k"), now=NOW)


def test_ml100k_loads_every_rating_movie_and_user(loaded: tuple[Store, LoadResult]) -> None:
    # Expected figures from the raw files with awk, independently of polars:
    #   awk -F'\t' 'END{print NR}' u.data -> 100000; cut -f1 u.data | sort -u | wc -l -> 943;
    #   wc -l u.item -> 1682; awk -F'\t' '{s+=$3} END{print s}' u.data -> 352986 (sum of ratings).
    store, result = loaded
    assert (result.accepted, result.duplicates, result.rejected) == (100_000, 0, 0)
    assert (result.items, result.users) == (1682, 943)
    assert store.con.execute(
        "SELECT type, domain, count(*), sum(value), min(ts), max(ts) FROM events GROUP BY ALL"
    ).fetchall() == [
        ("rate", "movies", 100_000, 352_986.0, datetime(1997, 9, 20, 3, 5, 10), datetime(1998, 4, 22, 23, 10, 38))
    ]
    assert store.scalar("SELECT count(*) FROM users WHERE timezone = 'UTC'") == 943
    assert store.scalar("SELECT count(*) FROM items WHERE domain = 'movies'") == 1682
    assert store.scalar("SELECT count(*) FROM failed_events") == 0


def test_ml100k_movie_has_latin1_title_genres_and_year(loaded: tuple[Store, LoadResult]) -> None:
    store, _ = loaded
    row = store.con.execute(
        "SELECT title, tags, properties->>'year' FROM items WHERE item_id = 'movielens:1633'"
    ).fetchone()
    assert row == ("Á köldum klaka (Cold Fever) (1994)", ["Comedy", "Drama"], "1994")
    toy_story = store.con.execute("SELECT tags FROM items WHERE item_id = 'movielens:1'").fetchone()
    assert toy_story == (["Animation", "Children's", "Comedy"],)
    rating = store.con.execute(
        "SELECT user_id, item_id, value, ts, received_at FROM events WHERE event_id = 'movielens:196:242:881250949'"
    ).fetchone()
    assert rating == ("movielens:196", "movielens:242", 3.0, datetime(1997, 12, 4, 15, 55, 49), NOW)


def test_loading_ml100k_again_stores_nothing_new(loaded: tuple[Store, LoadResult]) -> None:
    store, _ = loaded
    again = load_dataset(store, "movielens-100k", dataset_path("movielens-100k"), now=NOW)
    assert (again.accepted, again.duplicates) == (0, 100_000)
    assert store.scalar("SELECT count(*) FROM events") == 100_000
    assert store.scalar("SELECT count(*) FROM users") == 943


def test_ratings_dat_layout(store: Store, tmp_path: Path) -> None:
    (tmp_path / "ratings.dat").write_text("1::10::5::978300760\n1::20::3.5::978302109\n2::10::x::978301968\n")
    (tmp_path / "movies.dat").write_bytes(
        "10::GoldenEye: Special (1995)::Action|Adventure\n20::Amélie (2001)::(no genres listed)\n".encode("latin-1")
    )
    result = load_dataset(store, "movielens-100k", tmp_path, now=NOW)
    assert (result.accepted, result.rejected, result.items, result.users) == (2, 1, 2, 1)
    assert store.con.execute("SELECT event_id, value, ts FROM events ORDER BY event_id").fetchall() == [
        ("movielens:1:10:978300760", 5.0, datetime(2000, 12, 31, 22, 12, 40)),
        ("movielens:1:20:978302109", 3.5, datetime(2000, 12, 31, 22, 35, 9)),
    ]
    assert store.con.execute("SELECT item_id, title, tags, properties FROM items ORDER BY 1").fetchall() == [
        ("movielens:10", "GoldenEye: Special (1995)", ["Action", "Adventure"], '{"year":1995}'),
        ("movielens:20", "Amélie (2001)", [], '{"year":2001}'),
    ]
    assert store.con.execute("SELECT source, reason FROM failed_events").fetchall() == [
        ("dataset:movielens-100k", "rating is not a number")
    ]


def test_ratings_csv_layout_given_as_a_file(store: Store, tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n7,1,4.0,964982703\n7,2,0.5,964981247\n8,2,5.0,964982224\n"
    )
    (tmp_path / "movies.csv").write_text(
        'movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n2,"Jumanji, The (1995)",Adventure\n'
    )
    result = load_dataset(store, "movielens-100k", tmp_path / "ratings.csv", now=NOW)
    assert (result.accepted, result.rejected, result.items, result.users) == (3, 0, 2, 2)
    assert store.scalar("SELECT sum(value) FROM events WHERE user_id = 'movielens:7'") == 4.5
    assert store.scalar("SELECT title FROM items WHERE item_id = 'movielens:2'") == "The Jumanji (1995)"
    assert load_dataset(store, "movielens-100k", tmp_path, now=NOW).accepted == 0


def test_a_folder_without_ratings_names_the_download_page(store: Store, tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"https://grouplens\.org/datasets/movielens/100k/"):
        load_dataset(store, "movielens-100k", tmp_path, now=NOW)
