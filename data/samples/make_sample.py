"""Draw the shipped Online Retail sample from the full UCI file, deterministically.

Usage: python data/samples/make_sample.py [SOURCE.csv.gz] [OUTPUT.csv.gz]
(default SOURCE: $ORCHESTRION_DATASETS/online-retail/online_retail.csv.gz; default OUTPUT:
online-retail-sample.csv.gz next to this script).

The sample is made of *whole invoices*, in file order, with every value unchanged:
* every invoice line (purchases and cancellations) of the 150 customers whose id has the
  smallest md5 hash, i.e. a fixed pseudo-random draw that does not favour big or early customers;
* every line of the 12 invoices without a customer (guest orders, adjustments) whose number has
  the smallest md5 hash among those of at most 40 lines, so the loader's rejection path is shown.
Whole invoices keep the event ids of the full file (``online-retail:{invoice}:{stock}:{n}``).
The gzip header carries no name or time, so the output is byte-for-byte reproducible.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import sys
from pathlib import Path

import polars as pl

CUSTOMERS = 150
GUEST_INVOICES = 12
GUEST_MAX_LINES = 40


def _smallest_md5(values: list[str], n: int) -> list[str]:
    return sorted(values, key=lambda v: hashlib.md5(v.encode()).hexdigest())[:n]


def draw(source: Path) -> pl.DataFrame:
    """The sample lines, all columns as the text of the source file."""
    lines = pl.read_csv(source, infer_schema=False)
    customers = lines["CustomerID"].drop_nulls().unique().to_list()
    chosen = _smallest_md5(customers, CUSTOMERS)
    guest_sizes = lines.filter(pl.col("CustomerID").is_null()).group_by("InvoiceNo").len()
    guests = guest_sizes.filter(pl.col("len") <= GUEST_MAX_LINES)["InvoiceNo"].to_list()
    invoices = _smallest_md5(guests, GUEST_INVOICES)
    return lines.filter(pl.col("CustomerID").is_in(chosen) | pl.col("InvoiceNo").is_in(invoices))


def main(argv: list[str]) -> None:
    root = Path(os.environ.get("ORCHESTRION_DATASETS", "."))
    source = Path(argv[1]) if len(argv) > 1 else root / "online-retail" / "online_retail.csv.gz"
    output = Path(argv[2]) if len(argv) > 2 else Path(__file__).with_name("online-retail-sample.csv.gz")
    sample = draw(source)
    with open(output, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
        out.write(sample.write_csv().encode())
    print(f"{output}: {sample.height} lines, {output.stat().st_size} bytes")


if __name__ == "__main__":
    main(sys.argv)
