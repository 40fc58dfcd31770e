"""``orchestrion deliver``: run a day's goals → plans → execution → review and print what was delivered."""

from __future__ import annotations

import json
from contextlib import nullcontext
from datetime import date as Date

import typer

from orchestrion.cli.context import open_store, settings

__all__ = ["deliver"]


def deliver(
    date: str = typer.Option(..., "--date", help="The delivery day, YYYY-MM-DD (goals use events before it)."),
    users: list[str] = typer.Option(None, "--user", help="Only this user (repeatable; default: every active user)."),
    llm: bool = typer.Option(
        True, help="Plan with the configured LLM endpoint when there is one (--no-llm: always offline)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary instead of a table."),
) -> None:
    """Deliver a day: propose goals, plan them (offline by default), review, run allowed side effects.

    Actions the policy sends to a person wait in the feed (approve/reject/cancel); refused ones are
    recorded and never run. Running a day again does nothing new: every effect is in the ledger.
    """
    from rich.console import Console
    from rich.table import Table

    from orchestrion.cli.progress import progress_bar
    from orchestrion.delivery import deliver as run
    from orchestrion.store import utcnow

    try:
        day = Date.fromisoformat(date)
    except ValueError:
        raise typer.BadParameter(f"--date takes YYYY-MM-DD, got {date!r}") from None
    config = settings()
    from orchestrion.planning.llm import planning_for
    from orchestrion.rendering import main_action, status_text

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
        rows = store.con.execute(
            "SELECT user_id, deliverable_id, template, status, title, error, content FROM deliverables WHERE date = ? "
            "AND (? IS NULL OR list_contains(?, user_id)) ORDER BY user_id, deliverable_id LIMIT 20",
            [day, users or None, users or None],
        ).fetchall()
    console = Console()
    table = Table(title=f"Deliverables of {day.isoformat()} (first 20)")
    for column in ("user", "deliverable", "template", "status", "title"):
        table.add_column(column)
    for user_id, deliverable_id, template, status, title, error, content in rows:
        shown = {"template": template, "content": json.loads(content) if content else None}
        table.add_row(user_id, deliverable_id, template, status_text(status, error, main_action(shown)), str(title))
    console.print(table)
    summary = result.as_dict()
    console.print(
        f"{summary['deliverables']} deliverables for {summary['users']} users in {summary['seconds']}s: "
        f"{summary['statuses']}; {summary['effects']} effects run, {summary['pending_actions']} waiting for a "
        f"person, {summary['refused']} refused by policy. Files: {config.outbox_path}"
    )
