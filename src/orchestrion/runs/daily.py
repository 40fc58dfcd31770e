"""The daily pipeline: a day's deliverables for every active user, in batches, through the run ledger.

``refresh features → propose → rank → plan → execute → review → deliver``: the day's shared
context (events before D, the catalog, ``purchase_stats``, the promoted models) is built once per
run; then each batch of users goes through the *step* — proposing, ranking and choosing their
goals and, with the orchestrator, planning, executing, reviewing and delivering them. The step is
a parameter (:data:`Step`), so the pipeline does not care which stages exist. While a batch
works, the next batch's event and purchase reads run on a worker thread (``shared.prefetch``).

The run is recorded in the ledger (:mod:`orchestrion.runs.records`) under the key (``daily``, D[, shard]):
its users are fixed in sorted batches of ``settings.delivery_batch_users`` when it starts, each
batch is marked done after the step committed it, and a killed run resumes with the batches
left. Every stage is idempotent per user (goal and deliverable ids hash the user and the day, the
side-effect ledger claims each effect once), so a batch done twice — killed after the step but
before the ledger noted it — changes nothing.

Faults stay with their owner: a deliverable that fails (a receiver down, a file error, a model's
nonsense) is marked ``failed`` by the step and the batch goes on; the run ends ``partial`` with
``counts["failed_deliverables"]`` and says so in its error, and running the day again (or the
scheduler's catch-up) resumes it: the failed deliverables with attempts left are tried again
(``settings.delivery_max_attempts``), and ledger claims left open are reconciled
(:func:`orchestrion.delivery.deliverables.sweep_claims`). Only an exception from the step itself (the
store failing) fails the run. Before its batches, the run cancels its users' orders that waited
longer than ``settings.approval_days`` for an approval (``counts["approvals_expired"]``).

>>> from datetime import datetime, date
>>> from orchestrion.config import Settings
>>> with Store.open(":memory:") as s:
...     report = run_daily(s, Settings(), date(2024, 1, 2), clock=lambda: datetime(2024, 1, 2, 7))
...     (report.state, report.run.status if report.run else None, report.run.users_total if report.run else 0)
('new', 'succeeded', 0)
"""

from __future__ import annotations

import gc
import hashlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal, Protocol

from orchestrion.config import RunPath, Settings
from orchestrion.delivery.deliverables import expire_approvals, sweep_claims
from orchestrion.delivery.stage import day_lock, execute
from orchestrion.errors import UsageError
from orchestrion.goals import GoalContext, GoalTemplate, templates
from orchestrion.goals.reorder import Reorder, ReorderConfig
from orchestrion.planning.llm import Planning, planning_for
from orchestrion.proposals.day import ProposalConfig, active_users, day_context, day_start, propose
from orchestrion.runs.records import (
    Claim,
    Run,
    RunKey,
    claim_run,
    finish_run,
    latest_run,
    list_runs,
    pending_batches,
    plan_users,
    record_batch,
)
from orchestrion.store import Store, utcnow
from orchestrion.tools.policies import Policy, load_policy, order_limits

__all__ = [
    "Clock",
    "DailyReport",
    "Progress",
    "Step",
    "backfill_daily",
    "deliver_step",
    "propose_step",
    "run_daily",
    "runs_to_retry",
    "settle_recovered",
    "templates_for",
    "users_shard",
    "users_templates",
]

Clock = Callable[[], datetime]
Progress = Callable[[int, int], None]
"""``progress(users_done, users_total)``, called after every batch."""


class Step(Protocol):
    """The per-batch work of the daily pipeline; returns counts that the ledger adds up."""

    def __call__(
        self, store: Store, settings: Settings, day: date, users: list[str], *, now: datetime, shared: GoalContext
    ) -> Mapping[str, Any]: ...


def propose_step(
    store: Store, settings: Settings, day: date, users: list[str], *, now: datetime, shared: GoalContext
) -> dict[str, Any]:
    """Propose, rank, choose and record the batch's goals (their deliverables start as ``proposed``)."""
    result = propose(store, settings.models_path, day, users, now=now, shared=shared,
                     templates=users_templates(store, settings, users).values())
    return {"proposed_users": result.users, "goals": result.candidates, "deliverables": result.chosen}


