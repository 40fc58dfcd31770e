"""The evaluation notebook runs the three protocols on the real datasets; the targets are checked
on the reports it writes (one run of each protocol per test session)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def reports(evaluation_reports: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Executed once per session in conftest; the protocol tests (test_offline_*) read the same run."""
    return evaluation_reports


def test_movielens_best_model_beats_popularity_widely(reports: dict[str, dict[str, Any]]) -> None:
    results = reports["movielens"]["results"]
    best = max(r["ndcg@10"] for m, r in results.items() if m != "popularity")
    assert set(results) == {"popularity", "itemknn", "als", "bpr", "ease"}
    assert best >= 1.5 * results["popularity"]["ndcg@10"]
    assert best >= 0.48  # the bar; hyper-parameters come from validation rows only
    assert results["popularity"]["users"] == 943


def test_lastfm_best_model_beats_popularity_widely(reports: dict[str, dict[str, Any]]) -> None:
    results = reports["lastfm"]["results"]
    best = max(r["ndcg@10"] for m, r in results.items() if m != "popularity")
    assert best >= 1.5 * results["popularity"]["ndcg@10"]


def test_repurchase_beats_the_better_baseline_by_ten_percent(reports: dict[str, dict[str, Any]]) -> None:
    results = reports["online-retail"]["results"]
    baseline = max(results["top_frequency"]["recall@10"], results["last_basket"]["recall@10"])
    assert results["repurchase"]["recall@10"] >= 1.10 * baseline
    recommenders = ("popularity", "itemknn", "ease", "als", "bpr")
    assert results["repurchase"]["recall@10"] > max(results[m]["recall@10"] for m in recommenders)
