"""An acknowledged trigger event fires its rule once, whatever the restarts (the watcher's mark
is in the store: ``trigger_marks``).

Real days of the shipped Online Retail sample in a DuckDB file; each :class:`TriggerWatcher` is
what one ``orchestrion serve`` process runs, on a clock the test moves.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from orchestrion.config import Settings, TriggerRule
from orchestrion.runs.triggers import CATCH_UP, TriggerWatcher, handled_until
from orchestrion.store import Store
from test_slate import sample_with_a_regular, stock_low

RULE = TriggerRule(name="stock-low-reorder", event_type="stock_low", template="reorder")


def _carts(store: Store, user: str) -> int:
    return int(
        store.scalar(
            "SELECT count(*) FROM deliverables d JOIN goals g USING (goal_id) WHERE g.policy = "
            "'trigger:stock-low-reorder' AND d.user_id = ? AND d.status <> 'proposed'",
            [user],
        )
        or 0
    )


def test_an_event_acknowledged_before_a_restart_fires_its_rule_after_it(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, triggers=[RULE])
    with Store.open(tmp_path / "o.duckdb") as store:
        user, item, last = sample_with_a_regular(store)
        clock = [last + timedelta(days=2)]

        def now() -> datetime:
            return clock[0]

        first = TriggerWatcher(store, settings, clock=now)  # a server starts: its mark is written
        assert handled_until(store.con) is not None
        assert first.check() == []
        clock[0] += timedelta(seconds=1)
        stock_low(store, "low-1", user, item, clock[0])  # acknowledged; the server dies before it looks
        clock[0] += timedelta(minutes=3)

        second = TriggerWatcher(store, settings, clock=now)  # the next start looks from the mark
        fired = second.check()
        assert [(f.events, f.goals) for f in fired] == [(1, 1)]
        assert _carts(store, user) == 1
        mark = handled_until(store.con)
        assert mark is not None and mark >= clock[0]

        clock[0] += timedelta(seconds=2)
        third = TriggerWatcher(store, settings, clock=now)  # and a restart after it fired fires nothing more
        assert sum(f.goals for f in third.check()) == 0
        assert _carts(store, user) == 1


def test_a_restart_looks_back_at_most_a_day_and_a_new_store_fires_nothing_loaded_before(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, triggers=[RULE])
    with Store.open(tmp_path / "o.duckdb") as store:
        user, item, last = sample_with_a_regular(store)
        start = last + timedelta(days=2)
        stock_low(store, "low-before", user, item, start - timedelta(minutes=1))  # loaded before any server ran
        assert TriggerWatcher(store, settings, clock=lambda: start).check() == []
        later = start + CATCH_UP + timedelta(hours=1)
        stock_low(store, "low-stale", user, item, start + timedelta(minutes=1))  # then a server down for a day
        assert TriggerWatcher(store, settings, clock=lambda: later).check() == []
        assert _carts(store, user) == 0
