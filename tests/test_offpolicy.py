"""Off-policy estimators on hand-computed examples, and IPS against the truth on a simulation."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest

from orchestrion.ranking import (
    ChoiceConfig,
    choose,
    estimate,
    greedy_set,
    inclusion_propensity,
    ips,
    should_promote,
    snips,
)
from orchestrion.ranking.offpolicy import Estimate


def test_ips_and_snips_by_hand() -> None:
    rewards, target, logged = [1.0, 0.0, 1.0], [0.9, 0.1, 0.5], [0.9, 0.5, 0.25]
    # weights 1, 0.2, 2: IPS = (1 + 0 + 2) / 3, SNIPS = (1 + 0 + 2) / (1 + 0.2 + 2)
    assert ips(rewards, target, logged) == pytest.approx(1.0)
    assert snips(rewards, target, logged) == pytest.approx(3 / 3.2)


def day(scores_new: list[float]) -> tuple[pl.DataFrame, ChoiceConfig]:
    """Two users, two candidates each, budget 1, ε = 0.2. The logging policy preferred a1 and b1;
    a1 was delivered greedily (p = 1 − ε = 0.8, thumb up); b1 was swapped out by exploration for
    b's only other candidate b2 (p = P(one swap) / 1 = 0.2, thumb down)."""
    log = pl.DataFrame(
        {
            "date": [date(2024, 1, 1)] * 4,
            "user_id": ["a", "a", "b", "b"],
            "goal_id": ["a1", "a2", "b1", "b2"],
            "fatigue_kind": [0.0] * 4,
            "risk": [0.1] * 4,
            "status": ["chosen", "not_chosen", "not_chosen", "chosen"],
            "propensity": [0.8, None, None, 0.2],
            "reward": [1, None, None, 0],
            "new": scores_new,
        }
    )
    return log, ChoiceConfig(budget=1, epsilon=0.2, fatigue_days=0)


def test_estimate_by_hand() -> None:
    log, rules = day([0.1, 0.9, 0.2, 0.8])  # the new ranker prefers a2 and b2
    new = estimate(log, lambda f: f.get_column("new").to_numpy(), rules)
    # q(a1) = 0.2 (pool), q(b2) = 0.8 (greedy): w = 0.25 and 4.
    assert new.snips == pytest.approx(0.25 / 4.25)
    assert new.ips == pytest.approx(0.25 / 2.0)  # Σ w·r over the deliveries the new policy expects (Σ q = 2)
    same = estimate(log, lambda f: np.array([0.9, 0.1, 0.8, 0.2]), rules)
    assert (same.snips, same.ips, same.decisions) == (pytest.approx(0.5), pytest.approx(0.5), 2)


def test_snips_finds_the_truth_on_a_simulation() -> None:
    """5,000 users with 3 candidates each and known rewards; log with ε-exploration, then estimate
    a different ranker's acceptance and compare with its exact value."""
    rng = np.random.default_rng(3)
    n_users, per = 5000, 3
    quality = rng.random(n_users * per)
    reward = (rng.random(quality.size) < quality).astype(float)
    frame = pl.DataFrame(
        {
            "date": [date(2024, 1, 1)] * quality.size,
            "user_id": np.repeat([f"u{i}" for i in range(n_users)], per),
            "goal_id": [f"g{i}" for i in range(quality.size)],
            "fatigue_kind": np.zeros(quality.size),
            "risk": np.full(quality.size, 0.1),
        }
    )
    rules = ChoiceConfig(budget=1, epsilon=0.3, fatigue_days=0)
    logging_scores = rng.random(quality.size)  # the logging ranker knows nothing
    logged = choose(frame, logging_scores, rules, rng=rng).with_columns(
        pl.when(pl.col("status") == "chosen").then(pl.Series(reward)).alias("reward")
    )
    noisy_truth = quality + rng.normal(0, 0.2, quality.size)  # a better ranker
    result = estimate(logged, lambda f: noisy_truth, rules)
    g = greedy_set(frame, noisy_truth, rules)
    q = inclusion_propensity(g, rules.epsilon)
    truth = float((q * reward).sum() / q.sum())
    logged_value = float(logged.filter(pl.col("status") == "chosen").get_column("reward").mean())  # type: ignore[arg-type]
    assert truth > logged_value + 0.08
    assert result.snips == pytest.approx(truth, abs=0.04)
    assert result.ips == pytest.approx(truth, abs=0.06)


def test_promotion_rule() -> None:
    good, bad = Estimate(0.3, 0.31, 200, 0.25, 90.0, 0.02), Estimate(0.2, 0.22, 200, 0.25, 150.0, 0.02)
    assert should_promote(good, bad)
    assert not should_promote(Estimate(0.3, 0.31, 200, 0.25, 90.0), bad), "no standard error: no bound, no promotion"
    assert not should_promote(bad, good)
    assert not should_promote(Estimate(0.9, 0.9, 10, 0.9, 5.0), bad), "too few decisions"
    assert should_promote(good, Estimate(float("nan"), float("nan"), 0, float("nan"), 0.0))
