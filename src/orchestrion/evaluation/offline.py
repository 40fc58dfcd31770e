"""The offline top-n protocols: split → tune on validation → refit on train → score on test.

:func:`evaluate_topn` takes a polars frame with columns ``user_id``, ``item_id``, ``value``
(any GroupLens layout, Last.fm or an events export, once read into that shape) and a protocol:

1. Ids are read as strings; rows with a missing value count as 1; repeated (user, item) pairs
   are summed into one positive; rows are sorted by (user, item) so the split depends neither
   on the input order nor on whether the ids came typed as integers or strings.
   ``min_value`` (unset in the shipped protocols) would drop rows below it first.
2. Per-user random split with ``numpy.random.default_rng(seed)``: ``test_fraction`` of each
   user's items are the test set (see :mod:`~orchestrion.evaluation.splits` for the rounding).
3. From the training part only, the same generator carves ``validation_fraction`` of each
   user's training items into a validation set.
4. For each model, every combination of its grid is fitted on train-minus-validation and
   scored on validation; the best ``metric@k`` wins (ties: first in grid order).
5. The winner's parameters are refitted on the whole training part, and the top ``k`` items,
   training items removed, are scored on the test set (binary relevance: every test row is a
   positive; a test item absent from training is a relevant item that cannot be hit).

Shipped protocols (``PROTOCOLS``): ``movielens`` (75/25, every rating a positive; weights
binary or the rating, chosen per model on validation) and ``lastfm`` (80/20 on user–artist
pairs; weights binary or log(1 + plays), chosen per model on validation), both with seed 42,
k = 10, nDCG@10 as the tuning metric and small grids that fit a few-minute budget on two cores.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from orchestrion.errors import UsageError
from orchestrion.evaluation.splits import Fold, random_split
from orchestrion.evaluation.tuning import TuneMetric, TuningResult, Weighting, fit_and_score, tune
from orchestrion.recommenders import RECOMMENDERS

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "LASTFM",
    "MOVIELENS",
    "PROTOCOLS",
    "ModelResult",
    "ModelSearch",
    "ProtocolConfig",
    "ProtocolResult",
    "evaluate_topn",
]

COLUMNS: Final = ("user_id", "item_id", "value")


class ModelSearch(BaseModel):
    """What to try for one model: fixed config values and a grid over others."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fixed: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)


