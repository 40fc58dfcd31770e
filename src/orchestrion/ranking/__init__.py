"""Ranking goals: features, the transparent prior, the learned ranker, the chooser with its
budget and exploration, and off-policy evaluation.

>>> from orchestrion.ranking import ChoiceConfig
>>> ChoiceConfig().budget
3
"""

from __future__ import annotations

from orchestrion.ranking.exploration import ChoiceConfig, choose, greedy_set, inclusion_propensity
from orchestrion.ranking.features import FEATURES, HISTORY_SCHEMA, empty_history, goal_features
from orchestrion.ranking.offpolicy import Estimate, estimate, ips, should_promote, snips
from orchestrion.ranking.prior import PRIOR_WEIGHTS, prior_score
from orchestrion.ranking.ranker import GoalRanker, RankerConfig
from orchestrion.ranking.scoring import RetrainOutcome, ScoreFunction, Scorer, decide, retrain

__all__ = [
    "FEATURES",
    "HISTORY_SCHEMA",
    "PRIOR_WEIGHTS",
    "ChoiceConfig",
    "Estimate",
    "GoalRanker",
    "RankerConfig",
    "RetrainOutcome",
    "ScoreFunction",
    "Scorer",
    "choose",
    "decide",
    "empty_history",
    "estimate",
    "goal_features",
    "greedy_set",
    "inclusion_propensity",
    "ips",
    "prior_score",
    "retrain",
    "should_promote",
    "snips",
]
