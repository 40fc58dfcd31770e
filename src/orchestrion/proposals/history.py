"""A day's history read from the store on demand, for the daily run's goal contexts.

:class:`StoreHistory` is the :class:`~orchestrion.goals.context.History` of the daily run: a
batch reads its own users' events; every user's events of a domain are read once, and only when
a template of that domain fits a model on them. :class:`DayPurchaseStats` computes the per item
purchase figures once for the day and each batch's per (user, item) statistics from that batch's
own purchases. Together they keep a run's memory to the batch at hand (plus any domain model
fitted for the day), not the whole history.

Given a :class:`ReadAhead`, both can start the next batch's reads while this batch works
(:meth:`~orchestrion.goals.context.GoalContext.prefetch`): the reads are DuckDB queries, which
run without Python's GIL, so they overlap the batch's Python work on the other core. Memory
then holds two batches' reads, still bounded by the batch size.

>>> from datetime import datetime
>>> from orchestrion.store import Store
>>> with Store.open(":memory:") as s:
...     StoreHistory(s, datetime(2024, 1, 1)).user_events(["u1"]).columns
['user_id', 'item_id', 'type', 'domain', 'ts', 'value']
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any, Final

import duckdb
import polars as pl

from orchestrion.goals.context import as_events
from orchestrion.store import Store
from orchestrion.training.pipelines import pipeline_frame

__all__ = ["DayPurchaseStats", "ReadAhead", "StoreHistory", "has_purchases"]

_COLUMNS = "user_id, item_id, type, domain, ts, value"

Read = Callable[[duckdb.DuckDBPyConnection, list[str]], pl.DataFrame]
"""One batch read: ``read(cursor, users)``, the users sorted and unique."""


class ReadAhead:
    """Batch reads started early on one worker thread, each handed over once to the same users.

    :meth:`start` opens the read's cursor on the calling thread (DuckDB hands out cursors on the
    thread that owns the connection) and runs the read on the worker; :meth:`take` returns the
    started read of the same name and users, waiting for it if needed, or reads at once when none
    was started (other users, no read-ahead). Reads never taken (a batch whose users changed) are
    dropped once more than :data:`KEPT` wait.

    >>> from orchestrion.store import Store
    >>> with Store.open(":memory:") as s:
    ...     ahead = ReadAhead(s)
    ...     count = lambda con, users: con.sql("SELECT len($u::VARCHAR[]) AS n", params={"u": users}).pl()
    ...     ahead.start("n", ["b", "a", "a"], count)
    ...     (ahead.take("n", ["a", "b"], count).item(), ahead.waiting, ahead.take("n", ["c"], count).item())
    ...     ahead.close()
    (2, 0, 1)
    """

    KEPT: Final = 4

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orchestrion-read-ahead")
        self._started: OrderedDict[tuple[str, tuple[str, ...]], Future[pl.DataFrame]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def waiting(self) -> int:
        """Reads started and not taken yet."""
        return len(self._started)

    def start(self, name: str, users: Sequence[str], read: Read) -> None:
        key = (name, tuple(sorted(set(users))))
        with self._lock:
            if key in self._started:
                return
            con = self.store.cursor()
            self._started[key] = self._pool.submit(_closing, con, read, list(key[1]))
            while len(self._started) > self.KEPT:
                self._started.popitem(last=False)[1].cancel()

    def take(self, name: str, users: Sequence[str], read: Read) -> pl.DataFrame:
        key = (name, tuple(sorted(set(users))))
        with self._lock:
            future = self._started.pop(key, None)
        if future is not None:
            return future.result()
        with self.store.cursor() as con:
            return read(con, list(key[1]))

    def close(self) -> None:
        """Stop the worker: reads not started are cancelled, a running one is waited for."""
        with self._lock:
            self._started.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)


def _closing(con: duckdb.DuckDBPyConnection, read: Read, users: list[str]) -> pl.DataFrame:
    with con:
        return read(con, users)


class _BatchReads:
    """A source read one batch of users at a time, each read started ahead when ``ahead`` is given."""

    def __init__(self, store: Store, ahead: ReadAhead | None) -> None:
        self.store = store
        self.ahead = ahead

    def _batch(self, name: str, users: Sequence[str], read: Read) -> pl.DataFrame:
        if self.ahead is not None:
            return self.ahead.take(name, users, read)
        with self.store.cursor() as con:
            return read(con, sorted(set(users)))

    def _start(self, name: str, users: Sequence[str], read: Read) -> None:
        if self.ahead is not None:
            self.ahead.start(name, users, read)


class StoreHistory(_BatchReads):
    """The events before ``as_of``, read from ``store`` when asked (each read on its own cursor, closed after it);
    a batch's events are read ahead when ``ahead`` is given and :meth:`prefetch` is called."""

    def __init__(self, store: Store, as_of: datetime, *, ahead: ReadAhead | None = None) -> None:
        super().__init__(store, ahead)
        self.as_of = as_of

    def _read(self, con: duckdb.DuckDBPyConnection, where: str, params: dict[str, Any]) -> pl.DataFrame:
        frame: pl.DataFrame = con.sql(
            f"SELECT {_COLUMNS} FROM events WHERE ts < $as_of AND {where}", params={"as_of": self.as_of, **params}
        ).pl()
        return as_events(frame, self.as_of)

    def domain_events(self, domain: str) -> pl.DataFrame:
        with self.store.cursor() as con:
            return self._read(con, "domain = $domain", {"domain": domain})

    def _users(self, con: duckdb.DuckDBPyConnection, users: list[str]) -> pl.DataFrame:
        return self._read(con, "user_id IN (SELECT unnest($users::VARCHAR[]))", {"users": users})

    def user_events(self, users: Sequence[str]) -> pl.DataFrame:
        return self._batch("events", users, self._users)

    def prefetch(self, users: Sequence[str]) -> None:
        """Start reading ``users``' events (with a :class:`ReadAhead`; nothing without one)."""
        self._start("events", users, self._users)


