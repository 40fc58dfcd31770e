"""Bulk ingestion of event and item files: Parquet, CSV and NDJSON, optionally gzipped.

Files are streamed in chunks (``Settings.bulk_chunk_rows``), each chunk validated with polars
expressions and written in its own transaction through :func:`orchestrion.ingest.events.write_events`,
so the dedupe and ``failed_events`` rules are the HTTP ones. A chunk is all-or-nothing: a crash
leaves whole chunks, and re-running the same file stores nothing twice (event ids dedupe).

A file that cannot be read is refused with one :class:`IngestError` line naming it, where (row,
line or byte offset) and what to do. Every file is checked before anything is written (names,
Parquet footers, gzip streams read to their end, CSV encodings), and a write waits for a whole
chunk, so a broken file of up to ``chunk_rows`` rows stores nothing; when a larger file breaks
later, the message says which of its rows were stored.

Columns of a CSV or Parquet file that are not event fields are folded into ``properties``
(``ts``, ``user_id`` … keep their meaning); NDJSON lines are native events exactly as for
``POST /v1/events``, so unknown fields there are rejected like over HTTP.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final, Literal

import duckdb
import polars as pl
import pyarrow as pa

from orchestrion.errors import IngestError, NotFoundError
from orchestrion.ingest.catalog import normalize_items, upsert_items
from orchestrion.ingest.events import (
    CONTROL_PATTERN,
    EVENT_SCHEMA,
    EventBatch,
    WriteResult,
    decode_native,
    insert_registered,
    write_events,
    write_failed,
)
from orchestrion.store import Store, storage_error

__all__ = ["WAL_AUTOCHECKPOINT", "BulkResult", "Progress", "file_format", "ingest_event_files", "ingest_item_files"]

Progress = Callable[[int, int | None], None]
"""Called as ``progress(rows_done, rows_total_or_None)`` after every chunk."""

Format = Literal["parquet", "csv", "ndjson"]
EVENT_FIELDS: Final = ("event_id", "user_id", "type", "item_id", "domain", "ts", "value", "properties")
_TS_FORMATS: Final = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d")
_EARLIEST: Final = datetime(1900, 1, 1)
# DuckDB checkpoints at 16 MB of WAL by default, re-writing the event_id index each time; a bulk
# load of millions of rows then spends most of its time checkpointing. Same setting as `serve`.
WAL_AUTOCHECKPOINT: Final = "256MB"


@dataclass(frozen=True)
class BulkResult:
    """Totals of one bulk ingestion."""

    files: int
    rows: int
    accepted: int
    duplicates: int
    rejected: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def file_format(path: Path) -> Format:
    """The format of ``path`` from its name (``.parquet``, ``.csv[.gz]``, ``.ndjson|.jsonl[.gz]``)."""
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".tsv")):
        return "csv"
    if name.endswith((".ndjson", ".jsonl", ".json")):
        return "ndjson"
    raise IngestError(
        f"cannot tell the format of {path}: name it .parquet, .csv, .tsv, .ndjson or .jsonl "
        "(optionally with .gz)"
    )


_FIX_ENCODING: Final = "bulk CSV must be UTF-8: convert it, e.g. `iconv -f {source} -t UTF-8 {path} > fixed.csv`"
_BOMS: Final = (
    (codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"),
)


def _is_gzip(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def _check_gzip(path: Path) -> None:
    """Read the whole gzip stream (every member) before anything of it is stored: a truncated or
    corrupt .gz would otherwise break off mid-file, after earlier chunks were committed."""
    with path.open("rb") as handle:
        head = handle.read(2)
        if head != b"\x1f\x8b":
            raise IngestError(
                f"{path} is named .gz but is not gzip-compressed (it starts with {head!r}); "
                "nothing was stored: rename it without .gz, or compress it with `gzip`"
            )
        handle.seek(0)
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        offset = 0
        while block := handle.read(1 << 20):
            data = block
            while data:
                if inflater.eof:  # the next member of a multi-member file
                    if not data.strip(b"\0"):
                        break
                    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                try:
                    while data:
                        inflater.decompress(data, 1 << 22)
                        data = inflater.unconsumed_tail
                        if inflater.eof:
                            data = inflater.unused_data
                            break
                except zlib.error as exc:
                    raise IngestError(
                        f"{path} is corrupt near compressed byte {offset:,} ({exc}); nothing was "
                        "stored: copy or download the file again (`gzip -t` checks it)"
                    ) from exc
            offset += len(block)
        if not inflater.eof:
            raise IngestError(
                f"{path} is truncated: its gzip stream ends without its end marker at compressed byte "
                f"{offset:,}; nothing was stored: copy or download the complete file again "
                "(`gzip -t` checks it)"
            )


def _check_csv_head(path: Path) -> None:
    """Refuse a CSV whose encoding is not UTF-8, judged from its first line, before storing anything."""
    with (gzip.open(path, "rb") if _is_gzip(path) else path.open("rb")) as handle:
        head = handle.readline(1 << 20)
    for bom, name in _BOMS:
        if head.startswith(bom):
            raise IngestError(f"{path} is {name} encoded; nothing was stored: "
                              + _FIX_ENCODING.format(source=name, path=path))
    if b"\x00" in head:
        raise IngestError(f"{path} holds NUL bytes on line 1 (UTF-16 without a byte-order mark?); nothing "
                          "was stored: " + _FIX_ENCODING.format(source="UTF-16LE", path=path))
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IngestError(
            f"{path} is not UTF-8: line 1, byte {exc.start} is 0x{head[exc.start]:02X}; nothing was "
            "stored: " + _FIX_ENCODING.format(source="LATIN1", path=path) + " if it is Latin-1"
        ) from exc


def _preflight(path: Path, fmt: Format) -> int | None:
    """Check that ``path`` can be read at all (see the module docstring); its row count when known."""
    try:
        if _is_gzip(path):
            _check_gzip(path)
        if fmt == "csv":
            _check_csv_head(path)
    except OSError as exc:  # no permission, an I/O error: before anything was stored
        raise IngestError(f"{path} cannot be read ({exc.strerror or exc}); nothing was stored") from exc
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return int(pq.ParquetFile(path).metadata.num_rows)
        except (pa.ArrowException, OSError) as exc:
            raise IngestError(
                f"{path} is not a readable Parquet file ({exc}); nothing was stored: it may be "
                "truncated or not Parquet at all; write or copy it again"
            ) from exc
    return None


def _locate_csv_problem(path: Path, delimiter: str) -> str:
    """Where a CSV first goes wrong (bad UTF-8, or a row with the wrong number of fields), found
    by reading it again; only called after pyarrow refused it, whose message has no line number."""
    with (gzip.open(path, "rb") if _is_gzip(path) else path.open("rb")) as raw:
        decoder = codecs.getincrementaldecoder("utf-8")()
        offset = line = 0
        while block := raw.read(1 << 20):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                bad = offset + exc.start
                line += block[: exc.start].count(b"\n") + 1
                return f"line {line:,} (byte {bad:,}) is not UTF-8 (0x{block[exc.start]:02X})"
            line += block.count(b"\n")
            offset += len(block)
    with (gzip.open(path, "rt", encoding="utf-8", newline="") if _is_gzip(path)
          else path.open(encoding="utf-8", newline="")) as text:
        reader = csv.reader(text, delimiter=delimiter)
        width = len(next(reader, []))
        for row in reader:
            if row and len(row) != width:
                return (f"line {reader.line_num:,} has {len(row)} fields where the header has {width}")
    return "the problem could not be located"


@dataclass
class _Stored:
    """Rows of the file being read that were committed so far."""

    rows: int = 0


@contextmanager
def _reading(path: Path, fmt: Format, chunk_rows: int) -> Iterator[_Stored]:
    """Turn a read error in the middle of ``path`` into one IngestError saying where and what was stored."""
    stored = _Stored()
    try:
        yield stored
    except (pa.ArrowException, OSError, EOFError, UnicodeDecodeError, zlib.error, pl.exceptions.PolarsError) as exc:
        where = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if fmt == "csv":
            delimiter = "\t" if path.name.lower().removesuffix(".gz").endswith(".tsv") else ","
            where = f"{_locate_csv_problem(path, delimiter)} ({where})"
        done = stored.rows
        kept = (
            "nothing of it was stored" if done == 0 else
            f"its first {done:,} rows were stored (committed in chunks of {chunk_rows:,} rows), the "
            "rest was not; after fixing it, run the same command again: stored rows are not stored twice"
        )
        fix = {
            "csv": "re-save it as UTF-8 CSV with one value per column on every line",
            "parquet": "write or copy the Parquet file again",
            "ndjson": "copy the file again",
        }[fmt]
        raise IngestError(f"{path} cannot be read: {where}; {kept}; {fix}") from exc


@contextmanager
def _disk(store: Store, path: Path) -> Iterator[None]:
    """A full disk (or a folder gone read-only) while writing says so, instead of a DuckDB traceback."""
    try:
        yield
    except duckdb.Error as exc:
        problem = storage_error(store.path, exc, doing=f"loading {path}")
        if problem is None:
            raise
        raise problem from exc


def _rechunk(frames: Iterator[pl.DataFrame], rows: int) -> Iterator[pl.DataFrame]:
    """Frames of exactly ``rows`` rows (the last may be shorter), so that nothing is written before a
    whole chunk was read: a file of up to ``rows`` rows is then stored whole or not at all."""
    pending: list[pl.DataFrame] = []
    count = 0
    for frame in frames:
        pending.append(frame)
        count += frame.height
        while count >= rows:
            joined = pl.concat(pending) if len(pending) > 1 else pending[0]
            yield joined.slice(0, rows)
            rest = joined.slice(rows)
            pending, count = ([rest], rest.height) if rest.height else ([], 0)
    if count:
        yield pl.concat(pending) if len(pending) > 1 else pending[0]


def _frames(path: Path, fmt: Format, chunk_rows: int) -> Iterator[pl.DataFrame]:
    """Stream a Parquet or CSV file as polars frames; CSV cells stay strings (ids never become floats)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        for record_batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
            yield pl.from_arrow(pa.Table.from_batches([record_batch]), rechunk=False)  # type: ignore[misc]
        return
    import pyarrow.csv as pacsv

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as head:
        header = head.readline()
    delimiter = "\t" if path.name.lower().removesuffix(".gz").endswith(".tsv") else ","
    names = [n.strip().strip('"') for n in header.rstrip("\r\n").split(delimiter)]
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=1 << 24),
        parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names}, strings_can_be_null=True
        ),
    )
    for record_batch in reader:
        frame = pl.from_arrow(pa.Table.from_batches([record_batch]))
        assert isinstance(frame, pl.DataFrame)
        yield frame


