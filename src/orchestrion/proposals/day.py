"""The day's proposals: read the store, propose goals with every template, rank, choose, record.

:func:`propose` is what ``orchestrion goals propose`` and the scheduler call. For a date D and a
batch of users it builds the templates' context from events strictly before D 00:00 UTC (so a
day's goals never depend on that day's own events), proposes candidates, scores them with the
promoted ranker (the prior until one is promoted), chooses within each user's daily budget with
ε-greedy exploration — only for users active in ``active_days`` before D, under the slate's rules
(no two overlapping goals, none overlapping a recent deliverable, one cart per shop:
:mod:`orchestrion.ranking.slate`) and, with a promoted ranker, declining goals below its send
threshold — and writes *every* candidate to ``goals`` — the chosen ones with their
propensity, the others with the reason they were not chosen — plus one deliverable per chosen
goal. Goal ids hash (user, template, params, date), so proposing a day twice finds the same ids:
users who already have goals for D are skipped (their day is done), nothing is duplicated.

:func:`show_goals` reads one user's day back, "why this" and "not chosen" records included.
"""

from __future__ import annotations

import json
import math
import shlex
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as clock
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from orchestrion.errors import NotFoundError, UsageError
from orchestrion.goals import (
    Candidate,
    ContextConfig,
    Goal,
    GoalContext,
    GoalTemplate,
    goal_ids,
    propose_candidates,
    templates,
)
from orchestrion.goals.context import PurchaseStats
from orchestrion.proposals.history import DayPurchaseStats, ReadAhead, StoreHistory, has_purchases
from orchestrion.proposals.lists import listed_frame
from orchestrion.proposals.record import CONFIRMING_SQL, SENT_SQL, open_proposed
from orchestrion.ranking import FEATURES, ChoiceConfig, Scorer, decide
from orchestrion.ranking.features import HISTORY_SCHEMA
from orchestrion.ranking.slate import DEFAULT_REDUNDANCY, recent_overlaps
from orchestrion.recommenders.repurchase import RepurchaseModel
from orchestrion.store import Store
from orchestrion.training.pipelines import purchase_features
from orchestrion.training.promoted import current_scorer, promoted_repurchase

__all__ = [
    "ProposalConfig",
    "ProposalResult",
    "active_users",
    "build_context",
    "choice_for",
    "day_context",
    "day_goals",
    "declined_goals",
    "propose",
    "read_history",
    "recent_deliverables",
    "record_goals",
    "refuse_future_day",
    "retitle_reasons",
    "show_goals",
    "slate_columns",
    "with_shop",
]

