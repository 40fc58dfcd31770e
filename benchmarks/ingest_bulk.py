"""Bulk ingestion throughput from a Parquet file, next to DuckDB's own limit in the same run.

    .venv/bin/python benchmarks/ingest_bulk.py [--rows 2000000] [--chunk-rows 1000000]

Prints events/s for ``ingest_event_files`` (validation in polars, chunked transactions, dedupe on
event_id) and for the baseline: one bare ``INSERT ... SELECT FROM read_parquet(...)`` into the same
table with its primary key (no validation, no dedupe clause, one transaction: DuckDB's own limit
for this load) — and the ratio. A second pass over
the same file measures the all-duplicates rate (a re-run). Target: >= 500,000 events/s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from orchestrion.ingest.bulk import WAL_AUTOCHECKPOINT, ingest_event_files
from orchestrion.store import Store, utcnow


def make_events(path: Path, rows: int) -> None:
    rng = np.random.default_rng(7)
    start = np.datetime64("2024-01-01T00:00:00", "us")
    frame = pl.DataFrame(
        {
            "event_id": pl.int_range(0, rows, eager=True).cast(pl.String).str.zfill(10).str.replace("^", "bench:"),
            "user_id": pl.Series(rng.integers(0, 50_000, rows)).cast(pl.String),
            "type": pl.Series(rng.choice(["play", "purchase", "view", "rate"], rows)),
            "item_id": pl.Series(rng.integers(0, 100_000, rows)).cast(pl.String),
            "domain": pl.Series(["music"] * rows),
            "ts": pl.Series(start + rng.integers(0, 365 * 86_400, rows) * 1_000_000),
            "value": pl.Series(rng.random(rows)),
        }
    )
    frame.write_parquet(path, row_group_size=100_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--chunk-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "events.parquet"
        make_events(source, args.rows)
        mb = source.stat().st_size / 1e6

        with Store.open(Path(tmp) / "baseline.duckdb") as store:
            store.con.execute(f"SET wal_autocheckpoint = '{WAL_AUTOCHECKPOINT}'")
            started = time.perf_counter()
            with store.transaction() as con:
                con.execute(
                    "INSERT INTO events SELECT event_id, user_id, type, item_id, domain, ts, "
                    f"now()::TIMESTAMP, value, NULL, 'bench' FROM read_parquet('{source}')"
                )
            baseline = args.rows / (time.perf_counter() - started)

        with Store.open(Path(tmp) / "orchestrion.duckdb") as store:
            first = ingest_event_files(store, [source], now=utcnow, chunk_rows=args.chunk_rows)
            rerun = ingest_event_files(store, [source], now=utcnow, chunk_rows=args.chunk_rows)
            assert first.accepted == args.rows and rerun.duplicates == args.rows

    print(f"bulk ingest of {args.rows:,} events from Parquet ({mb:.0f} MB), chunks of {args.chunk_rows:,}")
    print(f"  orchestrion ingest_event_files : {first.rows_per_second:>12,.0f} events/s")
    print(f"  re-run (all duplicates)        : {rerun.rows_per_second:>12,.0f} events/s")
    print(f"  baseline: bare DuckDB INSERT   : {baseline:>12,.0f} events/s")
    print(f"  ratio orchestrion / baseline   : {first.rows_per_second / baseline:>12.2f}")
    print(f"  target >= 500,000 events/s     : {'met' if first.rows_per_second >= 500_000 else 'NOT met'}")


if __name__ == "__main__":
    main()
