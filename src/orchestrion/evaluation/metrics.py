"""Top-k ranking metrics with binary relevance, vectorised over users.

Inputs: ``recommended``, an int array users × k of item indices, best first, −1 for an empty
slot; ``relevant``, a users × items sparse matrix whose non-zeros are the held-out items; and
optionally ``n_relevant``, each user's number of held-out items when some of them cannot be
indexed (an item absent from the training data still counts as relevant and can never be hit).

With h_i = 1 when the item at rank i (1-based) is relevant, R = the user's number of relevant
items and k the cut-off:

* Precision@k = Σ h_i / k  (k, not the number of filled slots: an empty slot is a miss)
* Recall@k    = Σ h_i / R
* nDCG@k      = Σ h_i / log2(i + 1)  ÷  Σ_{i ≤ min(k, R)} 1 / log2(i + 1)
* MAP@k       = mean over users of AP@k = Σ h_i · (Σ_{j ≤ i} h_j / i)  ÷  min(k, R)

Each is averaged over the users with R > 0 (users with nothing held out are left out, not
counted as zero).

>>> import scipy.sparse as sp
>>> relevant = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 0, 0, 1]]))
>>> scores = ranking_metrics(np.array([[0, 1], [2, 3]]), relevant, k=2)
>>> {name: round(value, 4) for name, value in scores.items()}
{'precision@2': 0.5, 'recall@2': 0.75, 'ndcg@2': 0.622, 'map@2': 0.5, 'users': 2.0}
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from orchestrion.errors import UsageError

__all__ = ["hits", "per_user_metrics", "ranking_metrics"]

FloatArray = npt.NDArray[np.float64]


def hits(recommended: npt.NDArray[np.int64], relevant: Any) -> npt.NDArray[np.bool_]:
    """users × k booleans: is the item at each rank one of the user's relevant items?"""
    rec = np.asarray(recommended, dtype=np.int64)
    rel = sp.csr_matrix(relevant, copy=True)
    if rec.ndim != 2 or rec.shape[0] != rel.shape[0]:
        raise UsageError(
            f"recommended must be users × k with one row per relevant row; got {rec.shape} and {rel.shape}"
        )
    n_items = rel.shape[1]
    if rec.size and rec.max() >= n_items:
        raise UsageError(f"recommended holds item index {rec.max()} but relevant has {n_items} items")
    # (user, item) pairs as one int64 key; sorted relevant keys answer membership by bisection.
    rel.sum_duplicates()
    rel.eliminate_zeros()
    rel_rows = np.repeat(np.arange(rel.shape[0], dtype=np.int64), np.diff(rel.indptr))
    rel_keys = np.sort(rel_rows * n_items + rel.indices.astype(np.int64))
    if rel_keys.size == 0:
        return np.zeros(rec.shape, dtype=bool)
    rows = np.arange(rec.shape[0], dtype=np.int64)[:, None]
    keys = rows * n_items + np.maximum(rec, 0)
    pos = np.searchsorted(rel_keys, keys).clip(0, rel_keys.size - 1)
    found: npt.NDArray[np.bool_] = (rel_keys[pos] == keys) & (rec >= 0)
    return found


def per_user_metrics(
    recommended: npt.NDArray[np.int64],
    relevant: Any,
    k: int,
    n_relevant: npt.ArrayLike | None = None,
) -> dict[str, FloatArray]:
    """Each metric per user (NaN for users with no relevant item), plus ``n_relevant``."""
    if k < 1:
        raise UsageError(f"k must be at least 1, got {k}")
    rec = np.asarray(recommended, dtype=np.int64)[:, :k]
    if rec.shape[1] < k:
        rec = np.pad(rec, ((0, 0), (0, k - rec.shape[1])), constant_values=-1)
    rel = sp.csr_matrix(relevant, copy=True)
    rel.sum_duplicates()
    rel.eliminate_zeros()
    counted = np.diff(rel.indptr).astype(np.float64)
    total = counted if n_relevant is None else np.asarray(n_relevant, dtype=np.float64)
    if total.shape != counted.shape or np.any(total < counted):
        raise UsageError("n_relevant must give, per user, at least the number of relevant items in the matrix")
    h = hits(rec, rel).astype(np.float64)
    n_hits = h.sum(axis=1)
    ranks = np.arange(1, k + 1, dtype=np.float64)
    discount = 1.0 / np.log2(ranks + 1.0)
    ideal = np.concatenate([[0.0], np.cumsum(discount)])[np.minimum(total, k).astype(np.int64)]
    ap_norm = np.minimum(total, k)
    with np.errstate(divide="ignore", invalid="ignore"):
        has = total > 0
        precision = np.where(has, n_hits / k, np.nan)
        recall = np.where(has, n_hits / total, np.nan)
        ndcg = np.where(has, (h * discount).sum(axis=1) / ideal, np.nan)
        average_precision = np.where(has, (h * np.cumsum(h, axis=1) / ranks).sum(axis=1) / ap_norm, np.nan)
    return {
        f"precision@{k}": precision,
        f"recall@{k}": recall,
        f"ndcg@{k}": ndcg,
        f"map@{k}": average_precision,
        "n_relevant": total,
    }


def ranking_metrics(
    recommended: npt.NDArray[np.int64],
    relevant: Any,
    k: int = 10,
    n_relevant: npt.ArrayLike | None = None,
) -> dict[str, float]:
    """Precision@k, Recall@k, nDCG@k and MAP@k averaged over users with a relevant item, and
    ``users``, how many such users there were."""
    per_user = per_user_metrics(recommended, relevant, k, n_relevant)
    evaluated = per_user.pop("n_relevant") > 0
    if not evaluated.any():
        raise UsageError("no user has a relevant item; nothing to evaluate")
    out = {name: float(values[evaluated].mean()) for name, values in per_user.items()}
    out["users"] = float(evaluated.sum())
    return out
