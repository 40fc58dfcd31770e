"""``orchestrion train MODEL`` and ``orchestrion models list|show|promote``."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import typer

from orchestrion.cli.context import open_store, settings
from orchestrion.cli.keys import ADMIN_KEY

__all__ = ["app", "register"]

app = typer.Typer(help="The model registry under models/: list, inspect and promote versions.", no_args_is_help=True)

TRAINABLE = ("popularity", "itemknn", "als", "bpr", "ease", "repurchase", "ranker")


def _parse_sets(values: list[str]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--set takes KEY=VALUE, got {item!r}")
        try:
            config[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            config[key.strip()] = raw
    return config


def train(
    model: str = typer.Argument(..., help=f"What to train: {', '.join(TRAINABLE)}."),
    domain: str = typer.Option(None, help="Recommenders: the event domain (default: the one with most events)."),
    weighting: str = typer.Option(
        "count", help="Recommenders: interaction weight: binary, count, value, log_value or decayed."
    ),
    as_of: datetime = typer.Option(None, "--as-of", help="Train on events before this time (default: now)."),
    sets: list[str] = typer.Option([], "--set", help="A config value, KEY=VALUE (JSON values), repeatable."),
    promote: bool = typer.Option(False, help="Promote the new version (the first version always is)."),
    as_json: bool = typer.Option(False, "--json", help="Print the saved version as JSON."),
    admin_key: str = ADMIN_KEY,
) -> None:
    """Train a model from the store and save a new version in the registry.

    While `orchestrion serve` holds the store, the ranker is fitted by the server (admin key); the
    recommenders are trained by its nightly retrain (`orchestrion run retrain`)."""
    from orchestrion.store import utcnow
    from orchestrion.training.fits import train_recommender, train_repurchase

    if model not in TRAINABLE:
        raise typer.BadParameter(f"unknown model {model!r}; choose one of {', '.join(TRAINABLE)}")
    if model == "ranker":
        from orchestrion.cli.goals import train_ranker

        train_ranker(as_json=as_json, model=str(_parse_sets(sets).get("model", "logistic")), admin_key=admin_key)
        return
    config = settings()
    now = utcnow()
    with open_store(config) as store:
        if model == "repurchase":
            result = train_repurchase(
                store, config.models_path, as_of=as_of or now, now=now, config=_parse_sets(sets), promote=promote
            )
        else:
            result = train_recommender(
                store, config.models_path, model, as_of=as_of or now, now=now, domain=domain,
                weighting=weighting,  # type: ignore[arg-type]
                config=_parse_sets(sets), promote=promote,
            )
    version = result.version
    if as_json:
        typer.echo(json.dumps({"kind": version.kind, "version": version.version, "path": str(version.path),
                               "promoted": version.promoted, "timings": result.timings}))
        return
    phases = ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items())
    state = "promoted"
    if not version.promoted:
        state = f"not promoted (orchestrion models promote {version.kind} {version.version})"
    typer.echo(f"saved {version.kind} {version.version} at {version.path} ({phases}); {state}")


@app.command("list")
def list_models(
    kind: str = typer.Argument(None, help="Only this kind (e.g. als-music)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Every saved model version; * marks the promoted one."""
    from orchestrion.training.versions import list_versions

    versions = list_versions(settings().models_path, kind)
    if as_json:
        typer.echo(json.dumps([{"kind": v.kind, "version": v.version, "promoted": v.promoted,
                                "created_at": v.metadata.get("created_at")} for v in versions]))
        return
    if not versions:
        typer.echo("no models yet; train one with `orchestrion train als`")
    for v in versions:
        mark = "*" if v.promoted else " "
        typer.echo(f"{mark} {v.kind:<20} {v.version}  {v.metadata.get('created_at', '')}")


@app.command()
def show(
    kind: str = typer.Argument(..., help="The model kind, e.g. als-music or repurchase."),
    version: str = typer.Argument(None, help="The version (default: the promoted one)."),
) -> None:
    """A version's metadata: config, dataset, fingerprint, metrics, library versions."""
    from orchestrion.training.versions import model_version

    found = model_version(settings().models_path, kind, version)
    typer.echo(json.dumps({**found.metadata, "path": str(found.path), "promoted": found.promoted}, indent=2))


@app.command()
def promote(
    kind: str = typer.Argument(..., help="The model kind."),
    version: str = typer.Argument(..., help="The version to promote, e.g. v0002."),
) -> None:
    """Make a version the one the rest of the system uses."""
    from orchestrion.training.versions import promote as promote_version

    found = promote_version(settings().models_path, kind, version)
    typer.echo(f"{found.kind} {found.version} is now promoted")


def register(root: typer.Typer) -> None:
    root.command()(train)
    root.add_typer(app, name="models")
