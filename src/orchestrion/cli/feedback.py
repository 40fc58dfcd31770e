"""``orchestrion feedback import FILE``: thumbs on deliverables in bulk."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from orchestrion.cli.context import open_store, settings

__all__ = ["app", "import_file"]

app = typer.Typer(help="Feedback on deliverables: thumbs up/down on goals and their items.", no_args_is_help=True)


@app.command("import")
def import_file(
    file: Path = typer.Argument(..., help="NDJSON or CSV rows: deliverable_id, thumb, reason, items (JSON list)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary."),
) -> None:
    """Import feedback rows; bad rows are reported with their line number, the rest are stored."""
    from orchestrion.delivery.feedback import import_feedback
    from orchestrion.store import utcnow

    with open_store(settings()) as store:
        result = import_feedback(store, settings(), file, now=utcnow())
    summary = result.as_dict()
    if as_json:
        typer.echo(json.dumps(summary))
        return
    typer.echo(
        f"{summary['stored']} of {summary['rows']} rows stored, {summary['rejected']} rejected, "
        f"{summary['excluded_items']} items excluded, {len(summary['carts_changed'])} waiting carts changed"
    )
    for error in summary["errors"]:
        typer.echo(f"  line {error['line']}: {error['reason']}", err=True)
