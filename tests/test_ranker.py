"""The ranker, the prior, goal features from history, the chooser's rules, and retraining."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from orchestrion.errors import UsageError
from orchestrion.ranking import (
    FEATURES,
    ChoiceConfig,
    GoalRanker,
    RankerConfig,
    Scorer,
    choose,
    empty_history,
    goal_features,
    prior_score,
    retrain,
)
from orchestrion.ranking.features import HISTORY_SCHEMA

AS_OF = datetime(2024, 3, 1)


def candidates(n_users: int, per_user: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_users * per_user
    return pl.DataFrame(
        {
            "user_id": np.repeat([f"u{i}" for i in range(n_users)], per_user),
            "template": ["t"] * n,
            "variant": rng.choice(["a", "b"], n),
            "items": [[f"x{i}"] for i in range(n)],
            "utility": rng.random(n),
            "signal": rng.random(n),
            "novelty": rng.random(n),
            "risk": np.full(n, 0.1),
            "cost": np.zeros(n),
        }
    ).with_columns(pl.col("variant").alias("kind"), pl.format("g{}", pl.int_range(pl.len())).alias("goal_id"))


def test_prior_by_hand() -> None:
    frame = pl.DataFrame({"utility": [0.8], "signal": [0.4], "novelty": [0.2], "fatigue_kind": [0.5], "risk": [0.3]})
    expected = 0.45 * 0.8 + 0.25 * 0.4 + 0.15 * 0.2 + 0.15 * 0.5 - 0.10 * 0.3
    assert prior_score(frame)[0] == pytest.approx(expected)


def test_features_use_only_thumbs_received_before_the_day() -> None:
    history = pl.DataFrame(
        {
            "user_id": ["u0", "u0", "u0"],
            "sent_at": [AS_OF - timedelta(days=14), AS_OF - timedelta(days=7), AS_OF],
            "template": ["t"] * 3,
            "variant": ["a"] * 3,
            "kind": ["a"] * 3,
            "thumb": [1, 0, 1],
            "revealed_at": [AS_OF - timedelta(days=13), AS_OF + timedelta(days=1), AS_OF + timedelta(days=1)],
        }
    ).cast(dict(HISTORY_SCHEMA))  # type: ignore[arg-type]
    cands = candidates(1, 2, 0).with_columns(pl.Series("variant", ["a", "b"]), pl.Series("kind", ["a", "b"]))
    feats = goal_features(cands, history, AS_OF)
    a = feats.filter(pl.col("kind") == "a").row(0, named=True)
    b = feats.filter(pl.col("kind") == "b").row(0, named=True)
    # One thumb up received (the later ones arrive after the day): (1 + 2·rate) / (1 + 2), rate = 1.
    assert a["user_kind_accept"] == pytest.approx(1.0)
    assert a["user_kind_n"] == pytest.approx(np.log(2))
    assert a["fatigue_kind"] == pytest.approx(0.5), "sent 7 days ago (the one sent on the day itself is not before it)"
    assert a["last_kind_thumb"] == 1.0
    assert b["fatigue_kind"] == 0.0 and b["fatigue_template"] == pytest.approx(0.5)
    assert set(FEATURES) <= set(feats.columns)
    assert not feats.select(FEATURES).null_count().sum_horizontal().item()


def test_ranker_learns_and_round_trips(tmp_path: Path) -> None:
    frame = goal_features(candidates(300, 4, 1), empty_history(), AS_OF)
    labels = ((frame.get_column("signal") > 0.5) & (frame.get_column("variant") == "a")).cast(pl.Int8)
    frame = frame.with_columns(labels.alias("label"))
    for model in ("logistic", "hgb"):
        ranker = GoalRanker(RankerConfig(model=model)).fit(frame)  # type: ignore[arg-type]
        p = ranker.predict(frame)
        assert p[labels.to_numpy() == 1].mean() > p[labels.to_numpy() == 0].mean() + 0.3
        ranker.save(tmp_path / model)
        assert np.allclose(GoalRanker.load(tmp_path / model).predict(frame), p)
    unseen = frame.head(3).with_columns(pl.lit("other").alias("template"))
    assert GoalRanker.load(tmp_path / "logistic").predict(unseen).shape == (3,)
    with pytest.raises(UsageError, match="at least"):
        GoalRanker().fit(frame.head(10))
    with pytest.raises(UsageError, match="same thumb"):
        GoalRanker().fit(frame.with_columns(pl.lit(1).cast(pl.Int8).alias("label")))


def test_choice_budget_volume_and_reasons() -> None:
    frame = pl.DataFrame(
        {
            "user_id": ["a"] * 4 + ["b"] * 2,
            "kind": ["k1", "k2", "k3", "k4", "k1", "k2"],
            "fatigue_kind": [0.0, 0.0, 0.95, 0.0, 0.0, 0.0],
            "risk": [0.1, 0.1, 0.1, 0.9, 0.1, 0.1],
        }
    )
    scores = np.array([0.9, 0.8, 0.99, 0.7, 0.5, 0.1])
    out = choose(frame, scores, ChoiceConfig(budget=1, epsilon=0.0, max_risk=0.5, fatigue_days=2, volume=1))
    got = dict(zip(out.get_column("kind").to_list()[:4], out.get_column("reason").to_list()[:4], strict=True))
    assert got == {"k1": None, "k2": "budget", "k3": "fatigue", "k4": "policy"}
    b = out.filter(pl.col("user_id") == "b")
    assert b.get_column("reason").to_list() == ["score", "budget"], "volume 1: b's best is below the day's cut-off"
    assert out.filter(pl.col("status") == "chosen").get_column("propensity").to_list() == [1.0]
    detail = out.get_column("reason_detail").to_list()
    assert "one comes at most every 2 days" in detail[2] and "riskier than the settings allow" in detail[3]
    assert detail[4] == "it did not look useful enough to send today"
    assert not any(word in " ".join(filter(None, detail)) for word in ("fatigue", "goal", "ε", "slot", "k3"))
    done = choose(
        frame, scores, ChoiceConfig(budget=1, epsilon=0.0), used=pl.DataFrame({"user_id": ["a"], "used": [1]})
    )
    assert done.filter(pl.col("user_id") == "a").get_column("status").to_list() == ["not_chosen"] * 4


def test_exploration_frequencies_match_the_logged_propensities() -> None:
    frame = pl.DataFrame({"user_id": ["u"] * 4, "kind": list("abcd"), "fatigue_kind": [0.0] * 4, "risk": [0.0] * 4})
    scores = np.array([0.9, 0.8, 0.2, 0.1])
    rules = ChoiceConfig(budget=2, epsilon=0.3, fatigue_days=0)
    rng = np.random.default_rng(0)
    runs = [choose(frame, scores, rules, rng=rng) for _ in range(3000)]
    chosen = np.mean([r.get_column("status").to_numpy() == "chosen" for r in runs], axis=0)
    logged = runs[0].with_columns(pl.Series("x", [0.7, 0.7, 0.3, 0.3]))  # m = 2, n = 2: E[min(S, 2)] / 2 = ε
    assert np.allclose(chosen, logged.get_column("x").to_numpy(), atol=0.03)
    props = pl.concat(runs).filter(pl.col("status") == "chosen").group_by("kind").agg(pl.col("propensity").first())
    assert dict(props.sort("kind").iter_rows()) == pytest.approx({"a": 0.7, "b": 0.7, "c": 0.3, "d": 0.3})
    assert all(r.filter(pl.col("status") == "chosen").height == 2 for r in runs[:50]), "the budget is always used"


def test_retrain_promotes_a_ranker_that_beats_the_prior() -> None:
    """Thumbs follow 'novelty', which the prior barely weighs: a ranker learns it and wins off-policy."""
    rng = np.random.default_rng(5)
    days = []
    rules = ChoiceConfig(budget=1, epsilon=0.3, fatigue_days=0)
    for d in range(8):
        cands = candidates(200, 3, 100 + d).with_columns(pl.lit(date(2024, 1, 1) + timedelta(days=7 * d)).alias("date"))
        feats = goal_features(cands, empty_history(), datetime(2024, 1, 1) + timedelta(days=7 * d))
        decided = choose(feats, prior_score(feats), rules, rng=rng)
        reward = (rng.random(decided.height) < decided.get_column("novelty").to_numpy()).astype(int)
        days.append(decided.with_columns(pl.when(pl.col("status") == "chosen").then(pl.Series(reward)).alias("reward")))
    log = pl.concat(days)
    outcome = retrain(log, Scorer(), choice=rules)
    assert outcome.ranker is not None and outcome.promote, outcome.note
    assert outcome.candidate is not None and outcome.current is not None
    assert outcome.candidate.snips > outcome.current.snips + 0.1
    few = retrain(log.head(30), Scorer(), choice=rules)
    assert few.ranker is None and not few.promote
