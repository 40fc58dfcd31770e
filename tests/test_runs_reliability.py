"""Reliability of pipeline runs with real processes: kill -9 and resume, two runs of one key at
once, a server down across its scheduled time, an interrupted backfill, and a trigger over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from launcher import CLI, cli, start_server
from orchestrion.config import load_settings
from orchestrion.runs.scheduler import missed_daily_runs
from orchestrion.store import Store

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "samples" / "online-retail-sample.csv.gz"
ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "ORCHESTRION_SCHEDULER": "0"}


def loaded_home(path: Path) -> Path:
    path.mkdir(parents=True)
    done = cli(path, "datasets", "load", "online-retail", "--path", str(SAMPLE), env=ENV)
    assert done.returncode == 0, done.stderr
    return path


def start(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    full = {**os.environ, **ENV, "ORCHESTRION_HOME": str(home), **(env or {})}
    return subprocess.Popen([*CLI, *args], env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(check: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def day_sets(home: Path) -> dict[str, list[tuple[object, ...]]]:
    """What the days produced, without timestamps: it must not depend on how the runs were cut."""
    with Store.open(home / "data" / "orchestrion.duckdb") as store:
        return {
            # The content names outbox files (without the home folder); an effect whose process was
            # killed between doing it and recording it is found done on resume ("reconciled"), not redone.
            "deliverables": store.con.execute(
                "SELECT g.goal_id, g.user_id, g.date, g.status, g.slot, d.deliverable_id, d.status, "
                "regexp_replace(replace(CAST(d.content AS VARCHAR), ?, ''), ',\\s*\"reconciled\":\\s*true', '', 'g') "
                "FROM goals g LEFT JOIN deliverables d USING (goal_id) ORDER BY g.goal_id",
                [str(home)],
            ).fetchall(),
            "effects": store.con.execute(
                "SELECT idempotency_key, action, status FROM side_effects ORDER BY 1"
            ).fetchall(),
            "pending": store.con.execute("SELECT action_id, tier, status FROM pending_actions ORDER BY 1").fetchall(),
            "outbox": sorted(str(p.relative_to(home)) for p in (home / "data" / "outbox").rglob("*") if p.is_file()),
        }


def kill_when_working(
    proc: subprocess.Popen[str], home: Path, after: float = 1.0, *, day: str | None = None
) -> None:
    """kill -9 once the run is carrying out effects (its outbox exists), ``after`` seconds later;
    with ``day``, as soon as that day's first outbox files appear (its first batch, mid-day)."""
    outbox = home / "data" / "outbox"
    if day is None:
        wait_for(lambda: outbox.exists() or proc.poll() is not None)
        time.sleep(after)
    else:
        wait_for(lambda: (outbox / str(day)).exists() or proc.poll() is not None)
    assert proc.poll() is None, "the run finished before it could be killed; give it more users or smaller batches"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()


def test_kill_9_in_a_daily_run_then_resume_delivers_each_day_once(tmp_path: Path) -> None:
    slow = {"ORCHESTRION_DELIVERY_BATCH_USERS": "2"}
    killed = loaded_home(tmp_path / "killed")
    proc = start(killed, "run", "daily", "--date", "2011-11-01", "--json", env=slow)
    kill_when_working(proc, killed)
    resumed = cli(killed, "run", "daily", "--date", "2011-11-01", "--json", env={**ENV, **slow})
    assert resumed.returncode == 0, resumed.stderr
    outcome = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert outcome["state"] == "resumed" and outcome["run"]["run_id"] == "daily-2011-11-01-a1"
    assert 0 < outcome["users"] < outcome["run"]["users_total"] == outcome["run"]["users_done"]

    whole = loaded_home(tmp_path / "whole")
    uncut = cli(whole, "run", "daily", "--date", "2011-11-01", "--json", env={**ENV, **slow})
    assert uncut.returncode == 0, uncut.stderr
    got, want = day_sets(killed), day_sets(whole)
    assert got == want
    # the ledger says what the run made, the killed process's part included
    counted = outcome["run"]["counts"]
    whole_counts = json.loads(uncut.stdout.strip().splitlines()[-1])["run"]["counts"]
    for name in ("goals", "deliverables", "effects", "pending_actions"):
        assert counted[name] == whole_counts[name], (name, counted, whole_counts)
    assert want["effects"] and all(row[2] == "completed" for row in got["effects"])
    per_user = {}
    for row in got["deliverables"]:
        if row[5] is not None:
            per_user[row[1]] = per_user.get(row[1], 0) + 1
    assert per_user and max(per_user.values()) <= 3


