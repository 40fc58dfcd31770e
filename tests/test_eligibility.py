"""Who is eligible, in every path (issue 16): only users active in the window before a day get
anything — daily, scheduled per time zone, catch-up, backfill and triggers (the trigger case is in
``test_slate``). Real DuckDB, the shipped Online Retail sample, an injected clock."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from orchestrion.config import Settings
from orchestrion.datasets import load_dataset
from orchestrion.ingest.users import UserTraits, upsert_users
from orchestrion.proposals.day import active_users
from orchestrion.runs.daily import backfill_daily, propose_step, run_daily
from orchestrion.runs.scheduler import RunService, Scheduler, zone_groups
from orchestrion.store import Store
from test_slate import outside_window

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "samples" / "online-retail-sample.csv.gz"
ZONES = ("Europe/London", "America/New_York", "Asia/Tokyo")


def loaded(store: Store) -> date:
    """The sample in three time zones; returns the day after its last event."""
    load_dataset(store, "online-retail", SAMPLE, now=datetime(2011, 12, 10))
    users = [str(r[0]) for r in store.con.execute("SELECT user_id FROM users ORDER BY 1").fetchall()]
    with store.transaction() as con:
        zoned = [UserTraits(u, timezone=ZONES[i % 3]) for i, u in enumerate(users)]
        upsert_users(con, zoned, now=datetime(2011, 12, 10))
    assert len(zone_groups(store.con)) == 3
    last = store.con.execute("SELECT max(ts) FROM events").fetchall()[0][0]
    return (last + timedelta(days=1)).date()


def scheduler(store: Store, settings: Settings, now: datetime) -> Scheduler:
    service = RunService(store, settings, clock=lambda: now, step=propose_step)
    return Scheduler(store, settings, service, clock=lambda: now)


def test_catching_up_years_later_sends_nothing_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(home=tmp_path, catch_up_days=2)
    with Store.open(":memory:") as store:
        loaded(store)
        caplog.set_level(logging.INFO, logger="orchestrion.runs.scheduler")
        done = scheduler(store, settings, datetime(2026, 12, 2, 23, 30)).catch_up()
        # Bounded: at most catch_up_days + 1 days per zone.
        assert 0 < len(done) <= 3 * (settings.catch_up_days + 1)
        assert store.scalar("SELECT count(*) FROM deliverables") == 0
        assert store.scalar("SELECT sum(users_total) FROM runs") == 0
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("catch-up: daily")]
        assert len(lines) == len(done) and all("0 active users, 0 deliverables" in line for line in lines)
        others = [r.getMessage() for r in caplog.records if r.name == "orchestrion.runs.scheduler"]
        assert len(others) == len(lines), "one line per catch-up run, nothing else"


def test_zone_runs_serve_only_the_active_users_of_their_zone(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, catch_up_days=3)
    with Store.open(":memory:") as store:
        after = loaded(store)
        day = after - timedelta(days=20)
        now = datetime.combine(day, datetime.min.time()) + timedelta(hours=23)
        done = scheduler(store, settings, now).catch_up()
        assert done
        made = int(store.scalar("SELECT count(*) FROM deliverables") or 0)
        assert made > 0 and outside_window(store) == 0
        # Every user of a run was active before its day, whichever zone ran them.
        rows = store.con.execute(
            "SELECT r.partition, u.user_id FROM runs r JOIN run_users u USING (run_id)"
        ).fetchall()
        by_day: dict[date, set[str]] = {}
        for partition, user in rows:
            by_day.setdefault(partition, set()).add(str(user))
        for partition, users in by_day.items():
            active = set(active_users(store, datetime.combine(partition, datetime.min.time()), 30))
            assert users <= active
        # And nobody got a deliverable for a day after their last activity window.
        late = store.scalar(
            "SELECT count(*) FROM deliverables d JOIN (SELECT user_id, max(ts) AS last FROM events GROUP BY 1) e "
            "USING (user_id) WHERE CAST(d.date AS TIMESTAMP) > e.last + INTERVAL 30 DAY"
        )
        assert late == 0


def test_backfill_past_the_data_serves_nobody_and_named_idle_users_get_nothing(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    with Store.open(":memory:") as store:
        after = loaded(store)
        start = after + timedelta(days=31)  # everyone's last event is more than 30 days back
        reports = backfill_daily(store, settings, start, start + timedelta(days=1), step=propose_step,
                                 clock=lambda: datetime(2012, 2, 1))
        assert [r.run.users_total for r in reports if r.run] == [0, 0]
        someone = str(store.con.execute("SELECT min(user_id) FROM events").fetchall()[0][0])
        named = run_daily(store, settings, start, users=[someone], step=propose_step,
                          clock=lambda: datetime(2012, 2, 1))
        assert named.run is not None and named.run.users_total == 0
        assert store.scalar("SELECT count(*) FROM deliverables") == 0


def test_the_schedule_lines_name_each_zone_and_the_catch_up_bound(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, catch_up_days=2)
    with Store.open(":memory:") as store:
        loaded(store)
        lines = scheduler(store, settings, datetime(2026, 12, 2)).schedule()
        assert lines[-1].startswith("catch-up: missed daily runs of the last 2 days")
