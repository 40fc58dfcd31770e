"""Choosing the day's goals: the daily budget, fatigue, the policy's caps, and exploration.

**Greedy set.** Of the eligible candidates (not held back by fatigue, the risk cap, an overlap with
a recent deliverable or with a better-scored goal of the same day), each user's
best ``budget`` (minus what they already got today: after that the day is done), then only those
scoring at least ``min_score``, then — when a ``volume`` is set — only the ``volume`` best of all.

**Exploration.** Each goal of the greedy set is swapped out with probability ε for a goal drawn
uniformly from the same user's other eligible candidates scoring at least ``min_score`` (the
user's *pool*; a user with no other candidate keeps the greedy goal; a user with no greedy goal
gets nothing). ε is a bounded share of the slots (at most
:data:`MAX_EPSILON`): enough to learn what the ranker would otherwise never try, never enough to
make the day random, and the volume and each user's count stay what the greedy set says. Every
chosen goal's *propensity* — its probability of being chosen under this policy — is logged, so
another ranker can be evaluated off-policy on these days (:mod:`orchestrion.ranking.offpolicy`).
For a user with m greedy goals and n pool goals, S ~ Binomial(m, ε) swaps::

    greedy goal:  1 − ε  (1 when n = 0)        pool goal:  E[min(S, n)] / n

Every candidate not chosen gets a reason, and a sentence with the numbers:

* ``recent`` — it overlaps one of the user's deliverables of the last ``recent_days`` days
  (:mod:`orchestrion.ranking.slate`; the caller computes the ``recent`` column);
* ``fatigue`` — a goal of the same kind was sent less than ``fatigue_days`` ago;
* ``redundant`` — it overlaps (item Jaccard ≥ ``redundancy``, or more than that share of the smaller
  goal's items shared, or a second cart from one shop) a
  better-scored goal of the same user and day, which was kept;
* ``policy`` — riskier than ``max_risk``, or swapped out by exploration;
* ``budget`` — the user's ``budget`` slots went to other goals, named with their scores (an
  exploration pick among them says so), or were already used;
* ``score`` — below ``min_score``, or below the day's cut-off when a ``volume`` is set.

Everything is numpy over all candidates at once: sorting, per-user ranks, one random draw per
candidate; no Python loop over users or events.

>>> import polars as pl
>>> frame = pl.DataFrame({"user_id": ["u", "u", "u"], "kind": ["a", "b", "c"],
...     "fatigue_kind": [0.0, 0.0, 0.0], "risk": [0.1, 0.1, 0.1]})
>>> out = choose(frame, np.array([0.2, 0.9, 0.5]), ChoiceConfig(budget=2, epsilon=0.0))
>>> out.select("kind", "status", "slot", "reason").rows()
[('a', 'not_chosen', None, 'budget'), ('b', 'chosen', 1, None), ('c', 'chosen', 2, None)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from orchestrion.ranking.slate import DEFAULT_REDUNDANCY, shop_only, suppressed

__all__ = ["MAX_EPSILON", "ChoiceConfig", "GreedySet", "choose", "greedy_set", "inclusion_propensity"]

MAX_EPSILON: Final = 0.5

Bools = npt.NDArray[np.bool_]
Floats = npt.NDArray[np.float64]


class ChoiceConfig(BaseModel):
    """The chooser's rules: budget, exploration rate, fatigue window, the policy's caps, volume."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    budget: int = Field(3, ge=0, description="Deliverables per user per day; after these the day is done.")
    epsilon: float = Field(0.1, ge=0, le=MAX_EPSILON, description="Share of slots chosen at random.")
    min_score: float | None = Field(None, description="Candidates scoring below this are not chosen.")
    volume: int | None = Field(None, ge=0, description="At most this many goals in all (the best-scored).")
    fatigue_days: float = Field(2.0, ge=0, description="A kind sent less than this many days ago is held back.")
    max_risk: float = Field(1.0, ge=0, le=1, description="Candidates riskier than this are never chosen.")
    redundancy: float | None = Field(
        DEFAULT_REDUNDANCY,
        gt=0,
        le=1,
        description="Two goals of a user whose item Jaccard is at least this, or who share more than this share "
        "of the smaller one's items, overlap: only the better-scored is chosen (the other: `redundant`); None turns "
        "the rule off.",
    )
    one_cart_per_shop: bool = Field(True, description="At most one cart (a goal with a cost) per shop a day.")
    recent_days: float = Field(
        7.0, ge=0, description="A goal overlapping a deliverable of this many days back is not chosen (`recent`)."
    )
    turned_down_days: float = Field(
        60.0, ge=0,
        description="A goal overlapping a deliverable the person rejected or thumbed down this many days back is not "
        "chosen (`recent`).",
    )


