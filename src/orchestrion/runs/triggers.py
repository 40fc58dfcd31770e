"""Event-driven triggers: an event that matches a rule proposes a goal for its user at once.

Rules live in the settings (``triggers``; TOML ``[[triggers]]`` tables): an event type, property
conditions and a goal template, e.g. ``stock_low`` → ``reorder``. They are evaluated *after* the
events committed and off the ingestion path: :class:`TriggerWatcher` is a background thread of
``orchestrion serve`` that looks, twice a second, at the events received since it last looked (a
cheap scan: ``received_at`` grows with the table), so the acknowledgement of an event never waits
for a rule. How far it has handled events is kept in the store (``trigger_marks``), written after
the rules fired, and a restart resumes from there (at most :data:`CATCH_UP` back): an event
acknowledged just before the server stopped, or was killed, still fires its rule. A rule that
fails (the store, a planner) leaves the mark where it was, and the events are looked at again.

A match runs :func:`fire`: the rule's template proposes candidates for the event's user from
events up to now; the candidates holding the event's item are preferred; the best one (by the
current scorer) is recorded as a chosen goal of today with policy ``trigger:<rule>`` and its
deliverable, then planned and carried out like any deliverable (``delivery.execute``). Goal ids
hash the user, template, parameters and day, so an event seen twice proposes nothing twice; and
the day's slate rules apply (:mod:`orchestrion.ranking.slate`), so the same event resent under a
new id makes no second cart. Only users active lately (``ProposalConfig.active_days``) are served.

>>> from orchestrion.config import TriggerRule
>>> rule = TriggerRule(name="low", event_type="stock_low", template="reorder", conditions={"level": {"lt": 2}})
>>> matches(rule, "stock_low", {"level": 1}), matches(rule, "stock_low", {"level": 5}), matches(rule, "play", {})
(True, False, False)
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Final

import numpy as np
import polars as pl

from orchestrion.config import Settings, TriggerRule
from orchestrion.delivery.stage import execute
from orchestrion.errors import ConfigError
from orchestrion.goals import propose_candidates
from orchestrion.planning.llm import planning_for
from orchestrion.proposals.day import (
    ProposalConfig,
    active_users,
    build_context,
    read_history,
    record_goals,
    slate_columns,
    with_goal_ids,
)
from orchestrion.ranking import ChoiceConfig, decide
from orchestrion.runs.daily import users_templates
from orchestrion.store import Store, utcnow
from orchestrion.training.promoted import current_scorer, promoted_repurchase

__all__ = ["Fired", "TriggerWatcher", "fire", "handled_until", "matches", "new_matches", "write_mark"]

log = logging.getLogger(__name__)

_OPS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "eq": lambda a, b: bool(a == b),
    "ne": lambda a, b: bool(a != b),
    "lt": lambda a, b: a is not None and bool(a < b),
    "le": lambda a, b: a is not None and bool(a <= b),
    "gt": lambda a, b: a is not None and bool(a > b),
    "ge": lambda a, b: a is not None and bool(a >= b),
    "in": lambda a, b: a in b,
}
LOOKBACK: Final = timedelta(seconds=5)
"""Events are re-read this far behind the watermark: a request stamped earlier can commit later."""
CATCH_UP: Final = timedelta(days=1)
"""After a restart, events received at most this long ago are looked at (from the stored mark)."""
_MARK_EVERY: Final = timedelta(seconds=60)
"""With nothing matched, the mark is written this often (a restart then re-reads little)."""
_MARK: Final = "watcher"


def handled_until(con: Any) -> datetime | None:
    """Where the trigger watcher's stored mark stands (None before it first wrote one)."""
    row = con.execute("SELECT handled_until FROM trigger_marks WHERE name = ?", [_MARK]).fetchone()
    return None if row is None else row[0]


def write_mark(con: Any, until: datetime) -> None:
    """The watcher has handled every event received up to ``until`` (never moves back)."""
    con.execute(
        "INSERT INTO trigger_marks VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET "
        "handled_until = greatest(trigger_marks.handled_until, excluded.handled_until)",
        [_MARK, until],
    )


