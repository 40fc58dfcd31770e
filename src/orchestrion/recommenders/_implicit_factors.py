"""What ALS and BPR share: an implicit matrix-factorisation model kept as two factor arrays.

Subclasses say only which implicit model to build from their config; fitting (with BLAS held to
one thread), dot-product scoring, cosine item similarity and the saved state live here.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from types import ModuleType
from typing import Any, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt

from orchestrion.recommenders._implicit import implicit_module, single_threaded_blas
from orchestrion.recommenders.base import FloatArray, IndexArray, Recommender, RecommenderConfig

__all__ = ["ImplicitFactorModel", "factor_similarity"]

ConfigT = TypeVar("ConfigT", bound=RecommenderConfig)


def factor_similarity(factors: FloatArray, items: IndexArray) -> FloatArray:
    """Cosine similarity of the ``items`` rows of ``factors`` to every row."""
    norms = np.linalg.norm(factors, axis=1)
    unit = factors / np.where(norms > 0, norms, 1.0)[:, None]
    return (unit[items] @ unit.T).astype(np.float32, copy=False)


class ImplicitFactorModel(Recommender[ConfigT]):
    """A recommender whose state is implicit's user and item factors."""

    def __init__(self, config: ConfigT | None = None) -> None:
        super().__init__(config)
        self._user_factors: FloatArray = np.empty((0, 0), dtype=np.float32)
        self._item_factors: FloatArray = np.empty((0, 0), dtype=np.float32)

    implicit_name: ClassVar[str]
    """The implicit module that holds the model, e.g. ``cpu.als``."""

    @abstractmethod
    def _implicit_model(self, module: ModuleType) -> Any:
        """A new, unfitted model from implicit's ``module``, built from ``self.config``."""

    def _fit(self, matrix: Any) -> None:
        # Import before limiting BLAS: a library loaded inside the limit is not limited.
        module = implicit_module(self.implicit_name)
        with single_threaded_blas():
            model = self._implicit_model(module)
            model.fit(matrix, show_progress=False)
        self._user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self._item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)

    def _score_users(self, rows: IndexArray, history: Any) -> FloatArray:
        return (self._user_factors[rows] @ self._item_factors.T).astype(np.float32, copy=False)

    def _score_items(self, items: IndexArray) -> FloatArray:
        return factor_similarity(self._item_factors, items)

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        return {"user_factors": self._user_factors, "item_factors": self._item_factors}

    def _restore(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        self._user_factors = np.asarray(state["user_factors"], dtype=np.float32)
        self._item_factors = np.asarray(state["item_factors"], dtype=np.float32)
