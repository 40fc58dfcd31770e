"""What a person turned down does not come back: a cart they rejected, or a deliverable they
thumbed down, holds back any goal overlapping it for ``ChoiceConfig.turned_down_days`` (60), not
only the ``recent_days`` (7) every deliverable does.

Real days of the shipped Online Retail sample through the daily pipeline; a hand-made frame for
the sentences.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl

from orchestrion.config import Settings
from orchestrion.datasets import load_dataset
from orchestrion.delivery.deliverables import decide
from orchestrion.delivery.feedback import Feedback, record_feedback
from orchestrion.ranking.slate import recent_overlaps
from orchestrion.runs.daily import run_daily
from orchestrion.store import Store
from test_slate import SAMPLE

FIRST, LATER = date(2011, 11, 1), date(2011, 11, 9)


def overlapping(a: list[str], b: list[str]) -> bool:
    """Item Jaccard ≥ 0.5: the slate's "substantially overlap"."""
    return len(set(a) & set(b)) >= 0.5 * len(set(a) | set(b))


def _clock(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time()) + timedelta(hours=7)


def _carts(store: Store, day: date, status: str) -> dict[str, tuple[str, list[str]]]:
    rows = store.con.execute(
        "SELECT deliverable_id, user_id, items FROM deliverables WHERE date = ? AND status = ? AND template = "
        "'reorder' ORDER BY deliverable_id",
        [day, status],
    ).fetchall()
    return {str(d): (str(u), [str(i) for i in items]) for d, u, items in rows}


def test_a_rejected_or_thumbed_down_cart_is_not_sent_again_a_week_later(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    with Store.open(tmp_path / "o.duckdb") as store:
        load_dataset(store, "online-retail", SAMPLE, now=datetime(2011, 12, 10))
        run_daily(store, settings, FIRST, clock=lambda: _clock(FIRST))
        waiting = _carts(store, FIRST, "awaiting_approval")
        assert len(waiting) >= 40, len(waiting)
        rejected, thumbed = sorted(waiting)[:20], sorted(waiting)[20:40]
        for deliverable_id in rejected:
            decide(store, settings, deliverable_id, "reject", by="person", viewer=None, now=_clock(FIRST))
        with store.transaction() as con:
            for deliverable_id in thumbed:
                record_feedback(con, deliverable_id, Feedback(thumb="down"), source="api", now=_clock(FIRST))

        run_daily(store, settings, LATER, clock=lambda: _clock(LATER))
        later = store.con.execute(
            "SELECT user_id, items FROM deliverables WHERE date = ? AND status <> 'failed'", [LATER]
        ).fetchall()
        by_user: dict[str, list[list[str]]] = {}
        for user, items in later:
            by_user.setdefault(str(user), []).append([str(i) for i in items])
        back = [
            d for d in rejected + thumbed
            if any(overlapping(waiting[d][1], items) for items in by_user.get(waiting[d][0], []))
        ]
        assert back == [], f"{len(back)} turned-down carts came back on {LATER}"
        reasons = store.con.execute(
            "SELECT count(*) FROM goals WHERE date = ? AND reason = 'recent' "
            "AND reason_detail LIKE '%you turned down%'",
            [LATER],
        ).fetchone()
        assert reasons is not None and reasons[0] > 0


def test_the_recent_sentence_says_what_became_of_the_earlier_deliverable() -> None:
    candidates = pl.DataFrame({"user_id": ["u"] * 4, "items": [["a", "b"], ["c", "d"], ["e", "f"], ["g"]]})
    previous = pl.DataFrame(
        {
            "user_id": ["u"] * 4,
            "date": [date(2011, 11, 1)] * 4,
            "title": ["Cart A", "Cart C", "List E", "Cart G"],
            "items": [["a", "b"], ["c", "d"], ["e", "f"], ["g", "h"]],
            "cost": [10.0, 12.0, 0.0, 5.0],
            "turned_down": [True, False, False, False],
            "kept": [False, False, False, True],
            "waiting": [False, False, False, True],
        }
    )
    out = recent_overlaps(candidates, previous, 0.5).get_column("recent_detail").to_list()
    assert out == [
        "it is much like 'Cart A', which you turned down (from 2011-11-01)",
        "it would repeat 'Cart C', from 2011-11-01, which was not ordered",
        "it would repeat 'List E', from 2011-11-01, which was not sent",
        "it shares an item with 'Cart G', which was waiting for your approval at the time (from 2011-11-01)",
    ]
