"""The contract every dataset module fills in, and the one path that writes a dataset to the store.

A dataset module only *reads*: it turns the published files into :class:`DatasetFrames` (valid
events, rejected rows with their reason, items, users) with polars, touching no database. This
module *writes* them in one transaction, so a load either lands whole or not at all, and a crash
half-way leaves nothing to clean up. Loading is idempotent because every event id is derived
from the row's content (see each module for its scheme): ``events`` keeps the first copy
(``ON CONFLICT DO NOTHING``), rejected rows already recorded for the same source and event id
are not recorded again, items are replaced by id and users are inserted once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

import duckdb
import polars as pl
import pyarrow as pa

from orchestrion.errors import DatasetNotFoundError
from orchestrion.ingest.catalog import normalize_items, upsert_items
from orchestrion.ingest.events import EVENT_SCHEMA, EventBatch, WriteResult, write_events, write_failed
from orchestrion.ingest.users import insert_new_users
from orchestrion.store import Store

__all__ = [
    "Dataset",
    "DatasetFrames",
    "LoadResult",
    "Progress",
    "decode_text",
    "json_object",
    "no_traits",
    "split_rejected",
    "write_frames",
]

Progress = Callable[[str, int, int], None]
"""Called as ``progress(step, done, total)`` while a dataset loads (for a status line)."""

FRAME_COLUMNS: Final = [name for name in EVENT_SCHEMA.names if name not in ("received_at", "source")]
_FAILED_COLUMNS: Final = ["event_id", "reason", "payload"]


@dataclass(frozen=True)
class DatasetFrames:
    """What a dataset module reads from the published files, ready to be written.

    ``events`` has the :data:`~orchestrion.ingest.events.EVENT_SCHEMA` columns except ``received_at``
    and ``source`` (the writer stamps them); ``failed`` has ``event_id, reason, payload``; ``items`` has any of
    :data:`~orchestrion.ingest.catalog.ITEM_COLUMNS`; ``users`` has ``user_id`` and ``traits`` (JSON text
    or null). ``duplicates`` counts rows the module dropped as repeats of another row.
    """

    events: pl.DataFrame
    failed: pl.DataFrame
    items: pl.DataFrame
    users: pl.DataFrame
    duplicates: int = 0


@dataclass(frozen=True)
class Dataset:
    """One loadable dataset: where it lives, where to get it, and how to read it."""

    name: str
    folder: str
    domain: str
    timezone: str
    download_url: str
    description: str
    read: Callable[[Path], DatasetFrames]

    def missing(self, path: Path, what: str = "folder") -> DatasetNotFoundError:
        """The error for a missing folder or file; it says where to download the dataset."""
        return DatasetNotFoundError(
            f"dataset {self.name}: {what} {path} not found; download it from {self.download_url} "
            f"and unpack it as $ORCHESTRION_DATASETS/{self.folder} (or pass its location with --path)"
        )


@dataclass(frozen=True)
class LoadResult:
    """What one ``load_dataset`` call did; ``duplicates`` include repeats dropped inside the file."""

    name: str
    path: Path
    accepted: int
    duplicates: int
    rejected: int
    items: int
    users: int
    seconds: float

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready mapping (the path as text), for ``--json`` output."""
        return {
            "name": self.name,
            "path": str(self.path),
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "items": self.items,
            "users": self.users,
            "seconds": round(self.seconds, 3),
        }


def decode_text(path: Path) -> bytes:
    """The file as UTF-8 bytes for polars, which reads no latin-1.

    Older GroupLens and HetRec files are latin-1 while newer ones are UTF-8; a file that is not
    valid UTF-8 is taken as latin-1, which maps every byte, so no value is lost.
    """
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1").encode("utf-8")
    return raw


