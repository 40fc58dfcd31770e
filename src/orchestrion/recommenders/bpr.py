"""Bayesian Personalized Ranking (Rendle et al. 2009) through implicit's CPU SGD.

implicit's BPR treats every non-zero weight as a positive (the value is ignored), samples one
negative per positive per epoch and verifies it is not a positive. It appends an item-bias
column to the factors (the user side is fixed to 1), so the dot product includes the bias.
With more than one thread the SGD updates race (Hogwild), so runs are only reproducible with
``num_threads=1`` — the default, and fast enough on datasets of ~100k interactions.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from orchestrion.recommenders._implicit_factors import ImplicitFactorModel, factor_similarity
from orchestrion.recommenders.base import FloatArray, IndexArray, RecommenderConfig

__all__ = ["BPR", "BPRConfig"]


class BPRConfig(RecommenderConfig):
    """Hyper-parameters of :class:`BPR`.

    >>> BPRConfig.model_validate_json(BPRConfig(learning_rate=0.005).model_dump_json()).learning_rate
    0.005
    """

    factors: int = Field(64, ge=1, description="Latent dimensions (implicit adds one for the item bias).")
    learning_rate: float = Field(0.01, gt=0, description="SGD step size.")
    regularization: float = Field(0.01, ge=0, description="L2 penalty applied at each update.")
    iterations: int = Field(100, ge=1, description="Epochs; each samples as many triples as positives.")
    verify_negative_samples: bool = Field(True, description="Re-draw negatives that are positives.")
    seed: int = Field(42, description="Seed of the initial factors and of the sampling.")
    num_threads: int = Field(1, ge=0, description="implicit's threads; >1 is faster but not reproducible.")


class BPR(ImplicitFactorModel[BPRConfig]):
    """Pairwise-ranking matrix factorisation.

    >>> from orchestrion.recommenders import Interactions
    >>> x = Interactions.from_columns([1, 2], ["a", "b"])
    >>> BPR(BPRConfig(factors=2, iterations=5)).fit(x).recommend([1], n=3).indices.shape
    (1, 3)
    """

    name: ClassVar[str] = "bpr"
    config_type: ClassVar[type[RecommenderConfig]] = BPRConfig

    implicit_name: ClassVar[str] = "cpu.bpr"

    def _implicit_model(self, module: ModuleType) -> Any:
        c = self.config
        return module.BayesianPersonalizedRanking(
            factors=c.factors,
            learning_rate=c.learning_rate,
            regularization=c.regularization,
            iterations=c.iterations,
            verify_negative_samples=c.verify_negative_samples,
            random_state=c.seed,
            num_threads=c.num_threads,
            dtype=np.float32,
        )

    def _score_items(self, items: IndexArray) -> FloatArray:
        # The last column is the item bias, not a direction: compare items on the factors only.
        return factor_similarity(self._item_factors[:, :-1], items)
