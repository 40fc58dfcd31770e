"""``orchestrion goals propose|show`` and the ranker's training command (``train ranker``)."""

from __future__ import annotations

import json

import typer

from orchestrion.cli.context import open_store, parse_day, settings
from orchestrion.cli.keys import ADMIN_KEY, _call, _server_url

__all__ = ["app", "propose", "show", "train_ranker"]

app = typer.Typer(
    help="Goals nobody asked for: propose a day's goals, and show one user's day with why-this and "
    "what was not chosen.",
    no_args_is_help=True,
)


@app.command()
def propose(
    date: str = typer.Option(..., "--date", help="The delivery day, YYYY-MM-DD (uses events before it)."),
    users: list[str] = typer.Option(None, "--users", help="Only these users (repeatable; default: the active ones)."),
    budget: int = typer.Option(3, help="Deliverables per user for the day."),
    epsilon: float = typer.Option(0.1, help="Share of slots chosen at random (0 .. 0.5), with logged propensities."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary."),
) -> None:
    """Propose, rank and choose the day's goals; record every candidate (chosen or not, with why)."""
    from orchestrion.proposals.day import ProposalConfig
    from orchestrion.proposals.day import propose as run
    from orchestrion.ranking import ChoiceConfig
    from orchestrion.store import utcnow

    config = settings()
    rules = ProposalConfig(choice=ChoiceConfig(budget=budget, epsilon=epsilon))
    with open_store(config) as store:
        result = run(store, config.models_path, parse_day(date), users or None, now=utcnow(), config=rules)
    summary = result.as_dict()
    if as_json:
        typer.echo(json.dumps(summary))
        return
    typer.echo(
        f"{summary['date']}: {summary['chosen']} goals chosen from {summary['candidates']} candidates for "
        f"{summary['users']} users ({summary['skipped_users']} already done) by {summary['policy']} "
        f"in {summary['seconds']}s"
    )


@app.command()
def show(
    user: str = typer.Argument(..., help="The user id, e.g. online-retail:12362 (a customer of the shipped sample)."),
    date: str = typer.Option(..., "--date", help="The delivery day, YYYY-MM-DD."),
    as_json: bool = typer.Option(False, "--json", help="Print the day as JSON (as GET /v1/users/{id}/goals does)."),
    admin_key: str = ADMIN_KEY,
) -> None:
    """One user's goals of a day: the chosen ones with "why this", then what was not chosen and why.

    While `orchestrion serve` holds the store, asks it (`GET /v1/users/{id}/goals`, admin key)."""
    from urllib.parse import quote

    day = parse_day(date)
    url = _server_url()
    if url is not None:
        shown = _call(url, "GET", f"/v1/users/{quote(user, safe='')}/goals?date={day.isoformat()}", admin_key)
    else:
        from orchestrion.delivery.rendering import with_status_text
        from orchestrion.proposals.day import day_goals

        with open_store(read_only=True) as store:
            shown = with_status_text(day_goals(store, user, day))
    if as_json:
        typer.echo(json.dumps(shown, default=str))
        return
    chosen, others = shown["chosen"], shown["not_chosen"]
    typer.secho(f"{user} on {day.isoformat()}: {len(chosen)} chosen, {len(others)} not chosen", bold=True)
    for goal in chosen:
        status = f", {goal['status_text']}" if goal.get("status_text") else ""
        typer.echo(f"\n#{goal['slot']} {goal['title']}   [{goal['deliverable_id']}{status}]")
        typer.echo(f"   why this: {goal['why']}")
        propensity = goal["propensity"] if goal["propensity"] is not None else float("nan")
        typer.echo(
            f"   score {goal['score']:.3f} by {goal['policy']}, propensity {propensity:.3f}, {len(goal['items'])} items"
        )
    if others:
        typer.secho("\nNot chosen today:", bold=True)
    for goal in others:
        typer.echo(f" - {goal['title']} ({goal['reason']}): {goal['reason_detail']}")
        typer.echo(f"   would have been: {goal['would_have_been']}")


def train_ranker(
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
    model: str = typer.Option("logistic", help="logistic or hgb."),
    admin_key: str | None = None,
) -> None:
    """Fit a goal ranker on all feedback; promote it only if it beats the current policy off-policy.

    While `orchestrion serve` holds the store, the server fits it (`POST /v1/train/ranker`, admin key)."""
    from orchestrion.cli.keys import _call, _server_url
    from orchestrion.ranking import RankerConfig
    from orchestrion.store import utcnow
    from orchestrion.training.fits import train_ranker as run

    config = settings()
    url = _server_url()
    if url is not None:
        summary = _call(url, "POST", "/v1/train/ranker", admin_key, {"model": model}, timeout=None)
    else:
        with open_store(config) as store:
            ranker = RankerConfig.model_validate({"model": model})
            summary = run(store, config.models_path, now=utcnow(), config=ranker).as_dict()
    if as_json:
        typer.echo(json.dumps(summary, default=str))
        return
    typer.echo(summary["note"])
    for name in ("candidate_estimate", "current_estimate"):
        if summary.get(name):
            e = summary[name]
            typer.echo(f"{name.replace('_', ' ')}: IPS {e['ips']}, SNIPS {e['snips']} on {e['decisions']} goals")
    where = f"saved as ranker {summary['version']}" if summary["version"] else "nothing saved"
    typer.echo(f"{where}; {'promoted' if summary['promoted'] else 'not promoted'}")