def has_purchases(store: Store, as_of: datetime) -> bool:
    """Whether any purchase happened before ``as_of``."""
    with store.cursor() as con:
        rows = con.execute(
            "SELECT EXISTS (SELECT 1 FROM events WHERE type = 'purchase' AND ts < $as_of)", {"as_of": as_of}
        ).fetchall()
    return bool(rows[0][0])


class DayPurchaseStats(_BatchReads):
    """``purchase_stats`` as of ``as_of``, computed a batch of users at a time.

    The per item figures (``pipelines/purchase_items.sql``: one pass over every purchase, hash
    aggregates that spill to disk under a memory cap, one small row per item) are read once; each
    call with a batch's users runs ``pipelines/purchase_stats.sql`` over those users' purchases
    only, joined to the item figures registered on the call's own cursor, and returns their rows.
    Nothing is written to the database, so nothing is left behind by a killed run.
    """

    _ITEMS = "_batch_purchase_items"

    def __init__(self, store: Store, as_of: datetime, *, ahead: ReadAhead | None = None) -> None:
        super().__init__(store, ahead)
        self.as_of = as_of
        with store.cursor() as con:
            self.items = pipeline_frame(con, "purchase_items", {"as_of": as_of}, order_by="item_id")

    def _read(self, con: duckdb.DuckDBPyConnection, users: list[str]) -> pl.DataFrame:
        con.register(self._ITEMS, self.items.to_arrow())
        return pipeline_frame(
            con,
            "purchase_stats",
            {"as_of": self.as_of, "users": users},
            order_by="user_id, item_id",
            tables={"purchase_items": self._ITEMS},
        )

    def __call__(self, users: Sequence[str]) -> pl.DataFrame:
        return self._batch("purchase_stats", users, self._read)

    def prefetch(self, users: Sequence[str]) -> None:
        """Start computing ``users``' statistics (with a :class:`ReadAhead`; nothing without one)."""
        self._start("purchase_stats", users, self._read)