def split_rejected(
    frame: pl.DataFrame,
    checks: Sequence[tuple[pl.Expr, str]],
    *,
    event_id: pl.Expr,
    fallback_prefix: str,
    payload_columns: Sequence[str],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split ``frame`` into (rows passing every check with ``event_id`` set, rejected rows).

    ``checks`` are ``(is_bad, reason)`` pairs; the first failing check gives the reason. Rejected
    rows carry the payload as read (a JSON object of ``payload_columns``) and an event id that is
    stable across loads (``{fallback_prefix}:row:{n}`` when the content gives none), so a reload
    does not record them twice.
    """
    reason: pl.Expr = pl.lit(None, dtype=pl.String)
    for is_bad, text in reversed(checks):
        reason = pl.when(is_bad).then(pl.lit(text)).otherwise(reason)
    row_id = pl.format(fallback_prefix + ":row:{}", pl.int_range(pl.len()))
    marked = frame.with_columns(pl.coalesce(event_id, row_id).alias("event_id"), reason.alias("_reason"))
    valid = marked.filter(pl.col("_reason").is_null()).drop("_reason")
    failed = marked.filter(pl.col("_reason").is_not_null()).select(
        "event_id",
        pl.col("_reason").alias("reason"),
        pl.struct(list(payload_columns)).struct.json_encode().alias("payload"),
    )
    return valid, failed


def write_frames(
    store: Store,
    dataset: Dataset,
    frames: DatasetFrames,
    *,
    path: Path,
    now: datetime,
    chunk_rows: int,
    progress: Progress | None,
    started: float,
) -> LoadResult:
    """Write ``frames`` in one transaction (events in chunks of ``chunk_rows``)."""
    report = progress or _silent
    source = f"dataset:{dataset.name}"
    events = frames.events.select(FRAME_COLUMNS)
    total = events.height
    result = WriteResult(0, 0, 0)
    with store.transaction() as con:
        done = 0
        for chunk in events.iter_slices(chunk_rows):
            table = _event_table(chunk, now, source)
            result += write_events(con, EventBatch(table), source=source, received_at=now)
            done += chunk.height
            report("events", done, total)
        report("failed rows", 0, frames.failed.height)
        _write_new_failures(con, frames.failed, source=source, now=now)
        report("items", 0, frames.items.height)
        items, _ = normalize_items(frames.items)
        upsert_items(con, items)
        report("users", 0, frames.users.height)
        _insert_users(con, frames.users, timezone=dataset.timezone, now=now)
    return LoadResult(
        name=dataset.name,
        path=path,
        accepted=result.accepted,
        duplicates=result.duplicates + frames.duplicates,
        rejected=frames.failed.height,
        items=items.height,
        users=frames.users.height,
        seconds=time.perf_counter() - started,
    )


def _silent(step: str, done: int, total: int) -> None:
    return None


def _event_table(chunk: pl.DataFrame, now: datetime, source: str) -> pa.Table:
    stamped = chunk.with_columns(
        pl.lit(now, dtype=pl.Datetime("us")).alias("received_at"), pl.lit(source).alias("source")
    )
    return stamped.select(EVENT_SCHEMA.names).to_arrow().cast(EVENT_SCHEMA)


def _write_new_failures(con: duckdb.DuckDBPyConnection, failed: pl.DataFrame, *, source: str, now: datetime) -> None:
    if failed.is_empty():
        return
    known = con.sql(
        "SELECT DISTINCT event_id FROM failed_events WHERE source = ? AND event_id IS NOT NULL", params=[source]
    ).to_arrow_table()
    fresh = failed.join(pl.DataFrame(known).cast(pl.String), on="event_id", how="anti")
    if fresh.is_empty():
        return
    table = fresh.select(
        pl.lit(now, dtype=pl.Datetime("us")).alias("received_at"),
        pl.lit(source).alias("source"),
        *_FAILED_COLUMNS,
    ).to_arrow()
    write_failed(con, table)


def _insert_users(con: duckdb.DuckDBPyConnection, users: pl.DataFrame, *, timezone: str, now: datetime) -> None:
    if users.is_empty():
        return
    table = users.select(
        pl.col("user_id").cast(pl.String),
        pl.lit(timezone).alias("timezone"),
        pl.col("traits").cast(pl.String),
    ).to_arrow()
    insert_new_users(con, table, now=now)


def json_object(**fields: pl.Expr) -> pl.Expr:
    """A JSON object per row from named expressions (nulls kept as ``null``), for ``properties``."""
    return pl.struct([expr.alias(name) for name, expr in fields.items()]).struct.json_encode()


def no_traits(user_ids: pl.Series) -> pl.DataFrame:
    """A users frame for datasets that publish nothing about their users but the id."""
    unique = user_ids.unique().sort()
    return pl.DataFrame({"user_id": unique, "traits": pl.Series([None] * unique.len(), dtype=pl.String)})