class ProtocolConfig(BaseModel):
    """A complete, JSON-round-tripping description of an offline top-n protocol."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    test_fraction: float = Field(0.25, gt=0, lt=1)
    validation_fraction: float = Field(0.25, gt=0, lt=1, description="Of each user's training rows.")
    seed: int = 42
    k: int = Field(10, ge=1)
    metric: TuneMetric = "ndcg"
    weighting: Weighting = Field("binary", description="Default value → weight transform.")
    min_value: float | None = Field(None, description="Rows below it are dropped; None keeps all.")
    models: dict[str, ModelSearch]


# The grids are small on purpose: both protocols together must run in a few minutes on two
# cores. They were shaped by validation-only runs: ALS's optimum is a sharp peak in the ratio
# regularization / alpha (≈ 10 on binary MovieLens), so both move in its grid while the number
# of factors, which matters little under that much regularization, is fixed; on MovieLens the
# rating as ALS confidence ("value") beat binary weights on validation.
MOVIELENS: Final = ProtocolConfig(
    name="movielens",
    test_fraction=0.25,
    validation_fraction=0.25,
    weighting="binary",
    models={
        "popularity": ModelSearch(),
        "itemknn": ModelSearch(grid={"similarity": ["cosine", "bm25"], "k": [50, 200]}),
        "als": ModelSearch(
            fixed={"factors": 64, "iterations": 15},
            grid={"weighting": ["binary", "value"], "alpha": [1.0, 2.0, 3.0], "regularization": [20.0, 30.0, 50.0]},
        ),
        "bpr": ModelSearch(
            fixed={"factors": 64, "iterations": 100},
            grid={"learning_rate": [0.005, 0.01], "regularization": [0.01, 0.1]},
        ),
        "ease": ModelSearch(
            grid={"weighting": ["binary", "log1p"], "l2": [250.0, 500.0, 1000.0, 2000.0], "dropout": [0.0, 0.25]}
        ),
    },
)

LASTFM: Final = ProtocolConfig(
    name="lastfm",
    test_fraction=0.2,
    validation_fraction=0.2,
    weighting="binary",
    models={
        "popularity": ModelSearch(),
        "itemknn": ModelSearch(
            grid={"weighting": ["binary", "log1p"], "similarity": ["cosine", "bm25"], "k": [50, 200]}
        ),
        "als": ModelSearch(
            fixed={"factors": 64, "iterations": 15},
            grid={
                "weighting": ["binary", "log1p"],
                "alpha": [1.0, 3.0, 10.0],
                "regularization": [10.0, 30.0, 100.0],
            },
        ),
        "bpr": ModelSearch(
            fixed={"factors": 64, "iterations": 100},
            grid={"learning_rate": [0.005, 0.01], "regularization": [0.01, 0.1]},
        ),
        # Artists with fewer than 3 training listeners (of 17,632, about 14,000) are left out of
        # the dense model: they could hardly reach a top 10, and the solve stays ~3,500².
        "ease": ModelSearch(
            fixed={"min_item_users": 3},
            grid={"weighting": ["binary", "log1p"], "l2": [50.0, 250.0, 1250.0], "dropout": [0.0, 0.25]},
        ),
    },
)

PROTOCOLS: Final[Mapping[str, ProtocolConfig]] = {"movielens": MOVIELENS, "lastfm": LASTFM}


@dataclass(frozen=True)
class ModelResult:
    """One model under a protocol: the chosen parameters, why, and the test metrics."""

    model: str
    params: dict[str, Any]
    tuning: TuningResult
    metrics: dict[str, float]
    fit_seconds: float
    tuning_seconds: float


@dataclass(frozen=True)
class ProtocolResult:
    """Everything one protocol run measured; ``metrics`` is ``{model: {metric: value}}``."""

    protocol: ProtocolConfig
    models: dict[str, ModelResult]
    seconds: float
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, dict[str, float]]:
        return {name: dict(result.metrics) for name, result in self.models.items()}

    def best(self, metric: str | None = None) -> ModelResult:
        """The model with the highest test ``metric`` (default: the tuning metric at k)."""
        key = metric or f"{self.protocol.metric}@{self.protocol.k}"
        return max(self.models.values(), key=lambda r: r.metrics[key])


def _columns(frame: pl.DataFrame, protocol: ProtocolConfig) -> tuple[np.ndarray[Any, Any], ...]:
    import polars as pl

    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise UsageError(f"the interactions frame lacks column(s) {', '.join(missing)}; it needs {', '.join(COLUMNS)}")
    # Ids as strings: the split then depends on the data only, not on whether a reader typed
    # the ids as integers (raw files) or strings (the store).
    rows = frame.select(
        pl.col("user_id").cast(pl.String),
        pl.col("item_id").cast(pl.String),
        pl.col("value").cast(pl.Float64).fill_null(1.0),
    ).drop_nulls(["user_id", "item_id"])
    if protocol.min_value is not None:
        rows = rows.filter(pl.col("value") >= protocol.min_value)
    rows = rows.group_by("user_id", "item_id").agg(pl.col("value").sum()).sort("user_id", "item_id")
    if rows.height == 0:
        raise UsageError("the interactions frame has no usable rows (user_id and item_id set)")
    # Fixed-width unicode arrays, converted once rather than in every trial.
    users, items = (rows[c].to_numpy().astype(str) for c in ("user_id", "item_id"))
    return users, items, rows["value"].to_numpy()


def evaluate_topn(
    frame: pl.DataFrame,
    protocol: ProtocolConfig | str,
    *,
    models: Sequence[str] | None = None,
) -> ProtocolResult:
    """Run an offline top-n protocol on ``frame`` for every model it lists (or ``models``).

    The result's ``metrics`` is ``{model: {"precision@10": ..., "recall@10": ..., "ndcg@10":
    ..., "map@10": ..., "users": ...}}``; ``models[name]`` also holds the chosen parameters,
    the validation trials and the fit time on the full training part.
    """
    started = time.perf_counter()
    if isinstance(protocol, str):
        if protocol not in PROTOCOLS:
            raise UsageError(f"unknown protocol {protocol!r}; choose one of {', '.join(sorted(PROTOCOLS))}")
        protocol = PROTOCOLS[protocol]
    names = list(models) if models is not None else list(protocol.models)
    unknown = [n for n in names if n not in RECOMMENDERS or n not in protocol.models]
    if unknown:
        raise UsageError(
            f"protocol {protocol.name} has no search for {', '.join(unknown)}; "
            f"choose among {', '.join(protocol.models)}"
        )

    users, items, values = _columns(frame, protocol)
    rng = np.random.default_rng(protocol.seed)
    test_fold = Fold.from_mask(users, items, values, random_split(users, protocol.test_fraction, rng))
    validation_fold = test_fold.inner(protocol.validation_fraction, rng)

    results: dict[str, ModelResult] = {}
    for name in names:
        search = protocol.models[name]
        tuning_started = time.perf_counter()
        tuning = tune(
            name,
            validation_fold,
            search.grid,
            fixed=search.fixed,
            k=protocol.k,
            metric=protocol.metric,
            weighting=protocol.weighting,
        )
        tuning_seconds = time.perf_counter() - tuning_started
        final = fit_and_score(name, tuning.best, test_fold, k=protocol.k, weighting=protocol.weighting)
        results[name] = ModelResult(
            model=name,
            params=tuning.best,
            tuning=tuning,
            metrics=final.metrics,
            fit_seconds=final.fit_seconds,
            tuning_seconds=tuning_seconds,
        )
    sizes = {
        "rows": int(users.size),
        "users": int(np.unique(users).size),
        "items": int(np.unique(items).size),
        "train_rows": int(test_fold.train_users.size),
        "validation_rows": int(validation_fold.held_out_users.size),
        "test_rows": int(test_fold.held_out_users.size),
    }
    return ProtocolResult(protocol=protocol, models=results, seconds=time.perf_counter() - started, sizes=sizes)