def _lines(path: Path, chunk_rows: int) -> Iterator[list[bytes]]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as handle:
        chunk: list[bytes] = []
        for line in handle:
            if line.strip():
                chunk.append(line.rstrip(b"\r\n"))
                if len(chunk) >= chunk_rows:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk


def _epoch(seconds_or_ms: pl.Expr) -> pl.Expr:
    seconds = pl.when(seconds_or_ms.abs() > 1e11).then(seconds_or_ms / 1000).otherwise(seconds_or_ms)
    return (seconds * 1_000_000).cast(pl.Int64).cast(pl.Datetime("us"))


def _ts_expr(dtype: pl.DataType) -> pl.Expr:
    """Timestamps as naive UTC: datetimes (zoned or not), unix seconds/ms, or text in RFC 3339,
    ``YYYY-MM-DD[ HH:MM:SS]`` or unix seconds. Unparseable text becomes null (then rejected)."""
    col = pl.col("ts")
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is not None:
            col = col.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        return col.dt.cast_time_unit("us")
    if dtype.is_numeric():
        return _epoch(col.cast(pl.Float64))
    if isinstance(dtype, pl.Date):
        return col.cast(pl.Datetime("us"))
    text = col.cast(pl.String).str.strip_chars()
    with_zone = text.str.to_datetime(
        "%Y-%m-%dT%H:%M:%S%.f%#z", strict=False, time_zone="UTC", time_unit="us"
    ).dt.replace_time_zone(None)
    candidates = [with_zone] + [
        text.str.to_datetime(fmt, strict=False, time_unit="us") for fmt in _TS_FORMATS
    ] + [_epoch(text.cast(pl.Float64, strict=False))]
    return pl.coalesce(candidates)


