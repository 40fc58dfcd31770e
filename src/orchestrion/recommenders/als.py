"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008) through implicit's CPU solver.

The interaction weight is the confidence: implicit multiplies it by ``alpha`` and treats
every missing pair as a zero with confidence 1, so ``alpha`` and ``regularization`` move
together (on binary MovieLens data the good settings lie along regularization ≈ 10 · alpha).
Scores are dot products of user and item factors; ``similar_items`` is the cosine of item
factors.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from orchestrion.recommenders._implicit_factors import ImplicitFactorModel, factor_similarity
from orchestrion.recommenders.base import RecommenderConfig

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


class ALS(ImplicitFactorModel[ALSConfig]):
    """Weighted matrix factorisation by alternating least squares.

    >>> from orchestrion.recommenders import Interactions
    >>> x = Interactions.from_columns([1, 1, 2, 2, 3], ["a", "b", "a", "b", "a"])
    >>> ALS(ALSConfig(factors=2, regularization=0.1)).fit(x).recommend([3], n=1).item_ids.tolist()
    [['b']]
    """

    name: ClassVar[str] = "als"
    config_type: ClassVar[type[RecommenderConfig]] = ALSConfig

    implicit_name: ClassVar[str] = "cpu.als"

    def _implicit_model(self, module: ModuleType) -> Any:
        c = self.config
        return module.AlternatingLeastSquares(
            factors=c.factors,
            regularization=c.regularization,
            alpha=c.alpha,
            iterations=c.iterations,
            use_cg=c.use_cg,
            random_state=c.seed,
            num_threads=c.num_threads,
            dtype=np.float32,
        )
