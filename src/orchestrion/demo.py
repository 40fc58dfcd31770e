"""The main job on the embedded defaults (grows with each issue).

Today: load the shipped Online Retail sample (``data/samples/online-retail-sample.csv.gz``, CC BY
4.0) into the store and return its stats. Loading is idempotent, so running the demo again stores
nothing new.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Final

from orchestrion.config import Settings
from orchestrion.errors import NotFoundError
from orchestrion.stats import store_stats
from orchestrion.store import Store, utcnow

__all__ = ["SAMPLE_NAME", "run_demo", "sample_path"]

SAMPLE_NAME: Final = "online-retail-sample.csv.gz"


def sample_path(settings: Settings) -> Path:
    """The shipped sample: under ``HOME/data/samples`` (an installed copy) or in this checkout."""
    candidates = [
        settings.home / "data" / "samples" / SAMPLE_NAME,
        Path(__file__).resolve().parents[2] / "data" / "samples" / SAMPLE_NAME,
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise NotFoundError(
        f"the shipped sample {SAMPLE_NAME} is in none of {', '.join(map(str, candidates))}; "
        "run from the orchestrion checkout, copy data/samples/ under ORCHESTRION_HOME, or pass --sample FILE"
    )


def run_demo(settings: Settings, sample: str | None = None, *, now: datetime | None = None) -> dict[str, Any]:
    """Load ``sample`` (an Online Retail CSV; default the shipped one) and return the store's stats."""
    from orchestrion.datasets import load_dataset

    path = Path(sample) if sample else sample_path(settings)
    with Store.open(settings.database_path) as store:
        load_dataset(store, "online-retail", path, now=now or utcnow(), chunk_rows=settings.bulk_chunk_rows)
        return store_stats(store.con)
