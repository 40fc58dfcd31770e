"""Splits, grid search and the offline protocol runner, on small hand-made data."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import polars as pl
import pytest

from orchestrion.errors import UsageError
from orchestrion.evaluation import (
    MOVIELENS,
    PROTOCOLS,
    Fold,
    ModelSearch,
    ProtocolConfig,
    cutoff_split,
    evaluate_topn,
    parameter_grid,
    random_split,
    temporal_split,
    tune,
)
from orchestrion.evaluation.splits import held_out_counts
from orchestrion.evaluation.tuning import weigh


def test_random_split_holds_out_the_rounded_fraction_of_each_user() -> None:
    counts = np.array([1, 2, 3, 4, 5, 8, 10])
    users = np.repeat(np.arange(counts.size), counts)
    held = random_split(users, 0.25, seed=42)
    per_user = np.bincount(users, weights=held).astype(int)
    # floor(0.25·n + 0.5), at most n − 1.
    assert per_user.tolist() == [0, 1, 1, 1, 1, 2, 3]
    assert held_out_counts(np.array([2]), 0.75).tolist() == [1]
    assert np.array_equal(held, random_split(users, 0.25, seed=42)), "same seed, same split"
    assert not np.array_equal(held, random_split(users, 0.25, seed=7))
    with pytest.raises(UsageError, match="fraction"):
        random_split(users, 1.0)


def test_temporal_and_cutoff_splits_hold_out_the_latest_rows() -> None:
    users = np.array(["a", "a", "a", "a", "b", "b"])
    ts = np.array([10, 40, 20, 40, 5, 6])
    # a: latest two of four are the two rows at t=40; b: the row at t=6.
    assert temporal_split(users, ts, 0.5).tolist() == [False, True, False, True, False, True]
    # Equal times: the later row counts as later.
    assert temporal_split(users, ts, 0.25).tolist() == [False, False, False, True, False, True]
    assert cutoff_split(ts, 20).tolist() == [False, True, True, True, False, False]


def test_validation_is_carved_from_training_rows_only() -> None:
    rng = np.random.default_rng(42)
    users = np.repeat(np.arange(50), 8)
    items = np.tile(np.arange(8), 50)
    outer = Fold.from_mask(users, items, np.ones(users.size), random_split(users, 0.25, rng))
    inner = outer.inner(0.25, rng)
    pairs = lambda u, i: set(zip(u.tolist(), i.tolist(), strict=True))  # noqa: E731
    train, test = pairs(outer.train_users, outer.train_items), pairs(outer.held_out_users, outer.held_out_items)
    validation = pairs(inner.held_out_users, inner.held_out_items)
    assert validation <= train and not validation & test
    assert pairs(inner.train_users, inner.train_items) | validation == train


def test_grid_and_weighting() -> None:
    assert parameter_grid({"a": [1, 2], "b": [3, 4]}) == [
        {"a": 1, "b": 3},
        {"a": 1, "b": 4},
        {"a": 2, "b": 3},
        {"a": 2, "b": 4},
    ]
    with pytest.raises(UsageError, match="non-empty list"):
        parameter_grid({"a": []})
    assert weigh(np.array([0.0, 3.0]), "binary").tolist() == [1.0, 1.0]
    assert weigh(np.array([0.0, np.e - 1]), "log1p") == pytest.approx([0.0, 1.0])
    with pytest.raises(UsageError, match="log1p"):
        weigh(np.array([-1.0]), "log1p")


def two_groups(rows_per_user: int = 6) -> pl.DataFrame:
    """40 users in two taste groups of 8 items each; every user has ``rows_per_user`` items."""
    rng = np.random.default_rng(0)
    records = []
    for user in range(40):
        group = user % 2
        for item in rng.choice(8, size=rows_per_user, replace=False):
            records.append((user, 100 * group + int(item), float(rng.integers(1, 6))))
    return pl.DataFrame(records, schema=["user_id", "item_id", "value"], orient="row")


def test_tuning_picks_the_best_validation_score() -> None:
    frame = two_groups()
    users, items = frame["user_id"].to_numpy(), frame["item_id"].to_numpy()
    fold = Fold.from_mask(users, items, frame["value"].to_numpy(), random_split(users, 0.3, seed=1))
    result = tune("itemknn", fold, {"k": [1, 20]}, fixed={"similarity": "cosine"}, k=3)
    scores = [t.metrics["ndcg@3"] for t in result.trials]
    assert result.score == max(scores) and result.best == result.trials[int(np.argmax(scores))].params
    assert all(t.params["similarity"] == "cosine" for t in result.trials)


SMALL = ProtocolConfig(
    name="small",
    test_fraction=0.25,
    validation_fraction=0.25,
    k=3,
    models={"popularity": ModelSearch(), "ease": ModelSearch(grid={"l2": [1.0, 100.0]})},
)


def test_protocol_runs_every_model_and_does_not_depend_on_id_types_or_row_order() -> None:
    frame = two_groups()
    result = evaluate_topn(frame, SMALL)
    assert set(result.metrics) == {"popularity", "ease"}
    assert set(result.metrics["ease"]) == {"precision@3", "recall@3", "ndcg@3", "map@3", "users"}
    assert result.models["ease"].params["l2"] in (1.0, 100.0)
    assert result.models["ease"].fit_seconds >= 0 and len(result.models["ease"].tuning.trials) == 2
    # Each user holds out 2 of 6 rows, then 1 of the remaining 4 for validation.
    assert result.sizes == {
        "rows": 240,
        "users": 40,
        "items": 16,
        "train_rows": 160,
        "validation_rows": 40,
        "test_rows": 80,
    }
    # A personalised model separates the two groups; popularity cannot.
    assert result.metrics["ease"]["ndcg@3"] > result.metrics["popularity"]["ndcg@3"]
    as_strings = frame.with_columns(pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String))
    shuffled = as_strings.sample(fraction=1.0, shuffle=True, seed=3)
    assert evaluate_topn(shuffled, SMALL).metrics == result.metrics


def test_protocol_mistakes_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="value"):
        evaluate_topn(pl.DataFrame({"user_id": [1], "item_id": [2]}), SMALL)
    with pytest.raises(UsageError, match="unknown protocol"):
        evaluate_topn(two_groups(), "nope")
    with pytest.raises(UsageError, match="no search for als"):
        evaluate_topn(two_groups(), SMALL, models=["als"])


def test_shipped_protocols_round_trip_through_json() -> None:
    for protocol in PROTOCOLS.values():
        assert ProtocolConfig.model_validate_json(protocol.model_dump_json()) == protocol
    assert MOVIELENS.test_fraction == 0.25 and PROTOCOLS["lastfm"].test_fraction == 0.2
    assert all(p.seed == 42 and p.k == 10 for p in PROTOCOLS.values())


@pytest.mark.parametrize(
    "module",
    [
        "orchestrion.evaluation",
        "orchestrion.evaluation.metrics",
        "orchestrion.evaluation.splits",
        "orchestrion.evaluation.tuning",
        "orchestrion.evaluation.offline",
    ],
)
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0