def matches(rule: TriggerRule, event_type: str, properties: Mapping[str, Any]) -> bool:
    """Does an event of ``event_type`` with ``properties`` match ``rule``?"""
    if event_type != rule.event_type:
        return False
    for name, wanted in rule.conditions.items():
        value = properties.get(name)
        if isinstance(wanted, Mapping):
            for op, operand in wanted.items():
                if op not in _OPS:
                    raise ConfigError(f"trigger {rule.name}: unknown operator {op!r}; use one of {', '.join(_OPS)}")
                try:
                    if not _OPS[op](value, operand):
                        return False
                except TypeError:
                    return False
        elif value != wanted:
            return False
    return True


@dataclass(frozen=True)
class Fired:
    """What one rule did for a set of matching events."""

    rule: str
    events: int
    users: int
    goals: int


def new_matches(
    con: Any, rules: Sequence[TriggerRule], since: datetime
) -> list[tuple[TriggerRule, list[tuple[str, str, str | None]]]]:
    """Events received after ``since`` that match a rule: per rule, ``(event_id, user_id, item_id)``."""
    types = sorted({r.event_type for r in rules})
    if not types:
        return []
    rows = con.execute(
        "SELECT event_id, user_id, item_id, type, properties FROM events "
        "WHERE received_at > ? AND type IN (SELECT unnest(?::VARCHAR[])) ORDER BY received_at, event_id",
        [since, types],
    ).fetchall()
    found = []
    for rule in rules:
        hits = []
        for event_id, user_id, item_id, kind, properties in rows:
            props = json.loads(properties) if isinstance(properties, str) else (properties or {})
            if matches(rule, kind, props if isinstance(props, Mapping) else {}):
                hits.append((str(event_id), str(user_id), None if item_id is None else str(item_id)))
        if hits:
            found.append((rule, hits))
    return found


def fire(
    store: Store, settings: Settings, rule: TriggerRule, hits: Sequence[tuple[str, str, str | None]], *, now: datetime
) -> Fired:
    """Propose, record and deliver one goal of ``rule.template`` per user of ``hits`` (today)."""
    config = ProposalConfig()
    # Only people active lately, as in the daily run, up to this moment: by events of their own, not
    # the ones that fired the rule (a stock_low about a customer last seen years ago serves nobody).
    users = active_users(
        store, now + timedelta(seconds=1), config.active_days, {user for _, user, _ in hits},
        not_counting=[event_id for event_id, _, _ in hits],
    )
    if not users:
        return Fired(rule.name, len(hits), 0, 0)
    wanted = {(user, item) for _, user, item in hits if item is not None}
    day = now.date()
    ctx = build_context(store, now, users, repurchase=promoted_repurchase(settings.models_path))
    candidates = propose_candidates(ctx, users_templates(store, settings, users, [rule.template]).values())
    if candidates.height == 0:
        return Fired(rule.name, len(hits), len(users), 0)
    # Prefer, per user, the candidates that hold an item the events were about.
    holds = [bool({(u, i) for i in items} & wanted) for u, items in zip(
        candidates.get_column("user_id").to_list(), candidates.get_column("items").to_list(), strict=True)]
    candidates = candidates.with_columns(pl.Series("_holds", holds))
    best = candidates.filter(pl.col("_holds").any().over("user_id").not_() | pl.col("_holds")).drop("_holds")
    best = with_goal_ids(best, day)
    # The slate's rules: no cart equal (Jaccard ≥ 0.5) to one made lately, none from a shop that
    # already has a cart today — so a stock_low resent with a new id makes no second cart.
    choice = ChoiceConfig(budget=1, epsilon=0.0)
    best = slate_columns(store, best, day, choice)
    history = read_history(store, now, users)
    decided = decide(best, history, now, current_scorer(settings.models_path), choice,
                     rng=np.random.default_rng(0), activity=ctx.user_activity())
    chosen = decided.filter(pl.col("status") == "chosen").with_columns(
        pl.lit(f"trigger:{rule.name}").alias("policy"), pl.lit(1.0).alias("propensity")
    )
    before = store.scalar("SELECT count(*) FROM goals")
    record_goals(store, chosen, now=now)
    added = int(store.scalar("SELECT count(*) FROM goals") or 0) - int(before or 0)  # type: ignore[call-overload]
    if added or _unfinished(store, day, users):  # a trigger's deliverable a crash left proposed is finished now
        planning = planning_for(settings, "trigger")  # the LLM plans it when configured, as every path
        try:
            execute(
                store, settings, day, users, now=now, planner=planning.planner, critic=planning.critic,
                concurrency=planning.concurrency,
            )
        finally:
            planning.close()
    return Fired(rule.name, len(hits), len(users), added)