@dataclass(frozen=True)
class GreedySet:
    """The greedy choice over one day's candidates, and what made the others miss it."""

    eligible: Bools
    greedy: Bools
    pool: Bools
    fatigue: Bools
    risky: Bools
    recent: Bools  # overlaps a deliverable of the last days (a column the caller computed)
    redundant_by: npt.NDArray[np.int64]  # the better-scored goal that made it redundant, −1 when none
    within_budget: Bools
    rank: npt.NDArray[np.int64]  # 1-based rank of each candidate within its user (eligible first)
    budget_left: npt.NDArray[np.int64]  # per candidate: the user's slots left today
    cut: float  # the lowest greedy score (the day's cut-off), nan when none
    user_greedy: npt.NDArray[np.int64]  # per candidate: the user's goals in the greedy set (m)
    user_pool: npt.NDArray[np.int64]  # per candidate: the user's goals in the pool (n)


NEW_FOR_YOU: Final = "something new we're trying for you"
"""How a not-chosen reason names an exploration pick that took the place (plain words, no internals)."""


def greedy_set(
    frame: pl.DataFrame,
    scores: Floats,
    config: ChoiceConfig,
    used: pl.DataFrame | None = None,
    *,
    as_logged: bool = False,
) -> GreedySet:
    """The greedy set of one day (see the module docstring); ``frame`` needs user_id, fatigue_kind, risk.

    ``as_logged`` (off-policy evaluation of a logged day): the slate's overlaps are taken as the
    log recorded them (reasons ``recent`` and ``redundant``) instead of being resolved again with
    ``scores``. Another ranker keeping a different one of two near-identical carts has no logged
    thumb to be judged on; judged on the one kept, it is judged on the same cart.
    """
    n = frame.height
    fatigue_cut = 2.0 ** (-config.fatigue_days / 7.0) if config.fatigue_days > 0 else math.inf
    fatigue = frame.get_column("fatigue_kind").to_numpy().astype(np.float64) > fatigue_cut
    risky = frame.get_column("risk").to_numpy().astype(np.float64) > config.max_risk
    if "recent" in frame.columns:
        recent = frame.get_column("recent").fill_null(False).to_numpy().astype(bool)
    elif "reason" in frame.columns:  # a logged day: the rule does not depend on the scores
        recent = (frame.get_column("reason") == "recent").fill_null(False).to_numpy().astype(bool)
    else:
        recent = np.zeros(n, dtype=bool)
    eligible = ~(fatigue | risky | recent)
    if as_logged and "reason" in frame.columns:
        logged = (frame.get_column("reason") == "redundant").fill_null(False).to_numpy().astype(bool)
        redundant_by = np.where(logged, n, -1).astype(np.int64)  # by a goal kept that day (not named here)
    elif config.redundancy is not None:
        slate = frame if config.one_cart_per_shop or "cost" not in frame.columns else frame.drop("cost")
        redundant_by = suppressed(slate, scores, eligible, config.redundancy)
    else:
        redundant_by = np.full(n, -1, dtype=np.int64)
    eligible &= redundant_by < 0
    redundant_by = np.where(redundant_by >= n, -1, redundant_by) if as_logged else redundant_by
    users, codes = np.unique(frame.get_column("user_id").to_numpy().astype(str), return_inverse=True)
    codes = codes.reshape(-1)
    left = np.full(users.size, config.budget, dtype=np.int64)
    if used is not None and used.height:
        done = used.join(pl.DataFrame({"user_id": users}), on="user_id", how="inner")
        left[np.searchsorted(users, done.get_column("user_id").to_numpy().astype(str))] -= (
            done.get_column("used").to_numpy().astype(np.int64)
        )
    order = np.lexsort((np.arange(n), -np.where(eligible, scores, -np.inf), codes))
    counts = np.bincount(codes, minlength=users.size)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - np.repeat(starts, counts) + 1
    budget_left = left[codes]
    within = eligible & (rank <= budget_left)
    greedy = within.copy()
    if config.min_score is not None:
        greedy &= scores >= config.min_score
    if config.volume is not None and greedy.sum() > config.volume:
        candidates = np.flatnonzero(greedy)
        best = candidates[np.lexsort((candidates, -scores[candidates]))][: config.volume]
        greedy = np.zeros(n, dtype=bool)
        greedy[best] = True
    taken = np.bincount(codes[greedy], minlength=users.size)
    pool = eligible & ~greedy & (taken[codes] > 0)
    if config.min_score is not None:  # a declined goal is not explored either: below the bar is never sent
        pool &= scores >= config.min_score
    room = np.bincount(codes[pool], minlength=users.size)
    cut = float(scores[greedy].min()) if greedy.any() else float("nan")
    return GreedySet(
        eligible, greedy, pool, fatigue, risky, recent, redundant_by, within, rank, budget_left, cut, taken[codes],
        room[codes],
    )


