"""Train models from the store and save them in the registry: the library behind ``orchestrion train``.

Reads the store through the feature pipelines, hands arrays to the model (models never see the
database), saves the artifact with its metadata (config, dataset, data fingerprint, timings),
and returns the saved version. Loading elsewhere never retrains (:mod:`orchestrion.training.promoted`).

:func:`train_ranker` fits a new goal ranker on every labelled goal (the latest thumb on its
deliverable) and promotes it only if its off-policy estimate on the logged days beats the
current policy's with a margin the evidence supports (its SNIPS lower bound above the current
estimate, see :func:`orchestrion.ranking.retrain`); both estimates, the ranker's coefficients and
its send threshold (the P(thumb up) below which the chooser declines a goal) are saved in the
model's metadata.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

from orchestrion.errors import UsageError
from orchestrion.ranking import FEATURES, ChoiceConfig, RankerConfig, retrain
from orchestrion.recommenders import Interactions, Vocabulary, make_recommender
from orchestrion.recommenders.repurchase import RepurchaseConfig, RepurchaseModel
from orchestrion.store import Store
from orchestrion.training.pipelines import Weighting, interaction_arrays, purchase_features, purchases_between
from orchestrion.training.promoted import current_scorer
from orchestrion.training.versions import ModelVersion, fingerprint, save_version

__all__ = [
    "TrainRankerResult",
    "TrainResult",
    "default_domain",
    "labelled_log",
    "repurchase_examples",
    "train_ranker",
    "train_recommender",
    "train_repurchase",
]


@dataclass(frozen=True)
class TrainResult:
    """A saved version and where the time went (seconds by phase)."""

    version: ModelVersion
    timings: dict[str, float] = field(default_factory=dict)


def default_domain(store: Store) -> str:
    """The domain with the most events: what ``train`` uses when no ``--domain`` is given."""
    row = store.con.execute(
        "SELECT coalesce(domain, '') FROM events GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
    ).fetchone()
    if row is None:
        raise UsageError("the store has no events to train on; load some with `orchestrion datasets load` first")
    return str(row[0])


def train_recommender(
    store: Store,
    models_root: Path,
    name: str,
    *,
    as_of: datetime,
    now: datetime,
    domain: str | None = None,
    weighting: Weighting = "count",
    config: dict[str, Any] | None = None,
    promote: bool = False,
) -> TrainResult:
    """Fit recommender ``name`` on one domain's interactions before ``as_of`` and save it.

    The model's kind in the registry is ``<name>-<domain>`` (e.g. ``als-music``), so each
    domain has its own promoted version.
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()
    domain = domain if domain is not None else default_domain(store)
    arrays = interaction_arrays(store.con, domain=domain, weighting=weighting, as_of=as_of)
    if arrays.matrix.nnz == 0:
        raise UsageError(f"no interactions in domain {domain!r} before {as_of:%Y-%m-%d}; check --domain")
    interactions = Interactions(arrays.matrix, Vocabulary(arrays.user_ids), Vocabulary(arrays.item_ids))
    timings["read_and_build"] = time.perf_counter() - started

    model = make_recommender(name, config)
    started = time.perf_counter()
    model.fit(interactions)
    timings["fit"] = time.perf_counter() - started

    started = time.perf_counter()
    matrix = arrays.matrix
    metadata = {
        "config": model.config_json(),
        "dataset": {"domain": domain, "weighting": weighting, "as_of": as_of.isoformat(),
                    "users": int(matrix.shape[0]), "items": int(matrix.shape[1]), "interactions": int(matrix.nnz)},
        "data_fingerprint": fingerprint(matrix.indptr, matrix.indices, matrix.data, arrays.user_ids, arrays.item_ids),
        "metrics": {},
    }
    version = save_version(
        models_root, f"{name}-{domain or 'all'}", lambda folder: _save(model, folder), metadata,
        now=now, promote_it=promote,
    )
    timings["save"] = time.perf_counter() - started
    return TrainResult(version, timings)


def _save(model: Any, folder: Path) -> None:
    model.save(folder / "model")


def repurchase_examples(
    store: Store,
    cutoff: datetime,
    *,
    horizon_days: int,
    cutoffs: int,
    step_days: int,
    features: Callable[[datetime], pl.DataFrame] | None = None,
) -> pl.DataFrame:
    """Labelled training frames from ``cutoffs`` past cut-offs, the latest ``horizon_days`` before
    ``cutoff`` (so every label window ends before it). ``features(as_of)``, when given, supplies a
    cut-off's purchase statistics (the replay keeps them: its steps' cut-offs are these ones)."""
    frames = []
    stats_at = features or partial(purchase_features, store.con)
    for i in range(cutoffs):
        as_of = cutoff - timedelta(days=horizon_days + i * step_days)
        features_then = stats_at(as_of)
        bought = purchases_between(store.con, as_of, as_of + timedelta(days=horizon_days))
        frames.append(
            features_then.join(bought.with_columns(pl.lit(True).alias("label")), on=["user_id", "item_id"], how="left")
            .with_columns(pl.col("label").fill_null(False), pl.lit(as_of).alias("cutoff"))
        )
    return pl.concat(frames, how="vertical_relaxed")


