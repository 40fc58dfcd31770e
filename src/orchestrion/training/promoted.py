"""The promoted models, loaded for use: the goal ranker (the prior until one is promoted) and the
repurchase model. Loading never trains; :mod:`orchestrion.training.fits` trains and promotes."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Final

from orchestrion.errors import NotFoundError
from orchestrion.ranking import GoalRanker, Scorer
from orchestrion.recommenders.repurchase import RepurchaseModel
from orchestrion.training.versions import model_version

__all__ = ["RANKER_KIND", "current_scorer", "promoted_repurchase"]

RANKER_KIND: Final = "ranker"


def current_scorer(models_root: Path) -> Scorer:
    """The promoted ranker, or the prior when none has been promoted yet."""
    try:
        version = model_version(models_root, RANKER_KIND)
    except NotFoundError:
        return Scorer()
    until = version.metadata.get("trained_until")
    threshold = version.metadata.get("send_threshold")
    return Scorer(
        GoalRanker.load(version.path / "model"),
        version.version,
        date.fromisoformat(until) if until else None,
        float(threshold) if threshold is not None else None,
    )


def promoted_repurchase(models_root: Path) -> RepurchaseModel | None:
    """The promoted repurchase model, or None when none has been trained."""
    try:
        version = model_version(models_root, "repurchase")
    except NotFoundError:
        return None
    return RepurchaseModel.load(version.path)