class ProposalConfig(BaseModel):
    """How a day is proposed: the chooser's rules, who counts as active, the templates' models."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    choice: ChoiceConfig = Field(default_factory=ChoiceConfig)
    active_days: int = Field(
        30, gt=0, description="Only users with an event in this many days before D get proposals, in every path."
    )
    decline: bool = Field(
        True,
        description="With a promoted ranker, decline goals whose predicted P(thumb up) is below the send threshold "
        "learned with it (the prior never declines).",
    )
    context: ContextConfig = Field(default_factory=ContextConfig)
    seed: int = 0


@dataclass(frozen=True)
class ProposalResult:
    """What :func:`propose` did for one date."""

    date: date
    users: int
    skipped: int
    candidates: int
    chosen: int
    policy: str
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "date": self.date.isoformat(),
            "users": self.users,
            "skipped_users": self.skipped,
            "candidates": self.candidates,
            "chosen": self.chosen,
            "policy": self.policy,
            "seconds": round(self.seconds, 3),
        }


def day_start(day: date) -> datetime:
    """D 00:00 UTC: proposals for D see events strictly before it."""
    return datetime.combine(day, clock())


def active_users(
    store: Store,
    as_of: datetime,
    days: int,
    among: Iterable[str] | None = None,
    *,
    not_counting: Iterable[str] = (),
) -> list[str]:
    """Users with at least one event in the ``days`` days before ``as_of``, sorted (of ``among`` when given).

    Every path that delivers (daily, scheduled, catch-up, backfill, trigger) asks this: only people
    active lately get anything, so a day in 2026 sends nothing to a customer last seen in 2011.
    The events ``not_counting`` names (by id) do not count: a trigger's own event is not a sign that
    the person is still around.
    """
    params: dict[str, Any] = {"as_of": as_of, "start": as_of - timedelta(days=days)}
    where = ""
    if among is not None:
        params["among"] = sorted(set(among))
        where = " AND user_id IN (SELECT unnest($among::VARCHAR[]))"
    skipped = sorted(set(not_counting))
    if skipped:
        params["skipped"] = skipped
        where += " AND event_id NOT IN (SELECT unnest($skipped::VARCHAR[]))"
    rows = store.con.execute(
        f"SELECT DISTINCT user_id FROM events WHERE ts < $as_of AND ts >= $start{where} ORDER BY 1", params
    ).fetchall()
    return [str(r[0]) for r in rows]


def recent_deliverables(
    store: Store, users: Sequence[str], start: date, end: date, *, turned_down_since: date | None = None
) -> pl.DataFrame:
    """The users' deliverables dated ``start`` .. ``end`` (inclusive) that did not fail and were not
    cancelled before anything of them was sent (:data:`~orchestrion.proposals.record.SENT_SQL`: a
    list the delivery found mostly repeats holds nothing back, the person never saw it), those
    still awaiting approval whatever their date (however old, or of a later day when earlier days
    are backfilled after it: the cart waits for the person now), and those the person turned down
    dated ``turned_down_since`` .. ``end``, with the goal's proposed items, cost and
    shop: what :func:`orchestrion.ranking.slate.recent_overlaps` compares with.

    ``items`` is what the deliverable holds (a cart after the order cap, exclusions and stock);
    ``goal_items`` what its goal proposed, which is what a new candidate is like before the same cuts;
    ``waiting`` whether it still awaits approval; ``turned_down`` whether the person rejected it,
    thumbed it down (their latest thumb) or left it unapproved until it expired (``expired``,
    :func:`orchestrion.delivery.deliverables.expire_approvals`); ``kept`` whether it was delivered or
    is waiting.
    """
    frame: pl.DataFrame = store.con.sql(
        "WITH thumbs AS (SELECT deliverable_id, arg_max(thumb, feedback_id) AS thumb FROM feedback "
        "WHERE thumb IS NOT NULL AND user_id IN (SELECT unnest($users::VARCHAR[])) GROUP BY 1) "
        "SELECT d.user_id, d.date, d.title, d.items, g.items AS goal_items, g.cost, g.template, "
        "d.status = 'awaiting_approval' AS waiting, "
        "d.status = 'rejected' OR coalesce(t.thumb = 'down', false) OR e.deliverable_id IS NOT NULL AS turned_down, "
        "e.deliverable_id IS NOT NULL AS expired, "
        "d.status IN ('delivered', 'awaiting_approval') AS kept "
        "FROM deliverables d JOIN goals g USING (goal_id) LEFT JOIN thumbs t USING (deliverable_id) "
        "LEFT JOIN (SELECT DISTINCT deliverable_id FROM pending_actions WHERE decided_by = 'expiry' "
        "AND user_id IN (SELECT unnest($users::VARCHAR[]))) e USING (deliverable_id) "
        f"WHERE ((d.date BETWEEN $start AND $end AND d.status <> 'failed' AND {SENT_SQL}) "
        "OR d.status = 'awaiting_approval' "
        "OR (d.date BETWEEN $since AND $end AND (d.status = 'rejected' OR t.thumb = 'down' "
        "OR e.deliverable_id IS NOT NULL))) "
        "AND d.user_id IN (SELECT unnest($users::VARCHAR[]))",
        params={"start": start, "end": end, "users": sorted(set(users)),
                "since": turned_down_since if turned_down_since is not None else start},
    ).pl()
    frame = frame.cast(
        {"items": pl.List(pl.String), "goal_items": pl.List(pl.String), "cost": pl.Float64, "date": pl.Date}
    )
    return with_shop(frame)


def with_shop(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with ``shop``: the domain of its template (a cart's shop), the template when unknown."""
    domains = {name: template.domain for name, template in templates().items()}
    return frame.with_columns(
        pl.col("template").replace_strict(domains, default=pl.col("template"), return_dtype=pl.String).alias("shop")
    )


