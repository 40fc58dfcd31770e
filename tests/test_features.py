from __future__ import annotations

from datetime import datetime

import pytest

from orchestrion.errors import NotFoundError, UsageError
from orchestrion.store import Store
from orchestrion.training.pipelines import interaction_arrays, pipeline_names, run_pipeline

AS_OF = datetime(2024, 3, 1)


def add(store: Store, rows: list[tuple[str, str, str, str | None, str, float | None, str | None]]) -> None:
    store.con.executemany(
        "INSERT INTO events VALUES (?, ?, ?, ?, 'retail', ?::TIMESTAMP, now()::TIMESTAMP, ?, ?, NULL)", rows
    )


def test_interactions_weights_and_matrix(store: Store) -> None:
    add(store, [
        ("1", "u1", "purchase", "a", "2024-02-29 00:00:00", 2.0, None),
        ("2", "u1", "purchase", "a", "2024-01-31 00:00:00", 1.0, None),
        ("3", "u1", "return", "a", "2024-02-01 00:00:00", 1.0, None),
        ("4", "u2", "view", "b", "2024-02-20 00:00:00", None, None),
        ("5", "u2", "view", "b", "2024-03-02 00:00:00", None, None),  # after as_of: ignored
    ])
    counts = interaction_arrays(store.con, as_of=AS_OF, weighting="count", half_life_days=30)
    assert list(counts.user_ids) == ["u1", "u2"] and list(counts.item_ids) == ["a", "b"]
    assert counts.matrix.toarray().tolist() == [[2.0, 0.0], [0.0, 1.0]]
    values = interaction_arrays(store.con, weighting="value")
    assert values.matrix[0, 0] == 3.0 and values.matrix[1, 1] == 1.0  # no value counts as 1
    decayed = interaction_arrays(store.con, weighting="decayed")
    # one day old -> 2^(-1/30); thirty days old -> 1/2
    assert decayed.matrix[0, 0] == pytest.approx(2 ** (-1 / 30) + 0.5, rel=1e-5)


def test_purchase_stats(store: Store) -> None:
    add(store, [
        ("1", "u1", "purchase", "a", "2024-01-01 10:00:00", 2.0, '{"unit_price": 1.5}'),
        ("2", "u1", "purchase", "a", "2024-01-01 11:00:00", 1.0, '{"unit_price": 1.5}'),  # same day: one occasion
        ("3", "u1", "purchase", "a", "2024-01-11 11:00:00", 2.0, '{"unit_price": 1.75}'),
        ("4", "u1", "purchase", "a", "2024-01-31 11:00:00", 4.0, '{"unit_price": 2.0}'),
        ("5", "u2", "purchase", "a", "2024-02-01 00:00:00", 1.0, None),
        ("6", "u3", "purchase", "a", "2024-01-20 09:00:00", 1.0, '{"unit_price": 2.5}'),
        ("7", "u3", "purchase", "a", "2024-01-20 09:00:00", 1.0, '{"unit_price": 3.5}'),  # same instant
    ])
    run_pipeline(store.con, "purchase_items", {"as_of": AS_OF})
    run_pipeline(store.con, "purchase_stats", {"as_of": AS_OF, "users": None})
    row = store.con.execute(
        "SELECT n_purchases, mean_interval_days, median_interval_days, days_since_last, usual_quantity, "
        "total_quantity, last_price, user_orders, item_buyers FROM purchase_stats WHERE user_id = 'u1'"
    ).fetchone()
    assert row is not None
    n, mean_gap, median_gap, since, usual, total, price, orders, buyers = row
    assert (n, orders, buyers, total, price, usual) == (3, 3, 3, 9.0, 2.0, 3.0)
    assert mean_gap == pytest.approx(15.0) and median_gap == pytest.approx(15.0)
    assert since == pytest.approx(29 + 13 / 24)
    assert store.con.execute("SELECT last_price FROM purchase_stats WHERE user_id = 'u3'").fetchall() == [(3.5,)]
    # a's buyers: u1 on three days (a repeat), u2 once, u3 twice on one day (not a repeat);
    # bought in the last 30 days: u1 (Jan 31) and u2 (Feb 1)
    items = store.con.sql("SELECT item_buyers, item_recent_buyers, item_repeat_share FROM purchase_items").fetchall()
    assert items == [(3, 2, pytest.approx(1 / 3))]


def test_runner_errors_name_the_fix(store: Store) -> None:
    assert {"interactions", "purchase_items", "purchase_stats"} <= set(pipeline_names())
    with pytest.raises(NotFoundError, match="available: "):
        run_pipeline(store.con, "nope", {})
    with pytest.raises(UsageError, match="as_of"):
        run_pipeline(store.con, "purchase_stats", {})
