"""Fit a model on a fold and score it; grid search over hyper-parameters on a validation fold.

A search space maps config fields to candidate values; the reserved key ``weighting`` is not a
model field but the transform applied to the interaction values before fitting
(``binary``: every row weighs 1; ``value``: the raw value; ``log1p``: log(1 + value)). The grid
is the full cartesian product in the order given; ties keep the first combination.

Only the fold handed in is ever seen here: :func:`tune` is given a fold carved out of the
training part, so the test rows cannot influence the choice.

>>> users = np.repeat(np.arange(6), 4)
>>> items = np.tile(np.arange(4), 6)
>>> fold = Fold.from_mask(users, items, np.ones(24), items == 3)
>>> result = tune("ease", fold, {"l2": [1.0, 10.0]}, k=2)
>>> result.best, len(result.trials)
({'l2': 1.0}, 2)
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from orchestrion.errors import UsageError
from orchestrion.evaluation.metrics import ranking_metrics
from orchestrion.evaluation.splits import Fold
from orchestrion.recommenders import Interactions, make_recommender

__all__ = ["Trial", "TuningResult", "Weighting", "fit_and_score", "parameter_grid", "tune", "weigh"]

Weighting = Literal["binary", "value", "log1p"]
TuneMetric = Literal["ndcg", "precision", "recall", "map"]
WEIGHTING_KEY = "weighting"


def weigh(values: npt.NDArray[Any], weighting: Weighting) -> npt.NDArray[np.float32]:
    """Interaction values → the float32 weights a model is fitted on."""
    v = np.asarray(values, dtype=np.float64)
    if weighting == "binary":
        return np.ones(v.shape, dtype=np.float32)
    if weighting == "value":
        return v.astype(np.float32)
    if weighting == "log1p":
        if np.any(v < 0):
            raise UsageError("log1p weighting needs values ≥ 0; use 'binary' or 'value' for signed values")
        return np.log1p(v).astype(np.float32)
    raise UsageError(f"unknown weighting {weighting!r}; choose one of {', '.join(get_args(Weighting))}")


def parameter_grid(space: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the candidate values, in the order given.

    >>> parameter_grid({"a": [1, 2], "b": ["x"]})
    [{'a': 1, 'b': 'x'}, {'a': 2, 'b': 'x'}]
    """
    for key, values in space.items():
        if isinstance(values, str) or not isinstance(values, Sequence) or len(values) == 0:
            raise UsageError(f"search space entry {key!r} must be a non-empty list of values, got {values!r}")
    keys = list(space)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(space[k] for k in keys))]


@dataclass(frozen=True)
class Trial:
    """One evaluated combination: its parameters, validation metrics and fit time."""

    params: dict[str, Any]
    metrics: dict[str, float]
    fit_seconds: float


@dataclass(frozen=True)
class TuningResult:
    """The winning combination of a grid search and every trial behind it."""

    model: str
    metric: str
    best: dict[str, Any]
    score: float
    trials: tuple[Trial, ...]


def fit_and_score(
    model: str,
    params: Mapping[str, Any],
    fold: Fold,
    *,
    k: int = 10,
    weighting: Weighting = "binary",
) -> Trial:
    """Fit ``model`` with ``params`` on the fold's training rows; rank the top ``k`` unseen items
    for every user with held-out rows; score them against those rows."""
    config = dict(params)
    weighting = config.pop(WEIGHTING_KEY, weighting)
    train = Interactions.from_columns(fold.train_users, fold.train_items, weigh(fold.train_values, weighting))
    recommender = make_recommender(model, config)
    started = time.perf_counter()
    recommender.fit(train)
    fit_seconds = time.perf_counter() - started

    eval_users, rows = np.unique(fold.held_out_users, return_inverse=True)
    rows = rows.reshape(-1)
    cols = train.items.index(fold.held_out_items)
    known = cols >= 0
    # Held-out items the model never saw stay in the denominators (they count as misses).
    relevant = sp.csr_matrix(
        (np.ones(int(known.sum()), dtype=np.float32), (rows[known], cols[known])),
        shape=(eval_users.size, len(train.items)),
    )
    n_relevant = np.bincount(rows, minlength=eval_users.size)
    recs = recommender.recommend(eval_users, n=k, exclude_seen=True)
    metrics = ranking_metrics(recs.indices, relevant, k=k, n_relevant=n_relevant)
    return Trial(params=dict(params), metrics=metrics, fit_seconds=fit_seconds)


def tune(
    model: str,
    validation: Fold,
    space: Mapping[str, Sequence[Any]] | None = None,
    *,
    fixed: Mapping[str, Any] | None = None,
    k: int = 10,
    metric: TuneMetric = "ndcg",
    weighting: Weighting = "binary",
) -> TuningResult:
    """Grid search: fit every combination of ``space`` (plus ``fixed``) on ``validation``'s
    training rows and keep the best ``metric@k`` on its held-out rows. An empty space is a
    single trial with the fixed parameters."""
    combos = parameter_grid(space) if space else [{}]
    base = dict(fixed or {})
    key = f"{metric}@{k}"
    trials = tuple(fit_and_score(model, {**base, **combo}, validation, k=k, weighting=weighting) for combo in combos)
    scores = [t.metrics[key] for t in trials]
    best = int(np.argmax(scores))
    return TuningResult(model=model, metric=key, best=trials[best].params, score=scores[best], trials=trials)