def slate_columns(store: Store, candidates: pl.DataFrame, day: date, choice: ChoiceConfig) -> pl.DataFrame:
    """``candidates`` (with ``date``) with ``shop``, ``recent`` and ``recent_detail`` for the chooser."""
    candidates = with_shop(candidates)
    threshold = choice.redundancy if choice.redundancy is not None else DEFAULT_REDUNDANCY
    start = day - timedelta(days=math.ceil(choice.recent_days))
    since = min(start, day - timedelta(days=math.ceil(choice.turned_down_days)))
    users = candidates.get_column("user_id").unique().to_list()
    previous = recent_deliverables(store, users, start, day, turned_down_since=since)
    if not choice.one_cart_per_shop:
        previous = previous.drop("shop")
    return recent_overlaps(candidates, previous, threshold)


def choice_for(config: ProposalConfig, scorer: Scorer) -> ChoiceConfig:
    """The chooser's rules for ``scorer``: its send threshold when it is a ranker and ``decline`` is on."""
    if not config.decline or scorer.ranker is None or scorer.threshold is None or config.choice.min_score is not None:
        return config.choice
    return config.choice.model_copy(update={"min_score": scorer.threshold})


def read_items(store: Store) -> pl.DataFrame:
    """The catalog without free properties."""
    frame: pl.DataFrame = store.con.sql(
        "SELECT item_id, domain, title, creator, price, currency, category, tags FROM items"
    ).pl()
    return frame


def read_exclusions(store: Store, users: Sequence[str] | None = None, day: date | None = None) -> pl.DataFrame:
    """``user_id, item_id`` of every item thumbed down (for ``users`` when given) and, for ``day``,
    every item of ``users``' lists of the last days (:func:`~orchestrion.proposals.lists.listed_frame`):
    a goal made for ``day`` holds none of them."""
    frame: pl.DataFrame = store.con.sql("SELECT user_id, item_id FROM item_exclusions").pl()
    if users is None:
        return frame
    frame = frame.filter(pl.col("user_id").is_in(list(users)))
    if day is None:
        return frame
    listed = listed_frame(store.con, day, users)
    return pl.concat([frame.cast({"user_id": pl.String, "item_id": pl.String}), listed]).unique(maintain_order=True)


def build_context(
    store: Store,
    as_of: datetime,
    users: Iterable[str],
    *,
    events: pl.DataFrame | None = None,
    items: pl.DataFrame | None = None,
    repurchase: RepurchaseModel | None = None,
    config: ContextConfig | None = None,
    features: Callable[[datetime], pl.DataFrame] | None = None,
) -> GoalContext:
    """The templates' context for ``users`` on the day starting at ``as_of``.

    ``events`` and ``items`` may be handed in already read (the replay reads them once); else the
    events are read from the store as the templates need them (:class:`StoreHistory`) and purchase
    statistics per batch of users (:class:`DayPurchaseStats`); with events handed in, the purchase
    statistics of every customer are read at once (``pipelines/purchase_stats.sql``), from
    ``features(as_of)`` when given (the replay keeps each cut-off's, which its repurchase fits reuse).
    """
    users = list(users)
    stats: PurchaseStats | None
    if events is None:
        history: pl.DataFrame | StoreHistory = StoreHistory(store, as_of)
        stats = DayPurchaseStats(store, as_of) if has_purchases(store, as_of) else None
    else:
        history = events
        bought = events.filter(pl.col("type") == "purchase").height > 0
        stats = (features or partial(purchase_features, store.con))(as_of) if bought else None
    return GoalContext(
        as_of,
        users,
        history,
        read_items(store) if items is None else items,
        exclusions=read_exclusions(store, users, as_of.date()),
        purchase_stats=stats,
        repurchase=repurchase,
        config=config,
    )


