"""Item-based k-nearest-neighbours through implicit's ``all_pairs_knn``.

Fit: weight the user × item matrix (cosine: each item column scaled to unit length; BM25 or
TF-IDF: implicit's weightings, which damp heavy users and very popular items), keep each
item's ``k`` most similar items, and drop the item's similarity to itself. Score: a user's
history row times the similarity matrix, i.e. the sum of the similarities between an item
and the items the user has, weighted by the user's weights. An item that is no neighbour
of anything in the history has no score (missing), so a short history can give fewer than
``n`` recommendations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from pydantic import Field

from orchestrion.recommenders._implicit import implicit_module
from orchestrion.recommenders.base import (
    FloatArray,
    IndexArray,
    Recommender,
    RecommenderConfig,
    pack_csr,
    sparse_scores,
    unpack_csr,
)

__all__ = ["ItemKNN", "ItemKNNConfig"]


class ItemKNNConfig(RecommenderConfig):
    """Hyper-parameters of :class:`ItemKNN`.

    >>> ItemKNNConfig.model_validate_json(ItemKNNConfig(similarity="cosine").model_dump_json())
    ItemKNNConfig(k=100, similarity='cosine', bm25_k1=1.2, bm25_b=0.75, num_threads=0)
    """

    k: int = Field(100, ge=1, description="Neighbours kept per item.")
    similarity: Literal["cosine", "bm25", "tfidf"] = Field("bm25", description="Weighting before the dot product.")
    bm25_k1: float = Field(1.2, ge=0, description="BM25 saturation of a user's weight on an item.")
    bm25_b: float = Field(0.75, ge=0, le=1, description="BM25 length normalisation (by item popularity).")
    num_threads: int = Field(0, ge=0, description="implicit's threads; 0 = every core.")


class ItemKNN(Recommender[ItemKNNConfig]):
    """Items similar to what the user already has.

    >>> from orchestrion.recommenders import Interactions
    >>> x = Interactions.from_columns([1, 1, 2, 2, 3], ["a", "b", "a", "b", "a"])
    >>> ItemKNN(ItemKNNConfig(similarity="cosine")).fit(x).similar_items(["a"], n=2).row(0)
    [('b', 0.8164966106414795)]
    """

    name: ClassVar[str] = "itemknn"
    config_type: ClassVar[type[RecommenderConfig]] = ItemKNNConfig

    def __init__(self, config: ItemKNNConfig | None = None) -> None:
        super().__init__(config)
        self._similarity: Any = sp.csr_matrix((0, 0), dtype=np.float32)

    def _weighted(self, matrix: Any) -> Any:
        nn = implicit_module("nearest_neighbours")
        c = self.config
        if c.similarity == "cosine":
            weighted = nn.normalize(matrix.T).T
        elif c.similarity == "bm25":
            weighted = nn.bm25_weight(matrix.T, K1=c.bm25_k1, B=c.bm25_b).T
        else:
            weighted = nn.tfidf_weight(matrix.T).T
        # implicit's weightings return COO; its kNN wants CSR (and warns otherwise).
        return sp.csr_matrix(weighted)

    def _fit(self, matrix: Any) -> None:
        nn = implicit_module("nearest_neighbours")
        model = nn.ItemItemRecommender(K=self.config.k + 1, num_threads=self.config.num_threads)
        model.fit(self._weighted(matrix), show_progress=False)
        similarity = sp.csr_matrix(model.similarity, dtype=np.float32)
        similarity.setdiag(0)
        similarity.eliminate_zeros()
        self._similarity = _keep_top_k(similarity, self.config.k)

    def _score_users(self, rows: IndexArray, history: Any) -> FloatArray:
        return sparse_scores(history @ self._similarity)

    def _score_items(self, items: IndexArray) -> FloatArray:
        return sparse_scores(self._similarity[items])

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        return pack_csr("similarity", self._similarity)

    def _restore(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        self._similarity = sp.csr_matrix(unpack_csr("similarity", state), dtype=np.float32)


def _keep_top_k(matrix: Any, k: int) -> Any:
    """Each row's ``k`` largest entries (implicit returns k + 1 so that dropping self leaves k)."""
    counts = np.diff(matrix.indptr)
    if counts.size == 0 or counts.max() <= k:
        return matrix
    rows = np.repeat(np.arange(matrix.shape[0]), counts)
    order = np.lexsort((-matrix.data, rows))
    rank = np.arange(order.size) - np.repeat(matrix.indptr[:-1], counts)
    keep = order[rank < k]
    return sp.csr_matrix((matrix.data[keep], (rows[keep], matrix.indices[keep])), shape=matrix.shape, dtype=np.float32)
