"""The ``lastfm`` protocol on the real HetRec 2011 Last.fm user–artist play counts.

80/20 per-user random split (seed 42), the same metrics as ``movielens``; no published target
exists for this exact protocol, so the facts that must hold are: every model is measured, the
parameters come from validation, and the best model beats popularity by a wide margin.

The protocol runs once per session, in the evaluation notebook (``evaluation_reports`` in
conftest); these tests read its report.
"""

from __future__ import annotations

from typing import Any

import pytest

from orchestrion.evaluation import LASTFM, parameter_grid
from orchestrion.recommenders import RECOMMENDERS

METRICS = ("precision@10", "recall@10", "ndcg@10", "map@10")


@pytest.fixture
def report(evaluation_reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return evaluation_reports["lastfm"]


def test_every_recommender_is_measured(report: dict[str, Any]) -> None:
    sizes = report["sizes"]
    assert set(report["results"]) == set(RECOMMENDERS)
    assert sizes["rows"] == 92_834 and sizes["users"] == 1892 and sizes["items"] == 17_632
    assert 18_000 < sizes["test_rows"] < 19_000
    for metrics in report["results"].values():
        # A few users have a single artist: nothing of theirs is held out.
        assert 1870 <= metrics["users"] <= 1892
        assert all(0.0 <= metrics[m] <= 1.0 for m in METRICS)


def test_best_model_beats_popularity_by_a_wide_margin(report: dict[str, Any]) -> None:
    results = report["results"]
    best, popularity = results[max(results, key=lambda m: results[m]["ndcg@10"])], results["popularity"]
    for metric in METRICS:
        assert best[metric] >= 2.0 * popularity[metric], metric
    assert best["ndcg@10"] - popularity["ndcg@10"] >= 0.1


def test_parameters_are_chosen_on_validation_from_the_grid(report: dict[str, Any]) -> None:
    for name, params in report["params"].items():
        search = LASTFM.models[name]
        candidates = [{**search.fixed, **combo} for combo in (parameter_grid(search.grid) if search.grid else [{}])]
        validation = report["validation"][name]
        assert params in candidates
        assert validation["score"] == max(t["score"] for t in validation["trials"])
