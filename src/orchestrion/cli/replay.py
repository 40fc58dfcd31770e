"""``orchestrion eval replay``: the walk-forward replay of goal policies on a real dataset."""

from __future__ import annotations

import json as json_lib
from pathlib import Path

import typer

from orchestrion.cli.context import settings

__all__ = ["replay"]


def replay(
    dataset: str = typer.Option(..., "--dataset", help="online-retail, movielens-100k or deskdrop."),
    json: bool = typer.Option(False, "--json", help="Print one JSON object {dataset, policies, ...}."),
    max_users: int = typer.Option(None, "--max-users", help="Seeded sample of users (time box)."),
    max_steps: int = typer.Option(None, "--max-steps", help="Most steps (time box)."),
    seed: int = typer.Option(
        None, "--seed", help="The seed of the exploration draws, the random policy and the user sample (default 0)."
    ),
    output: Path = typer.Option(None, "--output", help="Also write the JSON result to this file."),
    promotion_z: float = typer.Option(
        None, "--promotion-z",
        help="Promote a new ranker only when SNIPS(new) - SNIPS(current) minus this many standard errors is above 0: "
        "0 is the protocol's rule, 1.645 production's (one-sided 95 %).",
    ),
    production: bool = typer.Option(
        False, "--production",
        help="The learned policy promotes and declines as production's nightly retrain does: each promoted ranker "
        "brings its refitted send threshold, promotion needs the confidence bound (--promotion-z, default 1.645).",
    ),
) -> None:
    """Replay prior, learned, best-template and random goal policies step by step on a real dataset."""
    from orchestrion.evaluation.replay import DATASET_DEFAULTS, ReplayConfig
    from orchestrion.evaluation.replay import replay as run
    from orchestrion.ranking.offpolicy import Z_PROMOTE

    values = dict(DATASET_DEFAULTS.get(dataset, {}))
    if max_users is not None:
        values["max_users"] = max_users
    if max_steps is not None:
        values["max_steps"] = max_steps
    if seed is not None:
        values["seed"] = seed
    if production:
        values["chooser"] = "production"
        values["promotion_z"] = Z_PROMOTE
    if promotion_z is not None:
        values["promotion_z"] = promotion_z

    def say(step: int, total: int, day: str) -> None:
        if not json:
            typer.echo(f"… step {step + 1}/{total} ({day})", err=True)

    result = run(dataset, datasets_root=settings().datasets, config=ReplayConfig.model_validate(values), progress=say)
    report = result.as_dict()
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json_lib.dumps(report, indent=1))
    if json:
        typer.echo(json_lib.dumps(report))
        return
    typer.echo(f"{dataset}: acceptance over the second half of {len(report['steps'])} steps")
    for name, policy in report["policies"].items():
        extra = f"  ({policy['variant']})" if name == "best_template" else ""
        typer.echo(f"  {name:<14} {policy['acceptance']:.4f}  on {policy['delivered']} goals{extra}")
    for name, value in report["ratios"].items():
        typer.echo(f"  {name:<28} {value}")
