"""The item catalog: upsert items by ``item_id`` from any source (HTTP, bulk files, datasets), or
merge what events say about them (:func:`merge_items`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

import duckdb
import polars as pl
import pyarrow as pa

from orchestrion.ingest.events import CONTROL_PATTERN

__all__ = [
    "ITEM_COLUMNS",
    "CatalogMemory",
    "item_entries",
    "item_titles",
    "merge_items",
    "normalize_items",
    "upsert_items",
]

ITEM_COLUMNS: Final[dict[str, pl.DataType]] = {
    "item_id": pl.String(),
    "domain": pl.String(),
    "title": pl.String(),
    "creator": pl.String(),
    "price": pl.Float64(),
    "currency": pl.String(),
    "category": pl.String(),
    "tags": pl.List(pl.String()),
    "text": pl.String(),
    "properties": pl.String(),
}


def normalize_items(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split ``frame`` into (valid items in :data:`ITEM_COLUMNS` order, rejected rows with a reason).

    Missing columns become nulls; ``tags`` may be a list or a comma-separated string;
    ``properties`` may be a struct (serialised to JSON) or a JSON string. Rows without
    ``item_id`` are rejected; for repeated ids the last row wins.
    """
    if "item_id" not in frame.columns:
        raise ValueError("items need an item_id column; other columns: " + ", ".join(ITEM_COLUMNS))
    exprs = []
    for name, dtype in ITEM_COLUMNS.items():
        if name not in frame.columns:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
        elif name == "tags" and frame.schema[name] == pl.String:
            exprs.append(
                pl.col(name).str.split(",").list.eval(pl.element().str.strip_chars()).alias(name)
            )
        elif name == "properties" and isinstance(frame.schema[name], pl.Struct):
            exprs.append(pl.col(name).struct.json_encode().alias(name))
        else:
            exprs.append(pl.col(name).cast(dtype).alias(name))
    items = frame.select(exprs).with_columns(pl.col("item_id").str.strip_chars())
    missing = pl.col("item_id").is_null() | (pl.col("item_id") == "")
    control = pl.col("item_id").str.contains(CONTROL_PATTERN)  # as for events (events.control_error)
    bad = missing | control
    reason = pl.when(missing).then(pl.lit("item_id is required")).otherwise(
        pl.lit("item_id contains a control character; ids must be printable text")
    )
    rejected = items.filter(bad).with_columns(reason.alias("reason"))
    valid = items.filter(~bad).unique("item_id", keep="last", maintain_order=True)
    return valid, rejected


def upsert_items(con: duckdb.DuckDBPyConnection, items: pl.DataFrame, *, merge: bool = False) -> int:
    """Insert or replace ``items`` (from :func:`normalize_items`) by ``item_id``; returns the count.

    With ``merge`` (``POST /v1/items``), a stored item is changed field by field: a field a row
    gives replaces the stored one, a field it leaves out keeps it, and ``properties`` are merged
    key by key. A price update alone no longer wipes the item's title, domain and currency.

    >>> from orchestrion.store import Store
    >>> con = Store.open(":memory:").con
    >>> rows = lambda **r: normalize_items(pl.DataFrame([r]))[0]
    >>> upsert_items(con, rows(item_id="p1", title="Tea", price=2.5, currency="GBP"))
    1
    >>> upsert_items(con, rows(item_id="p1", price=3.0), merge=True)
    1
    >>> con.execute("SELECT title, price, currency FROM items").fetchall()
    [('Tea', 3.0, 'GBP')]
    """
    if items.is_empty():
        return 0
    if merge:
        _merge_table(con, items.to_arrow(), property_keys=None)
        return items.height
    con.register("_orchestrion_items", items.to_arrow())
    try:
        con.execute(
            "INSERT OR REPLACE INTO items "
            "SELECT item_id, domain, title, creator, price, currency, category, tags, text, "
            "properties, now()::TIMESTAMP FROM _orchestrion_items"
        )
    finally:
        con.unregister("_orchestrion_items")
    return items.height


