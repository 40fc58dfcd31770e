"""``orchestrion deliver``: run a day's goals → plans → execution → review and print what was delivered."""

from __future__ import annotations

import json
from contextlib import nullcontext
from datetime import date as Date
from pathlib import Path
from typing import Any

import typer

from orchestrion.cli.context import open_store, parse_day, settings
from orchestrion.cli.keys import ADMIN_KEY, _call, _server_url

__all__ = ["deliver"]


def deliver(
    date: str = typer.Option(..., "--date", help="The delivery day, YYYY-MM-DD (goals use events before it)."),
    users: list[str] = typer.Option(None, "--user", help="Only this user (repeatable; default: every active user)."),
    llm: bool = typer.Option(
        True, help="Plan with the configured LLM endpoint when there is one (--no-llm: always offline)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary instead of a table."),
    admin_key: str = ADMIN_KEY,
) -> None:
    """Deliver a day: propose goals, plan them (offline by default), review, run allowed side effects.

    Actions the policy sends to a person wait in the feed (approve/reject/cancel); refused ones are
    recorded and never run. Running a day again does nothing new: every effect is in the ledger.
    While `orchestrion serve` holds the store, the server does it (`POST /v1/deliver`, admin key).
    """
    from orchestrion.cli.progress import progress_bar
    from orchestrion.delivery.deliverables import first_deliverables
    from orchestrion.delivery.stage import deliver as run
    from orchestrion.store import utcnow

    day = parse_day(date)
    config = settings()
    url = _server_url()
    if url is not None:
        done = _call(url, "POST", "/v1/deliver", admin_key, {"date": day.isoformat(), "users": users or None,
                                                              "llm": llm}, timeout=None)
        if as_json:
            typer.echo(json.dumps(done["summary"]))
            return
        _print(day, done["deliverables"], done["summary"], config.outbox_path)
        return
    from orchestrion.planning.llm import planning_for

    planning = planning_for(config, "deliver", llm=llm)
    bar = nullcontext(None) if as_json else progress_bar("delivering", unit="users")
    with open_store(config) as store:
        with bar as advance:
            try:
                result = run(
                    store,
                    config,
                    day,
                    users or None,
                    now=utcnow(),
                    planner=planning.planner,
                    concurrency=planning.concurrency,
                    critic=planning.critic,
                    progress=advance,
                )
            finally:
                planning.close()
        if as_json:
            typer.echo(json.dumps(result.as_dict()))
            return
        rows = first_deliverables(store.con, day, users or None)
    _print(day, rows, result.as_dict(), config.outbox_path)


def _print(day: Date, rows: list[dict[str, Any]], summary: dict[str, Any], outbox: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"Deliverables of {day.isoformat()} (first 20)")
    for column in ("user", "deliverable", "template", "status", "title"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row[k]) for k in ("user_id", "deliverable_id", "template", "status_text", "title")))
    console.print(table)
    console.print(
        f"{summary['deliverables']} deliverables for {summary['users']} users in {summary['seconds']}s: "
        f"{summary['statuses']}; {summary['effects']} effects run, {summary['pending_actions']} waiting for a "
        f"person, {summary['refused']} refused by policy. Files: {outbox}"
    )
