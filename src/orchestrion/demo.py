"""The main job on the embedded defaults (grows with each issue)."""

from __future__ import annotations

from typing import Any

from orchestrion.config import Settings
from orchestrion.stats import store_stats
from orchestrion.store import Store

__all__ = ["run_demo"]


def run_demo(settings: Settings, sample: str | None = None) -> dict[str, Any]:
    """Open the store and return its stats (the sample loading lands with the dataset loaders)."""
    with Store.open(settings.database_path) as store:
        return store_stats(store.con)
