"""A ranking policy end to end: features → scores (prior or ranker) → choice; and retraining
with the off-policy promotion rule. The store-backed proposals and the replay both call these.

The promotion rule (:func:`retrain`): both the current policy and a new ranker are evaluated
off-policy (:mod:`orchestrion.ranking.offpolicy`) on days whose thumbs neither was trained on —
the days since the current ranker's training data ended, the new ranker cross-fitted by user —
and the new one is promoted only when its SNIPS lower bound (one-sided 95 %) is above the current
policy's estimate. The artifact itself is fitted on all the feedback; with it comes its send
threshold (:func:`send_threshold`), below which the production chooser declines a goal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt
import polars as pl

from orchestrion.errors import UsageError
from orchestrion.ranking.exploration import ChoiceConfig, choose
from orchestrion.ranking.features import goal_features
from orchestrion.ranking.offpolicy import Z_PROMOTE, Estimate, difference_lower, estimate, should_promote
from orchestrion.ranking.prior import prior_score
from orchestrion.ranking.ranker import GoalRanker, RankerConfig

__all__ = [
    "EXPLORATION_NOTE",
    "RetrainOutcome",
    "ScoreFunction",
    "Scorer",
    "decide",
    "retrain",
    "send_threshold",
    "with_notes",
]


class ScoreFunction(Protocol):
    """Anything that scores goal features and has a name to log the goals under."""

    @property
    def name(self) -> str: ...

    def __call__(self, features: pl.DataFrame) -> npt.NDArray[np.float64]: ...


@dataclass(frozen=True)
class Scorer:
    """The prior (``ranker`` None) or a trained ranker, with the name goals are logged under."""

    ranker: GoalRanker | None = None
    version: str | None = None
    trained_until: date | None = None  # the first day the ranker's training data did not include
    threshold: float | None = None  # the send threshold learned with the ranker: P(thumb up) below it declines

    @property
    def name(self) -> str:
        return "prior" if self.ranker is None else f"ranker:{self.version or 'unsaved'}"

    def __call__(self, features: pl.DataFrame) -> npt.NDArray[np.float64]:
        return prior_score(features) if self.ranker is None else self.ranker.predict(features)


def decide(
    candidates: pl.DataFrame,
    history: pl.DataFrame,
    as_of: datetime,
    scorer: ScoreFunction,
    config: ChoiceConfig,
    *,
    rng: np.random.Generator,
    used: pl.DataFrame | None = None,
    activity: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Features, scores and the choice for one day's candidates; adds ``policy``."""
    features = goal_features(candidates, history, as_of, activity)
    chosen = choose(features, scorer(features), config, rng=rng, used=used)
    learns = getattr(scorer, "ranker", None) is not None  # the prior never reads a thumb
    return with_notes(chosen, history, as_of, thumbs=learns).with_columns(
        pl.lit(f"{scorer.name} ε={config.epsilon:g}").alias("policy")
    )


EXPLORATION_NOTE: Final = "A new suggestion we're trying for you"
NOUNS: Final = {"reorder": "reorder carts", "watchlist": "movie lists", "digest": "digests", "playlist": "mixes"}


