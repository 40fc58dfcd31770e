"""The nightly retrain: recommenders, the repurchase model and the goal ranker, through the run ledger.

For partition D everything trains on events (and feedback) before D 00:00 UTC:

* one recommender per domain with events, the domain's default from the goal context config
  (EASE for movies, item-kNN for news and retail, ALS for music), promoted: it is the same
  configuration refitted on newer data;
* the repurchase model when the store has purchases, promoted likewise;
* the goal ranker on all feedback, promoted **only** when its off-policy estimate beats the
  current policy's (the rule of :func:`orchestrion.training.fits.train_ranker`).

The run key is (``retrain``, D): a second call for the same night does nothing, ``force`` trains
again. A failure in one model is recorded in the run's counts and does not stop the others; the
run fails if any model failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from orchestrion.config import Settings
from orchestrion.errors import NotEnoughDataError, OrchestrionError
from orchestrion.goals import ContextConfig
from orchestrion.proposals.day import day_start
from orchestrion.runs.records import Claim, Run, RunKey, claim_run, finish_run
from orchestrion.store import Store, utcnow
from orchestrion.training.fits import train_ranker, train_recommender, train_repurchase

__all__ = ["RetrainReport", "run_retrain", "train_all"]


@dataclass(frozen=True)
class RetrainReport:
    """The retrain run and what each model did."""

    day: date
    state: Literal["new", "resumed", "done"]
    run: Run
    models: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"date": self.day.isoformat(), "state": self.state, "run": self.run.as_dict(), "models": self.models}


def _domains(store: Store, as_of: datetime) -> list[str]:
    rows = store.con.execute(
        "SELECT DISTINCT domain FROM events WHERE ts < ? AND domain IS NOT NULL ORDER BY 1", [as_of]
    ).fetchall()
    return [str(r[0]) for r in rows]


def train_all(store: Store, settings: Settings, day: date, *, now: datetime) -> dict[str, Any]:
    """Train every model for ``day`` (see the module docstring); returns what each one did."""
    as_of = day_start(day)
    context = ContextConfig()
    outcome: dict[str, Any] = {}

    def attempt(name: str, work: Callable[[], dict[str, Any]]) -> None:
        started = time.perf_counter()
        try:
            outcome[name] = {"ok": True, **work()}
        except NotEnoughDataError as exc:  # nothing to learn from yet: the model in use stays
            outcome[name] = {"ok": True, "version": None, "promoted": False,
                             "note": f"{exc}; the model in use stays"}
        except OrchestrionError as exc:
            outcome[name] = {"ok": False, "error": str(exc)}
        outcome[name]["seconds"] = round(time.perf_counter() - started, 2)

    for domain in _domains(store, as_of):
        name = context.recommenders.get(domain, context.fallback_recommender)

        def fit_recommender(name: str = name, domain: str = domain) -> dict[str, Any]:
            result = train_recommender(
                store, settings.models_path, name, as_of=as_of, now=now, domain=domain,
                config=context.recommender_params.get(name), promote=True,
            )
            return {"version": result.version.version, "promoted": result.version.promoted}

        attempt(f"{name}-{domain}", fit_recommender)

    purchases = store.con.execute("SELECT count(*) FROM events WHERE type = 'purchase' AND ts < ?", [as_of]).fetchall()
    if purchases[0][0]:

        def fit_repurchase() -> dict[str, Any]:
            result = train_repurchase(store, settings.models_path, as_of=as_of, now=now, promote=True)
            return {"version": result.version.version, "promoted": result.version.promoted}

        attempt("repurchase", fit_repurchase)

    def fit_ranker() -> dict[str, Any]:
        result = train_ranker(store, settings.models_path, now=now)
        summary = result.as_dict()
        return {"version": summary["version"], "promoted": summary["promoted"], "note": summary.get("note")}

    attempt("ranker", fit_ranker)
    return outcome


def run_retrain(
    store: Store,
    settings: Settings,
    day: date,
    *,
    clock: Callable[[], datetime] = utcnow,
    force: bool = False,
    trigger: str = "cli",
    claimed: Claim | None = None,
) -> RetrainReport:
    """Retrain for ``day`` once (see the module docstring); ``claimed``: a claim already made."""
    key = RunKey("retrain", day)
    claim = claimed or claim_run(store, key, now=clock(), force=force, trigger=trigger)
    if claim.state == "done":
        return RetrainReport(day, "done", claim.run, dict(claim.run.counts.get("models", {})))
    started = time.perf_counter()
    try:
        models = train_all(store, settings, day, now=clock())
    except BaseException as exc:
        status: Literal["failed", "interrupted"] = (
            "interrupted" if isinstance(exc, KeyboardInterrupt | SystemExit) else "failed"
        )
        finish_run(store, claim.run.run_id, status, now=clock(), error=f"{type(exc).__name__}: {exc}",
                   seconds=time.perf_counter() - started)
        raise
    failed = [name for name, what in models.items() if not what["ok"]]
    run = finish_run(
        store, claim.run.run_id, "failed" if failed else "succeeded", now=clock(),
        error=f"failed: {', '.join(failed)}" if failed else None,
        counts={"models": models, "trained": len(models) - len(failed), "promoted": sum(
            bool(m.get("promoted")) for m in models.values())},
        seconds=time.perf_counter() - started,
    )
    return RetrainReport(day, claim.state, run, models)