_LINKS: Final = ("image_url", "url")  # what events say about an item that goes into its properties
_MERGED: Final = ("domain", "title", "creator", "price", "currency", "category", "tags")
_PATCH: Final = "json_merge_patch(coalesce(items.properties, '{}'), m.properties)"


def _update_changed(given: Sequence[str], property_keys: Sequence[str] | None) -> str:
    """UPDATE the stored items from the fields ``given`` (the columns some row has), only where one
    of them changes: the others keep their row and updated_at. Leaving out the columns no row
    gives makes the statement about 40% cheaper (Online Retail's products have no brand or tags).
    ``properties`` change when one of ``property_keys`` does, or (None) when the merged JSON does."""
    sets = [f"{name} = coalesce(m.{name}, items.{name})" for name in given if name != "properties"]
    changed = [f"(m.{name} IS NOT NULL AND m.{name} IS DISTINCT FROM items.{name})"
               for name in given if name != "properties"]
    if "properties" in given:
        sets.append(f"properties = CASE WHEN m.properties IS NULL THEN items.properties ELSE {_PATCH} END")
        if property_keys is None:
            changed.append(
                f"(m.properties IS NOT NULL AND {_PATCH}::VARCHAR IS DISTINCT FROM items.properties::VARCHAR)"
            )
        # per link, not the JSON text: json_merge_patch may write the same keys in another order
        changed.extend(
            f"(json_extract_string(m.properties, '$.{key}') IS NOT NULL AND json_extract_string(m.properties, "
            f"'$.{key}') IS DISTINCT FROM json_extract_string(items.properties, '$.{key}'))"
            for key in property_keys or ()
        )
    return (
        f"UPDATE items SET {', '.join(sets)}, updated_at = now()::TIMESTAMP FROM _orchestrion_merge m "
        f"WHERE items.item_id = m.item_id AND ({' OR '.join(changed)})"
    )


def merge_items(con: duckdb.DuckDBPyConnection, rows: Sequence[Mapping[str, Any]]) -> int:
    """Merge what events say about items (one row per ``item_id``), field by field: a field the
    row gives replaces the stored one, a missing field keeps it. ``image_url`` and ``url`` go into
    ``properties``. Returns the number of rows given (changed or not).

    >>> from orchestrion.store import Store
    >>> con = Store.open(":memory:").con
    >>> merge_items(con, [{"item_id": "p1", "title": "Tea", "price": 2.5}])
    1
    >>> merge_items(con, [{"item_id": "p1", "price": 3.0}])
    1
    >>> con.execute("SELECT title, price FROM items").fetchall()
    [('Tea', 3.0)]
    """
    if not rows:
        return 0
    table = pa.table(
        {
            "item_id": [str(r["item_id"]) for r in rows],
            **{name: [r.get(name) for r in rows] for name in _MERGED},
            "text": [None] * len(rows),  # events say nothing of an item's text
            "properties": [  # compact, as json_merge_patch writes it
                json.dumps(extra, separators=(",", ":"), ensure_ascii=False) if (extra := _links(r)) else None
                for r in rows
            ],
        },
        schema=pa.schema([("item_id", pa.string()), ("domain", pa.string()), ("title", pa.string()),
                          ("creator", pa.string()), ("price", pa.float64()), ("currency", pa.string()),
                          ("category", pa.string()), ("tags", pa.list_(pa.string())), ("text", pa.string()),
                          ("properties", pa.string())]),
    )
    _merge_table(con, table, property_keys=_LINKS)
    return int(table.num_rows)