def read_history(store: Store, before: datetime, users: Sequence[str] | None = None) -> pl.DataFrame:
    """Every deliverable sent before ``before`` with its latest thumb, in :data:`HISTORY_SCHEMA`.

    A thumb's time (``revealed_at``) is on the deliverable's own clock: its day plus how long after
    the deliverable was made the thumb came (never later than its wall-clock arrival). Live, that
    is about when it arrived; in a backfill of 2011, where every day is made minutes apart in 2026,
    a thumb given an hour after its deliverable counts from that day on, as it would have then —
    so the per-user feedback features vary on historical days as they do live, and a thumb never
    counts before its deliverable existed.
    """
    frame: pl.DataFrame = store.con.sql(
        """
        SELECT d.user_id, CAST(d.date AS TIMESTAMP) AS sent_at, g.template, g.variant, g.kind,
               CASE f.thumb WHEN 'up' THEN 1 WHEN 'down' THEN 0 END::TINYINT AS thumb,
               least(f.received_at,
                     CAST(d.date AS TIMESTAMP) + greatest(f.received_at - d.created_at, INTERVAL 0 SECOND))
                   AS revealed_at
        FROM deliverables d
        JOIN goals g USING (goal_id)
        LEFT JOIN (
            SELECT deliverable_id, arg_max(thumb, feedback_id) AS thumb, max(received_at) AS received_at
            FROM feedback WHERE thumb IS NOT NULL GROUP BY deliverable_id
        ) f USING (deliverable_id)
        WHERE CAST(d.date AS TIMESTAMP) < $before
        """,
        params={"before": before},
    ).pl()
    frame = frame.cast(dict(HISTORY_SCHEMA))  # type: ignore[arg-type]
    return frame if users is None else frame.filter(pl.col("user_id").is_in(list(users)))


def with_goal_ids(candidates: pl.DataFrame, day: date) -> pl.DataFrame:
    """``candidates`` with their stable ``goal_id`` and the ``date``."""
    ids = goal_ids(
        candidates.get_column("user_id").to_list(),
        candidates.get_column("template").to_list(),
        candidates.get_column("params").to_list(),
        day,
    )
    return candidates.with_columns(pl.Series("goal_id", ids, dtype=pl.String), pl.lit(day).alias("date"))


def record_goals(store: Store, decided: pl.DataFrame, *, now: datetime) -> None:
    """Write decided goals (chosen and not) and a deliverable per chosen goal, in one transaction.

    Goals already stored (the same day proposed again) are left as they are. They are found with
    an anti-join on the goal's own day, not with ``INSERT OR IGNORE``: DuckDB plans that as a join
    against the whole table, and for ``deliverables``, with two unique columns, as a nested loop
    join of the batch against every deliverable ever made (measured: 0.03 s for the first batch
    of a day, 0.6 s for the fourth, growing every day). Two uncommitted writers of one goal: the
    later commit fails with DuckDB's constraint error, as it did with ``INSERT OR IGNORE``.
    """
    if decided.height == 0:
        return
    table = decided.unique("goal_id", keep="first", maintain_order=True).select(
        "goal_id",
        "user_id",
        "date",
        "template",
        "variant",
        "kind",
        "params",
        "title",
        "items",
        "details",
        pl.struct([pl.col(n).round(6) for n in FEATURES]).struct.json_encode().alias("features"),
        "score",
        "propensity",
        "slot",
        "policy",
        "status",
        "reason",
        "reason_detail",
        # a chosen goal's "why" is led by how it was chosen (its note: an exploration pick, thumbs)
        pl.when((pl.col("status") == "chosen") & pl.col("reason_detail").is_not_null())
        .then(pl.concat_str(pl.col("reason_detail"), pl.lit(". "), pl.col("why").str.slice(0, 1).str.to_uppercase(),
                            pl.col("why").str.slice(1)))
        .otherwise(pl.col("why"))
        .alias("why"),
        "cost",
        "risk",
        pl.lit(now).alias("created_at"),
    )
    days = table.get_column("date").unique().sort().to_list()
    with store.transaction() as con:
        con.register("_orchestrion_goals", table.to_arrow())
        try:
            for day in days:
                _insert_new_goals(con, day)
        finally:
            con.unregister("_orchestrion_goals")