def templates_for(
    policy: Policy, names: Sequence[str] | None = None, *, limits: Mapping[str, float] | None = None
) -> dict[str, GoalTemplate]:
    """The goal templates as the policy allows: a reorder cart offers no item that costs more than
    the order limit at its usual quantity (its cart could never be ordered): the operator's, or a
    person's own lower one (``limits``: by user, :func:`~orchestrion.tools.policies.order_limits`)."""
    chosen = templates(names)
    if "reorder" in chosen:
        chosen["reorder"] = Reorder(ReorderConfig(max_line_total=policy.max_order_amount), line_limits=limits)
    return chosen


def users_templates(
    store: Store, settings: Settings, users: Sequence[str], names: Sequence[str] | None = None
) -> dict[str, GoalTemplate]:
    """:func:`templates_for` the operator's policy and ``users``' own limits (the daily run's and the
    triggers' templates)."""
    policy = load_policy(settings.policy_path)
    con = store.cursor()
    try:
        limits = order_limits(con, policy, users)
    finally:
        con.close()
    return templates_for(policy, names, limits=limits)


def deliver_step(
    store: Store,
    settings: Settings,
    day: date,
    users: list[str],
    *,
    now: datetime,
    shared: GoalContext,
    planning: Planning | None = None,
) -> dict[str, Any]:
    """The whole day for the batch: propose, then plan (with ``planning``: the run's planner and
    critic, see :func:`orchestrion.planning.llm.planning_for`; offline without), review, carry out
    and deliver."""
    planning = planning or Planning()
    with day_lock(day):  # an `orchestrion deliver` of the same day waits for this batch, and the other way round
        counts = propose_step(store, settings, day, users, now=now, shared=shared)
        done = execute(
            store, settings, day, users, now=now, planner=planning.planner, critic=planning.critic,
            concurrency=planning.concurrency,
        )
    return {**counts, "effects": done.effects, "pending_actions": done.pending, "refused": done.refused,
            **{f"deliverables_{status}": n for status, n in done.statuses.items()}}


DEFAULT_STEP: Step = deliver_step


@dataclass(frozen=True)
class DailyReport:
    """What one call of :func:`run_daily` did: the run (None for a dry run of a new key), whether
    it was ``new``, ``resumed``, already ``done`` or a ``dry-run``, and this call's own work."""

    day: date
    state: Literal["new", "resumed", "done", "dry-run"]
    run: Run | None
    users: int = 0
    batches: int = 0
    seconds: float = 0.0
    plan: dict[str, Any] = field(default_factory=dict)

    @property
    def users_per_second(self) -> float:
        return self.users / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "date": self.day.isoformat(),
            "state": self.state,
            "run": self.run.as_dict() if self.run else None,
            "users": self.users,
            "batches": self.batches,
            "seconds": round(self.seconds, 3),
            "users_per_second": round(self.users_per_second, 1),
            "plan": self.plan,
        }


def users_shard(users: Sequence[str]) -> str:
    """The shard name of a run limited to ``users``: stable for the same set, in any order."""
    digest = hashlib.blake2b("\n".join(sorted(set(users))).encode(), digest_size=4).hexdigest()
    return f"users-{digest}"


def _run_users(store: Store, day: date, users: Sequence[str] | None) -> list[str]:
    """The run's users: those active in the window before ``day`` (of ``users`` when given), whatever
    asked for the run — a zone's schedule, catch-up, a backfill or ``--users``."""
    return active_users(store, day_start(day), ProposalConfig().active_days, users)


