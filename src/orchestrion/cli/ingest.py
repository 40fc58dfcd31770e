"""``orchestrion ingest events|items FILE...``: bulk files into the store."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from orchestrion.cli.context import open_store, settings
from orchestrion.cli.progress import progress_bar

__all__ = ["app"]

app = typer.Typer(
    help="Bulk-load events or catalog items from Parquet, CSV or NDJSON files (optionally .gz).",
    no_args_is_help=True,
)

FILES = typer.Argument(..., exists=True, dir_okay=False, help="Files to load, in order.")
AS_JSON = typer.Option(False, "--json", help="Print the summary as one JSON object.")


def _summary(kind: str, result: object, as_json: bool) -> None:
    from dataclasses import asdict

    from orchestrion.ingest.bulk import BulkResult

    assert isinstance(result, BulkResult)
    figures = {**asdict(result), "rows_per_second": round(result.rows_per_second)}
    if as_json:
        typer.echo(json.dumps(figures))
        return
    typer.echo(
        f"{kind}: {result.rows:,} rows from {result.files} file(s) in {result.seconds:.1f}s "
        f"({result.rows_per_second:,.0f}/s): {result.accepted:,} stored, "
        f"{result.duplicates:,} duplicates, {result.rejected:,} rejected (see failed_events)"
    )


@app.command()
def events(files: list[Path] = FILES, as_json: bool = AS_JSON) -> None:
    """Load events; columns other than the event fields go into properties. Re-running is safe."""
    from orchestrion.ingest.bulk import ingest_event_files
    from orchestrion.store import utcnow

    config = settings()
    with open_store(config) as store, progress_bar("events") as update:
        result = ingest_event_files(
            store, files, now=utcnow, chunk_rows=config.bulk_chunk_rows,
            max_event_bytes=config.max_event_bytes, progress=update,
        )
    _summary("events", result, as_json)


@app.command()
def items(files: list[Path] = FILES, as_json: bool = AS_JSON) -> None:
    """Upsert catalog items by item_id (item_id, domain, title, creator, price, currency, ...)."""
    from orchestrion.ingest.bulk import ingest_item_files
    from orchestrion.store import utcnow

    config = settings()
    with open_store(config) as store, progress_bar("items") as update:
        result = ingest_item_files(store, files, now=utcnow, chunk_rows=config.bulk_chunk_rows,
                                   progress=update)
    _summary("items", result, as_json)