def inclusion_propensity(g: GreedySet, epsilon: float) -> Floats:
    """P(chosen) of each candidate under within-user exploration (0 outside the greedy set and pool).

    >>> frame = pl.DataFrame({"user_id": ["u", "u", "u"], "fatigue_kind": [0.0] * 3, "risk": [0.0] * 3})
    >>> g = greedy_set(frame, np.array([0.9, 0.5, 0.1]), ChoiceConfig(budget=1))
    >>> inclusion_propensity(g, 0.2).round(3).tolist()
    [0.8, 0.1, 0.1]
    """
    m, n = g.user_greedy, np.maximum(g.user_pool, 1)
    top = int(m.max()) if m.size else 0
    expected = np.zeros(m.size)
    for k in range(1, top + 1):  # E[min(S, n)], S ~ Binomial(m, ε); m is at most the budget
        pmf = np.where(k <= m, _binomial(m, k, epsilon), 0.0)
        expected += np.minimum(k, n) * pmf
    greedy_p = np.where(g.user_pool > 0, 1.0 - epsilon, 1.0)
    return np.where(g.greedy, greedy_p, np.where(g.pool, expected / n, 0.0)).astype(np.float64)


def _binomial(m: npt.NDArray[np.int64], k: int, p: float) -> Floats:
    comb = np.array([math.comb(int(mi), k) if k <= mi else 0 for mi in range(int(m.max()) + 1)], dtype=np.float64)
    return np.asarray(comb[m] * p**k * (1.0 - p) ** np.maximum(m - k, 0), dtype=np.float64)


def _days_words(days: pl.Expr) -> pl.Expr:
    """"1 day", "2 days", "1.5 days": a whole number of days without its ".0"."""
    whole = days == days.round(0)
    number = pl.when(whole).then(days.cast(pl.Int64).cast(pl.String)).otherwise(days.cast(pl.String))
    return pl.format("{} {}", number, pl.when(days == 1.0).then(pl.lit("day")).otherwise(pl.lit("days")))