def run_daily(
    store: Store,
    settings: Settings,
    day: date,
    *,
    clock: Clock = utcnow,
    users: Sequence[str] | None = None,
    force: bool = False,
    dry_run: bool = False,
    trigger: str = "cli",
    step: Step | None = None,
    progress: Progress | None = None,
    stop: Callable[[], bool] | None = None,
    shard: str | None = None,
    claimed: Claim | None = None,
) -> DailyReport:
    """Run (or resume, or skip when done) the daily pipeline for ``day``; see the module docstring.

    ``users`` limits the run to those users, under its own shard of the key (``shard`` names it
    instead, e.g. a time-zone group). ``stop`` is asked between batches: when it returns True
    the run ends as ``interrupted`` and resumes next time. ``claimed`` is a claim the caller
    already made (the server claims before answering, then runs in the background).

    Without a ``step``, the run delivers (:func:`deliver_step`) with the planning of its path
    (:func:`run_path` of ``trigger``): the LLM planner when an endpoint is configured, one per run
    (its run budget covers the whole run), as ``orchestrion deliver`` does.
    """
    if users is not None and not users and shard is None:
        raise UsageError("--users was given without any user id; name at least one user or leave it out")
    if shard is None:
        shard = users_shard(users) if users is not None else ""
    key = RunKey("daily", day, shard)
    batch_size = settings.delivery_batch_users
    if dry_run:
        latest = latest_run(store.con, key)
        wanted = _run_users(store, day, users)
        plan = {
            "key": str(key),
            "latest": latest.as_dict() if latest else None,
            "would": "nothing (done; --force starts a new attempt)"
            if latest and latest.status == "succeeded" and not force
            else ("resume " + latest.run_id if latest and latest.status != "succeeded" else "start a new attempt"),
            "users": len(wanted),
            "batches": (len(wanted) + batch_size - 1) // batch_size,
            "batch_size": batch_size,
        }
        return DailyReport(day, "dry-run", latest, plan=plan)
    params = {"users": sorted(set(users)) if users is not None else None, "batch_size": batch_size}
    claim = claimed or claim_run(store, key, now=clock(), force=force, trigger=trigger, params=params)
    if claim.state == "done":
        return DailyReport(day, "done", claim.run)
    run_id = claim.run.run_id
    started = time.perf_counter()
    done_users = done_batches = 0
    planning: Planning | None = None
    delivering = step is None or step is deliver_step
    try:
        if step is None:
            planning = planning_for(settings, run_path(trigger))
            step = _delivering(planning)
        if claim.state == "new" or claim.run.users_total == 0:
            plan_users(store, run_id, _run_users(store, day, users), batch_size)
        batches = pending_batches(store.con, run_id)
        run = claim.run
        total = store.con.execute("SELECT count(*) FROM run_users WHERE run_id = ?", [run_id]).fetchall()[0][0]
        already = total - sum(len(b) for b in batches)
        if progress:
            progress(already, total)
        if delivering and batches:  # what waited too long for an approval no longer holds new carts back
            expired = expire_approvals(store, settings, sorted(set().union(*batches)), day, now=clock())
            if expired:
                run = record_batch(store, run_id, [], {"approvals_expired": len(expired)}, now=clock(), seconds=0.0)
        with ExitStack() as stack:
            shared = stack.enter_context(day_context(store, settings.models_path, day)) if batches else None
            for number, batch in enumerate(batches):
                if stop is not None and stop():
                    raise _Stopped()
                batch_started = time.perf_counter()
                assert shared is not None
                if number + 1 < len(batches):  # its reads overlap this batch's work
                    shared.prefetch(batches[number + 1])
                with _gc_paused():
                    counts = step(store, settings, day, batch, now=clock(), shared=shared)
                seconds = time.perf_counter() - batch_started
                run = record_batch(store, run_id, batch, counts, now=clock(), seconds=seconds)
                done_users += len(batch)
                done_batches += 1
                if progress:
                    progress(run.users_done, total)
            if delivering:
                retried = _retry_failed(
                    store, settings, day, run_id, done=set().union(*batches), now=clock(), planning=planning
                )
                if retried:
                    run = record_batch(store, run_id, [], retried, now=clock(), seconds=0.0)
            swept = sweep_claims(store, settings, clock())
    except BaseException as exc:
        if planning is not None:
            planning.close()
        interrupted = isinstance(exc, _Stopped | KeyboardInterrupt | SystemExit)
        why = "stopped before it finished; run it again to resume" if interrupted else f"{type(exc).__name__}: {exc}"
        finish_run(store, run_id, "interrupted" if interrupted else "failed", now=clock(), error=why)
        if isinstance(exc, _Stopped):
            return DailyReport(day, claim.state, _latest(store, key), done_users, done_batches,
                               time.perf_counter() - started)
        raise
    if planning is not None:
        planning.close()
    failed, retryable = _failed_deliverables(store, settings, day, run_id)
    status: Literal["succeeded", "partial"] = "partial" if failed else "succeeded"
    error = run.error if claim.state == "resumed" else None
    if failed:
        error = (
            f"{failed} deliverable(s) failed ({retryable} tried again when the day is run again); "
            "each says why in its error"
        )
    totals: dict[str, Any] = {"failed_deliverables": failed, "claims_reconciled": swept["completed"] + swept["failed"]}
    if run.resumes > 0 and delivering:
        # A killed process recorded none of the batch it was in: what the day holds is read back
        # from the store, so that the run says what it made, not only what its last process made.
        made = _made(store, run_id, day, run.started_at)
        totals.update({k: 0 for k in run.counts if k.startswith("deliverables_") and k not in made}, **made)
    run = finish_run(store, run_id, status, now=clock(), error=error, totals=totals)
    return DailyReport(day, claim.state, run, done_users, done_batches, time.perf_counter() - started)


