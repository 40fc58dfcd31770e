"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008) through implicit's CPU solver.

The interaction weight is the confidence: implicit multiplies it by ``alpha`` and treats
every missing pair as a zero with confidence 1, so ``alpha`` and ``regularization`` move
together (on binary MovieLens data the good settings lie along regularization ≈ 10 · alpha).
Scores are dot products of user and item factors; ``similar_items`` is the cosine of item
factors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import Field

from orchestrion.recommenders._implicit import implicit_module, single_threaded_blas
from orchestrion.recommenders.base import FloatArray, IndexArray, Recommender, RecommenderConfig

__all__ = ["ALS", "ALSConfig", "factor_similarity"]


class ALSConfig(RecommenderConfig):
    """Hyper-parameters of :class:`ALS` (defaults: a reasonable start, not a tuned value).

    >>> ALSConfig.model_validate_json(ALSConfig(factors=32).model_dump_json()).factors
    32
    """

    factors: int = Field(64, ge=1, description="Latent dimensions.")
    regularization: float = Field(10.0, ge=0, description="L2 penalty on the factors.")
    alpha: float = Field(1.0, gt=0, description="Confidence multiplier applied to the weights.")
    iterations: int = Field(15, ge=1, description="Alternating sweeps.")
    use_cg: bool = Field(True, description="Conjugate-gradient solver (faster); False = exact Cholesky.")
    seed: int = Field(42, description="Seed of the random initial factors.")
    num_threads: int = Field(0, ge=0, description="implicit's threads; 0 = every core.")


def factor_similarity(factors: FloatArray, items: IndexArray) -> FloatArray:
    """Cosine similarity of the ``items`` rows of ``factors`` to every row."""
    norms = np.linalg.norm(factors, axis=1)
    unit = factors / np.where(norms > 0, norms, 1.0)[:, None]
    return (unit[items] @ unit.T).astype(np.float32, copy=False)


class ALS(Recommender[ALSConfig]):
    """Weighted matrix factorisation by alternating least squares.

    >>> from orchestrion.recommenders import Interactions
    >>> x = Interactions.from_columns([1, 1, 2, 2, 3], ["a", "b", "a", "b", "a"])
    >>> ALS(ALSConfig(factors=2, regularization=0.1)).fit(x).recommend([3], n=1).item_ids.tolist()
    [['b']]
    """

    name: ClassVar[str] = "als"
    config_type: ClassVar[type[RecommenderConfig]] = ALSConfig

    def __init__(self, config: ALSConfig | None = None) -> None:
        super().__init__(config)
        self._user_factors: FloatArray = np.empty((0, 0), dtype=np.float32)
        self._item_factors: FloatArray = np.empty((0, 0), dtype=np.float32)

    def _fit(self, matrix: Any) -> None:
        c = self.config
        als = implicit_module("cpu.als")
        with single_threaded_blas():
            model = als.AlternatingLeastSquares(
                factors=c.factors,
                regularization=c.regularization,
                alpha=c.alpha,
                iterations=c.iterations,
                use_cg=c.use_cg,
                random_state=c.seed,
                num_threads=c.num_threads,
                dtype=np.float32,
            )
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
