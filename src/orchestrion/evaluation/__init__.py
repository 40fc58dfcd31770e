"""Offline evaluation: ranking metrics, hold-out splits, grid search and the top-n protocols.

>>> from orchestrion.evaluation import PROTOCOLS
>>> PROTOCOLS["movielens"].test_fraction, PROTOCOLS["lastfm"].test_fraction
(0.25, 0.2)
"""

from __future__ import annotations

from orchestrion.evaluation.metrics import per_user_metrics, ranking_metrics
from orchestrion.evaluation.offline import (
    LASTFM,
    MOVIELENS,
    PROTOCOLS,
    ModelResult,
    ModelSearch,
    ProtocolConfig,
    ProtocolResult,
    evaluate_topn,
)
from orchestrion.evaluation.splits import Fold, cutoff_split, random_split, temporal_split
from orchestrion.evaluation.tuning import TuningResult, fit_and_score, parameter_grid, tune

__all__ = [
    "LASTFM",
    "MOVIELENS",
    "PROTOCOLS",
    "Fold",
    "ModelResult",
    "ModelSearch",
    "ProtocolConfig",
    "ProtocolResult",
    "TuningResult",
    "cutoff_split",
    "evaluate_topn",
    "fit_and_score",
    "parameter_grid",
    "per_user_metrics",
    "random_split",
    "ranking_metrics",
    "temporal_split",
    "tune",
]