def _unfinished(store: Store, day: date, users: Sequence[str]) -> bool:
    """Has a trigger's deliverable of ``day`` for ``users`` been recorded but not carried out?"""
    found = store.scalar(
        "SELECT count(*) FROM deliverables d JOIN goals g USING (goal_id) WHERE d.date = ? AND "
        "d.status = 'proposed' AND g.policy LIKE 'trigger:%' AND d.user_id IN (SELECT unnest(?::VARCHAR[]))",
        [day, list(users)],
    )
    return bool(found)


class TriggerWatcher:
    """The background thread that evaluates the rules on newly committed events (module docstring)."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
        interval: float = 0.5,
    ) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._interval = interval
        self._since = self._resume_from(clock())
        self._marked = self._since
        self._seen: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.fired: list[Fired] = []

    def start(self) -> None:
        if not self._settings.triggers:
            return
        self._thread = threading.Thread(target=self._run, name="orchestrion-triggers", daemon=True)
        self._thread.start()

    def _resume_from(self, now: datetime) -> datetime:
        """Where to start looking: the stored mark (at most :data:`CATCH_UP` back), or now."""
        if not self._settings.triggers:
            return now - LOOKBACK
        con = self._store.cursor()
        try:
            mark = handled_until(con)
            if mark is None:  # a new store: the events loaded before the first start fire nothing
                write_mark(con, now - LOOKBACK)
                return now - LOOKBACK
        finally:
            con.close()
        since = max(mark, now - CATCH_UP)
        if since < now - LOOKBACK:
            log.info("triggers: looking again at the events received since %s (the last ones handled)",
                     since.isoformat(timespec="seconds"))
        return since

    def check(self) -> list[Fired]:
        """Look once: fire the rules on the events received since the last look, then move the mark.

        A rule that raises leaves the mark (and the in-memory watermark) where they were: the
        same events are looked at next time, and goal ids keep what was done from being done twice.
        """
        store = Store(self._store.cursor(), None)
        try:
            now = self._clock()
            found = new_matches(store.con, self._settings.triggers, self._since - LOOKBACK)
            results = []
            for rule, hits in found:
                fresh = [h for h in hits if f"{rule.name}|{h[0]}" not in self._seen]
                if not fresh:
                    continue
                results.append(fire(store, self._settings, rule, fresh, now=now))
                self._seen.update(f"{rule.name}|{h[0]}" for h in fresh)
            self._since = now
            if results or now - self._marked >= _MARK_EVERY:
                write_mark(store.con, now)
                self._marked = now
            if len(self._seen) > 100_000:
                self._seen.clear()  # the goal ids still keep a re-seen event from proposing twice
            self.fired.extend(results)
            return results
        finally:
            store.con.close()

    def _run(self) -> None:
        failures = 0
        while not self._stop.wait(min(30.0, self._interval * 2**failures)):
            try:
                for fired in self.check():
                    log.info("trigger %s: %d events, %d goals", fired.rule, fired.events, fired.goals)
                failures = 0
            except Exception:
                failures = min(failures + 1, 10)
                log.exception("trigger evaluation failed; the events stay stored and are looked at again")

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
