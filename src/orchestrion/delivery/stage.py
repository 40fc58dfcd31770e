"""A day's delivery: goals → plans → review → side effects → delivered deliverables.

:func:`deliver` is the library behind ``orchestrion deliver``: it proposes the day's goals for the
users (skipping users whose day is already proposed), then :func:`execute` plans, reviews and
carries out every deliverable still ``proposed``, in batches of users. Per batch, and in this order:

1. plan each goal through the executor (offline, or an LLM planner with bounded concurrency) and
   review it; a failed review earns one re-plan, a second failure marks it ``failed``;
2. check each intended side effect against the user's effective policy *immediately before* it:
   refused effects are recorded in ``policy_decisions`` and never run; ``approve``/``notify``/
   ``suggest`` effects wait in ``pending_actions``; ``auto`` effects are claimed in the ledger (one
   committed transaction) — a key already completed is skipped, one claimed by a crashed attempt
   is reconciled, not repeated;
3. write the deliverables as planned (content, plan, trace) in one transaction, claim their
   effects in the next, perform them, then, in one transaction, complete them and write the
   deliverables' final status.

An effect's key is its deliverable and action (and channel), so a plan that calls ``publish``
three times publishes once. A deliverable with anything committed for it — an effect in the ledger,
an action waiting for a person — is never planned again: a later run resumes it with its stored
content and the ledger's effects (completed ones are kept, claimed ones are reconciled, failed ones
tried again), so the deliverable is kept as it was executed and nothing happens twice.

Faults stay with their deliverable: a planner or tool exception, a receiver down, a file error in
the outbox marks that deliverable ``failed`` with the reason, and a later run tries it again until
it has failed ``settings.delivery_max_attempts`` times. Only the store failing fails a batch.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Final

from orchestrion.config import Settings
from orchestrion.delivery import actions, ledger
from orchestrion.delivery.actions import Action, Outcome
from orchestrion.delivery.channels import Effector
from orchestrion.delivery.rendering import NOTHING_TO_DO, main_action
from orchestrion.delivery.rules import UserRules, load_user_rules, order_lines
from orchestrion.encoding import canonical
from orchestrion.errors import OrchestrionError, PolicyViolation
from orchestrion.goals import MIN_LIST_ITEMS
from orchestrion.goals.base import is_list
from orchestrion.goals.words import final_words
from orchestrion.planning import OfflinePlanner, Planner, PlanOutcome
from orchestrion.planning.executor import Executor
from orchestrion.planning.review import Critic, Review, review
from orchestrion.proposals.day import (
    ProposalResult,
    active_users,
    day_context,
    day_start,
    propose,
    retitle_reasons,
)
from orchestrion.proposals.lists import LIST_REPEAT_DAYS, listed_lately
from orchestrion.proposals.record import insert_pending, insert_refusals, write_records
from orchestrion.store import Store, transaction
from orchestrion.tools import CatalogItem, GoalRecord, IntendedEffect, ToolContext, allowed_tools
from orchestrion.tools.policies import Policy, load_policy

__all__ = ["DeliveryResult", "day_lock", "deliver", "execute"]


@dataclass
class DeliveryResult:
    """What a delivery did: counts by final status, effects run, actions waiting, refusals."""

    date: date
    users: int = 0
    deliverables: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    effects: int = 0
    pending: int = 0
    refused: int = 0
    fallbacks: int = 0
    seconds: float = 0.0
    proposals: list[ProposalResult] = field(default_factory=list)

    def add(self, other: DeliveryResult) -> None:
        self.users += other.users
        self.deliverables += other.deliverables
        for k, v in other.statuses.items():
            self.statuses[k] = self.statuses.get(k, 0) + v
        self.effects += other.effects
        self.pending += other.pending
        self.refused += other.refused
        self.fallbacks += other.fallbacks

    def as_dict(self) -> dict[str, Any]:
        return {
            "date": self.date.isoformat(),
            "users": self.users,
            "deliverables": self.deliverables,
            "statuses": dict(sorted(self.statuses.items())),
            "effects": self.effects,
            "pending_actions": self.pending,
            "refused": self.refused,
            "fallbacks": self.fallbacks,
            "seconds": round(self.seconds, 3),
        }


def _guard(
    rules: UserRules, now: datetime, goal: GoalRecord, said: list[tuple[str, str]]
) -> Callable[[IntendedEffect], None]:
    """The executor's check of each effect a tool queues; a refusal's plain reason goes to ``said``
    as ``(tool, reason)`` (the deliverable's status says it when its action never happens)."""

    def guard(effect: IntendedEffect) -> None:
        action = Action.planned(goal.user_id, goal.deliverable_id, effect)
        duplicate = rules.duplicate_of(effect.effect, goal.deliverable_id) if action.kind == "order" else None
        spent = rules.spent_without(action.key)
        verdict = actions.verdict(rules, action, now, spent=spent, duplicate_of=duplicate)
        if not verdict.allowed:
            text = rules.refusal_text(verdict.rule, effect.effect, goal.deliverable_id, now=now, spent=spent)
            said.append((effect.tool, text))
            raise PolicyViolation(verdict.rule or "policy", verdict.detail)

    return guard


@dataclass
class _Job:
    goal: GoalRecord
    executor: Executor
    rules: UserRules
    outcome: PlanOutcome | None = None
    review: Review | None = None
    attempts: int = 0
    error: str | None = None
    waiting: bool = False
    stored: dict[str, Any] | None = None
    """The deliverable as written by an earlier run that committed something for it (resumed, not planned)."""
    entries: list[ledger.Entry] = field(default_factory=list)
    failures: int = 0
    said: list[tuple[str, str]] = field(default_factory=list)
    """Plain reasons of the policy's refusals, ``(tool, reason)``."""
    refused_before: dict[str, str] = field(default_factory=dict)
    """A resumed deliverable's actions an earlier run refused: tool → rule."""


def _goals(con: Any, day: date, users: Sequence[str], max_attempts: int) -> list[GoalRecord]:
    """The deliverables to work on: ``proposed`` ones, and ``failed`` ones with attempts left."""
    rows = con.execute(
        """
        SELECT g.goal_id, d.deliverable_id, g.user_id, g.date, g.template, g.variant, g.title, g.items,
               g.params, g.details, g.why, g.cost, g.reason_detail
        FROM deliverables d JOIN goals g USING (goal_id)
        WHERE d.date = $day AND g.date = $day AND d.user_id IN (SELECT unnest($users))
          AND (d.status = 'proposed' OR (d.status = 'failed' AND coalesce(d.failures, 0) < $max))
        ORDER BY g.user_id, g.slot
        """,
        {"day": day, "users": list(users), "max": max_attempts},
    ).fetchall()
    return [
        GoalRecord(
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            r[6],
            tuple(r[7]),
            json.loads(r[8] or "{}"),
            json.loads(r[9] or "{}"),
            r[10],
            float(r[11] or 0.0),
            r[12],
        )
        for r in rows
    ]


def _catalog(con: Any, goals: Sequence[GoalRecord]) -> dict[str, CatalogItem]:
    ids = sorted({i for g in goals for i in g.items})
    rows = con.execute(
        "SELECT item_id, domain, title, creator, price, currency, category, left(text, 2000), "
        "json_extract_string(properties, '$.shared_at') FROM items WHERE item_id IN (SELECT unnest($ids))",
        {"ids": ids},
    ).fetchall()
    return {str(r[0]): CatalogItem(*r) for r in rows}


_LIST_NOUNS = {"watchlist": "movies", "playlist": "tracks", "digest": "articles"}


def _mostly_repeats(goal: GoalRecord, seen: Mapping[str, date]) -> str | None:
    """Why a list is not sent, or None when it is worth sending once what the person's other lists
    hold is left out of it (``seen``: item → the latest day it was in one of their lists).

    Not sent: when more than half of its items were in their lists of the days before (the last
    :data:`LIST_REPEAT_DAYS`: what is left would be less than half a list, the slate's
    "substantially overlap"), or when fewer than :data:`MIN_LIST_ITEMS` items would be left. A list
    that shares items only with the day's other lists is sent without them: the chooser's slate keeps
    any two of a day's lists from overlapping, and a list that repeats pieces of two of them is still
    a list of its own (it used to be cancelled, its place left empty, and named in the day's reasons
    as having taken a place).

    >>> items = tuple(f"m{i}" for i in range(10))
    >>> day = date(1998, 4, 2)
    >>> goal = GoalRecord("g", "d", "u", day, "watchlist", "picked", "Movie night", items, {}, {}, "")
    >>> _mostly_repeats(goal, {f"m{i}": date(1998, 3, 29 + i % 3) for i in range(6)})
    '6 of its 10 movies were in lists you got in the last 7 days'
    >>> _mostly_repeats(goal, {f"m{i}": day for i in range(8)}) is None  # sent with its 2 others
    True
    >>> _mostly_repeats(goal, {f"m{i}": day for i in range(9)})
    '9 of its 10 movies are in your other lists of today'
    >>> from dataclasses import replace
    >>> _mostly_repeats(replace(goal, template="digest", items=("a1", "a2")), {"a2": date(1998, 4, 1)})
    '1 of its 2 articles was in a list you got in the last 7 days'
    >>> _mostly_repeats(replace(goal, items=("m1",)), {})
    'a list of a single movie is not worth sending'
    """
    repeats = [i for i in goal.items if i in seen]
    before = [i for i in repeats if seen[i] != goal.date]
    left = len(goal.items) - len(repeats)
    noun = _LIST_NOUNS.get(goal.template, "items")
    if not repeats:
        return None if left >= MIN_LIST_ITEMS else f"a list of a single {noun.removesuffix('s')} is not worth sending"
    if len(before) * 2 <= len(goal.items) and left >= MIN_LIST_ITEMS:
        return None
    n = len(repeats)
    if not before:
        return f"{n} of its {len(goal.items)} {noun} {'is' if n == 1 else 'are'} in your other lists of today"
    were = "was in a list" if n == 1 else "were in lists"
    return f"{n} of its {len(goal.items)} {noun} {were} you got in the last {LIST_REPEAT_DAYS} days"


def _exclusions(con: Any, users: Sequence[str]) -> dict[str, frozenset[str]]:
    rows = con.execute(
        "SELECT user_id, list(item_id) FROM item_exclusions WHERE user_id IN (SELECT unnest($u)) GROUP BY 1",
        {"u": list(users)},
    ).fetchall()
    return {str(u): frozenset(items) for u, items in rows}


def _first_seen(con: Any, goals: Sequence[GoalRecord]) -> dict[str, datetime]:
    ids = sorted({i for g in goals if g.template == "digest" for i in g.items})
    if not ids:
        return {}
    rows = con.execute(
        "SELECT item_id, min(ts) FROM events WHERE item_id IN (SELECT unnest($ids)) GROUP BY 1", {"ids": ids}
    ).fetchall()
    return {str(i): ts for i, ts in rows}


_STORED = (
    "title", "summary", "content", "plan", "trace", "planner", "fallback", "tokens", "cost", "review", "attempts",
    "why",
)


def _committed(
    con: Any, ids: Sequence[str]
) -> tuple[dict[str, list[ledger.Entry]], dict[str, dict[str, Any]], dict[str, int], set[str]]:
    """For the deliverables ``ids``: their ledger entries; the stored records of those with anything
    committed (a ledger entry or a pending action); their failures; those with actions waiting."""
    entries = ledger.entries(con, ids)
    rows = con.execute(
        "SELECT deliverable_id, coalesce(failures, 0), "
        "EXISTS (SELECT 1 FROM pending_actions p WHERE p.deliverable_id = d.deliverable_id), "
        "EXISTS (SELECT 1 FROM pending_actions p WHERE p.deliverable_id = d.deliverable_id AND p.status = 'waiting'), "
        f"{', '.join(_STORED)} FROM deliverables d WHERE deliverable_id IN (SELECT unnest($ids))",
        {"ids": list(ids)},
    ).fetchall()
    stored: dict[str, dict[str, Any]] = {}
    failures: dict[str, int] = {}
    waiting: set[str] = set()
    for d_id, failed, any_pending, any_waiting, *values in rows:
        failures[d_id] = int(failed)
        if any_waiting:
            waiting.add(d_id)
        if not (any_pending or entries.get(d_id)):
            continue
        record = dict(zip(_STORED, values, strict=True))
        for name in ("content", "plan", "trace", "review"):
            record[name] = json.loads(record[name]) if record[name] else None
        if isinstance(record["content"], dict):  # written before this change: results inside
            record["content"].pop("effects", None)
        stored[d_id] = record
    return entries, stored, failures, waiting


def _refused_before(con: Any, ids: Sequence[str]) -> dict[str, dict[str, str]]:
    """For resumed deliverables: the actions the policy refused them before and that wait for no
    person (tool → latest rule)."""
    if not ids:
        return {}
    rows = con.execute(
        "SELECT deliverable_id, action, arg_max(rule, created_at) FROM policy_decisions r "
        "WHERE deliverable_id IN (SELECT unnest($ids)) AND NOT EXISTS (SELECT 1 FROM pending_actions p "
        "WHERE p.deliverable_id = r.deliverable_id AND p.action = r.action) GROUP BY 1, 2",
        {"ids": list(ids)},
    ).fetchall()
    found: dict[str, dict[str, str]] = defaultdict(dict)
    for d_id, action, rule in rows:
        found[str(d_id)][str(action)] = str(rule)
    return found


def _not_done(
    record: Mapping[str, Any], went: set[str], said: Sequence[tuple[str, str]]
) -> str | None:
    """Why a deliverable's main action (its order; for others, publishing) did not happen, when the
    policy refused it and no effect of that action went ahead (ran, or waits for a person); else None."""
    action = main_action(record)
    if action in went:
        return None
    reasons = [text for tool, text in said if tool == action]
    return reasons[-1] if reasons else None


def _plan_one(job: _Job, planner: Planner, critic: Critic | None, first_seen: Mapping[str, datetime]) -> None:
    """Plan and review one job; whatever goes wrong fails this job only (its error says why)."""
    if job.stored is not None:
        return  # committed earlier: resumed as executed, never planned again
    try:
        _plan_and_review(job, planner, critic, first_seen)
    except Exception as exc:  # a planner's, a tool's or a critic's fault belongs to this deliverable
        job.error = f"planning failed: {type(exc).__name__}: {exc}"


def _plan_and_review(job: _Job, planner: Planner, critic: Critic | None, first_seen: Mapping[str, datetime]) -> None:
    feedback: str | None = None
    as_of = datetime.combine(job.goal.date, datetime.min.time())
    for attempt in (1, 2):
        job.attempts = attempt
        if attempt == 2:
            job.executor.reset()
        try:
            job.outcome = planner.plan(job.goal, job.executor, feedback=feedback)
        except OrchestrionError as exc:
            job.error = f"planning failed: {exc}"
            return
        if job.outcome.plan.nothing_to_do:
            return
        content = job.executor.ctx.content
        goal = job.goal
        title, why = final_words(
            goal.template, goal.variant, job.outcome.plan.title or goal.title, goal.why, goal.details, content,
            note=goal.note,
        )
        shown = {"title": title, "summary": job.outcome.plan.summary, "content": content}
        job.review = review(
            content,
            excluded=job.executor.ctx.excluded,
            max_order_amount=job.rules.policy.max_order_amount,
            first_seen=first_seen,
            as_of=as_of,
            deliverable={**shown, "why": why},
            critic=critic,
        )
        job.executor.note("review", "ok" if job.review.ok else "; ".join(job.review.problems))
        if job.review.ok:
            return
        feedback = job.review.feedback()


def _identity(goal: GoalRecord) -> dict[str, Any]:
    return {
        "deliverable_id": goal.deliverable_id,
        "goal_id": goal.goal_id,
        "user_id": goal.user_id,
        "date": goal.date.isoformat(),
        "template": goal.template,
    }


def _record(job: _Job, now: datetime) -> dict[str, Any]:
    """The deliverable as stored and as published (everything but the final status)."""
    outcome = job.outcome
    plan = outcome.plan if outcome else None
    goal = job.goal
    content = job.executor.ctx.content or None
    title, why = final_words(
        goal.template,
        goal.variant,
        plan.title if plan and plan.title else goal.title,
        goal.why,
        goal.details,
        content,
        note=goal.note,
    )
    return {
        **_identity(goal),
        "title": title,
        "summary": plan.summary if plan and not plan.nothing_to_do else (plan.reason if plan else None),
        "why": why,
        "content": content,
        "plan": plan.model_dump() if plan else None,
        "planner": outcome.planner if outcome else None,
        "fallback": outcome.fallback if outcome else None,
        "tokens": outcome.tokens if outcome else 0,
        "cost": outcome.cost if outcome else 0.0,
        "review": job.review.as_dict() if job.review else None,
        "trace": [step.as_dict() for step in job.executor.trace],
        "attempts": job.attempts,
        "updated_at": now.isoformat(),
    }


def execute(
    store: Store,
    settings: Settings,
    day: date,
    users: Sequence[str],
    *,
    now: datetime,
    planner: Planner | None = None,
    effector: Effector | None = None,
    policy: Policy | None = None,
    critic: Critic | None = None,
    concurrency: int = 1,
) -> DeliveryResult:
    """Plan, review and carry out the ``proposed`` deliverables of ``users`` on ``day`` (one batch)."""
    if effector is None:  # made here, closed here: a run per batch must not leave connections open
        mine = Effector(settings)
        try:
            return execute(
                store, settings, day, users, now=now, planner=planner, effector=mine, policy=policy, critic=critic,
                concurrency=concurrency,
            )
        finally:
            mine.close()
    started = time.perf_counter()
    planner = planner or OfflinePlanner()
    policy = policy or load_policy(settings.policy_path)
    result = DeliveryResult(day, users=len(users))
    con = store.cursor()
    try:
        goals = _goals(con, day, users, settings.delivery_max_attempts)
        if not goals:
            return result
        entries, stored, failures, waiting_ids = _committed(con, [g.deliverable_id for g in goals])
        catalog = _catalog(con, goals)
        exclusions = _exclusions(con, users)
        used = listed_lately(con, day, users)
        rules = load_user_rules(con, policy, sorted({g.user_id for g in goals}), now, locale=settings.locale)
        first_seen = _first_seen(con, goals)
        refused_before = _refused_before(con, list(stored))
        delivered_before = dict(
            con.execute(
                "SELECT user_id, count(*) FROM deliverables WHERE date = $day AND status NOT IN "
                "('proposed', 'failed', 'cancelled') AND user_id IN (SELECT unnest($u)) GROUP BY 1",
                {"day": day, "u": list(users)},
            ).fetchall()
        )
    finally:
        con.close()

    jobs: list[_Job] = []
    skipped: list[tuple[GoalRecord, str]] = []
    per_user: dict[str, int] = defaultdict(int)
    for goal in goals:
        user_rules = rules[goal.user_id]
        per_user[goal.user_id] += 1
        reason = None
        if goal.deliverable_id in stored:
            pass  # committed earlier: finished as executed, whatever the switches say now
        elif user_rules.paused:
            reason = "paused: the user paused everything in their settings"
        elif goal.template in user_rules.excluded_templates:
            reason = f"the user turned off {goal.template} goals in their settings"
        elif delivered_before.get(goal.user_id, 0) + per_user[goal.user_id] > user_rules.policy.deliverables_per_day:
            reason = f"over the daily cap of {user_rules.policy.deliverables_per_day} deliverables"
        if reason is not None:
            skipped.append((goal, reason))
            continue
        # An item is in one list of a person's week: a later slot's list leaves out what an earlier
        # one (or one delivered in the last days) holds, as it leaves out what they thumbed down.
        # (Carts need not: a person gets one cart a shop a day.)
        excluded = exclusions.get(goal.user_id, frozenset())
        seen = used.setdefault(goal.user_id, {})
        if is_list(goal.cost, goal.details):
            repeats = _mostly_repeats(goal, seen)
            if repeats is not None and goal.deliverable_id not in stored:
                skipped.append((goal, repeats))
                continue
            excluded = excluded | frozenset(seen)
            seen.update((i, goal.date) for i in goal.items if i not in excluded)
        ctx = ToolContext(
            goal,
            now,
            catalog,
            excluded,
            connect=store.cursor,
            webhook_url=settings.webhook_url,
            max_order_amount=user_rules.policy.max_order_amount,
            locale=settings.locale,
        )
        said: list[tuple[str, str]] = []
        executor = Executor(ctx, allowed_tools(goal.template), guard=_guard(user_rules, now, goal, said))
        job = _Job(goal, executor, user_rules, failures=failures.get(goal.deliverable_id, 0), said=said)
        job.refused_before = refused_before.get(goal.deliverable_id, {})
        job.stored = stored.get(goal.deliverable_id)
        job.entries = entries.get(goal.deliverable_id, [])
        job.waiting = goal.deliverable_id in waiting_ids
        jobs.append(job)

    if concurrency > 1 and len(jobs) > 1:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            list(pool.map(lambda j: _plan_one(j, planner, critic, first_seen), jobs))
    else:
        for job in jobs:
            _plan_one(job, planner, critic, first_seen)
    for job in jobs:
        job.executor.ctx.close()

    _carry_out(store, day, jobs, skipped, effector, now, result, settings)
    result.seconds = time.perf_counter() - started
    return result


def _carry_out(
    store: Store,
    day: date,
    jobs: Sequence[_Job],
    skipped: Sequence[tuple[GoalRecord, str]],
    effector: Effector,
    now: datetime,
    result: DeliveryResult,
    settings: Settings,
) -> None:
    """Steps 2 and 3: policy immediately before each effect, ledger, perform (``concurrency``
    deliverables at once), write. Each effect is an :class:`~orchestrion.delivery.actions.Action`
    through the one side-effect step (:mod:`orchestrion.delivery.actions`)."""
    records: dict[str, dict[str, Any]] = {}
    status: dict[str, str] = {}
    errors: dict[str, str | None] = {}
    claims: list[Action] = []
    pending: list[list[Any]] = []
    refusals: list[list[Any]] = []
    spent: dict[str, float] = defaultdict(float)  # orders claimed in this batch, per user
    ordered: dict[str, dict[str, str]] = defaultdict(dict)  # orders queued in this batch: user → lines → deliverable
    for job in jobs:
        goal = job.goal
        d_id = goal.deliverable_id
        if job.stored is not None:
            # Committed by an earlier run: kept as executed. Completed effects are kept, claimed
            # ones are reconciled, failed ones (they certainly did not happen) are tried again.
            records[d_id] = {**_identity(goal), **job.stored, "updated_at": now.isoformat()}
            records[d_id]["why"] = job.stored.get("why") or goal.why
            errors[d_id] = None
            went: set[str] = set()
            for entry in job.entries:
                if entry.status == "completed":
                    records[d_id].setdefault("effects", {})[entry.action] = entry.result or {}
                    went.add(entry.action)
                    continue
                again = Action.of_entry(entry)
                if entry.status == "failed":
                    user_spent = job.rules.spent_without(entry.key) + spent[goal.user_id]
                    duplicate = job.rules.duplicate_of(entry.effect, d_id) if again.kind == "order" else None
                    verdict = actions.verdict(job.rules, again, now, spent=user_spent, duplicate_of=duplicate)
                    if not verdict.allowed:
                        refusals.append(actions.refusal_row(again, verdict, now))
                        text = job.rules.refusal_text(verdict.rule, entry.effect, d_id, now=now, spent=user_spent)
                        job.said.append((entry.action, text))
                        continue
                    spent[goal.user_id] += again.amount or 0.0
                went.add(entry.action)
                claims.append(again)
            for tool, rule in job.refused_before.items():
                if tool not in went:
                    job.said.append((tool, job.rules.refusal_text(rule, {}, d_id, now=now)))
            reason = _not_done(records[d_id], went, job.said)
            status[d_id] = "not_done" if reason else "awaiting_approval" if job.waiting else "delivered"
            errors[d_id] = reason
            continue
        records[d_id] = _record(job, now)
        errors[d_id] = job.error
        for r in job.executor.refusals:
            refusals.append([d_id, goal.user_id, r.action, r.rule, r.detail, canonical(r.arguments), now])
        if job.error or job.outcome is None:
            status[d_id] = "failed"
            continue
        if job.outcome.plan.nothing_to_do:
            status[d_id] = "cancelled"
            errors[d_id] = f"{NOTHING_TO_DO}{job.outcome.plan.reason}"
            continue
        if job.review is not None and not job.review.ok:
            status[d_id] = "failed"
            errors[d_id] = "review failed twice: " + "; ".join(job.review.problems)
            continue
        if job.outcome.fallback:
            result.fallbacks += 1
        # One effect per deliverable, action and channel: a call repeated in the plan is the same
        # effect (the last one asked for stands, where it was first asked for).
        unique: dict[str, Action] = {}
        for effect in job.executor.ctx.effects:
            action = Action.planned(goal.user_id, d_id, effect, canonical(effect.effect))
            unique[action.key] = action
        waiting = False
        went = set()
        for action in unique.values():
            user_spent = job.rules.spent_without(action.key) + spent[goal.user_id]
            duplicate = None
            lines = ""
            if action.kind == "order":
                lines = order_lines(action.arguments)
                earlier = ordered[goal.user_id].get(lines)
                duplicate = job.rules.duplicate_of(action.arguments, d_id) or (earlier if earlier != d_id else None)
            verdict = actions.verdict(job.rules, action, now, spent=user_spent, duplicate_of=duplicate)
            if not verdict.allowed:
                refusals.append(actions.refusal_row(action, verdict, now))
                job.said.append((action.tool, job.rules.refusal_text(verdict.rule, action.arguments, d_id, now=now,
                                                                     spent=user_spent)))
                continue
            went.add(action.tool)
            if action.kind == "order":
                ordered[goal.user_id].setdefault(lines, d_id)
            if verdict.tier == "auto" and not verdict.defer_quiet:
                spent[goal.user_id] += action.amount or 0.0  # in flight from here on; a waiting cart is not
                claims.append(action)
                continue
            tier = "notify" if verdict.defer_quiet else verdict.tier
            due = None
            if tier == "notify":
                local = job.rules.local(now)
                wait = timedelta(minutes=job.rules.policy.notify_window_minutes)
                due = now + (job.rules.policy.quiet_until(local) - local if verdict.defer_quiet else wait)
            detail = "deferred by quiet hours" if verdict.defer_quiet else None
            pending.append([action.key, d_id, goal.user_id, action.tool, action.text, tier, "waiting", due, now,
                            detail])
            waiting = waiting or tier in ("approve", "notify")
        reason = _not_done(records[d_id], went, job.said)
        status[d_id] = "not_done" if reason else "awaiting_approval" if waiting else "delivered"
        errors[d_id] = reason
    for goal, reason in skipped:
        records[goal.deliverable_id] = {"updated_at": now.isoformat()}
        status[goal.deliverable_id] = "cancelled"
        errors[goal.deliverable_id] = reason

    failures = {job.goal.deliverable_id: job.failures for job in jobs}
    claimers = {a.deliverable_id for a in claims}
    con = store.cursor()
    try:
        # The deliverables as planned are committed before any of their effects is claimed, so a
        # crash after a claim finds the content the effect was made from (and resumes it).
        first = {d_id: "proposed" if d_id in claimers else s for d_id, s in status.items()}
        # A deliverable with effects to claim gets its waiting actions in the claims' transaction: a
        # crash after the first commit leaves it `proposed` with nothing of it committed (planned
        # again), never with its waiting actions and without its claims (never published).
        with transaction(con):
            insert_pending(con, [row for row in pending if row[1] not in claimers])
            insert_refusals(con, refusals)
            _annotate(first, errors, failures, settings.delivery_max_attempts)
            retitle_reasons(con, write_records(con, day, records, first, errors, now))
        if not claims:
            _count(result, records, status, 0, pending, refusals)
            return
        later = [row for row in pending if row[1] in claimers]
        states = ledger.claim(
            con, [a.effect for a in claims], now=now, along=lambda c: insert_pending(c, later)
        )
        done = ledger.results(con, [k for k, s in states.items() if s == "completed"])
        outcomes: list[Outcome] = []
        paged: dict[str, str] = {}  # deliverable → the status its outbox page was written with
        unknown: set[str] = set()  # deliverables with an effect whose outcome is unknown (its claim stays open)

        def carry(d_id: str, mine: list[Action]) -> None:
            # One deliverable's effects in order (the outbox file shows the effects before it);
            # each task touches only its own deliverable's entries. The first that does not happen
            # stops the rest: they are marked failed (certainly not done) and tried again with it.
            problem: str | None = None
            for action in mine:
                if problem is not None:
                    outcomes.append(actions.skipped(action, problem))
                    continue
                shown = {**records[d_id], "status": status[d_id], "error": errors.get(d_id)}
                outcome = actions.carry(effector, action, states[action.key], shown, completed=done.get(action.key))
                outcomes.append(outcome)
                if outcome.state == "done":
                    records[d_id].setdefault("effects", {})[action.tool] = outcome.result
                    if outcome.performed and action.kind == "outbox":
                        paged[d_id] = shown["status"]
                    continue
                what = f"{action.tool} ({action.kind})"
                # Outcome unknown (no answer, or an error part-way): the claim stays open and the
                # next attempt reconciles it; a provider's refusal: certainly not done.
                problem = f"{what}: {outcome.error}" if outcome.retryable else f"{what} failed: {outcome.error}"
                if outcome.retryable:
                    unknown.add(d_id)
                status[d_id] = "failed"
                errors[d_id] = problem

        by_deliverable: dict[str, list[Action]] = defaultdict(list)
        for action in claims:
            by_deliverable[action.deliverable_id].append(action)
        remote = {d_id: mine for d_id, mine in by_deliverable.items() if any(a.kind != "outbox" for a in mine)}
        # Orders and webhooks wait on the network: a few deliverables at once hide that wait.
        # Outbox files go to one folder, whose lock serialises file creation anyway: threads
        # only spun on it (measured: 2-3x the kernel time on ext4), so they are written here.
        with ThreadPoolExecutor(max_workers=settings.effect_concurrency) as pool:
            sent = pool.map(lambda kv: carry(*kv), remote.items())
            for d_id, mine in by_deliverable.items():
                if d_id not in remote:
                    carry(d_id, mine)
            list(sent)
        final = {d_id: status[d_id] for d_id in claimers}
        _annotate(final, errors, failures, settings.delivery_max_attempts, unknown)
        with transaction(con):
            actions.settle(con, outcomes, now)
            write_records(  # the outcome only: no title changes here
                con, day, {d_id: records[d_id] for d_id in claimers}, final, errors, now, outcome_only=True
            )
        # A page written before a later effect of its deliverable failed says what it was then: again.
        for d_id, shown_status in paged.items():
            if final[d_id] != shown_status:
                with suppress(OSError):
                    effector.refresh({**records[d_id], "status": final[d_id], "error": errors.get(d_id)})
    finally:
        con.close()
    _count(result, records, status, sum(1 for o in outcomes if o.performed), pending, refusals)


def _annotate(
    status: Mapping[str, str], errors: dict[str, str | None], failures: Mapping[str, int], max_attempts: int,
    unknown: frozenset[str] | set[str] = frozenset(),
) -> None:
    """Add to each failed deliverable's error which attempt this was and whether a run tries again.

    One in ``unknown`` (an effect's outcome unknown, its claim open) is finished by the sweep,
    whatever the runs do: its error already says what happens next ("it will be sent again")."""
    for d_id, s in status.items():
        if s != "failed":
            continue
        n = failures.get(d_id, 0) + 1
        said = errors.get(d_id) or "failed"
        if d_id in unknown:
            errors[d_id] = f"{said} (attempt {n} of {max_attempts})"
            continue
        then = "a later run tries again" if n < max_attempts else "it is not tried again"
        errors[d_id] = f"{said} (attempt {n} of {max_attempts}; {then})"


def _count(
    result: DeliveryResult,
    records: Mapping[str, Any],
    status: Mapping[str, str],
    performed: int,
    pending: Sequence[Any],
    refusals: Sequence[Any],
) -> None:
    result.deliverables += len(records)
    for s in status.values():
        result.statuses[s] = result.statuses.get(s, 0) + 1
    result.effects += performed
    result.pending += len(pending)
    result.refused += len(refusals)


_DAYS_GUARD: Final = threading.Lock()
_DAYS: Final[dict[date, threading.Lock]] = {}


def day_lock(day: date) -> threading.Lock:
    """Proposing and carrying out a batch of ``day`` one at a time in this process: a daily run and
    an ``orchestrion deliver`` of the same day (or two of them) at once both inserted the day's
    deliverables, and the second failed on their keys (a 500). Now the second waits, then finds the
    work done (running a day again does nothing new)."""
    with _DAYS_GUARD:
        return _DAYS.setdefault(day, threading.Lock())


def deliver(
    store: Store,
    settings: Settings,
    day: date,
    users: Sequence[str] | None = None,
    *,
    now: datetime,
    planner: Planner | None = None,
    effector: Effector | None = None,
    policy: Policy | None = None,
    critic: Critic | None = None,
    concurrency: int = 1,
    progress: Callable[[int, int | None], None] | None = None,
) -> DeliveryResult:
    """Propose the day's goals, then plan, review and carry out every deliverable still ``proposed``.

    Idempotent: a user whose day is done is skipped; effects go through the ledger.
    """
    started = time.perf_counter()
    total = DeliveryResult(day)
    wanted = list(users) if users is not None else None
    if wanted is None:
        wanted = active_users(store, day_start(day), 30)
    left = _waiting_users(store, day, wanted if users is not None else None, settings.delivery_max_attempts)
    wanted = sorted(set(wanted) | set(left))
    size = settings.delivery_batch_users
    with day_context(store, settings.models_path, day) as shared:
        for start in range(0, len(wanted), size):
            batch = wanted[start : start + size]
            if start + size < len(wanted):  # its reads overlap this batch's work
                shared.prefetch(wanted[start + size : start + 2 * size])
            with day_lock(day):
                total.proposals.append(propose(store, settings.models_path, day, batch, now=now, shared=shared))
                part = execute(
                    store,
                    settings,
                    day,
                    batch,
                    now=now,
                    planner=planner,
                    effector=effector,
                    policy=policy,
                    critic=critic,
                    concurrency=concurrency,
                )
            total.add(part)
            if progress is not None:
                progress(min(start + size, len(wanted)), len(wanted))
    total.users = len(wanted)
    total.seconds = time.perf_counter() - started
    return total


def _waiting_users(store: Store, day: date, users: Iterable[str] | None, max_attempts: int) -> list[str]:
    """Users with deliverables still ``proposed`` on ``day`` (a crashed run's leftovers) or
    ``failed`` with attempts left."""
    con = store.cursor()
    try:
        rows = con.execute(
            "SELECT DISTINCT user_id FROM deliverables WHERE date = ? AND (status = 'proposed' OR "
            "(status = 'failed' AND coalesce(failures, 0) < ?))",
            [day, max_attempts],
        ).fetchall()
    finally:
        con.close()
    found = [str(r[0]) for r in rows]
    return found if users is None else [u for u in found if u in set(users)]
