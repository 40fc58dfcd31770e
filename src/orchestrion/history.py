"""A day's history read from the store on demand, for the daily run's goal contexts.

:class:`StoreHistory` is the :class:`~orchestrion.goals.context.History` of the daily run: a
batch reads its own users' events; every user's events of a domain are read once, and only when
a template of that domain fits a model on them. :class:`DayPurchaseStats` computes the per item
purchase figures once for the day and each batch's per (user, item) statistics from that batch's
own purchases. Together they keep a run's memory to the batch at hand (plus any domain model
fitted for the day), not the whole history.

>>> from datetime import datetime
>>> from orchestrion.store import Store
>>> with Store.open(":memory:") as s:
...     StoreHistory(s, datetime(2024, 1, 1)).user_events(["u1"]).columns
['user_id', 'item_id', 'type', 'domain', 'ts', 'value']
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import polars as pl

from orchestrion.features import pipeline_frame
from orchestrion.goals.context import as_events
from orchestrion.store import Store

__all__ = ["DayPurchaseStats", "StoreHistory", "has_purchases"]

_COLUMNS = "user_id, item_id, type, domain, ts, value"


class StoreHistory:
    """The events before ``as_of``, read from ``store`` when asked (each read on its own cursor, closed after it)."""

    def __init__(self, store: Store, as_of: datetime) -> None:
        self.store = store
        self.as_of = as_of

    def _read(self, where: str, params: dict[str, Any]) -> pl.DataFrame:
        with self.store.cursor() as con:
            frame: pl.DataFrame = con.sql(
                f"SELECT {_COLUMNS} FROM events WHERE ts < $as_of AND {where}", params={"as_of": self.as_of, **params}
            ).pl()
        return as_events(frame, self.as_of)

    def domain_events(self, domain: str) -> pl.DataFrame:
        return self._read("domain = $domain", {"domain": domain})

    def user_events(self, users: Sequence[str]) -> pl.DataFrame:
        return self._read("user_id IN (SELECT unnest($users::VARCHAR[]))", {"users": list(users)})


def has_purchases(store: Store, as_of: datetime) -> bool:
    """Whether any purchase happened before ``as_of``."""
    with store.cursor() as con:
        rows = con.execute(
            "SELECT EXISTS (SELECT 1 FROM events WHERE type = 'purchase' AND ts < $as_of)", {"as_of": as_of}
        ).fetchall()
    return bool(rows[0][0])


class DayPurchaseStats:
    """``purchase_stats`` as of ``as_of``, computed a batch of users at a time.

    The per item figures (``pipelines/purchase_items.sql``: one pass over every purchase, hash
    aggregates that spill to disk under a memory cap, one small row per item) are read once; each
    call with a batch's users runs ``pipelines/purchase_stats.sql`` over those users' purchases
    only, joined to the item figures registered on the call's own cursor, and returns their rows.
    Nothing is written to the database, so nothing is left behind by a killed run.
    """

    _ITEMS = "_batch_purchase_items"

    def __init__(self, store: Store, as_of: datetime) -> None:
        self.store = store
        self.as_of = as_of
        with store.cursor() as con:
            self.items = pipeline_frame(con, "purchase_items", {"as_of": as_of}, order_by="item_id")

    def __call__(self, users: Sequence[str]) -> pl.DataFrame:
        with self.store.cursor() as con:
            con.register(self._ITEMS, self.items.to_arrow())
            return pipeline_frame(
                con,
                "purchase_stats",
                {"as_of": self.as_of, "users": list(users)},
                order_by="user_id, item_id",
                tables={"purchase_items": self._ITEMS},
            )
