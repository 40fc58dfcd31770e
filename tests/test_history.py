"""The daily run's store-backed context proposes exactly what a context over all events in memory
does, while reading only the batch's events (and a domain's, only to fit that domain's model), with
each next batch's reads started ahead as the daily run does.

Tiny hand-made data covers every template; the real Online Retail day checks the same on the
dataset the daily benchmark runs, batch by batch, and that a day's run writes no table.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import polars as pl

from conftest import dataset_path
from orchestrion.datasets import load_dataset
from orchestrion.goals import GoalContext, propose_candidates
from orchestrion.proposals.day import active_users, build_context, day_context, day_start, read_exclusions
from orchestrion.proposals.history import StoreHistory
from orchestrion.store import Store
from test_goals_contract import load_tiny


def _all_events(store: Store) -> pl.DataFrame:
    frame: pl.DataFrame = store.con.sql("SELECT user_id, item_id, type, domain, ts, value FROM events").pl()
    return frame


def _candidates(ctx: GoalContext) -> pl.DataFrame:
    return propose_candidates(ctx).sort("user_id", "template", "params")


def _tables(store: Store) -> list[str]:
    return sorted(str(r[0]) for r in store.con.execute("SELECT table_name FROM duckdb_tables()").fetchall())


def _same_batches(store: Store, models: Path, day: date, batches: list[list[str]]) -> GoalContext:
    as_of = day_start(day)
    events = _all_events(store)
    expected = [_candidates(build_context(store, as_of, batch, events=events)) for batch in batches]
    before = _tables(store)
    with day_context(store, models, day) as shared:
        assert isinstance(shared.history, StoreHistory) and shared.history.ahead is not None
        for number, (batch, wanted) in enumerate(zip(batches, expected, strict=True)):
            if number + 1 < len(batches):  # as the daily run does: the next batch is read meanwhile
                shared.prefetch(batches[number + 1])
            mine = shared.for_users(batch, exclusions=read_exclusions(store, batch))
            got = _candidates(mine)
            assert got.height > 0
            assert got.equals(wanted), f"batch {batch[:3]}…: the store-backed context proposed something else"
            assert set(mine.batch_events().get_column("user_id").unique().to_list()) <= set(batch)
        assert shared.history.ahead.waiting == 0, "a batch read was started ahead and never used"
    assert _tables(store) == before, "the store-backed context wrote a table"
    return shared


def test_tiny_data_every_template_in_two_batches(store: Store, tmp_path: Path) -> None:
    tiny = load_tiny(store)
    users = sorted({str(r[0]) for r in tiny.con.execute("SELECT DISTINCT user_id FROM events").fetchall()})
    _same_batches(tiny, tmp_path, date(2024, 3, 1), [users[: len(users) // 2], users[len(users) // 2 :]])


def test_online_retail_day_in_batches_never_reads_the_whole_history(tmp_path: Path) -> None:
    with Store.open(tmp_path / "o.duckdb") as store:
        load_dataset(store, "online-retail", dataset_path("online-retail"), now=datetime(2024, 1, 1))
        day = date(2011, 11, 1)
        users = active_users(store, day_start(day), 30)
        assert len(users) > 1000
        shared = _same_batches(store, tmp_path / "models", day, [users[:400], users[400:900]])
        assert ("events", "retail") not in shared._cache, "a batch read every user's retail events"
