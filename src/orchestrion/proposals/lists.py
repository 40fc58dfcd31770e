"""Lists and what a person got in them lately.

A *list* is a deliverable that suggests and buys nothing — a movie-night list, a digest, a
playlist (:func:`~orchestrion.goals.base.is_list`). A movie, an article or a track sent in a
person's list is not sent again in a list for :data:`LIST_REPEAT_DAYS` days: tomorrow's candidates
are made without those items (:func:`listed_frame`, read with the thumbed-down items as the
context's exclusions), and the delivery leaves out of a later slot's list what an earlier one holds
(:func:`listed_lately`). Without the first, a person's recommender proposes tomorrow the lists of
today, the chooser holds them back as ``recent``, and a movie lover gets one day of lists and then
nothing for a week.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any, Final

import polars as pl

from orchestrion.goals.base import LIST_SQL
from orchestrion.ranking import ChoiceConfig

__all__ = ["LIST_REPEAT_DAYS", "listed_frame", "listed_lately"]

LIST_REPEAT_DAYS: Final = math.ceil(ChoiceConfig().recent_days)
"""An item of a person's list is not in another of their lists for this many days (the day itself
included): the chooser's ``recent_days``."""

_LISTED_SQL: Final = (
    "SELECT d.user_id, i.item_id, d.date FROM deliverables d JOIN goals g USING (goal_id), "
    "unnest(d.items) AS i(item_id) "
    f"WHERE d.date BETWEEN $since AND $day AND d.user_id IN (SELECT unnest($u)) AND {LIST_SQL} "
    "AND d.status IN ('delivered', 'awaiting_approval')"
)


def _window(day: date) -> dict[str, Any]:
    return {"day": day, "since": day - timedelta(days=LIST_REPEAT_DAYS - 1)}


def _listed(con: Any, day: date, users: Sequence[str]) -> list[tuple[Any, ...]]:
    query = f"SELECT user_id, item_id, max(date) FROM ({_LISTED_SQL}) GROUP BY 1, 2"
    rows: list[tuple[Any, ...]] = con.execute(query, {**_window(day), "u": list(users)}).fetchall()
    return rows


def listed_frame(con: Any, day: date, users: Sequence[str]) -> pl.DataFrame:
    """``user_id, item_id``: the items of ``users``' lists delivered (or waiting) in the
    :data:`LIST_REPEAT_DAYS` days up to ``day``, each pair once."""
    rows = _listed(con, day, users)
    return pl.DataFrame(
        {"user_id": [str(r[0]) for r in rows], "item_id": [str(r[1]) for r in rows]},
        schema={"user_id": pl.String, "item_id": pl.String},
    )


def listed_lately(con: Any, day: date, users: Sequence[str]) -> dict[str, dict[str, date]]:
    """:func:`listed_frame` as each user's items, with the latest day each was in one of their lists."""
    found: dict[str, dict[str, date]] = {}
    for user, item, when in _listed(con, day, users):
        found.setdefault(str(user), {})[str(item)] = when
    return found
