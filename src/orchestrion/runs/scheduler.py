"""Runs inside ``orchestrion serve``: pipeline runs in background threads, and the schedules.

:class:`RunService` runs a pipeline in a background thread of the server (which holds the only
write handle on the database): it claims the run in the ledger first, so a second request for a
running key is refused at once, then works on its own cursor. ``POST /v1/runs`` and the
schedules both go through it.

:class:`Scheduler` is an APScheduler 3.x ``BackgroundScheduler`` with three kinds of jobs:

* ``daily:<zone>`` — the daily run for the users of one time zone, at ``delivery_time`` in
  that zone (users are grouped by ``users.timezone``; everyone is in UTC until an identify says
  otherwise). With one zone the run covers the whole day (shard ``''``), with several each zone
  is its own shard ``tz-<zone>``;
* ``retrain`` — the nightly retrain at ``retrain_time`` UTC;
* ``sweep`` — every ``trigger_sweep_s``: due ``notify`` actions (when the orchestrator provides
  ``deliverables.run_due_actions``) and a catch-up check.

Every job has an explicit ``misfire_grace_time``, ``coalesce=True`` and ``max_instances=1``. The
scheduler keeps no job store: on start-up, the runs missed while the server was down are found
from the **run ledger** (:func:`missed_daily_runs`: each zone's delivery time on each of the last
``catch_up_days`` days that has passed without a succeeded run) and run, oldest first.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from typing import Any, Literal
from zoneinfo import ZoneInfo

from orchestrion.config import Settings
from orchestrion.errors import RunInProgressError, UsageError
from orchestrion.runs.daily import DailyReport, Step, run_daily, users_shard
from orchestrion.runs.records import Run, RunKey, claim_run, latest_run, recover_dead_runs
from orchestrion.runs.retrain import run_retrain
from orchestrion.store import Store, utcnow

__all__ = ["RunRequest", "RunService", "Scheduler", "ZoneGroup", "missed_daily_runs", "zone_groups"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRequest:
    """What to run: a pipeline, its day, and for ``daily`` optional users or a shard."""

    pipeline: Literal["daily", "retrain"]
    day: date
    users: list[str] | None = None
    shard: str | None = None
    force: bool = False
    trigger: str = "api"


@dataclass(frozen=True)
class ZoneGroup:
    """The users of one time zone and the run key shard they are scheduled under."""

    zone: str
    users: list[str] | None  # None: every active user (a single zone)
    shard: str


def zone_groups(con: Any) -> list[ZoneGroup]:
    """Time-zone groups of the known users: one group (every user, shard '') when there is one zone."""
    rows = con.execute("SELECT timezone, list(user_id ORDER BY user_id) FROM users GROUP BY 1 ORDER BY 1").fetchall()
    zones = {str(r[0]): list(r[1]) for r in rows}
    if len(zones) <= 1:
        return [ZoneGroup(next(iter(zones), "UTC"), None, "")]
    return [ZoneGroup(zone, users, f"tz-{zone.replace('/', '_')}") for zone, users in zones.items()]


def _hhmm(text: str) -> clock_time:
    hours, minutes = text.split(":")
    return clock_time(int(hours), int(minutes))


def local_day(zone: str, now: datetime) -> date:
    """The date in ``zone`` at the naive-UTC instant ``now``."""
    return now.replace(tzinfo=ZoneInfo("UTC")).astimezone(ZoneInfo(zone)).date()


def due_at(zone: str, day: date, at: str) -> datetime:
    """The naive-UTC instant of ``at`` (HH:MM) on ``day`` in ``zone``."""
    local = datetime.combine(day, _hhmm(at), tzinfo=ZoneInfo(zone))
    return local.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)


def missed_daily_runs(con: Any, settings: Settings, now: datetime) -> list[tuple[ZoneGroup, date]]:
    """Each (zone group, day) whose delivery time passed in the last ``catch_up_days`` days (and
    today) without a succeeded run in the ledger, oldest first."""
    missed = []
    for group in zone_groups(con):
        today = local_day(group.zone, now)
        for back in range(settings.catch_up_days, -1, -1):
            day = today - timedelta(days=back)
            if due_at(group.zone, day, settings.delivery_time) > now:
                continue
            latest = latest_run(con, RunKey("daily", day, group.shard))
            if latest is None or latest.status != "succeeded":
                missed.append((group, day))
    return sorted(missed, key=lambda m: (m[1], m[0].zone))


class RunService:
    """Pipeline runs in background threads of the process that holds the store."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
        step: Step | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._step = step
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def _cursor_store(self) -> Store:
        return Store(self._store.cursor(), None)  # path None: closing it must not touch the announcement

    def submit(self, request: RunRequest, *, wait: bool = False) -> Run:
        """Claim the run now (raising RunInProgressError when it is running) and do it in a thread.

        Returns the claimed run; a key already done comes back as it is, with nothing started.
        """
        if self._stopping.is_set():
            raise RunInProgressError("the server is stopping; submit the run again after it restarts")
        store = self._cursor_store()
        try:
            key = RunKey(request.pipeline, request.day, request.shard or "")
            if request.pipeline == "daily" and request.users is not None and request.shard is None:
                if not request.users:
                    raise UsageError("users was given without any user id; name at least one or leave it out")
                key = RunKey("daily", request.day, users_shard(request.users))
            params = {"users": request.users, "batch_size": self._settings.delivery_batch_users}
            claim = claim_run(store, key, now=self._clock(), force=request.force, trigger=request.trigger,
                              params=params)
        except BaseException:
            store.con.close()
            raise
        if claim.state == "done":
            store.con.close()
            return claim.run
        thread = threading.Thread(
            target=self._work, args=(store, request, key, claim), name=f"run-{claim.run.run_id}", daemon=True
        )
        with self._lock:
            self._threads[claim.run.run_id] = thread
        thread.start()
        if wait:
            thread.join()
        return claim.run

    def _work(self, store: Store, request: RunRequest, key: RunKey, claim: Any) -> None:
        try:
            if request.pipeline == "daily":
                report: DailyReport = run_daily(
                    store, self._settings, request.day, clock=self._clock, users=request.users, shard=key.shard,
                    trigger=request.trigger, step=self._step, stop=self._stopping.is_set, claimed=claim,
                )
                if request.trigger != "catch-up":  # catch-up logs its own one line per run
                    log.info("daily %s: %s", request.day, report.run.status if report.run else report.state)
            else:
                run_retrain(store, self._settings, request.day, clock=self._clock, claimed=claim)
        except Exception:
            log.exception("run %s failed", claim.run.run_id)
        finally:
            store.con.close()
            with self._lock:
                self._threads.pop(claim.run.run_id, None)

    def running(self) -> list[str]:
        with self._lock:
            return sorted(self._threads)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the runs in flight (tests, and shutdown)."""
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Ask daily runs to stop after their current batch (they resume next time) and wait."""
        self._stopping.set()
        self.wait(timeout)