def _made(store: Store, run_id: str, day: date, started: datetime) -> dict[str, int]:
    """The goals, deliverables (by status), effects and approvals of ``day`` for the run's users, and
    how many of them this run proposed for (all, but those an earlier attempt already had)."""
    mine = "user_id IN (SELECT user_id FROM run_users WHERE run_id = $run) AND date = $day"
    params = {"run": run_id, "day": day}
    goals, proposed = store.con.execute(
        f"SELECT count(*), (SELECT count(*) FROM run_users WHERE run_id = $run) "
        f"- count(DISTINCT user_id) FILTER (WHERE created_at < $started) FROM goals WHERE {mine}",
        {**params, "started": started},
    ).fetchall()[0]
    statuses = store.con.execute(
        f"SELECT status, count(*) FROM deliverables WHERE {mine} GROUP BY 1 ORDER BY 1", params
    ).fetchall()
    effects, pending = store.con.execute(
        f"SELECT (SELECT count(*) FROM side_effects WHERE deliverable_id IN (SELECT deliverable_id FROM deliverables "
        f"WHERE {mine})), (SELECT count(*) FROM pending_actions WHERE deliverable_id IN (SELECT deliverable_id "
        f"FROM deliverables WHERE {mine}))",
        params,
    ).fetchall()[0]
    made = {"goals": int(goals), "deliverables": sum(int(n) for _, n in statuses), "effects": int(effects),
            "pending_actions": int(pending), "proposed_users": int(proposed)}
    made.update({f"deliverables_{status}": int(n) for status, n in statuses})
    return made


def run_path(trigger: str) -> RunPath:
    """The planning path of a daily run started by ``trigger`` (``llm_offline_paths`` names paths).

    >>> run_path("backfill"), run_path("catch-up"), run_path("api")
    ('backfill', 'schedule', 'daily')
    """
    if trigger == "backfill":
        return "backfill"
    return "schedule" if trigger in ("schedule", "catch-up") else "daily"


def _delivering(planning: Planning) -> Step:
    def step(
        store: Store, settings: Settings, day: date, users: list[str], *, now: datetime, shared: GoalContext
    ) -> Mapping[str, Any]:
        return deliver_step(store, settings, day, users, now=now, shared=shared, planning=planning)

    return step


def runs_to_retry(store: Store, settings: Settings, now: datetime) -> list[Run]:
    """The ``partial`` daily runs of the last ``catch_up_days`` days (before ``now``) that have
    failed deliverables with attempts left: the server's sweep resumes them, so a fault is tried
    again by a later run without anyone asking (bounded by ``delivery_max_attempts``)."""
    since = now.date() - timedelta(days=settings.catch_up_days)
    found = list_runs(store.con, pipeline="daily", status="partial", since=since)
    runs = [r for r in found if r.partition <= now.date()]
    return [r for r in runs if _failed_deliverables(store, settings, r.partition, r.run_id)[1] > 0]