def _insert_new_goals(con: duckdb.DuckDBPyConnection, day: date) -> None:
    """Insert the registered ``_orchestrion_goals`` of ``day`` not stored yet, and their deliverables."""
    con.execute(
        "INSERT INTO goals SELECT n.* FROM _orchestrion_goals n WHERE n.date = $day AND n.goal_id NOT IN "
        "(SELECT goal_id FROM goals WHERE date = $day)",
        {"day": day},
    )
    open_proposed(con, day, "_orchestrion_goals")


@contextmanager
def day_context(
    store: Store, models_root: Path, day: date, config: ProposalConfig | None = None
) -> Iterator[GoalContext]:
    """The context every batch of ``day`` shares; hand it to :func:`propose` as ``shared``.

    It holds the catalog and the promoted repurchase model; events are read per batch (and per
    domain when a domain's model is fitted) and purchase statistics are computed per batch from
    the batch's purchases and the day's per item figures (:mod:`orchestrion.proposals.history`), so the
    memory a run needs follows the batch, not the history. ``shared.prefetch(next_users)`` starts
    the next batch's reads on a worker thread while this batch works; leaving the context stops it.
    """
    config = config or ProposalConfig()
    as_of = day_start(day)
    ahead = ReadAhead(store)
    try:
        yield GoalContext(
            as_of,
            [],
            StoreHistory(store, as_of, ahead=ahead),
            read_items(store),
            purchase_stats=DayPurchaseStats(store, as_of, ahead=ahead) if has_purchases(store, as_of) else None,
            repurchase=promoted_repurchase(models_root),
            config=config.context,
        )
    finally:
        ahead.close()


def refuse_future_day(day: date, now: datetime) -> None:
    """Raise UsageError when ``day`` is more than one day after ``now`` (UTC; a time zone ahead of UTC
    may already be on tomorrow): its goals would be made from what is known now and then count as
    that day's, never made again when the day comes.

    >>> refuse_future_day(date(2026, 12, 4), datetime(2026, 12, 3, 9))
    >>> refuse_future_day(date(2026, 12, 20), datetime(2026, 12, 3, 9))
    Traceback (most recent call last):
    ...
    orchestrion.errors.UsageError: date 2026-12-20 is in the future (it is 2026-12-03 UTC): ...
    """
    if day > now.date() + timedelta(days=1):
        raise UsageError(
            f"date {day.isoformat()} is in the future (it is {now.date().isoformat()} UTC): a day's goals and runs "
            f"use what is known by that day, and would then count as done when the day comes; run it on or "
            f"after {day.isoformat()} (at most one day ahead, for time zones ahead of UTC)"
        )