def frame_to_batch(
    frame: pl.DataFrame, *, received_at: datetime, source: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Validate a frame of events: returns (valid rows in EVENT_SCHEMA order, rejected rows).

    Rejected rows carry ``reason`` and ``payload`` (the row as JSON, as read).
    """
    missing = [name for name in ("user_id", "type") if name not in frame.columns]
    if missing:
        raise IngestError(
            f"{source}: no {' or '.join(missing)} column (found: {', '.join(frame.columns)}); "
            "rename the columns to the event fields: " + ", ".join(EVENT_FIELDS)
        )
    extra = [c for c in frame.columns if c not in EVENT_FIELDS]
    props: pl.Expr
    if "properties" in frame.columns and isinstance(frame.schema["properties"], pl.Struct):
        props = pl.col("properties").struct.json_encode()
    elif "properties" in frame.columns:
        props = pl.col("properties").cast(pl.String)
    else:
        props = pl.lit(None, dtype=pl.String)
    if extra:
        extra_json = pl.struct(extra).struct.json_encode()
        props = (
            pl.when(props.is_null() | (props == "{}") | (props == "null"))
            .then(extra_json)
            .otherwise(props.str.strip_suffix("}") + pl.lit(",") + extra_json.str.strip_prefix("{"))
        )

    def text(name: str) -> pl.Expr:
        if name not in frame.columns:
            return pl.lit(None, dtype=pl.String)
        return pl.col(name).cast(pl.String).str.strip_chars()

    ts_given = pl.col("ts").is_not_null() if "ts" in frame.columns else pl.lit(False)
    ts = _ts_expr(frame.schema["ts"]) if "ts" in frame.columns else pl.lit(None, dtype=pl.Datetime("us"))
    value_given = pl.col("value").is_not_null() if "value" in frame.columns else pl.lit(False)
    value = (
        pl.col("value").cast(pl.Float64, strict=False) if "value" in frame.columns
        else pl.lit(None, dtype=pl.Float64)
    )
    shaped = frame.select(
        text("event_id").alias("event_id"),
        text("user_id").alias("user_id"),
        text("type").alias("type"),
        text("item_id").alias("item_id"),
        text("domain").alias("domain"),
        ts.alias("ts"),
        ts_given.alias("_ts_given"),
        value.alias("value"),
        value_given.alias("_value_given"),
        props.alias("properties"),
    )
    latest = received_at.replace(microsecond=0)
    chain = (
        pl.when(pl.col("user_id").is_null() | (pl.col("user_id") == ""))
        .then(pl.lit("user_id is required"))
        .when(pl.col("type").is_null() | (pl.col("type") == ""))
        .then(pl.lit("type is required, e.g. \"purchase\""))
        .when(pl.col("_ts_given") & pl.col("ts").is_null())
        .then(pl.lit("ts is not a timestamp; use RFC 3339 (2024-05-01T10:00:00Z) or unix seconds"))
        .when((pl.col("ts") < _EARLIEST) | (pl.col("ts") > pl.lit(latest).dt.offset_by("1d")))
        .then(pl.lit("ts is implausible (before 1900 or more than a day ahead)"))
        .when(pl.col("_value_given") & pl.col("value").is_null())
        .then(pl.lit("value is not a number"))
        .when(pl.col("user_id").str.len_chars() > 256)
        .then(pl.lit("user_id is longer than 256 characters"))
    )
    for name in ("event_id", "user_id", "type", "item_id", "domain"):  # as over HTTP (events.control_error)
        chain = chain.when(pl.col(name).str.contains(CONTROL_PATTERN)).then(
            pl.lit(f"{name} contains a control character; ids and types must be printable text")
        )
    reason = chain.otherwise(pl.lit(None, dtype=pl.String)).alias("reason")
    shaped = shaped.with_columns(reason)
    valid = shaped.filter(pl.col("reason").is_null()).select(
        "event_id", "user_id", "type", "item_id", "domain",
        pl.col("ts").fill_null(pl.lit(received_at)).alias("ts"),
        pl.lit(received_at).cast(pl.Datetime("us")).alias("received_at"),
        "value", "properties", pl.lit(source).alias("source"),
    )
    bad = shaped.get_column("reason").is_not_null()
    # the payload (the row as read, as JSON) is built for rejected rows only: it is costly
    rejected = frame.filter(bad).select(
        pl.lit(received_at).cast(pl.Datetime("us")).alias("received_at"),
        pl.lit(source).alias("source"),
        text("event_id").alias("event_id"),
        shaped.get_column("reason").filter(bad).alias("reason"),
        pl.struct(frame.columns).struct.json_encode().alias("payload"),
    )
    return valid, rejected


def _write_frame_chunk(
    store: Store, frame: pl.DataFrame, *, received_at: datetime, source: str, assume_new: bool
) -> tuple[WriteResult, bool]:
    """Write one chunk in its own transaction; returns the counts and whether to keep assuming new ids.

    A plain ``INSERT`` costs DuckDB about half an ``INSERT … ON CONFLICT`` and most bulk chunks
    hold no stored id, so it is tried first (after dropping repeats inside the chunk); when the
    primary key refuses it, the transaction is rolled back and the chunk redone with
    ``ON CONFLICT DO NOTHING``, and the rest of the file goes that way (a re-run of a file).
    """
    valid, rejected = frame_to_batch(frame, received_at=received_at, source=source)
    if assume_new and valid.get_column("event_id").null_count() == 0:
        fresh = valid.unique("event_id", keep="first", maintain_order=True)
        store.con.register("_orchestrion_bulk", fresh.to_arrow().cast(EVENT_SCHEMA))
        try:
            with store.transaction() as con:
                insert_registered(con, "_orchestrion_bulk")
                if rejected.height:
                    write_failed(con, rejected.to_arrow())
            return WriteResult(fresh.height, valid.height - fresh.height, rejected.height), True
        except duckdb.ConstraintException:
            assume_new = False
        finally:
            store.con.unregister("_orchestrion_bulk")
    with store.transaction() as con:
        result = write_events(
            con, EventBatch(valid.to_arrow().cast(EVENT_SCHEMA)), source=source, received_at=received_at
        )
        if rejected.height:
            write_failed(con, rejected.to_arrow())
    return WriteResult(result.accepted, result.duplicates, rejected.height), assume_new


def _existing(paths: list[Path]) -> list[Path]:
    for path in paths:
        if not path.is_file():
            raise NotFoundError(f"no file at {path}; check the path")
    return paths


def ingest_event_files(
    store: Store,
    paths: list[Path],
    *,
    now: Callable[[], datetime],
    chunk_rows: int = 1_000_000,
    max_event_bytes: int = 32 * 1024,
    progress: Progress | None = None,
) -> BulkResult:
    """Ingest event files chunk by chunk; returns the totals. Bad rows go to ``failed_events``."""
    import time

    started = time.perf_counter()
    total = WriteResult(0, 0, 0)
    rows = 0
    paths = _existing(paths)
    store.con.execute(f"SET wal_autocheckpoint = '{WAL_AUTOCHECKPOINT}'")
    known = [_preflight(p, file_format(p)) for p in paths]
    grand_total = None if any(n is None for n in known) else sum(n or 0 for n in known)
    for path in paths:
        fmt = file_format(path)
        source = f"bulk:{path.name}"
        with _reading(path, fmt, chunk_rows) as stored, _disk(store, path):
            if fmt == "ndjson":
                for lines in _lines(path, chunk_rows):
                    received_at = now()
                    batch = decode_native(lines, received_at=received_at, max_event_bytes=max_event_bytes)
                    with store.transaction() as con:
                        total += write_events(con, batch, source=source, received_at=received_at)
                    rows += len(lines)
                    stored.rows += len(lines)
                    if progress:
                        progress(rows, grand_total)
                continue
            assume_new = True
            for frame in _rechunk(_frames(path, fmt, chunk_rows), chunk_rows):
                result, assume_new = _write_frame_chunk(
                    store, frame, received_at=now(), source=source, assume_new=assume_new
                )
                total += result
                rows += frame.height
                stored.rows += frame.height
                if progress:
                    progress(rows, grand_total)
    return BulkResult(len(paths), rows, total.accepted, total.duplicates, total.rejected,
                      time.perf_counter() - started)


def ingest_item_files(
    store: Store,
    paths: list[Path],
    *,
    now: Callable[[], datetime],
    chunk_rows: int = 1_000_000,
    progress: Progress | None = None,
) -> BulkResult:
    """Upsert catalog items from files by ``item_id``; rows without one go to ``failed_events``."""
    import time

    started = time.perf_counter()
    accepted = rejected_n = rows = 0
    paths = _existing(paths)
    for path in paths:
        _preflight(path, file_format(path))
    for path in paths:
        fmt = file_format(path)
        with _reading(path, fmt, chunk_rows) as stored, _disk(store, path):
            frames: Iterator[pl.DataFrame]
            if fmt == "ndjson":
                frames = (pl.read_ndjson(b"\n".join(chunk)) for chunk in _lines(path, chunk_rows))
            else:
                frames = _rechunk(_frames(path, fmt, chunk_rows), chunk_rows)
            for frame in frames:
                try:
                    valid, rejected = normalize_items(frame)
                except ValueError as exc:
                    raise IngestError(f"{path}: {exc}; nothing of it was stored") from exc
                received_at = now()
                with store.transaction() as con:
                    accepted += upsert_items(con, valid)
                    if rejected.height:
                        failed = rejected.select(
                            pl.lit(received_at).cast(pl.Datetime("us")).alias("received_at"),
                            pl.lit(f"bulk-items:{path.name}").alias("source"),
                            pl.lit(None, dtype=pl.String).alias("event_id"),
                            "reason",
                            pl.struct(pl.exclude("reason")).struct.json_encode().alias("payload"),
                        )
                        write_failed(con, failed.to_arrow())
                rejected_n += rejected.height
                rows += frame.height
                stored.rows += frame.height
                if progress:
                    progress(rows, None)
    return BulkResult(len(paths), rows, accepted, 0, rejected_n, time.perf_counter() - started)
