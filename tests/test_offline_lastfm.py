"""The ``lastfm`` protocol on the real HetRec 2011 Last.fm user–artist play counts.

80/20 per-user random split (seed 42), the same metrics as ``movielens``; no published target
exists for this exact protocol, so the facts that must hold are: every model is measured, the
parameters come from validation, and the best model beats popularity by a wide margin.
"""

from __future__ import annotations

import polars as pl
import pytest

from orchestrion.evaluation import LASTFM, ProtocolResult, evaluate_topn, parameter_grid
from orchestrion.recommenders import RECOMMENDERS

try:
    from conftest import dataset_path
except ImportError:  # tests/ imported as a package
    from tests.conftest import dataset_path

pytestmark = pytest.mark.slow

METRICS = ("precision@10", "recall@10", "ndcg@10", "map@10")


@pytest.fixture(scope="module")
def result() -> ProtocolResult:
    plays = pl.read_csv(dataset_path("lastfm-hetrec-2k") / "user_artists.dat", separator="\t")
    frame = plays.select(
        pl.col("userID").alias("user_id"), pl.col("artistID").alias("item_id"), pl.col("weight").alias("value")
    )
    return evaluate_topn(frame, "lastfm")


def test_every_recommender_is_measured(result: ProtocolResult) -> None:
    assert set(result.metrics) == set(RECOMMENDERS)
    assert result.sizes["rows"] == 92_834 and result.sizes["users"] == 1892 and result.sizes["items"] == 17_632
    assert 18_000 < result.sizes["test_rows"] < 19_000
    for metrics in result.metrics.values():
        # A few users have a single artist: nothing of theirs is held out.
        assert 1870 <= metrics["users"] <= 1892
        assert all(0.0 <= metrics[m] <= 1.0 for m in METRICS)


def test_best_model_beats_popularity_by_a_wide_margin(result: ProtocolResult) -> None:
    best, popularity = result.best("ndcg@10"), result.metrics["popularity"]
    for metric in METRICS:
        assert best.metrics[metric] >= 2.0 * popularity[metric], metric
    assert best.metrics["ndcg@10"] - popularity["ndcg@10"] >= 0.1


def test_parameters_are_chosen_on_validation_from_the_grid(result: ProtocolResult) -> None:
    for name, model in result.models.items():
        search = LASTFM.models[name]
        candidates = [{**search.fixed, **combo} for combo in (parameter_grid(search.grid) if search.grid else [{}])]
        assert model.params in candidates
        assert model.tuning.score == max(t.metrics["ndcg@10"] for t in model.tuning.trials)
