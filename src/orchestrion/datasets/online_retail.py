"""UCI Online Retail (and Online Retail II) invoice lines → ``purchase``/``return`` events.

Accepts a ``.csv`` or ``.csv.gz`` file, or a folder holding one, with either header:
``InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country`` (Online
Retail) or ``Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country``
(Online Retail II, renamed to the first on reading).

* Each invoice line with a customer is one event: ``purchase`` with value = Quantity, or, for a
  cancellation (InvoiceNo starting with ``C``), ``return`` with value = the units returned
  (``abs(Quantity)``; the file writes them negative). Properties: ``order_id`` (the InvoiceNo),
  ``unit_price``, ``currency`` (GBP) and ``country`` — the canonical purchase line, as an
  E-commerce ``Order Completed`` sent through the Segment API gives (:mod:`orchestrion.ingest.segment_spec`).
* InvoiceDate is UK local time (``YYYY-MM-DD HH:MM[:SS]`` or ``M/D/YYYY H:MM``) and is stored as
  UTC; in the repeated autumn hour the earlier (summer-time) reading is taken.
* Lines without CustomerID (guest orders, stock adjustments) cannot be an event, which needs a
  user: they go to ``failed_events`` (source ``dataset:online-retail``) with the line as payload.
  CustomerID read as a float elsewhere (``17850.0``) is normalised to ``17850``.
* Items: every StockCode, with its latest description and unit price (from lines with a price
  above zero, which excludes adjustments), currency GBP; category ``charge`` for postage,
  fees, discounts and manual lines (``POST``, ``DOT``, ``M``, ...), ``product`` otherwise, so
  that reorder goals can skip what is not merchandise.
* Users: every customer, timezone Europe/London, ``{"country": ...}`` (their latest) as traits.

Event ids: ``online-retail:{InvoiceNo}:{StockCode}:{n}``, n = 1, 2, ... the occurrence of that
stock code on that invoice in file order. The file holds 5,268 lines that repeat another line
exactly; they are kept as distinct events because an invoice may list the same article on
separate lines (each was billed), and dropping them would change the invoice totals. Because n
counts within one invoice, a subset made of whole invoices (like the shipped sample) gets the
same ids as the full file, so loading both stores each line once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import polars as pl

from orchestrion.datasets.loading import Dataset, DatasetFrames, json_object, split_rejected
from orchestrion.errors import IngestError

__all__ = ["CHARGE_CODES", "DATASET", "read"]

COLUMNS: Final = [
    "InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"
]  # fmt: skip
_RETAIL_II: Final = {"Invoice": "InvoiceNo", "Price": "UnitPrice", "Customer ID": "CustomerID"}
CHARGE_CODES: Final = frozenset(
    {"POST", "DOT", "M", "m", "C2", "D", "S", "B", "BANK CHARGES", "AMAZONFEE", "CRUK", "PADS", "ADJUST"}
)
_DATE_FORMATS: Final = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S")
_FILE_NAMES: Final = ("online_retail.csv.gz", "online_retail.csv", "online_retail_II.csv.gz", "online_retail_II.csv")


def read(path: Path) -> DatasetFrames:
    """Read the invoice lines of one CSV file (or the one in a folder) as events, items and users."""
    lines = _read_lines(_csv_file(path))
    quantity = pl.col("Quantity").cast(pl.Float64, strict=False)
    price = pl.col("UnitPrice").cast(pl.Float64, strict=False)
    local = pl.coalesce([pl.col("InvoiceDate").str.strptime(pl.Datetime("us"), f, strict=False) for f in _DATE_FORMATS])
    ts = (
        local.dt.replace_time_zone("Europe/London", ambiguous="earliest", non_existent="null")
        .dt.convert_time_zone("UTC")
        .dt.replace_time_zone(None)
    )
    lines = lines.with_columns(
        ts.alias("_ts"), quantity.alias("_quantity"), price.alias("_price"), _occurrence(lines).alias("_n")
    )
    valid, failed = split_rejected(
        lines,
        [
            (pl.col("InvoiceNo").is_null() | pl.col("StockCode").is_null(), "InvoiceNo or StockCode is missing"),
            (pl.col("CustomerID").is_null(), "no CustomerID: an event needs a user (guest order or adjustment)"),
            (pl.col("_quantity").is_null(), "Quantity is not a number"),
            (local.is_null(), "InvoiceDate is not YYYY-MM-DD HH:MM:SS or M/D/YYYY H:MM"),
            (pl.col("_ts").is_null(), "InvoiceDate does not exist in UK local time (clocks went forward)"),
        ],
        event_id=pl.format("online-retail:{}:{}:{}", "InvoiceNo", "StockCode", "_n"),
        fallback_prefix="online-retail",
        payload_columns=COLUMNS,
    )
    is_return = pl.col("InvoiceNo").str.starts_with("C")
    events = valid.select(
        "event_id",
        ("online-retail:" + pl.col("CustomerID")).alias("user_id"),
        pl.when(is_return).then(pl.lit("return")).otherwise(pl.lit("purchase")).alias("type"),
        ("online-retail:" + pl.col("StockCode")).alias("item_id"),
        pl.lit("retail").alias("domain"),
        pl.col("_ts").alias("ts"),
        pl.when(is_return).then(pl.col("_quantity").abs()).otherwise(pl.col("_quantity")).alias("value"),
        json_object(
            order_id=pl.col("InvoiceNo"), unit_price=pl.col("_price"), currency=pl.lit("GBP"), country=pl.col("Country")
        ).alias("properties"),
    )
    users = (
        valid.sort("_ts", maintain_order=True)
        .group_by("CustomerID")
        .agg(pl.col("Country").drop_nulls().last())
        .sort("CustomerID")
        .select(
            ("online-retail:" + pl.col("CustomerID")).alias("user_id"),
            json_object(country=pl.col("Country")).alias("traits"),
        )
    )
    return DatasetFrames(events, failed, _products(lines), users)


def _csv_file(path: Path) -> Path:
    """The file itself, or the one CSV in a folder (preferring the published file names)."""
    if path.is_file():
        return path
    for name in _FILE_NAMES:
        if (path / name).is_file():
            return path / name
    found = sorted([*path.glob("*.csv"), *path.glob("*.csv.gz")])
    if len(found) == 1:
        return found[0]
    if not found:
        raise DATASET.missing(path / _FILE_NAMES[0], "file")
    raise IngestError(
        f"{path} holds several CSV files ({', '.join(p.name for p in found)}); pass the one to load with --path"
    )


def _occurrence(lines: pl.DataFrame) -> pl.Series:
    """1, 2, ... for the repeats of one (InvoiceNo, StockCode) in file order.

    Sorting and counting runs is ~3x faster than ``int_range(...).over(...)`` on 0.5M lines.
    """
    keys = ["InvoiceNo", "StockCode"]
    position = pl.int_range(pl.len())
    run_starts = pl.any_horizontal([pl.col(k).ne_missing(pl.col(k).shift()) for k in keys]) | (position == 0)
    ranked = (
        lines.select(keys)
        .with_row_index("_row")
        .sort([*keys, "_row"])
        .with_columns((position - pl.when(run_starts).then(position).forward_fill() + 1).alias("n"))
        .sort("_row")
    )
    return ranked["n"]


def _read_lines(file: Path) -> pl.DataFrame:
    """All fields as text (ids like 17850 and codes like 85123A stay as written), header checked."""
    lines = pl.read_csv(file, infer_schema=False)
    lines = lines.rename({old: new for old, new in _RETAIL_II.items() if old in lines.columns})
    missing = [c for c in COLUMNS if c not in lines.columns]
    if missing:
        raise IngestError(
            f"{file}: missing columns {', '.join(missing)}; expected the Online Retail header "
            f"{','.join(COLUMNS)} or Online Retail II's Invoice,StockCode,Description,Quantity,"
            "InvoiceDate,Price,Customer ID,Country"
        )
    text = pl.col(COLUMNS).str.strip_chars().replace("", None)
    customer = pl.col("CustomerID").str.replace(r"\.0+$", "")
    return lines.select(COLUMNS).with_columns(text).with_columns(customer)


def _products(lines: pl.DataFrame) -> pl.DataFrame:
    """One item per StockCode: the latest description and price, from lines with a real price."""
    priced = pl.col("_price") > 0
    latest = (
        lines.filter(pl.col("StockCode").is_not_null())
        .sort("_ts", maintain_order=True)
        .group_by("StockCode", maintain_order=True)
        .agg(
            pl.coalesce(
                pl.col("Description").filter(priced).drop_nulls().last(),
                pl.col("Description").drop_nulls().last(),
            ).alias("title"),
            pl.col("_price").filter(priced).last().alias("price"),
        )
    )
    return latest.select(
        ("online-retail:" + pl.col("StockCode")).alias("item_id"),
        pl.lit("retail").alias("domain"),
        "title",
        "price",
        pl.lit("GBP").alias("currency"),
        pl.when(pl.col("StockCode").is_in(list(CHARGE_CODES)))
        .then(pl.lit("charge"))
        .otherwise(pl.lit("product"))
        .alias("category"),
        pl.struct(stock_code=pl.col("StockCode")).alias("properties"),
    )


DATASET: Final = Dataset(
    name="online-retail",
    folder="online-retail",
    domain="retail",
    timezone="Europe/London",
    download_url="https://archive.ics.uci.edu/dataset/352/online+retail",
    description="UK online gift retailer's invoice lines, 2010-12 .. 2011-12 (UCI, CC BY 4.0)",
    read=read,
)