def settle_recovered(store: Store, settings: Settings, now: datetime) -> list[Run]:
    """Close as ``succeeded`` the ``partial`` daily runs none of whose deliverables is still
    ``failed`` (the sweep sent what had failed, or a person approved it since), so the run ledger
    does not tell the operator to run again a day that has nothing left to fix. Returns them."""
    rows = store.con.execute(
        "SELECT r.run_id FROM runs r WHERE r.pipeline = 'daily' AND r.status = 'partial' AND NOT EXISTS ("
        "SELECT 1 FROM deliverables d JOIN run_users u ON u.user_id = d.user_id AND u.run_id = r.run_id "
        "WHERE d.date = r.partition AND d.status = 'failed') ORDER BY r.run_id"
    ).fetchall()
    return [finish_run(store, str(run_id), "succeeded", now=now, error=None, totals={"failed_deliverables": 0})
            for (run_id,) in rows]


def _retry_failed(
    store: Store,
    settings: Settings,
    day: date,
    run_id: str,
    *,
    done: set[str],
    now: datetime,
    planning: Planning | None = None,
) -> dict[str, Any]:
    """Try again the failed deliverables (attempts left) of the run's users not worked on by this
    call: the retry of a resumed ``partial`` run, planned as the run plans. Returns counts prefixed
    ``retry_``."""
    rows = store.con.execute(
        "SELECT DISTINCT d.user_id FROM deliverables d JOIN run_users r ON r.user_id = d.user_id AND r.run_id = ? "
        "WHERE d.date = ? AND d.status = 'failed' AND coalesce(d.failures, 0) < ? ORDER BY 1",
        [run_id, day, settings.delivery_max_attempts],
    ).fetchall()
    users = [str(r[0]) for r in rows if r[0] not in done]
    planning = planning or Planning()
    counts: dict[str, Any] = {}
    size = settings.delivery_batch_users
    for start in range(0, len(users), size):
        result = execute(
            store, settings, day, users[start : start + size], now=now, planner=planning.planner,
            critic=planning.critic, concurrency=planning.concurrency,
        )
        for status, n in result.statuses.items():
            counts[f"retry_deliverables_{status}"] = counts.get(f"retry_deliverables_{status}", 0) + n
        counts["retry_effects"] = counts.get("retry_effects", 0) + result.effects
    return counts


def _failed_deliverables(store: Store, settings: Settings, day: date, run_id: str) -> tuple[int, int]:
    """The run's users' deliverables of ``day`` that are ``failed``, and those with attempts left."""
    row = store.con.execute(
        "SELECT count(*), count(*) FILTER (WHERE coalesce(d.failures, 0) < ?) FROM deliverables d "
        "WHERE d.date = ? AND d.status = 'failed' AND d.user_id IN (SELECT user_id FROM run_users WHERE run_id = ?)",
        [settings.delivery_max_attempts, day, run_id],
    ).fetchall()[0]
    return int(row[0]), int(row[1])


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a batch runs, one young-generation pass after it.

    A batch makes hundreds of thousands of short-lived containers (plans, traces, records) that
    reference counting frees; the collector, triggered by their allocation, kept scanning every
    live object of the day's context and cost a third of a 4x run. What a batch leaves in cycles
    is bounded by the batch and collected right after it.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect(1)


class _Stopped(Exception):
    """Raised inside :func:`run_daily` when its ``stop`` callback asks it to stop between batches."""


def _latest(store: Store, key: RunKey) -> Run | None:
    return latest_run(store.con, key)


def backfill_daily(
    store: Store,
    settings: Settings,
    start: date,
    end: date,
    *,
    clock: Clock = utcnow,
    force: bool = False,
    step: Step | None = None,
    progress: Callable[[date], Progress | None] | None = None,
    on_day: Callable[[DailyReport], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> list[DailyReport]:
    """Run the daily pipeline for every day from ``start`` to ``end`` (inclusive), in order.

    Days already done are skipped (unless ``force``), an interrupted day resumes, so running the
    same backfill again after an interruption finishes it with the same result as one run.
    """
    if end < start:
        raise UsageError(f"--to {end} is before --from {start}; give the earlier day first")
    reports = []
    day = start
    while day <= end:
        report = run_daily(
            store, settings, day, clock=clock, force=force, trigger="backfill", step=step,
            progress=progress(day) if progress else None, stop=stop,
        )
        reports.append(report)
        if on_day:
            on_day(report)
        if report.run is not None and report.run.status == "interrupted":
            break
        day += timedelta(days=1)
    return reports
