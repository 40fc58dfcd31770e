from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from orchestrion.errors import UsageError
from orchestrion.recommenders.repurchase import (
    FEATURES,
    RepurchaseConfig,
    RepurchaseModel,
    last_basket,
    top_frequency,
    top_n,
)


def frame(n: int, seed: int) -> pl.DataFrame:
    """Pairs whose label is 'overdue against their own rhythm': a rule a model must learn."""
    rng = np.random.default_rng(seed)
    interval = rng.uniform(5, 60, n)
    since = rng.uniform(0, 90, n)
    columns: dict[str, object] = {name: rng.uniform(1, 10, n) for name in FEATURES}
    columns.update(
        user_id=[f"u{i % 50}" for i in range(n)], item_id=[f"i{i}" for i in range(n)],
        median_interval_days=interval, mean_interval_days=interval, days_since_last=since,
        days_since_first=since + 100, n_purchases=rng.integers(2, 9, n).astype(float),
        user_orders=np.full(n, 10.0), label=(since > interval) & (since < interval + 30),
    )
    return pl.DataFrame(columns).drop(["overdue_ratio", "overdue_days", "purchase_rate", "share_of_orders"])


def test_learns_a_rhythm_and_round_trips(tmp_path: Path) -> None:
    model = RepurchaseModel(RepurchaseConfig(negative_share=1.0)).fit(frame(4000, 1))
    test = frame(1000, 2)
    scores = model.predict(test)
    labels = test.get_column("label").to_numpy()
    assert scores[labels].mean() > scores[~labels].mean() + 0.5
    model.save(tmp_path / "m")
    assert np.array_equal(RepurchaseModel.load(tmp_path / "m").predict(test), scores)


def test_baselines_and_top_n() -> None:
    pairs = pl.DataFrame({
        "user_id": ["u1", "u1", "u1", "u2"], "item_id": ["a", "b", "c", "a"],
        "n_purchases": [5, 2, 2, 1], "days_since_last": [40.0, 3.0, 9.0, 1.0],
        "user_days_since_last": [3.0, 3.0, 3.0, 1.0],
    })
    freq = top_n(pairs, top_frequency(pairs), 2)
    assert freq.filter(pl.col("user_id") == "u1").get_column("item_id").to_list() == ["a", "b"]
    last = top_n(pairs, last_basket(pairs), 1)
    assert last.get_column("item_id").to_list() == ["b", "a"]


def test_one_class_is_a_usage_error() -> None:
    data = frame(100, 3).with_columns(pl.lit(False).alias("label"))
    with pytest.raises(UsageError, match="one class"):
        RepurchaseModel().fit(data)
