"""Ranking metrics against values computed by hand, and against a plain per-user reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from orchestrion.errors import UsageError
from orchestrion.evaluation import per_user_metrics, ranking_metrics

N_ITEMS = 10


def relevant_rows(*rows: set[int]) -> sp.csr_matrix:
    matrix = np.zeros((len(rows), N_ITEMS), dtype=np.float32)
    for r, items in enumerate(rows):
        matrix[r, list(items)] = 1
    return sp.csr_matrix(matrix)


def single(recommended: list[int], relevant: set[int], k: int, n_relevant: int | None = None) -> dict[str, float]:
    extra = None if n_relevant is None else [n_relevant]
    return ranking_metrics(np.array([recommended]), relevant_rows(relevant), k=k, n_relevant=extra)


def test_one_hit_at_rank_two() -> None:
    # hits (0, 1, 0); R = 2.
    m = single([5, 2, 7], {2, 9}, k=3)
    assert m["precision@3"] == pytest.approx(1 / 3)
    assert m["recall@3"] == pytest.approx(1 / 2)
    # DCG = 1/log2(3); IDCG = 1 + 1/log2(3).
    assert m["ndcg@3"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert m["ndcg@3"] == pytest.approx(0.386853, abs=1e-6)
    # AP = (P@2 · 1) / min(3, 2) = (1/2) / 2.
    assert m["map@3"] == pytest.approx(0.25)
    assert m["users"] == 1


def test_more_relevant_items_than_k() -> None:
    # All three slots hit; R = 5 > k: nDCG and AP are normalised by min(k, R) = 3.
    m = single([0, 1, 2], {0, 1, 2, 3, 4}, k=3)
    assert (m["precision@3"], m["recall@3"], m["ndcg@3"], m["map@3"]) == pytest.approx((1.0, 0.6, 1.0, 1.0))


def test_hits_at_one_and_three() -> None:
    # AP = (1/1 + 2/3) / 2.
    m = single([3, 8, 4], {3, 4}, k=3)
    assert m["map@3"] == pytest.approx(5 / 6)
    assert m["ndcg@3"] == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))


def test_padding_counts_as_a_miss_in_precision_only() -> None:
    m = single([4, -1, -1], {4}, k=3)
    assert (m["precision@3"], m["recall@3"], m["ndcg@3"], m["map@3"]) == pytest.approx((1 / 3, 1.0, 1.0, 1.0))
    shorter = single([4], {4}, k=3)
    assert shorter == m, "fewer columns than k are padded"


def test_relevant_items_unknown_to_the_model_stay_in_the_denominators() -> None:
    # One relevant item is indexable and hit; the other never reached the model: R = 2.
    m = single([1, 0], {1}, k=2, n_relevant=2)
    assert m["precision@2"] == pytest.approx(0.5)
    assert m["recall@2"] == pytest.approx(0.5)
    assert m["ndcg@2"] == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert m["map@2"] == pytest.approx(0.5)


def test_users_without_relevant_items_are_left_out() -> None:
    recommended = np.array([[5, 2, 7], [1, 2, 3]])
    m = ranking_metrics(recommended, relevant_rows({2, 9}, set()), k=3)
    assert m == single([5, 2, 7], {2, 9}, k=3)
    per_user = per_user_metrics(recommended, relevant_rows({2, 9}, set()), k=3)
    assert np.isnan(per_user["ndcg@3"][1]) and per_user["n_relevant"].tolist() == [2.0, 0.0]


def test_mistakes_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="k must be"):
        ranking_metrics(np.array([[1]]), relevant_rows({1}), k=0)
    with pytest.raises(UsageError, match="one row per"):
        ranking_metrics(np.array([[1], [2]]), relevant_rows({1}), k=1)
    with pytest.raises(UsageError, match="n_relevant"):
        ranking_metrics(np.array([[1]]), relevant_rows({1, 2}), k=1, n_relevant=[1])
    with pytest.raises(UsageError, match="no user"):
        ranking_metrics(np.array([[1]]), relevant_rows(set()), k=1)
    with pytest.raises(UsageError, match="item index"):
        ranking_metrics(np.array([[N_ITEMS]]), relevant_rows({1}), k=1)


def reference(recommended: list[int], relevant: set[int], k: int) -> tuple[float, float, float, float]:
    """The textbook definitions, one user, plain Python."""
    top = [item for item in recommended[:k]]
    hit = [1.0 if item in relevant else 0.0 for item in top] + [0.0] * (k - len(top))
    dcg = sum(h / math.log2(i + 2) for i, h in enumerate(hit))
    idcg = sum(1 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    ap = sum(hit[i] * sum(hit[: i + 1]) / (i + 1) for i in range(k)) / min(k, len(relevant))
    return sum(hit) / k, sum(hit) / len(relevant), dcg / idcg, ap


def test_vectorised_metrics_match_the_reference_on_random_rankings() -> None:
    rng = np.random.default_rng(7)
    k, users = 5, 200
    recommended = np.array([rng.permutation(N_ITEMS)[:k] for _ in range(users)])
    relevant = [set(rng.choice(N_ITEMS, size=rng.integers(1, 7), replace=False).tolist()) for _ in range(users)]
    got = per_user_metrics(recommended, relevant_rows(*relevant), k=k)
    expected = np.array([reference(recommended[u].tolist(), relevant[u], k) for u in range(users)])
    for column, name in enumerate(("precision@5", "recall@5", "ndcg@5", "map@5")):
        np.testing.assert_allclose(got[name], expected[:, column], rtol=1e-12)
