"""``orchestrion init``, ``stats`` and ``demo``."""

from __future__ import annotations

import json

import typer

from orchestrion.cli.context import open_store, settings
from orchestrion.cli.keys import ADMIN_KEY, _call, _server_url

__all__ = ["register"]


def init() -> None:
    """Create the database (applying migrations), models/ and the outbox under ORCHESTRION_HOME."""
    config = settings()
    with open_store(config):
        pass
    config.models_path.mkdir(parents=True, exist_ok=True)
    config.outbox_path.mkdir(parents=True, exist_ok=True)
    typer.echo(f"database  {config.database_path}")
    typer.echo(f"models    {config.models_path}")
    typer.echo(f"outbox    {config.outbox_path}")


def stats(as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
          admin_key: str = ADMIN_KEY) -> None:
    """Counts of events, failed events, users and items, by domain and type, and the event types
    no goal can use (unmapped).

    While `orchestrion serve` holds the store, asks it (`GET /v1/stats`, admin key)."""
    from orchestrion.ingest.segment_spec import known_types
    from orchestrion.ingest.stats import store_stats

    url = _server_url()
    if url is not None:
        figures = _call(url, "GET", "/v1/stats", admin_key)
    else:
        config = settings()
        known = known_types(config.mappings, [rule.event_type for rule in config.triggers])
        with open_store(config, read_only=True) as store:
            figures = store_stats(store.con, known)
    if as_json:
        typer.echo(json.dumps(figures, indent=2))
        return
    _print_stats(figures)


def _print_stats(figures: dict[str, object]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="orchestrion store", show_header=True)
    table.add_column("what")
    table.add_column("count", justify="right")
    for key in ("events", "failed_events", "users", "items"):
        table.add_row(key, f"{figures[key]:,}")
    by_type = figures["events_by_type"]
    assert isinstance(by_type, dict)
    for key, n in by_type.items():
        table.add_row(f"  events {key}", f"{n:,}")
    unmapped = figures.get("unmapped_by_type")
    if isinstance(unmapped, dict) and unmapped:
        table.add_row("unmapped events (no goal reads them; see [[mappings]])", f"{figures['unmapped']:,}")
        for key, n in unmapped.items():
            table.add_row(f"  unmapped {key}", f"{n:,}")
    Console().print(table)


def demo(
    sample: str = typer.Option(
        "", help="Events file to load; default the shipped Online Retail sample under data/."
    ),
) -> None:
    """The main job: load the shipped sample, retrain, run the daily pipeline, show deliverables.

    It needs the store to itself: while `orchestrion serve` holds it, it says so and exits 2."""
    from orchestrion.errors import UsageError
    from orchestrion.runs.demo import DEMO_DAY, run_demo

    url = _server_url()
    if url is not None:
        raise UsageError(
            f"the demo loads a sample and runs a day in the store, which the server at {url} holds: "
            "stop the server (Ctrl-C), run `orchestrion demo`, then `orchestrion serve` again"
        )

    outcome = run_demo(settings(), sample or None)
    _print_stats(outcome["stats"])
    for run in outcome["runs"]:
        if run:
            typer.echo(f"run {run['run_id']}: {run['status']}, {run['users_done']} users, {run['seconds']:.1f}s")
    typer.secho(f"\nDeliverables of {DEMO_DAY} for a few users:", bold=True)
    for d in outcome["deliverables"]:
        typer.echo(f"  {d['user_id']}  [{d['status_text']}] {d['title']}")
        if d["summary"]:
            typer.echo(f"      {d['summary']}")
        for path in d["files"]:
            if path.endswith(".html"):
                typer.echo(f"      open {path}")
    typer.echo(f"\nMore: `orchestrion runs list`, `orchestrion goals show USER --date {DEMO_DAY}`, "
               "`orchestrion serve` and the web page.")


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(stats)
    app.command()(demo)
