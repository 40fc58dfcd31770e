"""``orchestrion eval PROTOCOL``: the fixed evaluation protocols on the real datasets."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from orchestrion.cli.context import settings

__all__ = ["app"]

app = typer.Typer(
    help="Evaluate models on real datasets with fixed, documented protocols (see docs/evaluation.md).",
    no_args_is_help=True,
)

PATH = typer.Option(None, "--path", help="Dataset folder or file (default: $ORCHESTRION_DATASETS/<folder>).")
AS_JSON = typer.Option(False, "--json", help="Print one JSON object {protocol, dataset, results}.")
RESULTS = typer.Option(None, "--results", help="Where to write results.json/.md/.png (default HOME/results).")
MODELS = typer.Option(None, "--model", help="Only these models (repeatable; default every model).")


def _run(protocol: str, path: Path | None, as_json: bool, results: Path | None, models: list[str] | None) -> None:
    from orchestrion.evaluation.protocols import run_protocol
    from orchestrion.evaluation.report import markdown_table, write_report
    from orchestrion.store import utcnow

    config = settings()

    def say(message: str) -> None:
        if not as_json:
            typer.echo(f"… {message}", err=True)

    report = run_protocol(
        protocol, path=path, datasets_root=config.datasets, now=utcnow(), models=models or None, progress=say
    )
    written = write_report(report, (results or config.home / "results") / protocol)
    if as_json:
        typer.echo(json.dumps(report))
        return
    typer.echo(markdown_table(report["results"]))
    typer.echo(f"\n{report['seconds']:.0f}s; written to {written['markdown'].parent}/ (results.json, .md, .png)")


@app.command()
def movielens(path: Path = PATH, as_json: bool = AS_JSON, results: Path = RESULTS, model: list[str] = MODELS) -> None:
    """MovieLens (any GroupLens layout): per-user random 75/25 split, seed 42, top-10, every recommender."""
    _run("movielens", path, as_json, results, model)


@app.command()
def lastfm(path: Path = PATH, as_json: bool = AS_JSON, results: Path = RESULTS, model: list[str] = MODELS) -> None:
    """Last.fm HetRec: per-user random 80/20 split of artists, seed 42, top-10, every recommender."""
    _run("lastfm", path, as_json, results, model)


@app.command("online-retail")
def online_retail(
    path: Path = PATH, as_json: bool = AS_JSON, results: Path = RESULTS, model: list[str] = MODELS
) -> None:
    """Online Retail (I or II): next-30-day baskets; repurchase model vs baselines vs recommenders."""
    _run("online-retail", path, as_json, results, model)
