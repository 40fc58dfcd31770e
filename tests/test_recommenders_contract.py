"""The one contract every registered recommender passes, on tiny data with known answers.

Two disjoint taste groups. Group A (6 users) share items A1..A4; ``a1`` has every A item but
A4. Group B (4 users) share B1..B3; ``b1`` has every B item but B3. So ``a1``'s right first
answer is A4 for every model (it is also the most popular unseen item), and ``b1``'s is B3 for
every personalised model (popularity would say an A item).
"""

from __future__ import annotations

import doctest
import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from orchestrion.errors import NotFoundError, UsageError
from orchestrion.recommenders import (
    RECOMMENDERS,
    Interactions,
    Recommender,
    Vocabulary,
    load_recommender,
    make_recommender,
)

GROUP_A = {f"a{i}": ["A1", "A2", "A3", "A4"] for i in range(2, 7)} | {"a1": ["A1", "A2", "A3"]}
GROUP_B = {f"b{i}": ["B1", "B2", "B3"] for i in range(2, 5)} | {"b1": ["B1", "B2"]}
HISTORY = GROUP_A | GROUP_B
CATALOGUE = ["A1", "A2", "A3", "A4", "B1", "B2", "B3"]
# By number of users, ties towards the lower id: what an unknown user gets.
POPULARITY_ORDER = ["A1", "A2", "A3", "A4", "B1", "B2", "B3"]

# Settings that let each model learn 10 users (defaults target real data sizes).
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "als": {"factors": 4, "regularization": 0.01, "iterations": 30},
    "bpr": {"factors": 4, "learning_rate": 0.05, "regularization": 0.001, "iterations": 300},
    "ease": {"l2": 1.0},
    "itemknn": {"k": 3, "similarity": "cosine"},
}


def tiny() -> Interactions:
    users = [u for u, items in HISTORY.items() for _ in items]
    items = [i for its in HISTORY.values() for i in its]
    return Interactions.from_columns(users, items)


def fitted(name: str) -> Recommender[Any]:
    return make_recommender(name, TINY_CONFIGS.get(name)).fit(tiny())


def check_known_answer(name: str, tmp_path: Path) -> None:
    model = fitted(name)
    recs = model.recommend(["a1", "b1"], n=1)
    assert recs.item_ids[0, 0] == "A4"
    if model.personalised:
        assert recs.item_ids[1, 0] == "B3"
    assert recs.known.tolist() == [True, True]


def check_exclude_seen(name: str, tmp_path: Path) -> None:
    model = fitted(name)
    users = sorted(HISTORY)
    recs = model.recommend(users, n=len(CATALOGUE))
    for row, user in enumerate(users):
        assert not set(recs.item_ids[row][recs.mask[row]]) & set(HISTORY[user])
    everything = model.recommend(["a1"], n=len(CATALOGUE), exclude_seen=False)
    assert {"A1", "A2", "A3"} <= set(everything.item_ids[0][everything.mask[0]])


def check_exclude_items(name: str, tmp_path: Path) -> None:
    model = fitted(name)
    recs = model.recommend(["a1", "b1"], n=len(CATALOGUE), exclude_items=["A4", "B3", "not-an-item"])
    assert not {"A4", "B3"} & set(recs.item_ids[recs.mask])


def check_n_larger_than_catalogue(name: str, tmp_path: Path) -> None:
    model = fitted(name)
    recs = model.recommend(["a1"], n=20)
    assert recs.indices.shape == recs.scores.shape == recs.item_ids.shape == (1, 20)
    real = recs.mask[0]
    assert 1 <= real.sum() <= len(CATALOGUE) - 3
    assert not real[real.sum() :].any(), "padding only at the end"
    assert np.isnan(recs.scores[0][~real]).all() and (recs.item_ids[0][~real] == "").all()
    assert len(set(recs.item_ids[0][real])) == real.sum()
    assert np.all(np.diff(recs.scores[0][real]) <= 0), "best first"
    assert [item for item, _ in recs.row(0)] == recs.item_ids[0][real].tolist()


