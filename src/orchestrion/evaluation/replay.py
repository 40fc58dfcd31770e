"""Replay evaluation on a real dataset: does feedback make the goals better?

The protocol, fixed before any policy was compared (``orchestrion eval replay``):

1. Load the dataset into an in-memory store. Walk forward in steps of ``step_days`` (one
   delivery day per step) from ``warmup_days`` after the first event to the last step whose
   outcome window still fits in the data.
2. At each step t, the *active* users are those (of a fixed, seeded sample of at most
   ``max_users``) with an event in the ``active_days`` before t. Every template proposes goals
   for them from events strictly before t — one set of candidates that every policy chooses from.
3. A step's volume — one goal per active user with a candidate (``goals_per_user`` = 1) — and
   the ``budget`` (3 to any one user) are maxima. Within them a policy chooses freely: which goal
   for a user, and which users get more than one or none (its lowest-scored candidates are the
   ones left out, reason ``score``). The prior, random and best-template policies always deliver
   the full volume; the learned one does too during its learning period (the first half of the
   steps) and may then deliver fewer (step 5). Every report gives each policy's goals delivered,
   and ``prior_at_learned_volume`` — the prior's own best-scored goals cut, step by step, to the
   number the learned policy delivered — shows how much of a gap is ranking and how much is
   declining.
4. A delivered goal gets a thumb up when the user's own later behaviour matches it
   (:data:`OUTCOMES`: a reorder cart with at least one item bought within 14 days; a watchlist
   with at least one movie rated within 30 days; a digest with at least one article read within
   7 days), otherwise a thumb down. A thumb is *received* when it becomes knowable — at the
   matching event for an up, at the end of the window for a down — and no policy sees it earlier.
5. The policies:

   * ``prior`` — the transparent prior (:mod:`orchestrion.ranking.prior`), no exploration;
   * ``learned`` — starts on the prior with ε-greedy exploration (ε = ``epsilon``) and logged
     propensities; every ``retrain_every`` steps fits a ranker on its own received thumbs and
     switches to it only when it beats the current policy off-policy (SNIPS, at the full volume)
     on the latest days. At the end of its learning period (``decline``) it fixes a threshold
     once: its own acceptance over the learning-period goals whose thumbs were all in by then.
     From then on it declines (reason ``score``) any goal its ranker gives a lower P(thumb up) —
     it sends a goal only when it expects it to be at least as welcome as the goals it had been
     sending. The prior has no probabilities to do this with: only feedback can calibrate them;
   * ``best_template`` — every active user gets their goal of one template variant (e.g.
     ``reorder/due``; the highest-utility one when they have several), the variant with the
     highest acceptance over the whole replay, chosen in hindsight (which favours this baseline);
   * ``random`` — the same volume drawn uniformly from all candidates (budget respected).

6. Acceptance = thumbs up ÷ goals delivered — the same definition for every policy — per step
   and pooled over the second half of the steps (the learned policy's first half is its learning
   period; its decline threshold is chosen on that half only).

With ``chooser="production"`` (``eval replay --production``) the learned policy promotes and
declines as the nightly retrain does (:func:`orchestrion.training.fits.train_ranker`): every
retraining compares the new ranker and the current policy each as it would choose, with its own
send threshold (:func:`orchestrion.ranking.scoring.send_threshold`, the acceptance of the goals the
prior sent at full volume), promotion needs the confidence bound of ``promotion_z`` (1.645), and
a promoted ranker's threshold applies from the day it is promoted — there is no learning period.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from orchestrion.datasets import DATASETS, load_dataset
from orchestrion.errors import NotFoundError, UsageError
from orchestrion.goals import propose_candidates, templates
from orchestrion.goals.context import NEGATIVE_TYPES
from orchestrion.proposals.day import build_context, read_items, with_goal_ids
from orchestrion.ranking import ChoiceConfig, RankerConfig, Scorer, decide, empty_history, retrain
from orchestrion.ranking.exploration import greedy_set
from orchestrion.ranking.features import HISTORY_SCHEMA
from orchestrion.recommenders.repurchase import RepurchaseConfig, RepurchaseModel
from orchestrion.store import Store
from orchestrion.training.fits import repurchase_examples
from orchestrion.training.pipelines import purchase_features

__all__ = [
    "DATASET_DEFAULTS",
    "OUTCOMES",
    "POLICIES",
    "Outcome",
    "ReplayConfig",
    "ReplayResult",
    "chart",
    "replay",
]

POLICIES: Final = ("prior", "learned", "best_template", "random")


@dataclass(frozen=True)
class Outcome:
    """When a delivered goal of a template counts as accepted: one of its items used by the user
    through an event of ``types`` within ``days`` of delivery."""

    days: int
    types: tuple[str, ...]


OUTCOMES: Final[Mapping[str, Outcome]] = MappingProxyType(
    {
        "reorder": Outcome(14, ("purchase",)),
        "watchlist": Outcome(30, ("rate",)),
        "digest": Outcome(7, ("view", "like", "bookmark", "comment", "follow")),
        "playlist": Outcome(7, ("play",)),
    }
)


class ReplayConfig(BaseModel):
    """The replay's knobs; :data:`DATASET_DEFAULTS` holds the documented per-dataset values."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    step_days: int = Field(7, gt=0)
    warmup_days: int = Field(60, ge=0, description="History before the first step.")
    active_days: int = Field(28, gt=0, description="An event this recent makes a user active.")
    max_users: int | None = Field(None, gt=0, description="Seeded sample of users (time box).")
    max_steps: int | None = Field(None, gt=0, description="Most steps (time box; the last steps are dropped).")
    budget: int = Field(3, gt=0, description="Most goals one user gets in a step.")
    goals_per_user: float = Field(1.0, gt=0, description="Goals delivered per step ÷ active users with candidates.")
    epsilon: float = Field(0.1, ge=0, le=0.5, description="The learned policy's exploration rate.")
    retrain_every: int = Field(1, gt=0, description="Steps between the learned policy's retrainings.")
    decline: bool = Field(
        True,
        description="After its learning period the learned policy declines goals whose predicted P(thumb up) is "
        "below its own acceptance over that period (the budget and the volume are maxima).",
    )
    promotion_z: float = Field(
        0.0,
        ge=0,
        description="The learned policy promotes a new ranker when SNIPS(new) − SNIPS(current) minus this many "
        "standard errors of the paired difference is above 0. 0, the protocol's rule (any improvement); the "
        "production rule is 1.645 (one-sided 95 %).",
    )
    chooser: Literal["protocol", "production"] = Field(
        "protocol",
        description="How the learned policy promotes and declines. 'protocol': the decline threshold is fixed once "
        "at the end of the learning period (step 5 of the protocol). 'production': as the nightly retrain does — "
        "every retraining compares the policies as each would choose, with its own send threshold, and a promoted "
        "ranker brings the threshold refitted with it, which the chooser applies from then on (learning period "
        "or not). Pair it with ``promotion_z`` 1.645 for production's confidence bound.",
    )
    repurchase_every: int = Field(4, gt=0, description="Steps between refits of the repurchase model.")
    ranker: RankerConfig = Field(default_factory=RankerConfig)
    seed: int = 0


