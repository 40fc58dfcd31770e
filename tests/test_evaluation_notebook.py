"""The evaluation notebook runs the three offline protocols on the real datasets; the protocols'
targets are checked on the reports it writes.

Each protocol runs once per test session, here: the module fixture executes
``notebooks/evaluation.ipynb`` and every test of this file reads its reports. They live in this one
file so that under ``pytest -n 2 --dist loadfile`` (``make test``) one worker runs the notebook and
no other runs it again.

``movielens`` (ML-100k ratings): the best model reaches nDCG@10 ≥ 0.48 and beats popularity by a
wide margin, with every hyper-parameter chosen on validation rows carved out of the training part.
``lastfm`` (HetRec 2011 user–artist play counts): 80/20 per-user random split (seed 42), the same
metrics; no published target exists for this exact protocol, so the facts that must hold are: every
model is measured, the parameters come from validation, and the best model beats popularity by a
wide margin. ``online-retail``: the repurchase model beats the better personal baseline by 10 %.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import dataset_path
from orchestrion.evaluation import LASTFM, MOVIELENS, parameter_grid
from orchestrion.recommenders import RECOMMENDERS

EVALUATION_NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "evaluation.ipynb"
METRICS = ("precision@10", "recall@10", "ndcg@10", "map@10")


@pytest.fixture(scope="module")
def evaluation_reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The reports of the three offline protocols, written by executing the notebook once."""
    for name in ("movielens-100k", "lastfm-hetrec-2k", "online-retail"):
        dataset_path(name)
    results = tmp_path_factory.mktemp("results")
    notebook = nbformat.read(EVALUATION_NOTEBOOK, as_version=4)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ORCHESTRION_RESULTS", str(results))
        NotebookClient(notebook, timeout=900, kernel_name="python3",
                       resources={"metadata": {"path": str(results)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 3  # one chart per protocol
    return {p: json.loads((results / p / "results.json").read_text()) for p in ("movielens", "lastfm", "online-retail")}


def best(report: dict[str, Any]) -> tuple[str, dict[str, float]]:
    name = max(report["results"], key=lambda m: report["results"][m]["ndcg@10"])
    return name, report["results"][name]


# --- movielens -------------------------------------------------------------------------------------


@pytest.fixture
def movielens(evaluation_reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return evaluation_reports["movielens"]


def test_movielens_best_model_beats_popularity_widely(movielens: dict[str, Any]) -> None:
    results = movielens["results"]
    best_ndcg = max(r["ndcg@10"] for m, r in results.items() if m != "popularity")
    assert set(results) == {"popularity", "itemknn", "als", "bpr", "ease"}
    assert best_ndcg >= 1.5 * results["popularity"]["ndcg@10"]
    assert best_ndcg >= 0.48  # the bar; hyper-parameters come from validation rows only
    assert results["popularity"]["users"] == 943


def test_movielens_every_recommender_is_measured_on_every_user(movielens: dict[str, Any]) -> None:
    sizes = movielens["sizes"]
    assert set(movielens["results"]) == set(RECOMMENDERS)
    assert sizes["rows"] == 100_000 and sizes["users"] == 943 and sizes["items"] == 1682
    # 25% of each user's ratings (every user has ≥ 20) are test rows.
    assert 24_500 < sizes["test_rows"] < 25_500
    for metrics in movielens["results"].values():
        assert metrics["users"] == 943
        assert all(0.0 <= metrics[m] <= 1.0 for m in METRICS)


def test_movielens_best_model_reaches_ndcg_048(movielens: dict[str, Any]) -> None:
    name, metrics = best(movielens)
    assert metrics["ndcg@10"] >= 0.48, f"{name}: {metrics}"


def test_movielens_best_model_beats_popularity_by_a_wide_margin(movielens: dict[str, Any]) -> None:
    (_, metrics), popularity = best(movielens), movielens["results"]["popularity"]
    for metric in METRICS:
        assert metrics[metric] >= 1.5 * popularity[metric], metric
    assert metrics["ndcg@10"] - popularity["ndcg@10"] >= 0.15


def test_movielens_parameters_are_chosen_on_validation_from_the_grid(movielens: dict[str, Any]) -> None:
    for name, params in movielens["params"].items():
        search = MOVIELENS.models[name]
        candidates = [{**search.fixed, **combo} for combo in (parameter_grid(search.grid) if search.grid else [{}])]
        validation = movielens["validation"][name]
        assert params in candidates
        assert [t["params"] for t in validation["trials"]] == candidates
        assert validation["score"] == max(t["score"] for t in validation["trials"])
        # Validation rows are fewer than test rows, so the validation score is a different number.
        assert validation["score"] != movielens["results"][name]["ndcg@10"]


# --- lastfm ----------------------------------------------------------------------------------------


@pytest.fixture
def lastfm(evaluation_reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return evaluation_reports["lastfm"]


def test_lastfm_best_model_beats_popularity_widely(lastfm: dict[str, Any]) -> None:
    results = lastfm["results"]
    best_ndcg = max(r["ndcg@10"] for m, r in results.items() if m != "popularity")
    assert best_ndcg >= 1.5 * results["popularity"]["ndcg@10"]


def test_lastfm_every_recommender_is_measured(lastfm: dict[str, Any]) -> None:
    sizes = lastfm["sizes"]
    assert set(lastfm["results"]) == set(RECOMMENDERS)
    assert sizes["rows"] == 92_834 and sizes["users"] == 1892 and sizes["items"] == 17_632
    assert 18_000 < sizes["test_rows"] < 19_000
    for metrics in lastfm["results"].values():
        # A few users have a single artist: nothing of theirs is held out.
        assert 1870 <= metrics["users"] <= 1892
        assert all(0.0 <= metrics[m] <= 1.0 for m in METRICS)


def test_lastfm_best_model_beats_popularity_by_a_wide_margin(lastfm: dict[str, Any]) -> None:
    results = lastfm["results"]
    (_, metrics), popularity = best(lastfm), results["popularity"]
    for metric in METRICS:
        assert metrics[metric] >= 2.0 * popularity[metric], metric
    assert metrics["ndcg@10"] - popularity["ndcg@10"] >= 0.1


def test_lastfm_parameters_are_chosen_on_validation_from_the_grid(lastfm: dict[str, Any]) -> None:
    for name, params in lastfm["params"].items():
        search = LASTFM.models[name]
        candidates = [{**search.fixed, **combo} for combo in (parameter_grid(search.grid) if search.grid else [{}])]
        validation = lastfm["validation"][name]
        assert params in candidates
        assert validation["score"] == max(t["score"] for t in validation["trials"])


# --- online-retail ---------------------------------------------------------------------------------


def test_repurchase_beats_the_better_baseline_by_ten_percent(evaluation_reports: dict[str, dict[str, Any]]) -> None:
    results = evaluation_reports["online-retail"]["results"]
    baseline = max(results["top_frequency"]["recall@10"], results["last_basket"]["recall@10"])
    assert results["repurchase"]["recall@10"] >= 1.10 * baseline
    recommenders = ("popularity", "itemknn", "ease", "als", "bpr")
    assert results["repurchase"]["recall@10"] > max(results[m]["recall@10"] for m in recommenders)