def check_unknown_user(name: str, tmp_path: Path) -> None:
    model = fitted(name)
    recs = model.recommend(["nobody", "a1"], n=len(CATALOGUE))
    assert recs.known.tolist() == [False, True]
    assert recs.item_ids[0].tolist() == POPULARITY_ORDER
    assert recs.query_ids.tolist() == ["nobody", "a1"]
    with_int = model.recommend([12345], n=2)
    assert with_int.known.tolist() == [False]


def check_similar_items(name: str, tmp_path: Path) -> None:
    model = fitted(name)
    similar = model.similar_items(["A1", "unknown-item", "B1"], n=3)
    assert similar.known.tolist() == [True, False, True]
    assert not similar.mask[1].any() and np.isnan(similar.scores[1]).all()
    assert "A1" not in similar.item_ids[0] and "B1" not in similar.item_ids[2]
    assert similar.item_ids[0, 0] in {"A2", "A3", "A4"}
    if model.personalised:
        assert similar.item_ids[2, 0] in {"B2", "B3"}


def check_save_load(name: str, tmp_path: Path) -> None:
    model = fitted(name)
    model.save(tmp_path / "model")
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert meta["recommender"] == name and meta["config"] == model.config_json()
    users = [*sorted(HISTORY), "nobody"]
    for loaded in (load_recommender(tmp_path / "model"), type(model).load(tmp_path / "model")):
        assert type(loaded) is type(model) and loaded.config == model.config
        before, after = model.recommend(users, n=5), loaded.recommend(users, n=5)
        np.testing.assert_array_equal(after.indices, before.indices)
        np.testing.assert_array_equal(after.scores, before.scores)
        np.testing.assert_array_equal(after.item_ids, before.item_ids)
        same = model.similar_items(CATALOGUE, n=3), loaded.similar_items(CATALOGUE, n=3)
        np.testing.assert_array_equal(same[0].scores, same[1].scores)
    other = next(n for n in RECOMMENDERS if n != name)
    with pytest.raises(UsageError, match=name):
        RECOMMENDERS[other].load(tmp_path / "model")


def check_config_round_trip(name: str, tmp_path: Path) -> None:
    model = make_recommender(name, TINY_CONFIGS.get(name))
    config = model.config
    assert type(config).model_validate_json(config.model_dump_json()) == config
    assert make_recommender(name, json.loads(config.model_dump_json())).config == config
    with pytest.raises(UsageError, match="not_a_setting"):
        make_recommender(name, {"not_a_setting": 1})


def check_deterministic(name: str, tmp_path: Path) -> None:
    first, second = fitted(name), fitted(name)
    users = sorted(HISTORY)
    a, b = first.recommend(users, n=4), second.recommend(users, n=4)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.scores, b.scores)


def check_usage_errors(name: str, tmp_path: Path) -> None:
    model = make_recommender(name, TINY_CONFIGS.get(name))
    with pytest.raises(UsageError, match="fit"):
        model.recommend(["a1"])
    model.fit(tiny())
    with pytest.raises(UsageError, match="n must be"):
        model.recommend(["a1"], n=0)