DATASET_DEFAULTS: Final[Mapping[str, dict[str, Any]]] = MappingProxyType(
    {
        "online-retail": {"warmup_days": 90, "active_days": 60, "max_users": 1500},
        "movielens-100k": {"warmup_days": 28, "active_days": 28},
        "deskdrop": {"warmup_days": 42, "active_days": 28, "max_users": 1200},
    }
)


@dataclass
class _Policy:
    """One policy's world: its scorer, its delivered goals with thumbs, its decision log."""

    name: str
    scorer: Scorer
    choice: ChoiceConfig
    history: pl.DataFrame
    log: list[pl.DataFrame]
    steps: list[dict[str, Any]]
    notes: list[str]


@dataclass(frozen=True)
class ReplayResult:
    """Acceptance per policy and step; :meth:`as_dict` is the ``--json`` output."""

    dataset: str
    config: ReplayConfig
    steps: list[date]
    policies: dict[str, dict[str, Any]]
    best_template: str | None
    variants: dict[str, float]
    notes: list[str]
    seconds: float
    prior_at_learned_volume: dict[str, Any] | None = None

    def acceptance(self, policy: str) -> float:
        """Second-half acceptance of ``policy``."""
        return float(self.policies[policy]["acceptance"])

    def as_dict(self) -> dict[str, Any]:
        ratios = {}
        prior, random_, best = (self.acceptance(p) for p in ("prior", "random", "best_template"))
        learned = self.acceptance("learned")
        ratios = {
            "learned_over_prior": round(learned / prior, 3) if prior else None,
            "learned_over_best_template": round(learned / best, 3) if best else None,
            "learned_over_random": round(learned / random_, 3) if random_ else None,
        }
        shadow = self.prior_at_learned_volume
        if shadow is not None and shadow["acceptance"]:
            ratios["learned_over_prior_at_learned_volume"] = round(learned / shadow["acceptance"], 3)
        return {
            "dataset": self.dataset,
            "policies": self.policies,
            "prior_at_learned_volume": self.prior_at_learned_volume,
            "ratios": ratios,
            "best_template": self.best_template,
            "variant_acceptance": self.variants,
            "steps": [d.isoformat() for d in self.steps],
            "config": self.config.model_dump(mode="json"),
            "notes": self.notes,
            "seconds": round(self.seconds, 1),
        }