def train_repurchase(
    store: Store,
    models_root: Path,
    *,
    as_of: datetime,
    now: datetime,
    config: dict[str, Any] | None = None,
    promote: bool = False,
) -> TrainResult:
    """Fit the repurchase model on labelled cut-offs before ``as_of`` and save it (kind ``repurchase``)."""
    cfg = RepurchaseConfig.model_validate(config or {})
    timings: dict[str, float] = {}
    started = time.perf_counter()
    examples = repurchase_examples(
        store, as_of, horizon_days=cfg.horizon_days, cutoffs=cfg.training_cutoffs, step_days=cfg.cutoff_step_days
    )
    timings["read_and_build"] = time.perf_counter() - started
    started = time.perf_counter()
    model = RepurchaseModel(cfg).fit(examples)
    timings["fit"] = time.perf_counter() - started
    started = time.perf_counter()
    metadata = {
        "config": cfg.model_dump(mode="json"),
        "dataset": {"as_of": as_of.isoformat(), "examples": examples.height,
                    "positives": int(examples.get_column("label").sum())},
        "data_fingerprint": fingerprint(
            examples.get_column("user_id").to_numpy(), examples.get_column("item_id").to_numpy(),
            examples.get_column("label").to_numpy(),
        ),
        "metrics": {},
    }
    version = save_version(models_root, "repurchase", model.save, metadata, now=now, promote_it=promote)
    timings["save"] = time.perf_counter() - started
    return TrainResult(version, timings)


def labelled_log(store: Store) -> pl.DataFrame:
    """Every logged goal with its features as scored and, for chosen goals, the latest thumb as
    ``reward`` (1 up, 0 down, null none): the ranker's training and off-policy data."""
    frame: pl.DataFrame = store.con.sql(
        """
        SELECT g.goal_id, g.user_id, g.date, g.template, g.variant, g.kind, g.items, g.features, g.score,
               g.status, g.reason, g.slot, g.propensity, g.policy,
               CASE f.thumb WHEN 'up' THEN 1 WHEN 'down' THEN 0 END AS reward
        FROM goals g
        LEFT JOIN deliverables d USING (goal_id)
        LEFT JOIN (
            SELECT deliverable_id, arg_max(thumb, feedback_id) AS thumb
            FROM feedback WHERE thumb IS NOT NULL GROUP BY deliverable_id
        ) f USING (deliverable_id)
        ORDER BY g.date, g.user_id, g.goal_id
        """
    ).pl()
    if frame.height == 0:
        return frame.with_columns([pl.lit(None, pl.Float64).alias(n) for n in FEATURES])
    schema = pl.Struct({n: pl.Float64 for n in FEATURES})
    decoded = frame.get_column("features").str.json_decode(schema)
    return frame.with_columns(decoded.struct.unnest()).drop("features")


def _day_after(labelled: pl.DataFrame) -> str | None:
    last = labelled.get_column("date").max()
    return (last + timedelta(days=1)).isoformat() if isinstance(last, date) else None


@dataclass(frozen=True)
class TrainRankerResult:
    """A saved ranker version (None when there was too little feedback), promoted or not, and why."""

    version: ModelVersion | None
    promoted: bool
    outcome: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": None if self.version is None else self.version.version,
            "promoted": self.promoted,
            **self.outcome,
        }


def train_ranker(
    store: Store,
    models_root: Path,
    *,
    now: datetime,
    config: RankerConfig | None = None,
    choice: ChoiceConfig | None = None,
) -> TrainRankerResult:
    """Fit a ranker on all feedback; save it; promote it only if it beats the current policy off-policy."""
    config = config or RankerConfig()
    epsilon = (choice or ChoiceConfig()).epsilon
    log = labelled_log(store)
    current = current_scorer(models_root)
    outcome = retrain(
        log, current, config=config, choice=choice or ChoiceConfig(), trained_until=current.trained_until, decline=True
    )
    summary = {"current": current.name, **outcome.as_dict()}
    if outcome.ranker is None:
        return TrainRankerResult(None, False, summary)
    labelled = log.filter(pl.col("reward").is_not_null())
    ranker = outcome.ranker
    metadata = {
        "config": config.model_dump(mode="json"),
        "dataset": {
            "labelled_goals": labelled.height,
            "logged_goals": log.height,
            "ups": int(labelled.get_column("reward").sum()),
        },
        "data_fingerprint": fingerprint(
            labelled.get_column("goal_id").to_numpy(), labelled.get_column("reward").to_numpy()
        ),
        "metrics": {"offpolicy": summary},
        "epsilon": epsilon,
        # The first day the ranker's training data does not cover: the next retraining evaluates
        # it only on later days, where it has not seen the thumbs.
        "trained_until": _day_after(labelled),
        # Below this predicted P(thumb up) the chooser declines a goal while this ranker is promoted.
        "send_threshold": outcome.threshold,
        "coefficients": ranker.coefficients(),
    }
    version = save_version(
        models_root,
        "ranker",
        lambda folder: ranker.save(folder / "model"),
        metadata,
        now=now,
        promote_it=outcome.promote,
        auto_promote_first=False,
    )
    promoted = version.promoted
    return TrainRankerResult(version, promoted, summary)