def with_notes(decided: pl.DataFrame, history: pl.DataFrame, as_of: datetime, *, thumbs: bool) -> pl.DataFrame:
    """``decided`` with, for each chosen goal, a note of how it was chosen in ``reason_detail`` (a
    chosen goal has no reason): an exploration pick says so; with ``thumbs`` (a ranker, which reads
    them), a goal of a template the person thumbed says how their thumbs went — "Because you liked 3
    of the 4 digests you rated" or "You told us less of reorder carts: 3 of the 4 you rated got a
    thumbs down". The counts are the person's latest thumbs on their deliverables of the template
    received before ``as_of``, the ones the ranker's features saw.

    >>> from orchestrion.ranking.features import empty_history
    >>> d = pl.DataFrame({"user_id": ["u"], "template": ["digest"], "status": ["chosen"], "greedy": [False],
    ...     "reason_detail": [None]}, schema_overrides={"reason_detail": pl.String})
    >>> with_notes(d, empty_history(), datetime(2024, 1, 1), thumbs=True).item(0, "reason_detail")
    "A new suggestion we're trying for you"
    """
    thumbed = history.filter(
        (pl.col("sent_at") < as_of) & pl.col("thumb").is_not_null() & (pl.col("revealed_at") <= as_of)
    )
    counts = thumbed.group_by("user_id", "template").agg(
        pl.col("thumb").cast(pl.Int64).sum().alias("_ups"), pl.len().cast(pl.Int64).alias("_rated")
    )
    noun = pl.col("template").replace_strict(NOUNS, default=pl.format("{} suggestions", "template"))
    liked = pl.format("Because you liked {} of the {} {} you rated", "_ups", "_rated", noun)
    less = pl.format(
        "You told us less of {}: {} of the {} you rated got a thumbs down", noun, pl.col("_rated") - pl.col("_ups"),
        "_rated",
    )
    thumb_note = (
        pl.when(~pl.lit(thumbs) | pl.col("_rated").is_null())
        .then(None)
        .when(pl.col("_ups") * 2 >= pl.col("_rated"))
        .then(liked)
        .otherwise(less)
    )
    explored = pl.when(pl.col("greedy").not_()).then(pl.lit(EXPLORATION_NOTE))
    note = pl.concat_str([explored, thumb_note], separator=". ", ignore_nulls=True)
    note = pl.when(note == "").then(None).otherwise(note)
    return (
        decided.join(counts, on=["user_id", "template"], how="left", maintain_order="left")
        .with_columns(
            pl.when(pl.col("status") == "chosen").then(note).otherwise(pl.col("reason_detail")).alias("reason_detail")
        )
        .drop("_ups", "_rated")
    )


@dataclass(frozen=True)
class RetrainOutcome:
    """What one retraining did: the refitted ranker (None when there was too little feedback),
    both off-policy estimates, and whether the new ranker should replace the current policy."""

    ranker: GoalRanker | None
    promote: bool
    examples: int
    candidate: Estimate | None = None
    current: Estimate | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    threshold: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "promote": self.promote,
            "examples": self.examples,
            "candidate_estimate": None if self.candidate is None else self.candidate.as_dict(),
            "current_estimate": None if self.current is None else self.current.as_dict(),
            "send_threshold": None if self.threshold is None else round(self.threshold, 4),
            "coefficients": None if self.ranker is None else self.ranker.coefficients(),
            "note": self.note,
        }


def send_threshold(labelled: pl.DataFrame) -> float | None:
    """The P(thumb up) below which a ranker declines a goal: the acceptance of the goals sent so far.

    As the replay's learned policy does: a goal is sent only when the ranker expects it to be at
    least as welcome as the goals that were being sent at the full volume. ``labelled`` has a 0/1
    ``label`` and, when known, the ``policy`` each goal was chosen by: then only the goals the prior
    chose count, as the prior declines nothing. The goals a ranker sent were themselves chosen above
    its threshold, so a threshold refitted on them would climb at every promotion (on DeskDrop's
    replay it rose from 0.055 to 0.072 over seven promotions and the policy ended up sending a sixth
    of the digests).

    >>> send_threshold(pl.DataFrame({"label": [1, 0, 0, 1, 1], "policy": ["prior ε=0.1"] * 4 + ["ranker:v ε=0.1"]}))
    0.5
    """
    if "policy" in labelled.columns:
        full_volume = labelled.filter(pl.col("policy").str.starts_with("prior"))
        labelled = full_volume if full_volume.height else labelled
    if labelled.height == 0:
        return None
    return float(labelled.get_column("label").cast(pl.Float64).mean())  # type: ignore[arg-type]


FOLDS = 3


def _fold(frame: pl.DataFrame) -> pl.Expr:
    """0 .. FOLDS−1 per user, from the user id's last characters (stable across runs and versions)."""
    return (pl.col("user_id").str.encode("hex").str.slice(-4).str.to_integer(base=16) % FOLDS).cast(pl.Int8)