def _sample(users: list[str], limit: int | None, seed: int) -> list[str]:
    """A seeded, stable sample: the users whose hash is smallest (same users for every run)."""
    if limit is None or len(users) <= limit:
        return users
    keyed = sorted(users, key=lambda u: hashlib.blake2b(f"{seed}|{u}".encode(), digest_size=8).digest())
    return sorted(keyed[:limit])


def _outcomes(candidates: pl.DataFrame, events: pl.DataFrame, start: datetime) -> pl.DataFrame:
    """``goal_id, reward, revealed_at`` for every candidate (hidden from the policies until received)."""
    frames = []
    for template, rule in OUTCOMES.items():
        mine = candidates.filter(pl.col("template") == template)
        if mine.height == 0:
            continue
        end = start + timedelta(days=rule.days)
        future = (
            events.filter((pl.col("ts") >= start) & (pl.col("ts") < end) & pl.col("type").is_in(list(rule.types)))
            .group_by("user_id", "item_id")
            .agg(pl.col("ts").min().alias("hit_ts"))
        )
        hits = (
            mine.select("goal_id", "user_id", pl.col("items").alias("item_id"))
            .explode("item_id")
            .join(future, on=["user_id", "item_id"], how="inner")
            .group_by("goal_id")
            .agg(pl.col("hit_ts").min())
        )
        frames.append(
            mine.select("goal_id")
            .join(hits, on="goal_id", how="left")
            .select(
                "goal_id",
                pl.col("hit_ts").is_not_null().cast(pl.Int8).alias("reward"),
                pl.coalesce("hit_ts", pl.lit(end)).alias("revealed_at"),
            )
        )
    if not frames:
        return pl.DataFrame(schema={"goal_id": pl.String, "reward": pl.Int8, "revealed_at": pl.Datetime("us")})
    return pl.concat(frames)


def _delivered(decided: pl.DataFrame, outcomes: pl.DataFrame, at: datetime) -> pl.DataFrame:
    chosen = decided.filter(pl.col("status") == "chosen").join(outcomes, on="goal_id", how="left")
    return chosen.select(
        "user_id",
        pl.lit(at).alias("sent_at"),
        "template",
        "variant",
        "kind",
        pl.col("reward").alias("thumb"),
        "revealed_at",
    ).cast(dict(HISTORY_SCHEMA))  # type: ignore[arg-type]


def _step_record(at: datetime, delivered: pl.DataFrame) -> dict[str, Any]:
    n = delivered.height
    ups = int(delivered.get_column("thumb").sum()) if n else 0
    return {
        "date": at.date().isoformat(),
        "delivered": n,
        "accepted": ups,
        "acceptance": round(ups / n, 4) if n else None,
    }


