"""The item catalog: upsert items by ``item_id`` from any source (HTTP, bulk files, datasets)."""

from __future__ import annotations

from typing import Final

import duckdb
import polars as pl

from orchestrion.events import CONTROL_PATTERN

__all__ = ["ITEM_COLUMNS", "normalize_items", "upsert_items"]

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


def upsert_items(con: duckdb.DuckDBPyConnection, items: pl.DataFrame) -> int:
    """Insert or replace ``items`` (from :func:`normalize_items`) by ``item_id``; returns the count."""
    if items.is_empty():
        return 0
    arrow = items.to_arrow()
    con.register("_orchestrion_items", arrow)
    try:
        con.execute(
            "INSERT OR REPLACE INTO items "
            "SELECT item_id, domain, title, creator, price, currency, category, tags, text, "
            "properties, now()::TIMESTAMP FROM _orchestrion_items"
        )
    finally:
        con.unregister("_orchestrion_items")
    return items.height