def choose(
    frame: pl.DataFrame,
    scores: Floats,
    config: ChoiceConfig,
    *,
    rng: np.random.Generator | None = None,
    used: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """``frame`` with ``score, status, slot, propensity, greedy, eligible, reason, reason_detail`` added.

    ``used`` (``user_id, used``) counts deliverables a user already got today.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    scores = np.asarray(scores, dtype=np.float64)
    n = frame.height
    g = greedy_set(frame, scores, config, used)
    eps = config.epsilon
    users, codes = np.unique(frame.get_column("user_id").to_numpy().astype(str), return_inverse=True)
    codes = codes.reshape(-1)
    dropped = g.greedy & (g.user_pool > 0) & (rng.random(n) < eps)
    swaps = np.bincount(codes[dropped], minlength=users.size)
    # Draw each user's swaps from their pool without replacement: random keys, ranked within the user.
    keys = np.where(g.pool, rng.random(n), np.inf)
    order = np.lexsort((keys, codes))
    counts = np.bincount(codes, minlength=users.size)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    draw_rank = np.empty(n, dtype=np.int64)
    draw_rank[order] = np.arange(n) - np.repeat(starts, counts)
    drawn = g.pool & (draw_rank < swaps[codes])
    chosen = (g.greedy & ~dropped) | drawn
    # Slots: each user's chosen goals in score order.
    order = np.lexsort((np.arange(n), -scores, ~chosen, codes))
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n) - np.repeat(starts, counts) + 1
    slot = np.where(chosen, position, 0)
    propensity = np.where(chosen, inclusion_propensity(g, eps), np.nan)
    titles = frame.get_column("title").cast(pl.String).to_numpy() if "title" in frame.columns else np.full(n, None)
    by_title = [None if b < 0 else str(titles[b]) for b in g.redundant_by.tolist()] if n else []
    by_shop = shop_only(frame, g.redundant_by, config.redundancy)
    facts = pl.DataFrame(
        {
            "_chosen": chosen,
            "_fatigue": g.fatigue,
            "_recent": g.recent,
            "_redundant": g.redundant_by >= 0,
            "_by_title": pl.Series(by_title, dtype=pl.String),
            "_by_shop": by_shop,
            "_by_score": np.where(g.redundant_by >= 0, scores[np.maximum(g.redundant_by, 0)], np.nan),
            # the overlapping goal it gave way to may itself lose its place (budget, volume, an exploration swap)
            "_by_chosen": (g.redundant_by >= 0) & chosen[np.maximum(g.redundant_by, 0)] if n else np.zeros(0, bool),
            "_risky": g.risky,
            "_dropped": dropped & ~chosen,
            "_within": g.within_budget,
            "_rank": g.rank,
            "_left": np.maximum(g.budget_left, 0),
            "_slot": slot,
            "_propensity": propensity,
            "_greedy": g.greedy,
            "_eligible": g.eligible,
        }
    )
    # What took each person's places, named in the reasons of the goals that missed them: never "went to
    # ones that looked more useful" when a lower-scored exploration pick took one.
    title = pl.col("title").cast(pl.String) if "title" in frame.columns else pl.lit("another one")
    named = pl.format("'{}'", "_title")
    takers = (
        frame.select(pl.col("user_id"), title.alias("_title"))
        .with_columns(pl.Series("_c", chosen), pl.Series("_g", g.greedy), pl.Series("_slot", slot))
        .filter(pl.col("_c"))
        .sort("user_id", "_slot")
        .group_by("user_id", maintain_order=True)
        .agg(
            pl.when(pl.col("_g"))
            .then(named)
            .otherwise(pl.format("{} ({})", named, pl.lit(NEW_FOR_YOU)))
            .str.join(", ")
            .alias("_takers"),
            named.filter(~pl.col("_g")).str.join(", ").alias("_explorers"),
        )
    )
    facts = (
        pl.concat([frame.select("user_id"), facts], how="horizontal")
        .join(takers, on="user_id", how="left", maintain_order="left")
        .drop("user_id")
    )
    days = (-7.0 * pl.col("fatigue_kind").clip(1e-12).log(2)).round(1)
    kept = pl.col("_by_title").fill_null("another one")
    # What made it redundant, said as it is: shared items, or only a second cart from one shop.
    overlap = (
        pl.when(pl.col("_by_shop"))
        .then(pl.format("you get at most one cart a day from each shop, and it came second to '{}'", kept))
        .otherwise(pl.format("it repeats much of '{}'", kept))
    )
    reason = (
        pl.when(pl.col("_chosen"))
        .then(None)
        .when(pl.col("_recent"))
        .then(pl.lit("recent"))
        .when(pl.col("_fatigue"))
        .then(pl.lit("fatigue"))
        .when(pl.col("_redundant"))
        .then(pl.lit("redundant"))
        .when(pl.col("_risky") | pl.col("_dropped"))
        .then(pl.lit("policy"))
        .when(~pl.col("_within"))
        .then(pl.lit("budget"))
        .otherwise(pl.lit("score"))
    )
    recent_detail = (
        pl.col("recent_detail").fill_null("it repeats something you got in the last few days")
        if "recent_detail" in frame.columns
        else pl.lit("it repeats something you got in the last few days")
    )
    detail = (
        pl.when(pl.col("_chosen"))
        .then(None)
        .when(pl.col("_recent"))
        .then(recent_detail)
        .when(pl.col("_fatigue"))
        .then(
            pl.format(
                "you got one like it {} ago, and one comes at most every {}",
                _days_words(days),
                pl.lit("day" if config.fatigue_days == 1 else f"{config.fatigue_days:g} days"),
            )
        )
        .when(pl.col("_redundant") & pl.col("_by_chosen"))
        .then(pl.format("{}, which looked more useful to you and was kept for the day", overlap))
        .when(pl.col("_redundant") & pl.col("_takers").is_not_null())
        .then(
            pl.format(
                "{}, which looked more useful to you but was not sent either; you got {} instead",
                overlap,
                "_takers",
            )
        )
        .when(pl.col("_redundant"))
        .then(
            pl.format(
                "{}, which looked more useful to you but was not sent either; nothing was sent to you today",
                overlap,
            )
        )
        .when(pl.col("_risky"))
        .then(pl.lit("it is riskier than the settings allow"))
        .when(pl.col("_dropped"))
        .then(
            pl.format(
                "it was among your best for the day, but its place went to {}, {} (about one place in {} is)",
                pl.col("_explorers").fill_null("another one"),
                pl.lit(NEW_FOR_YOU),
                pl.lit(f"{round(1 / eps) if eps > 0 else 0:g}"),
            )
        )
        .when(pl.col("_left") <= 0)
        .then(pl.lit(f"you already had your {config.budget} for the day"))
        .when(~pl.col("_within") & pl.col("_takers").is_not_null())
        .then(
            pl.format(
                "it came #{} for you, and the day's {} {} to {}",
                "_rank",
                "_left",
                pl.when(pl.col("_left") == 1).then(pl.lit("place went")).otherwise(pl.lit("places went")),
                "_takers",
            )
        )
        .when(~pl.col("_within"))
        .then(
            pl.format(
                "it came #{} for you, behind {} that were not sent either; nothing was sent to you today",
                "_rank",
                "_left",
            )
        )
        .otherwise(pl.lit("it did not look useful enough to send today"))
    )
    out = frame.with_columns(pl.Series("score", scores))
    return (
        pl.concat([out, facts], how="horizontal")
        .with_columns(
            pl.when(pl.col("_chosen")).then(pl.lit("chosen")).otherwise(pl.lit("not_chosen")).alias("status"),
            pl.when(pl.col("_chosen")).then(pl.col("_slot").cast(pl.Int32)).alias("slot"),
            pl.col("_propensity").fill_nan(None).alias("propensity"),
            pl.col("_greedy").alias("greedy"),
            pl.col("_eligible").alias("eligible"),
            reason.alias("reason"),
            detail.alias("reason_detail"),
        )
        .drop(facts.columns)
    )
