"""The main job on the embedded defaults: the whole product on the shipped sample.

Load the shipped Online Retail sample (``data/samples/online-retail-sample.csv.gz``, CC BY 4.0)
into the store, run the nightly retrain for :data:`DEMO_DAY` (recommenders, repurchase model,
goal ranker), run the daily pipeline for that day (propose → rank → plan → execute → review →
deliver, offline planner) and return the store's stats, the runs and a few users' deliverables
with the outbox files to open. Every step is idempotent (the run ledger skips a finished day),
so running the demo again does nothing new.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any, Final

from orchestrion.config import Settings
from orchestrion.datasets import load_dataset
from orchestrion.delivery.channels import Effector
from orchestrion.delivery.rendering import main_action, status_text
from orchestrion.errors import NotFoundError
from orchestrion.ingest.stats import store_stats
from orchestrion.runs.daily import run_daily
from orchestrion.runs.retrain import run_retrain
from orchestrion.store import Store, utcnow

__all__ = ["DEMO_DAY", "SAMPLE_NAME", "demo_deliverables", "run_demo", "sample_path"]

SAMPLE_NAME: Final = "online-retail-sample.csv.gz"
DEMO_DAY: Final = date(2011, 11, 1)
"""A busy day of the sample (the pre-Christmas season): events before it are the history."""


def sample_path(settings: Settings) -> Path:
    """The shipped sample: under ``HOME/data/samples`` (an installed copy) or in this checkout."""
    candidates = [
        settings.home / "data" / "samples" / SAMPLE_NAME,
        Path(__file__).resolve().parents[3] / "data" / "samples" / SAMPLE_NAME,
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise NotFoundError(
        f"the shipped sample {SAMPLE_NAME} is in none of {', '.join(map(str, candidates))}; "
        "run from the orchestrion checkout, copy data/samples/ under ORCHESTRION_HOME, or pass --sample FILE"
    )


def demo_deliverables(store: Store, settings: Settings, day: date, users: int = 3) -> list[dict[str, Any]]:
    """The deliverables of ``day`` for the first ``users`` users that have some, with outbox files."""
    rows = store.con.execute(
        "SELECT user_id, deliverable_id, template, title, status, summary, error FROM deliverables "
        "WHERE date = ? AND user_id IN (SELECT DISTINCT user_id FROM deliverables WHERE date = ? ORDER BY 1 LIMIT ?) "
        "ORDER BY user_id, deliverable_id",
        [day, day, users],
    ).fetchall()
    found = []
    outbox = Effector(settings)
    for user_id, deliverable_id, template, title, status, summary, error in rows:
        where = outbox.outbox_paths({"user_id": user_id, "deliverable_id": deliverable_id, "date": day.isoformat()})
        files = [str(p) for p in where.values() if p.is_file()]
        found.append({"user_id": user_id, "deliverable_id": deliverable_id, "template": template, "title": title,
                      "status": status, "summary": summary, "files": files,
                      "status_text": status_text(status, error, main_action({"template": template}))})
    return found


def run_demo(
    settings: Settings, sample: str | None = None, *, now: datetime | None = None, day: date = DEMO_DAY
) -> dict[str, Any]:
    """Load ``sample`` (default the shipped one), retrain, run the daily pipeline for ``day``, and
    return ``{"stats", "runs", "deliverables"}``."""
    path = Path(sample) if sample else sample_path(settings)
    def clock() -> datetime:
        return now if now is not None else utcnow()

    with Store.open(settings.database_path, memory_limit=settings.duckdb_memory_limit) as store:
        load_dataset(store, "online-retail", path, now=clock(), chunk_rows=settings.bulk_chunk_rows)
        retrain = run_retrain(store, settings, day, clock=clock, trigger="demo")
        daily = run_daily(store, settings, day, clock=clock, trigger="demo")
        return {
            "stats": store_stats(store.con),
            "runs": [retrain.run.as_dict(), daily.run.as_dict() if daily.run else None],
            "deliverables": demo_deliverables(store, settings, day),
        }