def test_two_daily_runs_of_one_date_at_once_one_runs_the_other_says_so(tmp_path: Path) -> None:
    home = loaded_home(tmp_path / "home")
    first = start(home, "run", "daily", "--date", "2011-11-01", "--json", env={"ORCHESTRION_DELIVERY_BATCH_USERS": "1"})
    lock = home / "data" / "orchestrion.duckdb.locks" / "daily_2011-11-01.lock"
    wait_for(lambda: lock.exists() and lock.read_text().strip() == str(first.pid))
    second = cli(home, "run", "daily", "--date", "2011-11-01", env=ENV)
    assert second.returncode == 2
    assert "already running" in second.stderr and str(first.pid) in second.stderr
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["run"]["status"] == "succeeded"


def test_an_interrupted_7_day_backfill_resumed_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    env = {"ORCHESTRION_DELIVERY_BATCH_USERS": "10"}
    args = ("backfill", "daily", "--from", "2011-11-01", "--to", "2011-11-07", "--json")
    cut = loaded_home(tmp_path / "cut")
    proc = start(cut, *args, env=env)
    kill_when_working(proc, cut, day="2011-11-02")  # ~50 users a day in batches of 10: mid-day
    again = cli(cut, *args, env={**ENV, **env})
    assert again.returncode == 0, again.stderr
    runs = json.loads(again.stdout.strip().splitlines()[-1])
    assert [r["status"] for r in runs] == ["succeeded"] * 7
    assert any(r["resumes"] == 1 for r in runs)  # one day was cut in the middle and resumed

    whole = loaded_home(tmp_path / "whole")
    assert cli(whole, *args, env={**ENV, **env}).returncode == 0
    assert day_sets(cut) == day_sets(whole)


def _admin_runs(url: str) -> list[dict[str, object]]:
    answer: list[dict[str, object]] = httpx.get(url + "/v1/runs", timeout=10).json()
    return answer