def _merge_table(con: duckdb.DuckDBPyConnection, table: pa.Table, *, property_keys: Sequence[str] | None) -> None:
    """Merge ``table`` (``item_id`` first, then any of the item columns) into ``items`` field by
    field (:func:`_update_changed`), inserting the items not stored yet."""
    con.register("_orchestrion_merge", table)
    try:
        # Two plain statements: DuckDB's INSERT ... ON CONFLICT DO UPDATE costs about a third more.
        given = [name for name in table.column_names[1:] if table.column(name).null_count < table.num_rows]
        # One call for both: each call releases the GIL and waits to take it back, up to the
        # switch interval, while the event loop decodes the next request.
        con.execute(
            (_update_changed(given, property_keys) + "; " if given else "")
            + "INSERT INTO items SELECT m.item_id, m.domain, m.title, m.creator, m.price, m.currency, m.category, "
            "m.tags, m.text, m.properties, now()::TIMESTAMP FROM _orchestrion_merge m ANTI JOIN items USING (item_id)"
        )
    finally:
        con.unregister("_orchestrion_merge")


def _links(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in _LINKS if row.get(k)}


def item_entries(con: duckdb.DuckDBPyConnection, item_ids: list[str]) -> dict[str, dict[str, Any]]:
    """``item_id, title, creator, text`` of the catalog's items among ``item_ids``, by id."""
    if not item_ids:
        return {}
    cursor = con.execute(
        "SELECT item_id, title, creator, text FROM items WHERE list_contains(?, item_id)", [sorted(item_ids)]
    )
    names = [d[0] for d in cursor.description or []]
    return {str(r[0]): dict(zip(names, r, strict=True)) for r in cursor.fetchall()}


def item_titles(con: duckdb.DuckDBPyConnection, item_ids: list[str]) -> dict[str, str]:
    """The titles of the catalog's items among ``item_ids``, by id."""
    rows = con.execute("SELECT item_id, title FROM items WHERE list_contains(?, item_id)", [item_ids]).fetchall()
    return dict(rows)


class CatalogMemory:
    """What one writer merged into ``items``, so a row that repeats it is not sent again.

    Merging a row twice changes nothing (each field it gives is already stored), as long as
    nothing else wrote the item in between. So the writer thread, in commit order, keeps per item
    the last row it merged: :meth:`merge` leaves out a row equal to it, :meth:`committed` keeps the
    rows of a transaction once it committed, :meth:`rolled_back` drops those of one that did not,
    and :meth:`forget` drops everything after any other write (which may write ``items`` itself,
    e.g. ``POST /v1/items``). Only the writer thread calls it.

    >>> from orchestrion.store import Store
    >>> con = Store.open(":memory:").con
    >>> memory = CatalogMemory()
    >>> memory.merge(con, [{"item_id": "p1", "price": 2.5}]), memory.merge(con, [{"item_id": "p1", "price": 2.5}])
    (1, 0)
    >>> memory.committed()
    >>> memory.merge(con, [{"item_id": "p1", "price": 2.5}, {"item_id": "p2", "price": 1.0}])
    1
    """

    _LIMIT: Final = 500_000

    def __init__(self) -> None:
        self._stored: dict[str, tuple[Any, ...]] = {}  # committed
        self._pending: dict[str, tuple[Any, ...]] = {}  # merged in the open transaction

    def merge(self, con: duckdb.DuckDBPyConnection, rows: Sequence[Mapping[str, Any]]) -> int:
        """:func:`merge_items` for the rows that say something new; returns how many were merged."""
        fresh = []
        pending, stored = self._pending, self._stored
        for row in rows:
            item_id = row["item_id"]
            said = tuple(row.values())
            known = pending.get(item_id)
            if (stored.get(item_id) if known is None else known) != said:
                fresh.append(row)
                pending[item_id] = said
        return merge_items(con, fresh)

    def committed(self) -> None:
        """The open transaction committed: its rows are stored."""
        if len(self._stored) + len(self._pending) > self._LIMIT:
            self._stored.clear()
        self._stored.update(self._pending)
        self._pending.clear()

    def rolled_back(self) -> None:
        """The open transaction rolled back: the store is as last committed, so is the memory."""
        self._pending.clear()

    def forget(self) -> None:
        """Something else wrote (it may have written items): remember nothing."""
        self._stored.clear()
        self._pending.clear()