CHECKS: list[Callable[[str, Path], None]] = [
    check_known_answer,
    check_exclude_seen,
    check_exclude_items,
    check_n_larger_than_catalogue,
    check_unknown_user,
    check_similar_items,
    check_save_load,
    check_config_round_trip,
    check_deterministic,
    check_usage_errors,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("name", sorted(RECOMMENDERS))
def test_recommender_contract(name: str, check: Callable[[str, Path], None], tmp_path: Path) -> None:
    check(name, tmp_path)


def test_vocabulary_maps_ids_both_ways() -> None:
    vocab, codes = Vocabulary.encode(["x", "y", "x", "z"])
    assert vocab.ids[codes].tolist() == ["x", "y", "x", "z"]
    assert vocab.index(["z", "nope", "x"]).tolist() == [2, -1, 0]
    assert vocab.index([1, 2]).tolist() == [-1, -1], "ints are unknown in a string vocabulary"
    numbers = Vocabulary.from_ids([30, 10, 20])
    assert numbers.index([20, 30, 99]).tolist() == [2, 0, -1]
    with pytest.raises(UsageError, match="unique"):
        Vocabulary.from_ids(["a", "a"])
    with pytest.raises(UsageError, match="floats"):
        Vocabulary.from_ids([1.5, 2.0])


def test_interactions_sum_repeats_and_validate() -> None:
    x = Interactions.from_columns([1, 1, 2], ["a", "a", "b"], [2.0, 3.0, 1.0])
    assert x.matrix.dtype == np.float32 and x.matrix.toarray().tolist() == [[5.0, 0.0], [0.0, 1.0]]
    with pytest.raises(UsageError, match="weights"):
        Interactions.from_columns([1], ["a"], [1.0, 2.0])
    with pytest.raises(UsageError, match="finite"):
        Interactions.from_columns([1], ["a"], [float("nan")])
    with pytest.raises(UsageError, match="unknown recommender 'nope'"):
        make_recommender("nope")
    with pytest.raises(NotFoundError):
        load_recommender("/nonexistent/model")


def test_ease_refuses_a_catalogue_too_large_to_invert() -> None:
    with pytest.raises(UsageError, match="min_item_users"):
        make_recommender("ease", {"max_items": 3}).fit(tiny())
    pruned = make_recommender("ease", {"l2": 1.0, "min_item_users": 5}).fit(tiny())
    recs = pruned.recommend(["b1"], n=len(CATALOGUE))
    # B items (≤ 4 users) are not modelled: they score as missing and are never recommended.
    assert recs.item_ids[recs.mask].tolist() == ["A1", "A2", "A3", "A4"]


def reference_top_n(scores: np.ndarray, n: int) -> list[list[int]]:
    """Best score first, ties by column, missing (−inf/NaN) never, padded with −1."""
    out = []
    for row in scores:
        ranked = sorted((-float(v), c) for c, v in enumerate(row) if np.isfinite(v))[:n]
        out.append([c for _, c in ranked] + [-1] * (n - len(ranked)))
    return out


def test_top_n_on_mostly_missing_and_on_dense_scores() -> None:
    from orchestrion.recommenders.base import _top_n

    rng = np.random.default_rng(3)
    mostly_missing = rng.integers(0, 50, size=(40, 300)).astype(np.float32)  # many ties
    mostly_missing[rng.random(mostly_missing.shape) < 0.9] = -np.inf
    mostly_missing[0] = -np.inf  # a row with nothing to recommend
    mostly_missing[1, :5] = np.nan
    expected = reference_top_n(mostly_missing, 12)
    indices, scores = _top_n(mostly_missing.copy(), 12)
    assert indices.tolist() == expected and np.isnan(scores[0]).all()

    dense = rng.random((40, 300)).astype(np.float32)  # no ties: the cut-off is well defined
    dense[rng.random(dense.shape) < 0.1] = -np.inf
    indices, scores = _top_n(dense.copy(), 12)
    assert indices.tolist() == reference_top_n(dense, 12)
    assert np.all(np.diff(scores, axis=1) <= 0)

    dense[:, 100:250] = -np.inf  # items nobody can get are dropped before selecting
    assert _top_n(dense.copy(), 12)[0].tolist() == reference_top_n(dense, 12)
    assert (_top_n(np.full((3, 5), -np.inf, dtype=np.float32), 2)[0] == -1).all()


@pytest.mark.parametrize(
    "module",
    [
        "orchestrion.recommenders",
        "orchestrion.recommenders.base",
        "orchestrion.recommenders.popularity",
        "orchestrion.recommenders.itemknn",
        "orchestrion.recommenders.als",
        "orchestrion.recommenders.bpr",
        "orchestrion.recommenders.ease",
    ],
)
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
