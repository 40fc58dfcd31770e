"""Run a named evaluation protocol on a real dataset: the library behind ``orchestrion eval``.

The dataset is loaded from its files into a scratch in-memory store with the same loaders as
``orchestrion datasets load`` (so every GroupLens layout and both Online Retail headers work),
then the protocol runs and returns one JSON-ready report:
``{"protocol", "dataset", "results": {model: {metric: value}}, ...}``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import polars as pl

from orchestrion.datasets import load_dataset
from orchestrion.errors import UsageError
from orchestrion.evaluation.offline import evaluate_topn
from orchestrion.evaluation.retail import RetailProtocol, evaluate_retail
from orchestrion.store import Store

__all__ = ["PROTOCOL_DATASETS", "run_protocol"]

PROTOCOL_DATASETS: Final = {
    "movielens": ("movielens-100k", "rate"),
    "lastfm": ("lastfm-hetrec-2k", "play"),
    "online-retail": ("online-retail", "purchase"),
}


def _interactions(store: Store, event_type: str) -> pl.DataFrame:
    frame: pl.DataFrame = store.con.sql(
        "SELECT user_id, item_id, value FROM events WHERE type = $type AND item_id IS NOT NULL",
        params={"type": event_type},
    ).pl()
    return frame


def run_protocol(
    name: str,
    *,
    path: Path | None = None,
    datasets_root: Path | None = None,
    now: datetime,
    models: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Load the protocol's dataset (from ``path`` or ``datasets_root``) and evaluate it."""
    if name not in PROTOCOL_DATASETS:
        raise UsageError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOL_DATASETS)}")
    dataset, event_type = PROTOCOL_DATASETS[name]
    say = progress or (lambda _message: None)
    started = time.perf_counter()
    with Store.open(":memory:") as store:
        say(f"loading {dataset}")
        loaded = load_dataset(store, dataset, path, datasets_root=datasets_root, now=now)
        if name == "online-retail":
            protocol = RetailProtocol() if models is None else RetailProtocol(recommenders=tuple(models))
            report = evaluate_retail(store, protocol, progress=say)
        else:
            say(f"running the {name} protocol")
            result = evaluate_topn(_interactions(store, event_type), name, models=models)
            report = {
                "protocol": name,
                "dataset": dataset,
                "results": result.metrics,
                "params": {m: r.params for m, r in result.models.items()},
                "fit_seconds": {m: r.fit_seconds for m, r in result.models.items()},
                "tuning_seconds": {m: r.tuning_seconds for m, r in result.models.items()},
                "sizes": result.sizes,
                # what validation chose from: every trial's parameters and score (the tests check it)
                "validation": {
                    m: {"metric": r.tuning.metric, "score": r.tuning.score,
                        "trials": [{"params": t.params, "score": t.metrics[r.tuning.metric]} for t in r.tuning.trials]}
                    for m, r in result.models.items()
                },
            }
    report["source"] = str(loaded.path)
    report["seconds"] = time.perf_counter() - started
    return report
