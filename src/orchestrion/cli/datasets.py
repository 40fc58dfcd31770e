"""``orchestrion datasets``: list and load the real public datasets (thin shells over the library)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from orchestrion.cli.context import open_store, settings

if TYPE_CHECKING:
    from orchestrion.datasets import LoadResult, Progress

__all__ = ["app"]

app = typer.Typer(
    help="Load the real public datasets (MovieLens, Last.fm, Online Retail, DeskDrop) as events and items.",
    no_args_is_help=True,
)


@app.command("list")
def list_datasets(as_json: bool = typer.Option(False, "--json", help="Print one JSON array.")) -> None:
    """The datasets orchestrion can load, where each is looked for, and where to download it."""
    from orchestrion.datasets import DATASETS

    root = settings().datasets
    rows = [
        {
            "name": d.name,
            "domain": d.domain,
            "folder": str(root / d.folder) if root else f"$ORCHESTRION_DATASETS/{d.folder}",
            "found": bool(root and (root / d.folder).is_dir()),
            "download": d.download_url,
            "description": d.description,
        }
        for d in DATASETS.values()
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="datasets")
    for column in ("name", "domain", "folder", "found", "download"):
        table.add_column(column)
    for row in rows:
        found = "yes" if row["found"] else "no"
        table.add_row(str(row["name"]), str(row["domain"]), str(row["folder"]), found, str(row["download"]))
    Console().print(table)


@app.command()
def load(
    name: str = typer.Argument(..., help="Dataset name, see `orchestrion datasets list`."),
    path: Path | None = typer.Option(
        None, "--path", help="Folder (or file) to read; default $ORCHESTRION_DATASETS/<folder>."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
) -> None:
    """Load a dataset into the store; loading it again stores nothing new."""
    from orchestrion.datasets import load_dataset

    config = settings()
    with open_store(config) as store, _status(name) as progress:
        result = load_dataset(
            store, name, path, datasets_root=config.datasets, progress=progress, chunk_rows=config.bulk_chunk_rows
        )
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    _print_result(result)


@contextmanager
def _status(name: str) -> Iterator[Progress]:
    """A transient progress line on stderr, so stdout stays clean for --json."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(f"{name}: reading", total=None)

        def report(step: str, done: int, total: int) -> None:
            bar.update(task, description=f"{name}: {step}", completed=done, total=total or None)

        yield report


def _print_result(result: LoadResult) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result.name} from {result.path}")
    table.add_column("what")
    table.add_column("count", justify="right")
    for label, value in (
        ("events stored", result.accepted),
        ("duplicates (already stored or repeated)", result.duplicates),
        ("rejected rows (in failed_events)", result.rejected),
        ("items", result.items),
        ("users", result.users),
    ):
        table.add_row(label, f"{value:,}")
    table.add_row("seconds", f"{result.seconds:.1f}")
    Console().print(table)