def propose(
    store: Store,
    models_root: Path,
    day: date,
    users: Sequence[str] | None = None,
    *,
    now: datetime,
    config: ProposalConfig | None = None,
    templates: Iterable[GoalTemplate] | None = None,
    scorer: Scorer | None = None,
    shared: GoalContext | None = None,
) -> ProposalResult:
    """Propose, rank, choose and record the goals of ``day`` for ``users`` (default: every user), of
    whom only those active in the ``active_days`` before ``day`` get anything.

    >>> from datetime import datetime, date
    >>> import tempfile
    >>> with Store.open(":memory:") as s:
    ...     propose(s, Path(tempfile.mkdtemp()), date(2024, 1, 2), now=datetime(2024, 1, 2)).chosen
    0
    """
    refuse_future_day(day, now)
    started = time.perf_counter()
    config = config or ProposalConfig()
    as_of = day_start(day)
    wanted = active_users(store, as_of, config.active_days, users)
    done = {str(r[0]) for r in store.con.execute("SELECT DISTINCT user_id FROM goals WHERE date = ?", [day]).fetchall()}
    batch = [u for u in wanted if u not in done]
    scorer = scorer or current_scorer(models_root)
    if not batch:
        return ProposalResult(day, 0, len(wanted), 0, 0, scorer.name, time.perf_counter() - started)
    if shared is not None:  # one day's shared context (see day_context): only this batch's work is new
        ctx = shared.for_users(batch, exclusions=read_exclusions(store, batch, day))
    else:
        ctx = build_context(store, as_of, batch, repurchase=promoted_repurchase(models_root), config=config.context)
    candidates = propose_candidates(ctx, templates)
    if candidates.height == 0:
        return ProposalResult(day, len(batch), len(done), 0, 0, scorer.name, time.perf_counter() - started)
    candidates = with_goal_ids(candidates, day)
    choice = choice_for(config, scorer)
    candidates = slate_columns(store, candidates, day, choice)
    history = read_history(store, as_of, batch)
    rng = np.random.default_rng([config.seed, day.toordinal()])
    decided = decide(candidates, history, as_of, scorer, choice, rng=rng, activity=ctx.user_activity())
    record_goals(store, decided, now=now)
    chosen = int((decided.get_column("status") == "chosen").sum())
    return ProposalResult(
        day, len(batch), len(done), decided.height, chosen, scorer.name, time.perf_counter() - started
    )


def retitle_reasons(con: Any, changes: Sequence[tuple[str, date, str, str]]) -> None:
    """Name the deliverables that took the slots by their titles as they are now (inside the
    caller's transaction): ``changes`` holds ``(user_id, date, old title, new title)`` of
    deliverables retitled after the choice (a cart cut to the cap, a thumbed-down item taken out).

    A goal not chosen says which goal kept its place — "it repeats much of '<title>'", "its place
    went to '<title>'" — with the title it had when chosen; the person is shown the deliverable
    under its final title, so the quoted title is rewritten in that user's not-chosen reasons of
    that day. One statement per rank of a user's changes, so that no reason row is matched twice.
    """
    rows = [(u, d, f"'{old}'", f"'{new}'") for u, d, old, new in changes if old and new and old != new]
    if not rows:
        return
    frame = pl.DataFrame(rows, schema=["user_id", "date", "old", "new"], orient="row").with_columns(
        pl.int_range(pl.len()).over("user_id", "date").alias("rank")
    )
    name = f"_orchestrion_retitled_{id(frame)}"
    con.register(name, frame.to_arrow())
    try:
        for rank in range(int(frame.get_column("rank").max() or 0) + 1):  # type: ignore[arg-type]
            con.execute(
                f"UPDATE goals AS g SET reason_detail = replace(g.reason_detail, c.old, c.new) FROM {name} c "
                "WHERE c.rank = $rank AND g.user_id = c.user_id AND g.date = c.date AND g.status <> 'chosen' "
                "AND contains(g.reason_detail, c.old)",
                {"rank": rank},
            )
    finally:
        con.unregister(name)


def show_goals(store: Store, user_id: str, day: date) -> list[Goal]:
    """One user's goals of ``day``: chosen first (by slot), then the rest by score.

    Raises NotFoundError when nothing was proposed for them that day, saying how to propose.
    """
    rows = store.con.execute(
        "SELECT * FROM goals WHERE user_id = ? AND date = ? "
        "ORDER BY status = 'chosen' DESC, slot NULLS LAST, score DESC, goal_id",
        [user_id, day],
    )
    names = [d[0] for d in rows.description or []]
    found = [dict(zip(names, row, strict=True)) for row in rows.fetchall()]
    if not found:
        raise NotFoundError(
            f"no goals for {user_id!r} on {day.isoformat()}; propose them first with "
            f"`orchestrion goals propose --date {day.isoformat()} --users {shlex.quote(user_id)}`"
        )
    goals = []
    for row in found:
        features = json.loads(row["features"]) if row["features"] else {}
        candidate = Candidate.from_row({**row, **{k: features.get(k, 0.0) for k in ("utility", "signal", "novelty")}})
        goals.append(
            Goal(
                goal_id=row["goal_id"],
                date=row["date"],
                candidate=candidate,
                score=float(row["score"]),
                status=row["status"],
                policy=row["policy"],
                propensity=row["propensity"],
                slot=row["slot"],
                reason=row["reason"],
                reason_detail=row["reason_detail"],
                features=features,
            )
        )
    return goals


