"""The ``movielens`` protocol on the real ML-100k ratings.

Targets from the issue: the best model reaches nDCG@10 ≥ 0.48 and beats popularity by a wide
margin, with every hyper-parameter chosen on validation rows carved out of the training part.
The protocol runs once per session, in the evaluation notebook (``evaluation_reports`` in
conftest); these tests read its report.
"""

from __future__ import annotations

from typing import Any

import pytest

from orchestrion.evaluation import MOVIELENS, parameter_grid
from orchestrion.recommenders import RECOMMENDERS

METRICS = ("precision@10", "recall@10", "ndcg@10", "map@10")


@pytest.fixture
def report(evaluation_reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return evaluation_reports["movielens"]


def best(report: dict[str, Any]) -> tuple[str, dict[str, float]]:
    name = max(report["results"], key=lambda m: report["results"][m]["ndcg@10"])
    return name, report["results"][name]


def test_every_recommender_is_measured_on_every_user(report: dict[str, Any]) -> None:
    sizes = report["sizes"]
    assert set(report["results"]) == set(RECOMMENDERS)
    assert sizes["rows"] == 100_000 and sizes["users"] == 943 and sizes["items"] == 1682
    # 25% of each user's ratings (every user has ≥ 20) are test rows.
    assert 24_500 < sizes["test_rows"] < 25_500
    for metrics in report["results"].values():
        assert metrics["users"] == 943
        assert all(0.0 <= metrics[m] <= 1.0 for m in METRICS)


def test_best_model_reaches_ndcg_048(report: dict[str, Any]) -> None:
    name, metrics = best(report)
    assert metrics["ndcg@10"] >= 0.48, f"{name}: {metrics}"


def test_best_model_beats_popularity_by_a_wide_margin(report: dict[str, Any]) -> None:
    (_, metrics), popularity = best(report), report["results"]["popularity"]
    for metric in METRICS:
        assert metrics[metric] >= 1.5 * popularity[metric], metric
    assert metrics["ndcg@10"] - popularity["ndcg@10"] >= 0.15


def test_parameters_are_chosen_on_validation_from_the_grid(report: dict[str, Any]) -> None:
    for name, params in report["params"].items():
        search = MOVIELENS.models[name]
        candidates = [{**search.fixed, **combo} for combo in (parameter_grid(search.grid) if search.grid else [{}])]
        validation = report["validation"][name]
        assert params in candidates
        assert [t["params"] for t in validation["trials"]] == candidates
        assert validation["score"] == max(t["score"] for t in validation["trials"])
        # Validation rows are fewer than test rows, so the validation score is a different number.
        assert validation["score"] != report["results"][name]["ndcg@10"]