def _pool(steps: list[dict[str, Any]]) -> dict[str, Any]:
    half = steps[len(steps) // 2 :]
    delivered = sum(s["delivered"] for s in half)
    accepted = sum(s["accepted"] for s in half)
    all_delivered = sum(s["delivered"] for s in steps)
    all_accepted = sum(s["accepted"] for s in steps)
    return {
        "acceptance": round(accepted / delivered, 4) if delivered else 0.0,
        "delivered": delivered,
        "accepted": accepted,
        "acceptance_all_steps": round(all_accepted / all_delivered, 4) if all_delivered else 0.0,
        "by_step": [s["acceptance"] for s in steps],
        "delivered_by_step": [s["delivered"] for s in steps],
    }


def _visible_log(policy: _Policy, at: datetime) -> pl.DataFrame:
    """The policy's decision log with only the thumbs received before ``at``."""
    log = pl.concat(policy.log, how="vertical_relaxed")
    return log.with_columns(pl.when(pl.col("revealed_at") <= at).then(pl.col("reward")).otherwise(None).alias("reward"))


def replay(
    name: str,
    *,
    datasets_root: Path | None,
    config: ReplayConfig | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> ReplayResult:
    """Run the replay protocol (module docstring) on dataset ``name``.

    BLAS and OpenMP run one thread each: the models are small, and on a shared machine their
    thread pools fighting over the cores made the replay several times slower.
    """
    # Import the native libraries first: threadpoolctl limits only the pools already loaded.
    import scipy.linalg  # noqa: F401
    import sklearn.cluster
    import sklearn.ensemble  # noqa: F401
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    started = time.perf_counter()
    if name not in DATASETS:
        raise NotFoundError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if config is None:
        config = ReplayConfig.model_validate(DATASET_DEFAULTS.get(name, {}))
    store = Store.open(":memory:")
    try:
        with threadpool_limits(limits=1):
            load_dataset(store, name, datasets_root=datasets_root)
            return _run(store, name, config, progress, started)
    finally:
        store.close()


def _steps(events: pl.DataFrame, config: ReplayConfig, window: int) -> list[datetime]:
    first, last = events.get_column("ts").min(), events.get_column("ts").max()
    assert isinstance(first, datetime) and isinstance(last, datetime)
    at = datetime.combine((first + timedelta(days=config.warmup_days)).date(), datetime.min.time())
    steps: list[datetime] = []
    while at + timedelta(days=window) <= last:
        steps.append(at)
        at += timedelta(days=config.step_days)
    return steps[: config.max_steps] if config.max_steps is not None else steps


def _run(
    store: Store, name: str, config: ReplayConfig, progress: Callable[[int, int, str], None] | None, started: float
) -> ReplayResult:
    events: pl.DataFrame = store.con.sql(
        "SELECT user_id, item_id, type, domain, ts, value FROM events ORDER BY ts"
    ).pl()
    if events.height == 0:
        raise UsageError(f"dataset {name} loaded no events")
    items = read_items(store)
    domains = set(events.get_column("domain").unique().to_list())
    used = [t for t in templates().values() if t.name in OUTCOMES and t.domain in domains]
    if not used:
        raise UsageError(f"no goal template with a replay outcome reads dataset {name}'s domains {sorted(domains)}")
    window = max(OUTCOMES[t.name].days for t in used)
    steps = _steps(events, config, window)
    if len(steps) < 2:
        raise UsageError(f"dataset {name} spans too little time for a replay with these settings")
    positive = events.filter(~pl.col("type").is_in(list(NEGATIVE_TYPES)))
    sample = set(_sample(sorted(positive.get_column("user_id").unique().to_list()), config.max_users, config.seed))
    # The protocol predates the slate rules (issue 16) and keeps its chooser: with one cart per shop
    # a retail user has one eligible goal, and which of several near-identical carts a new ranker
    # would keep has no logged thumb, so off-policy promotion could never see the ranker's choice.
    base = ChoiceConfig(budget=config.budget, epsilon=0.0, fatigue_days=0.0, redundancy=None, one_cart_per_shop=False)
    explore = base.model_copy(update={"epsilon": config.epsilon})
    policies = {
        "prior": _Policy("prior", Scorer(), base, empty_history(), [], [], []),
        "learned": _Policy("learned", Scorer(), explore, empty_history(), [], [], []),
        "random": _Policy("random", Scorer(), base, empty_history(), [], [], []),
    }
    everything: list[pl.DataFrame] = []  # every candidate with its outcome: for best_template
    volumes: dict[date, int] = {}
    repurchase: RepurchaseModel | None = None
    buys = any(t.name == "reorder" for t in used)
    rng = {p: np.random.default_rng([config.seed, i]) for i, p in enumerate(POLICIES)}
    half = len(steps) // 2
    threshold: float | None = None
    notes: list[str] = []
    shadow: list[dict[str, Any]] = []  # the prior cut to the learned policy's volume: a diagnostic
    features = _PurchaseFeatures(store)
    for index, at in enumerate(steps):
        if progress is not None:
            progress(index, len(steps), at.date().isoformat())
        recent = positive.filter((pl.col("ts") < at) & (pl.col("ts") >= at - timedelta(days=config.active_days)))
        active = sorted(set(recent.get_column("user_id").unique().to_list()) & sample)
        if buys and index % config.repurchase_every == 0:
            repurchase = _fit_repurchase(store, at, features) or repurchase
        ctx = build_context(
            store, at, active, events=events.filter(pl.col("ts") < at), items=items, repurchase=repurchase,
            features=features,
        )
        features.forget_before(at - timedelta(days=_REPURCHASE_LOOKBACK_DAYS))
        candidates = propose_candidates(ctx, used)
        if candidates.height == 0:
            for record in [*(policy.steps for policy in policies.values()), shadow]:
                record.append({"date": at.date().isoformat(), "delivered": 0, "accepted": 0, "acceptance": None})
            continue
        candidates = with_goal_ids(candidates, at.date())
        outcomes = _outcomes(candidates, events, at)
        everything.append(
            candidates.select("user_id", "template", "variant", "kind", "goal_id", "utility")
            .join(outcomes, on="goal_id")
            .with_columns(pl.lit(at).alias("step"))
        )
        activity = ctx.user_activity()
        volume = round(config.goals_per_user * candidates.get_column("user_id").n_unique())
        volumes[at.date()] = volume
        learned = policies["learned"]
        if index > 0 and index % config.retrain_every == 0 and learned.log:
            _retrain(learned, at, window, config, volumes)
        production = config.chooser == "production"
        if config.decline and index == half and not production:
            threshold = _threshold(learned, at, window, notes)
        if production:
            threshold = learned.scorer.threshold  # the promoted ranker's own, as production's chooser reads it
        decided_by: dict[str, pl.DataFrame] = {}
        for name_, policy in policies.items():
            rules = policy.choice.model_copy(update={"volume": volume})
            if name_ == "learned" and threshold is not None and isinstance(policy.scorer, Scorer):
                # A probability threshold: it applies only while the policy is a ranker (P(thumb up)).
                rules = rules.model_copy(update={"min_score": threshold if policy.scorer.ranker is not None else None})
            scorer = _RandomScorer(rng[name_]) if name_ == "random" else policy.scorer
            decided = decide(candidates, policy.history, at, scorer, rules, rng=rng[name_], activity=activity)
            delivered = _delivered(decided, outcomes, at)
            policy.history = pl.concat([policy.history, delivered])
            policy.steps.append(_step_record(at, delivered))
            decided_by[name_] = decided
            if name_ == "learned":
                policy.log.append(decided.join(outcomes, on="goal_id", how="left"))
        sent = int(learned.steps[-1]["delivered"])
        shadow.append(_cut(decided_by["prior"], policies["prior"].choice, sent, outcomes, at))
    best, variants, best_steps = _best_template(everything, steps)
    results = {p.name: _pool(p.steps) for p in policies.values()}
    results["best_template"] = {**_pool(best_steps), "variant": best}
    results["learned"]["retraining"] = policies["learned"].notes
    results["learned"]["decline_threshold"] = None if threshold is None else round(threshold, 4)
    ordered = {p: results[p] for p in POLICIES}
    return ReplayResult(
        name,
        config,
        [s.date() for s in steps],
        ordered,
        best,
        variants,
        notes,
        time.perf_counter() - started,
        _pool(shadow),
    )


def _threshold(learned: _Policy, at: datetime, window: int, notes: list[str]) -> float | None:
    """The learned policy's decline threshold, fixed once at the end of its learning period.

    Its own acceptance over the goals it delivered in that period whose thumbs had all been
    received by ``at`` (sent at least ``window`` days before): from then on it sends a goal only
    when the ranker predicts it at least as likely to be welcome as the goals it had been sending.
    """
    history = learned.history
    resolved = history.filter((pl.col("sent_at") <= at - timedelta(days=window)) & pl.col("thumb").is_not_null())
    if resolved.height == 0:
        notes.append(f"learned: no resolved thumbs by {at.date()}; it never declines a goal")
        return None
    value = float(resolved.get_column("thumb").cast(pl.Float64).mean())  # type: ignore[arg-type]
    notes.append(
        f"learned: from {at.date()} declines goals whose predicted P(thumb up) is below {value:.4f}, its own "
        f"acceptance over the {resolved.height} goals of its learning period whose thumbs were all in by then"
    )
    return value


def _cut(
    decided: pl.DataFrame, choice: ChoiceConfig, volume: int, outcomes: pl.DataFrame, at: datetime
) -> dict[str, Any]:
    """One step of a policy's own ranking cut to ``volume`` goals (its best-scored, budget respected)."""
    scores = decided.get_column("score").to_numpy().astype(np.float64)
    kept = greedy_set(decided, scores, choice.model_copy(update={"volume": volume})).greedy
    chosen = decided.filter(pl.Series(kept)).join(outcomes, on="goal_id", how="left")
    return _step_record(at, chosen.select(pl.col("reward").alias("thumb")))


def _retrain(learned: _Policy, at: datetime, window: int, config: ReplayConfig, volumes: dict[date, int]) -> None:
    """Refit the learned policy's ranker on the steps whose every thumb has been received by ``at``."""
    resolved = [frame for frame in learned.log if frame.get_column("date")[0] <= (at - timedelta(days=window)).date()]
    if not resolved:
        learned.notes.append(f"{at.date()}: no step fully resolved yet; keeping {learned.scorer.name}")
        return
    log = pl.concat(resolved, how="vertical_relaxed")
    current = learned.scorer
    production = config.chooser == "production"
    outcome = retrain(
        log, current, choice=learned.choice, config=config.ranker, volumes=volumes, trained_until=current.trained_until,
        z=config.promotion_z, decline=production and config.decline,
    )
    if outcome.promote and outcome.ranker is not None:
        last_day = log.get_column("date").max()
        assert isinstance(last_day, date)
        # Production keeps the send threshold learned with the ranker (training.fits.train_ranker).
        threshold = outcome.threshold if production and config.decline else None
        learned.scorer = Scorer(outcome.ranker, at.date().isoformat(), last_day + timedelta(days=1), threshold)
    note = outcome.note
    if production and outcome.promote and learned.scorer.threshold is not None:
        note += f"; send threshold {learned.scorer.threshold:.4f}"
    learned.notes.append(f"{at.date()}: {note}")


class _RandomScorer:
    """Uniform random scores: the ``random`` policy through the same chooser."""

    name = "random"

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng

    def __call__(self, features: pl.DataFrame) -> npt.NDArray[np.float64]:
        return self._rng.random(features.height)


def _best_template(
    frames: list[pl.DataFrame], steps: list[datetime]
) -> tuple[str | None, dict[str, float], list[dict[str, Any]]]:
    """The variant with the highest acceptance over the whole replay, and its per-step record.

    Every user with a candidate of the variant gets one (their highest-utility one).
    """
    empty = [{"date": s.date().isoformat(), "delivered": 0, "accepted": 0, "acceptance": None} for s in steps]
    if not frames:
        return None, {}, empty
    every = pl.concat(frames).with_columns(pl.format("{}/{}", "template", "variant").alias("family"))
    given = (
        every.sort(["step", "user_id", "family", "utility", "goal_id"], descending=[False, False, False, True, False])
        .group_by("step", "user_id", "family", maintain_order=True)
        .head(1)
    )
    rates = (
        given.group_by("family")
        .agg(pl.col("reward").mean().alias("acceptance"))
        .sort(["acceptance", "family"], descending=[True, False])
    )
    variants = {str(f): round(float(a), 4) for f, a in rates.iter_rows()}
    best = str(rates.get_column("family")[0])
    per_step = (
        given.filter(pl.col("family") == best)
        .group_by("step")
        .agg(pl.len().alias("delivered"), pl.col("reward").sum().alias("accepted"))
    )
    record = []
    for s in steps:
        row = per_step.filter(pl.col("step") == s)
        n = int(row.get_column("delivered")[0]) if row.height else 0
        ups = int(row.get_column("accepted")[0]) if row.height else 0
        record.append(
            {
                "date": s.date().isoformat(),
                "delivered": n,
                "accepted": ups,
                "acceptance": round(ups / n, 4) if n else None,
            }
        )
    return best, variants, record


_REPURCHASE: Final = RepurchaseConfig(
    horizon_days=OUTCOMES["reorder"].days, training_cutoffs=3, cutoff_step_days=14, max_iter=60, negative_share=0.3
)
_REPURCHASE_LOOKBACK_DAYS: Final = _REPURCHASE.horizon_days + (_REPURCHASE.training_cutoffs - 1) * (
    _REPURCHASE.cutoff_step_days
)
"""How far before a step its repurchase fit's earliest cut-off lies."""


class _PurchaseFeatures:
    """Every customer's purchase statistics by cut-off (``purchase_features``), each computed once.

    A step's context needs its own day's; the repurchase fit every few steps needs the cut-offs 14,
    28 and 42 days before it, which are earlier steps' days (the steps are a week apart): the same
    frames, not three more runs of the pipelines over every purchase.
    """

    def __init__(self, store: Store) -> None:
        self._con = store.con
        self._frames: dict[datetime, pl.DataFrame] = {}

    def __call__(self, as_of: datetime) -> pl.DataFrame:
        if as_of not in self._frames:
            self._frames[as_of] = purchase_features(self._con, as_of)
        return self._frames[as_of]

    def forget_before(self, at: datetime) -> None:
        """Drop the frames of cut-offs before ``at`` (no later fit reads them)."""
        for as_of in [a for a in self._frames if a < at]:
            del self._frames[as_of]


def _fit_repurchase(store: Store, at: datetime, features: _PurchaseFeatures) -> RepurchaseModel | None:
    """A repurchase model for the reorder thumb's 14-day horizon, from cut-offs ending before ``at``."""
    config = _REPURCHASE
    try:
        examples = repurchase_examples(
            store,
            at,
            horizon_days=config.horizon_days,
            cutoffs=config.training_cutoffs,
            step_days=config.cutoff_step_days,
            features=features,
        )
        return RepurchaseModel(config).fit(examples)
    except UsageError:
        return None


def chart(report: dict[str, Any], path: Path) -> Path:
    """A PNG of acceptance per step for every policy of a replay report (``ReplayResult.as_dict``).

    matplotlib comes with the dev extras (``pip install -e '.[dev]'``); it is imported here only.
    """
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - a dev dependency
        raise UsageError("charts need matplotlib: pip install -e '.[dev]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = report["steps"]
    fig, ax = plt.subplots(figsize=(8.0, 3.6), dpi=110)
    for name, policy in report["policies"].items():
        values = [float("nan") if v is None else v for v in policy["by_step"]]
        label = f"{name} ({policy['acceptance']:.3f})" + (f" — {policy['variant']}" if name == "best_template" else "")
        ax.plot(range(len(steps)), values, marker=".", linewidth=1.4 if name == "learned" else 1.0, label=label)
    shadow = report.get("prior_at_learned_volume")
    if shadow is not None and shadow["delivered"] != report["policies"]["prior"]["delivered"]:
        values = [float("nan") if v is None else v for v in shadow["by_step"]]
        label = f"prior cut to learned's volume ({shadow['acceptance']:.3f})"
        ax.plot(range(len(steps)), values, color="grey", linestyle="--", linewidth=1.0, label=label)
    ax.axvline(len(steps) // 2 - 0.5, color="grey", linestyle=":", linewidth=1)
    ticks = list(range(0, len(steps), max(1, len(steps) // 8)))
    ax.set_xticks(ticks, [steps[i] for i in ticks], rotation=30, fontsize="small", ha="right")
    ax.set_ylabel("acceptance (thumbs up / delivered)")
    ax.set_title(f"{report['dataset']}: acceptance per step (second half, right of the dotted line, in the legend)")
    ax.legend(fontsize="small", loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
