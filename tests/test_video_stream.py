"""A Video-spec stream feeds the watchlist: MovieLens-100k ratings sent by the official RudderStack
SDK as ``Video Content Completed`` with a ``rating`` property, turned into ``rate`` events by a
``[[mappings]]`` table, and the movies' titles and genres (``title``, ``keywords``) into the catalog.

The subset: the ratings of the users whose id is a multiple of 20 (47 users, 3,931 ratings); the
day delivered is the one after the last of them.
"""

from __future__ import annotations

import json
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from rudderstack.analytics import Client as RudderClient

from conftest import dataset_path
from launcher import cli, serve
from orchestrion.datasets.movielens import read
from orchestrion.store import Store

MAPPING = """
[[mappings]]
event = "Video Content Completed"
type = "rate"
item = "properties.asset_id"
value = "properties.rating"
domain = "movies"
"""
ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "ORCHESTRION_SCHEDULER": "0"}


def test_rated_videos_from_the_rudderstack_sdk_make_watchlists(tmp_path: Path) -> None:
    frames = read(dataset_path("movielens-100k"))
    user_number = pl.col("user_id").str.split(":").list.last().cast(pl.Int64)
    ratings = frames.events.filter(user_number % 20 == 0).sort("ts", "event_id")
    movies = {row["item_id"]: row for row in frames.items.iter_rows(named=True)}
    (tmp_path / "orchestrion.toml").write_text(MAPPING)
    key = cli(tmp_path, "keys", "create", "--role", "write", "--source", "tv").stdout.strip().splitlines()[-1]
    errors: list[Any] = []
    with serve(tmp_path) as server:
        client = RudderClient(key, host=server.url, on_error=lambda e, b: errors.append(e), max_retries=0)
        for event_id, user_id, item_id, ts, rating in ratings.select(
            "event_id", "user_id", "item_id", "ts", "value"
        ).iter_rows():
            movie = movies[item_id]
            client.track(user_id, "Video Content Completed",
                         {"asset_id": item_id, "title": movie["title"], "keywords": movie["tags"],
                          "rating": rating, "session_id": event_id},
                         timestamp=ts.replace(tzinfo=UTC), message_id=event_id)
        client.shutdown()
    assert errors == []
    with server.open_store() as store:
        assert store.con.execute("SELECT type, domain, count(*), sum(value) FROM events GROUP BY ALL").fetchall() == [
            ("rate", "movies", 3931, float(ratings.get_column("value").sum()))
        ]
        assert store.scalar("SELECT count(*) FROM items WHERE domain = 'movies' AND tags IS NOT NULL") == (
            ratings.get_column("item_id").n_unique()
        )
        day = (store.scalar("SELECT max(ts) FROM events") + timedelta(days=1)).date()  # type: ignore[operator]
    done = cli(tmp_path, "run", "daily", "--date", day.isoformat(), "--json", env=ENV)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["run"]["status"] == "succeeded"
    with Store.open(tmp_path / "data" / "orchestrion.duckdb") as store:
        lists = store.con.execute(
            "SELECT d.content FROM deliverables d JOIN goals g USING (goal_id) "
            "WHERE g.template = 'watchlist' AND d.status = 'delivered'"
        ).fetchall()
    assert lists, "the stream made no watchlist"
    for (content,) in lists:
        parsed = json.loads(content)
        assert parsed["kind"] == "watchlist" and parsed["items"]
        assert all(item["title"] for item in parsed["items"])  # titles from the events' properties
