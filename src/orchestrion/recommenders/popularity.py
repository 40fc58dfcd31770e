"""Popularity: every user gets the most-interacted-with items; the baseline every model must beat."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field

from orchestrion.recommenders.base import FloatArray, IndexArray, Recommender, RecommenderConfig

__all__ = ["Popularity", "PopularityConfig"]


class PopularityConfig(RecommenderConfig):
    """How popularity is counted.

    >>> PopularityConfig.model_validate_json(PopularityConfig(measure="weight").model_dump_json())
    PopularityConfig(measure='weight')
    """

    measure: Literal["users", "weight"] = Field(
        "users", description="'users': how many users interacted; 'weight': the summed weights."
    )


class Popularity(Recommender[PopularityConfig]):
    """Ranks items by training popularity, the same list for everyone (minus exclusions).

    ``similar_items`` has no notion of similarity here: it returns the most popular other items.

    >>> from orchestrion.recommenders import Interactions
    >>> x = Interactions.from_columns([1, 2, 2, 3], ["a", "a", "b", "c"])
    >>> Popularity().fit(x).recommend([3], n=3).item_ids.tolist()
    [['a', 'b', '']]
    """

    name: ClassVar[str] = "popularity"
    config_type: ClassVar[type[RecommenderConfig]] = PopularityConfig
    personalised: ClassVar[bool] = False

    def __init__(self, config: PopularityConfig | None = None) -> None:
        super().__init__(config)
        self._scores: FloatArray = np.empty(0, dtype=np.float32)

    def _fit(self, matrix: Any) -> None:
        if self.config.measure == "users":
            counts = np.bincount(matrix.indices, minlength=matrix.shape[1])
        else:
            counts = np.asarray(matrix.sum(axis=0)).ravel()
        self._scores = counts.astype(np.float32)

    def _score_users(self, rows: IndexArray, history: Any) -> FloatArray:
        return np.broadcast_to(self._scores, (rows.size, self._scores.size)).copy()

    def _score_items(self, items: IndexArray) -> FloatArray:
        return np.broadcast_to(self._scores, (items.size, self._scores.size)).copy()

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        return {"scores": self._scores}

    def _restore(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        self._scores = np.asarray(state["scores"], dtype=np.float32)
