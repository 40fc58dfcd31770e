"""Recommenders: one typed interface, five algorithms, a factory and a registry.

>>> from orchestrion.recommenders import Interactions, make_recommender
>>> x = Interactions.from_columns(["ann", "ann", "bob"], ["m1", "m2", "m1"])
>>> model = make_recommender("ease", {"l2": 1.0}).fit(x)
>>> model.recommend(["bob"], n=1).row(0)[0][0]
'm2'

Every model takes arrays (:class:`Interactions`), never a database connection; see
:mod:`orchestrion.recommenders.base` for the shared rules (unknown users and items, padding,
ties, the saved layout).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from pydantic import ValidationError

from orchestrion.errors import UsageError
from orchestrion.recommenders.als import ALS, ALSConfig
from orchestrion.recommenders.base import (
    Interactions,
    Recommendations,
    Recommender,
    RecommenderConfig,
    Vocabulary,
)
from orchestrion.recommenders.bpr import BPR, BPRConfig
from orchestrion.recommenders.ease import EASE, EASEConfig
from orchestrion.recommenders.itemknn import ItemKNN, ItemKNNConfig
from orchestrion.recommenders.popularity import Popularity, PopularityConfig

__all__ = [
    "ALS",
    "BPR",
    "EASE",
    "RECOMMENDERS",
    "ALSConfig",
    "BPRConfig",
    "EASEConfig",
    "Interactions",
    "ItemKNN",
    "ItemKNNConfig",
    "Popularity",
    "PopularityConfig",
    "Recommendations",
    "Recommender",
    "RecommenderConfig",
    "Vocabulary",
    "load_recommender",
    "make_recommender",
]

RECOMMENDERS: Final[Mapping[str, type[Recommender[Any]]]] = MappingProxyType(
    {model.name: model for model in (Popularity, ItemKNN, ALS, BPR, EASE)}
)


def make_recommender(name: str, config: RecommenderConfig | Mapping[str, Any] | None = None) -> Recommender[Any]:
    """A new, unfitted recommender by registry name, with a config object or a plain mapping.

    >>> make_recommender("als", {"factors": 16}).config.factors
    16
    """
    model_type = RECOMMENDERS.get(name)
    if model_type is None:
        raise UsageError(f"unknown recommender {name!r}; choose one of {', '.join(sorted(RECOMMENDERS))}")
    if config is None or isinstance(config, RecommenderConfig):
        return model_type(config)
    try:
        return model_type(model_type.config_type.model_validate(dict(config)))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise UsageError(f"invalid {name} config: {problems}") from exc


def load_recommender(directory: str | Path) -> Recommender[Any]:
    """Read any recommender written by ``save(directory)``."""
    return Recommender.load(directory)