def test_a_server_down_across_the_delivery_time_runs_the_day_on_restart(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    # Delivery at 00:00 UTC has passed today and yesterday whatever the hour the test runs at; the
    # day is read before and after, so a run across midnight still knows which two days are due.
    (home / "orchestrion.toml").write_text('delivery_time = "00:00"\ncatch_up_days = 1\n')
    before = datetime.now(UTC).date()
    server = start_server(home)
    try:
        wait_for(lambda: sum(r["status"] == "succeeded" for r in _admin_runs(server.url)) >= 2, timeout=60)
        runs = _admin_runs(server.url)
    finally:
        server.stop()
    after = datetime.now(UTC).date()
    partitions = sorted(str(r["partition"]) for r in runs)
    assert partitions in ([(d - timedelta(days=1)).isoformat(), d.isoformat()] for d in {before, after})
    assert {r["trigger"] for r in runs} == {"catch-up"}
    # The ledger, not the scheduler's memory, says both days are done: a restarted server (here its
    # catch-up rule, on the stored ledger, at the same clock) finds nothing missed.
    last = date.fromisoformat(partitions[-1])
    settings = load_settings({"ORCHESTRION_HOME": str(home)})
    with Store.open(home / "data" / "orchestrion.duckdb") as store:
        for now in (datetime.combine(last, datetime.min.time()), datetime.combine(last, datetime.max.time())):
            assert missed_daily_runs(store.con, settings, now) == []


def test_a_stock_low_event_proposes_a_reorder_without_waiting_for_a_run(tmp_path: Path) -> None:
    home = loaded_home(tmp_path / "home")
    with Store.open(home / "data" / "orchestrion.duckdb") as store:
        user, item = store.con.execute(
            "SELECT user_id, item_id FROM events WHERE type = 'purchase' AND regexp_matches(item_id, ':[0-9]{5}$') "
            "GROUP BY 1, 2 ORDER BY count(*) DESC, 1, 2 LIMIT 1"
        ).fetchall()[0]
    server = start_server(home)
    try:
        # The customer is around today (a page view: a trigger's own event does not make anyone active).
        seen = {"event_id": "seen-1", "user_id": user, "type": "view", "item_id": item, "domain": "retail"}
        event = {"event_id": "low-1", "user_id": user, "type": "stock_low", "item_id": item, "domain": "retail",
                 "properties": {"level": 1}}
        days = {datetime.now(UTC).date()}
        receipt = httpx.post(server.url + "/v1/events", json=[seen, event], timeout=10)
        days.add(datetime.now(UTC).date())
        assert receipt.status_code == 200 and receipt.json()["accepted"] == 2

        def delivered() -> bool:  # the trigger's deliverable is in the user's feed (no daily run was asked)
            return any(
                httpx.get(f"{server.url}/v1/users/{user}/feed", params={"date": d.isoformat()}, timeout=10)
                .json()["deliverables"] for d in days
            )

        wait_for(delivered, timeout=60)
        # serve says what its catch-up did, one line a run, on its own output (not only to a logger)
        wait_for(lambda: "catch-up: daily " in (home / "server.log").read_text(), timeout=60)
    finally:
        server.stop()
    with Store.open(home / "data" / "orchestrion.duckdb") as store:
        rows = store.con.execute(
            "SELECT g.template, g.items, d.status FROM goals g JOIN deliverables d USING (goal_id) "
            "WHERE g.policy = 'trigger:stock-low-reorder' AND g.user_id = ?",
            [user],
        ).fetchall()
    assert len(rows) == 1
    template, items, status = rows[0]
    assert template == "reorder" and item in items and status != "proposed"


@pytest.mark.parametrize("args", [("run", "--help"), ("backfill", "daily", "--help"), ("runs", "list", "--help")])
def test_run_commands_have_help(tmp_path: Path, args: tuple[str, ...]) -> None:
    done = cli(tmp_path, *args)
    assert done.returncode == 0 and "Traceback" not in done.stderr
    shown = " ".join(done.stdout.split())
    assert f"Usage: orchestrion {' '.join(args[:-1])}" in shown
    assert {"run": "Run a pipeline", "backfill": "--from", "runs": "--limit"}[args[0]] in shown


def test_six_requests_for_one_day_at_once_start_one_run_and_no_server_error(tmp_path: Path) -> None:
    """Six clients ask the server for the same day at the same moment (``force``, so none is "done
    already"): one starts it (202), the others are told it is running (409) or finished (200);
    never a 500 from two claims racing to write the run ledger, and the day runs once."""
    from concurrent.futures import ThreadPoolExecutor

    home = loaded_home(tmp_path / "home")
    server = start_server(home)
    try:
        body = {"pipeline": "daily", "date": "2011-11-02", "force": True}
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda _: httpx.post(server.url + "/v1/runs", json=body, timeout=60), range(6)))
        codes = sorted(a.status_code for a in answers)
        assert all(c in (200, 202, 409) for c in codes), [(a.status_code, a.text[:200]) for a in answers]
        assert 202 in codes
        for answer in answers:
            if answer.status_code == 409:
                assert "running" in answer.json()["detail"] or "claimed" in answer.json()["detail"]
        wait_for(lambda: all(r["status"] != "running" for r in _admin_runs(server.url)), timeout=120)
        runs = [r for r in _admin_runs(server.url) if r["partition"] == "2011-11-02"]
    finally:
        server.stop()
    assert [r["status"] for r in runs].count("succeeded") == codes.count(202)
    with Store.open(home / "data" / "orchestrion.duckdb") as store:
        twice = store.scalar("SELECT count(*) FROM (SELECT goal_id FROM deliverables GROUP BY 1 HAVING count(*) > 1)")
    assert twice == 0