def day_goals(store: Store, user_id: str, day: date) -> dict[str, Any]:
    """One user's day for people (the API's ``GET /v1/users/{id}/goals``, ``goals show``, the web
    page): the chosen goals with "why this" as written for what was finally delivered and their
    deliverable's status, then what was not chosen with the reason in words and what it would have
    been. Raises NotFoundError (how to propose) when nothing was proposed for them that day.

    >>> with Store.open(":memory:") as s:
    ...     try:
    ...         day_goals(s, "u1", date(2024, 1, 2))
    ...     except NotFoundError as exc:
    ...         print(str(exc)[:31])
    no goals for 'u1' on 2024-01-02
    """
    goals = show_goals(store, user_id, day)
    rows = store.con.execute(
        f"SELECT goal_id, deliverable_id, status, title, why, items, error, {CONFIRMING_SQL} FROM deliverables d "
        "WHERE user_id = ? AND date = ?",
        [user_id, day],
    ).fetchall()
    delivered = {str(r[0]): r for r in rows}
    chosen, others = [], []
    for goal in goals:
        c = goal.candidate
        if goal.status == "chosen":
            found = delivered.get(goal.goal_id)
            chosen.append(
                {
                    "goal_id": goal.goal_id,
                    "deliverable_id": goal.deliverable_id,
                    "slot": goal.slot,
                    "template": c.template,
                    "variant": c.variant,
                    "title": str(found[3]) if found else c.title,
                    "why": str(found[4]) if found and found[4] else c.why,
                    "items": list(found[5]) if found else list(c.items),
                    "status": str(found[2]) if found else None,
                    "status_reason": (str(found[6]) if found[6] else None) if found else None,
                    "confirming": bool(found[7]) if found else False,
                    "runs_at": found[8] if found else None,
                    "how_chosen": goal.reason_detail,
                    "score": round(goal.score, 6),
                    "propensity": None if goal.propensity is None else round(goal.propensity, 6),
                    "policy": goal.policy,
                }
            )
        else:
            others.append(
                {
                    "goal_id": goal.goal_id,
                    "template": c.template,
                    "variant": c.variant,
                    "title": c.title,
                    "reason": goal.reason,
                    "reason_detail": goal.reason_detail,
                    "would_have_been": c.why,
                    "items": list(c.items),
                    "score": round(goal.score, 6),
                }
            )
    return {"user_id": user_id, "date": day.isoformat(), "chosen": chosen, "not_chosen": others}


def declined_goals(con: duckdb.DuckDBPyConnection, user_id: str, day: date) -> list[tuple[str, str, Any, Any, Any]]:
    """The goals of ``user_id`` on ``day`` that were not chosen, best first: title, template, reason,
    reason in words, "why" it would have been — as a person reads them: a goal whose items they
    received that day (all within a chosen goal's or its deliverable's) is left out, and of
    not-chosen goals with the same items only the best is shown (a cart of the same two lines
    proposed by two templates is one alternative, not two)."""
    rows = con.execute(
        "SELECT g.title, g.template, g.reason, g.reason_detail, g.why, g.items, g.status, d.items FROM goals g "
        "LEFT JOIN deliverables d USING (goal_id) WHERE g.user_id = ? AND g.date = ? "
        "ORDER BY g.score DESC, g.goal_id",
        [user_id, day],
    ).fetchall()
    received = [frozenset(r[5] or ()) | frozenset(r[7] or ()) for r in rows if r[6] == "chosen"]
    shown: set[frozenset[str]] = set()
    out = []
    for title, template, reason, detail, why, items, status, _ in rows:
        if status != "not_chosen":
            continue
        these = frozenset(items or ())
        if these and (these in shown or any(these <= got for got in received)):
            continue
        shown.add(these)
        out.append((str(title), str(template), reason, detail, why))
    return out
