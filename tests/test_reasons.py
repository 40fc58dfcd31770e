"""Reasons that say what happened (issue 16, point 4): a goal not chosen names what took its slot —
never "higher-scored goals" when a lower-scored exploration pick took it —, a chosen exploration
pick says so, a goal shaped by the person's own thumbs says so, and a cart cut after it was
proposed is described as delivered. Hand-made frames with known answers."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from orchestrion.goals.words import final_words
from orchestrion.ranking import ChoiceConfig, choose
from orchestrion.ranking.exploration import NEW_FOR_YOU
from orchestrion.ranking.features import HISTORY_SCHEMA
from orchestrion.ranking.scoring import EXPLORATION_NOTE, with_notes


def goals(user: str, scores: list[float]) -> pl.DataFrame:
    n = len(scores)
    return pl.DataFrame(
        {
            "user_id": [user] * n,
            "template": ["digest"] * n,
            "kind": [f"k{i}" for i in range(n)],
            "title": [f"goal {i}" for i in range(n)],
            "items": [[f"{user}-i{i}"] for i in range(n)],
            "fatigue_kind": [0.0] * n,
            "risk": [0.1] * n,
            "cost": [0.0] * n,
        }
    )


def test_budget_and_exploration_reasons_name_what_took_the_slot() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.2, 0.1])
    frame = pl.concat([goals(f"u{k}", scores.tolist()) for k in range(40)])
    out = choose(frame, np.tile(scores, 40), ChoiceConfig(budget=3, epsilon=0.5), rng=np.random.default_rng(7))
    explored = budget_checked = dropped_checked = 0
    for _user, rows in out.group_by("user_id"):
        chosen = rows.filter(pl.col("status") == "chosen")
        picks = chosen.filter(~pl.col("greedy"))
        explored += picks.height
        lowest = float(chosen.get_column("score").min())  # type: ignore[arg-type]
        for row in rows.filter(pl.col("status") == "not_chosen").iter_rows(named=True):
            detail = row["reason_detail"]
            assert "higher-scored" not in detail
            if row["reason"] == "budget":
                budget_checked += 1
                named = re.findall(r"'(goal \d)'( \(" + re.escape(NEW_FOR_YOU) + r"\))?", detail)
                assert sorted(n[0] for n in named) == sorted(chosen.get_column("title").to_list()), detail
                for title, pick in named:
                    is_pick = title in picks.get_column("title").to_list()
                    assert bool(pick) == is_pick, detail
                if lowest < row["score"]:  # a lower-scored goal took a place: it is an exploration pick, and says so
                    assert NEW_FOR_YOU in detail
            elif row["reason"] == "policy":
                dropped_checked += 1
                assert NEW_FOR_YOU in detail
                assert any(f"'{t}'" in detail for t in picks.get_column("title").to_list()), detail
    print(f"{explored} exploration picks; {budget_checked} budget and {dropped_checked} swapped-out reasons checked")
    assert explored > 10 and budget_checked > 50 and dropped_checked > 10


def history(rows: list[tuple[str, str, int | None, datetime]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "sent_at": [r[3] for r in rows],
            "template": [r[1] for r in rows],
            "variant": ["v"] * len(rows),
            "kind": ["v"] * len(rows),
            "thumb": [r[2] for r in rows],
            "revealed_at": [r[3] + timedelta(hours=1) for r in rows],
        },
        schema=dict(HISTORY_SCHEMA),
    )


def test_chosen_goals_say_when_they_are_an_exploration_pick_or_shaped_by_thumbs() -> None:
    as_of = datetime(2024, 5, 10)
    day = datetime(2024, 5, 1)
    past = history([
        ("liker", "digest", 1, day), ("liker", "digest", 1, day), ("liker", "digest", 0, day),
        ("hater", "digest", 0, day), ("hater", "digest", 0, day), ("hater", "digest", 1, day),
        ("late", "digest", 1, as_of),  # revealed after the decision: it does not count
    ])
    decided = pl.DataFrame(
        {
            "user_id": ["liker", "hater", "late", "new", "liker"],
            "template": ["digest"] * 5,
            "status": ["chosen", "chosen", "chosen", "chosen", "not_chosen"],
            "greedy": [True, False, True, True, True],
            "reason_detail": [None, None, None, None, "ranked #4 ..."],
        },
        schema_overrides={"reason_detail": pl.String},
    )
    notes = with_notes(decided, past, as_of, thumbs=True).get_column("reason_detail").to_list()
    assert notes == [
        "Because you liked 2 of the 3 digests you rated",
        f"{EXPLORATION_NOTE}. You told us less of digests: 2 of the 3 you rated got a thumbs down",
        None,
        None,
        "ranked #4 ...",
    ]
    # the prior reads no thumb, so no thumb shaped its choice: only the exploration pick is told
    prior = with_notes(decided, past, as_of, thumbs=False).get_column("reason_detail").to_list()
    assert prior == [None, EXPLORATION_NOTE, None, None, "ranked #4 ..."]


def test_a_cart_cut_to_the_cap_is_described_as_delivered() -> None:
    facts = {"n": 4, "gap": 20.0, "since": 21.5, "first": 200.0}
    proposed = [
        {"item_id": f"p{i}", "title": f"P{i}", "quantity": 1, "unit_price": 30.0, "line_total": 30.0, **facts}
        for i in range(8)
    ]
    details = {"lines": proposed, "total": 240.0, "currency": "GBP", "user_since": 3.2, "as_of": "2011-11-01T00:00:00"}
    delivered = {"kind": "cart", "items": [{k: v for k, v in line.items() if k not in facts} for line in proposed[:5]],
                 "total": 150.0, "currency": "GBP"}
    title, why = final_words("reorder", "staples", "Reorder your staples: 8 items (£240.00)",
                             "you bought each of these 8 items ...", details, delivered)
    assert title == "Reorder your staples: 5 items (£150.00)"
    assert why == "you bought each of these 5 items on 4 separate days since 2011-04-15"
    title, why = final_words("reorder", "last_order", "t", "w", details, delivered, note=EXPLORATION_NOTE)
    assert title == "From your last order: 5 items (£150.00)"
    assert why == (
        f"{EXPLORATION_NOTE}. These 5 items were in your last order, 4 days ago; you had bought all 5 of them before"
    )


def test_a_redundant_goal_names_the_one_kept_or_says_it_was_not_sent_either() -> None:
    """Two users, each with three goals: ``a`` and ``b`` overlap (``b`` gives way to the better ``a``),
    ``c`` stands alone. With a budget of one and ``c`` scored best, ``a`` loses the budget: ``b`` must
    not say ``a`` "was kept for the day", and must name what took the place. With ``a`` best, it does."""
    frame = pl.DataFrame(
        {
            "user_id": ["u"] * 3,
            "template": ["digest"] * 3,
            "kind": ["a", "b", "c"],
            "title": ["goal a", "goal b", "goal c"],
            "items": [["x", "y"], ["x", "y", "z"], ["q"]],
            "fatigue_kind": [0.0] * 3,
            "risk": [0.1] * 3,
            "cost": [0.0] * 3,
        }
    )
    rules = ChoiceConfig(budget=1, epsilon=0.0, redundancy=0.5)
    lost = choose(frame, np.array([0.8, 0.7, 0.9]), rules, rng=np.random.default_rng(0))
    b = lost.row(1, named=True)
    assert (b["status"], b["reason"]) == ("not_chosen", "redundant")
    assert b["reason_detail"] == (
        "it repeats much of 'goal a', which looked more useful to you but was not sent either; "
        "you got 'goal c' instead"
    )
    kept = choose(frame, np.array([0.9, 0.7, 0.8]), rules, rng=np.random.default_rng(0))
    assert kept.row(1, named=True)["reason_detail"] == (
        "it repeats much of 'goal a', which looked more useful to you and was kept for the day"
    )
    assert kept.row(0, named=True)["status"] == "chosen"


def test_a_kind_sent_lately_is_held_back_in_plain_days() -> None:
    """Fatigue says how long ago in days as people write them: "1 day", "1.5 days", never "1.0 days"."""
    frame = pl.DataFrame(
        {"user_id": ["u"] * 3, "kind": ["a", "b", "c"], "risk": [0.0] * 3,
         "fatigue_kind": [2 ** (-1 / 7), 2 ** (-1.5 / 7), 0.0]}
    )
    out = choose(frame, np.array([0.9, 0.5, 0.4]), ChoiceConfig(budget=3, epsilon=0.0))
    assert out.get_column("reason_detail").to_list() == [
        "you got one like it 1 day ago, and one comes at most every 2 days",
        "you got one like it 1.5 days ago, and one comes at most every 2 days",
        None,
    ]
