"""Online Retail's invoices as Segment E-commerce orders: what the shop replay test and the
Segment ingestion benchmark send (a test harness, not part of the package)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from orchestrion.datasets.online_retail import CHARGE_CODES

__all__ = ["Order", "invoice_lines", "invoice_orders"]

Order = tuple[str, str, dict[str, Any], datetime]
"""One order message: (user id, event name, properties, UTC time)."""


def invoice_lines(folder: Path) -> pl.DataFrame:
    """The raw lines with a customer (text, as in the file) plus their UTC time, in file order."""
    lines = pl.read_csv(folder / "online_retail.csv.gz", infer_schema=False)
    utc = (
        pl.col("InvoiceDate").str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S")
        .dt.replace_time_zone("Europe/London", ambiguous="earliest").dt.convert_time_zone("UTC")
    )
    return lines.filter(pl.col("CustomerID").is_not_null()).with_columns(utc.alias("utc"))


def invoice_orders(lines: pl.DataFrame) -> Iterator[Order]:
    """Each invoice as one ``Order Completed`` (a cancellation ``C…`` as ``Order Refunded``) with
    its lines in ``products``, in file order; its time is its first line's."""
    for (invoice,), group in lines.group_by(["InvoiceNo"], maintain_order=True):
        products = [
            {"product_id": f"online-retail:{row['StockCode']}", "quantity": float(row["Quantity"]),
             "price": float(row["UnitPrice"]), "name": row["Description"],
             "category": "charge" if row["StockCode"] in CHARGE_CODES else "product"}
            for row in group.iter_rows(named=True)
        ]
        event = "Order Refunded" if str(invoice).startswith("C") else "Order Completed"
        properties = {"order_id": invoice, "currency": "GBP", "products": products}
        yield f"online-retail:{group['CustomerID'][0]}", event, properties, group["utc"][0]
