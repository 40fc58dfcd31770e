"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders"): a closed-form item-item model.

With G = XᵀX (item co-occurrence) and P = (G + Λ)⁻¹, the weights are B = I − P · diag(1/diag(P))
(column j divided by P_jj), i.e. B_ij = −P_ij / P_jj, with the diagonal zero so no item predicts
itself. Λ = λI in plain EASE; ``dropout`` p > 0 adds the emphasised-denoising term of Steck's
EDLAE (NeurIPS 2020), Λ = λI + p/(1−p) · diag(G), which penalises popular items' weights more.
Scores are the history row times B.

P is computed by a Cholesky factorisation (G + Λ is symmetric positive definite for λ > 0),
about three times cheaper than a general inverse. The cost is dense in the number of items
(memory items² · 8 bytes, time ~items³): ``min_item_users`` leaves rare items out of the model
(they score as missing), and more than ``max_items`` modelled items is refused with an error
that says which knob to turn.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import Field

from orchestrion.errors import UsageError
from orchestrion.recommenders._implicit import blas_threads
from orchestrion.recommenders.base import FloatArray, IndexArray, Recommender, RecommenderConfig

__all__ = ["EASE", "EASEConfig"]


class EASEConfig(RecommenderConfig):
    """Hyper-parameters of :class:`EASE`.

    >>> EASEConfig.model_validate_json(EASEConfig(l2=250.0).model_dump_json()).l2
    250.0
    """

    l2: float = Field(500.0, gt=0, description="λ, the L2 penalty on the item-item weights.")
    dropout: float = Field(0.0, ge=0, lt=1, description="EDLAE emphasised-dropout rate p; 0 = plain EASE.")
    min_item_users: int = Field(1, ge=1, description="Items with fewer training users are not modelled.")
    max_items: int = Field(30_000, ge=1, description="Refuse to build a dense model over more items.")
    # One thread by default: with other work on the cores (the API, ingestion, another fit),
    # OpenBLAS's spinning threads made the 1,682-item solve ~10x slower with 2 threads than 1.
    num_threads: int = Field(1, ge=0, description="BLAS threads for the solve; 0 = the BLAS default.")


class EASE(Recommender[EASEConfig]):
    """Closed-form linear item-item autoencoder.

    >>> from orchestrion.recommenders import Interactions
    >>> x = Interactions.from_columns([1, 1, 2, 2, 3], ["a", "b", "a", "b", "a"])
    >>> EASE(EASEConfig(l2=1.0)).fit(x).recommend([3], n=2).item_ids.tolist()
    [['b', '']]
    """

    name: ClassVar[str] = "ease"
    config_type: ClassVar[type[RecommenderConfig]] = EASEConfig

    def __init__(self, config: EASEConfig | None = None) -> None:
        super().__init__(config)
        self._modelled: IndexArray = np.empty(0, dtype=np.int64)
        self._weights: FloatArray = np.empty((0, 0), dtype=np.float32)

    def _fit(self, matrix: Any) -> None:
        from scipy.linalg import lapack

        c = self.config
        users_per_item = np.bincount(matrix.indices, minlength=matrix.shape[1])
        modelled = np.flatnonzero(users_per_item >= c.min_item_users).astype(np.int64)
        if modelled.size > c.max_items:
            raise UsageError(
                f"EASE would model {modelled.size} items (dense {modelled.size}² matrix, "
                f"~{modelled.size**2 * 8 / 2**30:.1f} GiB); raise min_item_users (now {c.min_item_users}) "
                f"or max_items (now {c.max_items}) in its config"
            )
        x = matrix[:, modelled]
        gram = np.asarray((x.T @ x).toarray(), dtype=np.float64)
        diag = np.diag(gram).copy()
        penalty = c.l2 + (c.dropout / (1.0 - c.dropout)) * diag
        gram[np.diag_indices_from(gram)] += penalty
        with blas_threads(c.num_threads):
            factor, info = lapack.dpotrf(gram, lower=False, overwrite_a=True, clean=False)
            if info != 0:
                raise UsageError(f"EASE's Gram matrix is not positive definite (LAPACK info {info}); raise l2")
            inverse, info = lapack.dpotri(factor, lower=False, overwrite_c=True)
            if info != 0:
                raise UsageError(f"EASE could not invert its Gram matrix (LAPACK info {info}); raise l2")
        # dpotri fills the upper triangle only; mirror it.
        inverse = np.triu(inverse) + np.triu(inverse, 1).T
        weights = inverse / -np.diag(inverse)[None, :]
        np.fill_diagonal(weights, 0.0)
        self._modelled = modelled
        self._weights = weights.astype(np.float32)

    def _spread(self, modelled_scores: FloatArray) -> FloatArray:
        """Scores over the modelled items → scores over the whole catalogue (others missing)."""
        if self._modelled.size == len(self.items):
            return modelled_scores
        out = np.full((modelled_scores.shape[0], len(self.items)), -np.inf, dtype=np.float32)
        out[:, self._modelled] = modelled_scores
        return out

    def _score_users(self, rows: IndexArray, history: Any) -> FloatArray:
        scores = np.asarray(history[:, self._modelled] @ self._weights, dtype=np.float32)
        return self._spread(scores)

    def _score_items(self, items: IndexArray) -> FloatArray:
        position = np.full(len(self.items), -1, dtype=np.int64)
        position[self._modelled] = np.arange(self._modelled.size)
        rows = position[items]
        scores = np.full((items.size, self._modelled.size), -np.inf, dtype=np.float32)
        known = rows >= 0
        scores[known] = self._weights[rows[known]]
        return self._spread(scores)

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        return {"modelled": self._modelled, "weights": self._weights}

    def _restore(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        self._modelled = np.asarray(state["modelled"], dtype=np.int64)
        self._weights = np.asarray(state["weights"], dtype=np.float32)