class Scheduler:
    """The schedules of one server (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        service: RunService,
        *,
        clock: Callable[[], datetime] = utcnow,
        sweep: Callable[[datetime], object] | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._service = service
        self._clock = clock
        self._sweep = sweep
        self._scheduler: Any = None
        self._zones: list[ZoneGroup] = []

    def _read(self, work: Callable[[Any], Any]) -> Any:
        cursor = self._store.cursor()
        try:
            return work(cursor)
        finally:
            cursor.close()

    def start(self) -> None:
        """Recover dead runs, catch up what was missed, then schedule the jobs."""
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        recovered = recover_dead_runs(Store(self._store.cursor(), None), now=self._clock())
        if recovered:
            log.warning("runs interrupted by a stopped process: %s (they resume when run again)", recovered)
        grace = self._settings.schedule_misfire_grace_s
        options = {"misfire_grace_time": grace, "coalesce": True, "max_instances": 1, "replace_existing": True}
        scheduler = BackgroundScheduler(timezone="UTC", job_defaults=options)
        self._zones = self._read(zone_groups)
        at = _hhmm(self._settings.delivery_time)
        for group in self._zones:
            scheduler.add_job(
                self._daily, CronTrigger(hour=at.hour, minute=at.minute, timezone=ZoneInfo(group.zone)),
                args=[group], id=f"daily:{group.zone}", name=f"daily run for {group.zone}", **options,
            )
        nightly = _hhmm(self._settings.retrain_time)
        scheduler.add_job(
            self._retrain, CronTrigger(hour=nightly.hour, minute=nightly.minute, timezone=ZoneInfo("UTC")),
            id="retrain", name="nightly retrain", **options,
        )
        scheduler.add_job(
            self._tick, IntervalTrigger(seconds=self._settings.trigger_sweep_s), id="sweep",
            name="due actions and catch-up", **options,
        )
        scheduler.start()
        self._scheduler = scheduler
        threading.Thread(target=self.catch_up, name="catch-up", daemon=True).start()

    def jobs(self) -> list[dict[str, Any]]:
        """The scheduled jobs and their next run times (UTC)."""
        if self._scheduler is None:
            return []
        return [{"id": j.id, "name": j.name, "next_run": j.next_run_time.isoformat() if j.next_run_time else None}
                for j in self._scheduler.get_jobs()]

    def catch_up(self) -> list[str]:
        """Run, one after another, the daily runs the ledger says were missed; returns their ids.

        Bounded by ``catch_up_days``; each run logs one line (what it was, what it made). Like every
        daily run it serves only users active in the window before its day, so a store whose
        events stopped long ago gets no deliverables from catching up.
        """
        done = []
        missed = self._read(lambda con: missed_daily_runs(con, self._settings, self._clock()))
        if not missed:
            log.info("catch-up: no daily run missed in the last %d days", self._settings.catch_up_days)
        for group, day in missed:
            try:
                run = self._service.submit(
                    RunRequest("daily", day, users=group.users, shard=group.shard, trigger="catch-up"), wait=True
                )
            except RunInProgressError as exc:
                log.info("catch-up: daily %s (%s) skipped: %s", day, group.zone, exc)
                continue
            key = RunKey("daily", day, group.shard)
            final: Run = self._read(lambda con: latest_run(con, key)) or run  # noqa: B023 (read at once)
            log.info(
                "catch-up: daily %s (%s): %s, %d active users, %d deliverables",
                day, group.zone, final.status, final.users_total, int(final.counts.get("deliverables", 0) or 0),
            )
            done.append(run.run_id)
        return done

    def schedule(self) -> list[str]:
        """One line per scheduled job, for ``serve`` to print at start."""
        lines = [f"{job['name']}: next {job['next_run'] or 'not scheduled'}" for job in self.jobs()]
        lines.append(
            f"catch-up: missed daily runs of the last {self._settings.catch_up_days} days, for users active in the "
            "window before each day"
        )
        return lines

    def _daily(self, group: ZoneGroup) -> None:
        day = local_day(group.zone, self._clock())
        try:
            self._service.submit(RunRequest("daily", day, users=group.users, shard=group.shard, trigger="schedule"),
                                 wait=True)
        except RunInProgressError as exc:
            log.info("scheduled daily run skipped: %s", exc)

    def _retrain(self) -> None:
        try:
            self._service.submit(RunRequest("retrain", self._clock().date(), trigger="schedule"), wait=True)
        except RunInProgressError as exc:
            log.info("nightly retrain skipped: %s", exc)

    def _tick(self) -> None:
        if self._sweep is not None:
            try:
                self._sweep(self._clock())
            except Exception:
                log.exception("sweep failed")
        if self._read(zone_groups) != self._zones:  # a new time zone appeared: schedule it
            self.stop()
            self.start()

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