def retrain(
    log: pl.DataFrame,
    current: ScoreFunction,
    *,
    choice: ChoiceConfig,
    config: RankerConfig | None = None,
    volumes: Mapping[date, int] | None = None,
    trained_until: date | None = None,
    holdout_share: float = 0.25,
    min_decisions: int = 50,
    decline: bool = False,
    z: float = Z_PROMOTE,
) -> RetrainOutcome:
    """Fit a ranker on ``log``'s labelled goals and decide whether it replaces ``current``.

    ``log`` holds every candidate of the logged days (features as scored, ``date``, ``status``,
    ``propensity``) with ``reward`` (the thumb, 1/0, null without one) on chosen goals; ``choice``
    is the chooser both policies are evaluated under (see :func:`orchestrion.ranking.estimate`).

    Both are evaluated where neither has seen the thumbs: on the days since ``trained_until``
    (the first day the current ranker was not trained on; for the prior, the latest
    ``holdout_share`` of the days), with the new ranker *cross-fitted* — users split in
    :data:`FOLDS` groups, each group scored by a ranker fitted on the other groups' feedback. The
    ranker returned is fitted on all the feedback.

    With ``decline`` (production), each policy is evaluated as it would choose: the new ranker with
    the send threshold learned with it, the current one with its own (none for the prior), so a
    ranker that declines what people turn down is judged on what it would still send.
    """
    config = config or RankerConfig()
    labelled = log.filter((pl.col("status") == "chosen") & pl.col("reward").is_not_null()).with_columns(
        pl.col("reward").cast(pl.Int8).alias("label"), _fold(log).alias("_fold")
    )
    n = labelled.height
    if n < config.min_examples or labelled.get_column("label").n_unique() < 2:
        return RetrainOutcome(
            None,
            False,
            n,
            note=f"{n} labelled goals, both thumbs needed and at least {config.min_examples}: keeping {current.name}",
        )
    final = GoalRanker(config).fit(labelled)
    threshold = send_threshold(labelled)
    if trained_until is None:
        days = np.sort(labelled.get_column("date").unique().to_numpy())
        start = days[min(len(days) - 1, int(np.floor(len(days) * (1.0 - holdout_share))))]
    else:
        start = np.datetime64(trained_until)
    window = log.filter(pl.col("date") >= start).with_columns(_fold(log).alias("_fold"))
    known = window.filter((pl.col("status") == "chosen") & pl.col("reward").is_not_null()).height
    since = str(start)[:10]
    if known < min_decisions:
        return RetrainOutcome(
            final,
            False,
            n,
            note=f"only {known} thumbs since {since}, {min_decisions} needed to "
            f"compare with {current.name}: keeping it",
            threshold=threshold,
        )
    scores = np.zeros(window.height)
    for fold in range(FOLDS):
        try:
            probe = GoalRanker(config).fit(labelled.filter(pl.col("_fold") != fold))
        except UsageError as exc:
            return RetrainOutcome(
                final,
                False,
                n,
                note=f"too little feedback to cross-fit a new ranker ({exc}); keeping {current.name}",
                threshold=threshold,
            )
        mine = (window.get_column("_fold") == fold).to_numpy()
        scores[mine] = probe.predict(window.filter(pl.Series(mine)))
    scored = window.with_columns(pl.Series("_candidate", scores))
    new_rules, old_rules = choice, choice
    if decline:
        new_rules = choice.model_copy(update={"min_score": threshold})
        old_rules = choice.model_copy(update={"min_score": getattr(current, "threshold", None)})
    new = estimate(scored, lambda frame: frame.get_column("_candidate").to_numpy(), new_rules, volumes=volumes)
    old = estimate(window, current, old_rules, volumes=volumes)
    promote = should_promote(new, old, min_decisions=min_decisions, z=z)
    verdict = "promoted" if promote else f"kept {current.name}"
    note = (
        f"new ranker SNIPS {new.snips:.4f} vs {current.name} {old.snips:.4f} (difference's lower bound "
        f"{difference_lower(new, old, z=z):+.4f}, z = {z:g}) on {new.decisions} delivered goals since {since}, "
        f"worth {new.effective_size:.0f} and {old.effective_size:.0f} after weighting: {verdict}"
    )
    return RetrainOutcome(final, promote, n, new, old, note, threshold=threshold)
