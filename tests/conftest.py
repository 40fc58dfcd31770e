"""Shared fixtures: a real in-memory store, and the real datasets (required in CI); and the test tiers.

Tiers (markers registered in pyproject.toml) are assigned here, from what a test uses, so that a new
test file lands in the right tier without marking itself:

- ``datasets``: reads a real public dataset (imports ``dataset_path`` or uses ``evaluation_reports``);
- ``processes``: starts processes — a server or the CLI through ``tests/launcher.py``, ``subprocess``,
  a notebook kernel;
- ``browser``: drives Chromium (uses the ``browser`` fixture);
- ``slow``: a whole file known to take long (``SLOW_FILES``), a single long test (``SLOW_TESTS``),
  or a test marked ``slow`` itself.

``make test-fast`` (the dev loop) runs none of them; ``make test`` (CI) runs everything.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrion.store import Store

SLOW_FILES = frozenset({
    "test_api_reliability.py", "test_api_schema.py", "test_delivery_datasets.py", "test_evaluation_notebook.py",
    "test_prompt_injection.py", "test_quickstart_notebook.py", "test_replay.py", "test_runs_reliability.py",
    "test_examples.py",
})
# single tests that were the slowest of the fast tier (`make test-fast --durations`)
SLOW_TESTS = frozenset({
    "test_exploration_frequencies_match_the_logged_propensities", "test_policies_apply_to_the_next_run",
})


def _tiers(item: pytest.Item) -> set[str]:
    module = getattr(item, "module", None)
    names = vars(module) if module is not None else {}
    fixtures = set(getattr(item, "fixturenames", ()))
    tiers = set()
    if "dataset_path" in names or "evaluation_reports" in fixtures:
        tiers.add("datasets")
    launched = any(getattr(v, "__module__", None) == "launcher" for v in names.values())
    if launched or "subprocess" in names or "nbclient" in names or "evaluation_reports" in fixtures:
        tiers.add("processes")
    if "browser" in fixtures:
        tiers.add("browser")
    if item.path.name in SLOW_FILES or getattr(item, "originalname", item.name) in SLOW_TESTS:
        tiers.add("slow")
    return tiers


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for tier in sorted(_tiers(item)):
            item.add_marker(getattr(pytest.mark, tier))


DATASET_FOLDERS = {
    "movielens-100k": "ml-100k",
    "lastfm-hetrec-2k": "lastfm-hetrec-2k",
    "online-retail": "online-retail",
    "deskdrop": "deskdrop",
}


@pytest.fixture
def store() -> Iterator[Store]:
    """A migrated in-memory DuckDB store."""
    with Store.open(":memory:") as s:
        yield s


def dataset_path(name: str) -> Path:
    """The folder of a real dataset; fails (CI) or skips (laptop) when it is missing."""
    root = os.environ.get("ORCHESTRION_DATASETS")
    required = os.environ.get("ORCHESTRION_REQUIRE_DATASETS") == "1"
    path = Path(root) / DATASET_FOLDERS[name] if root else None
    if path is None or not path.is_dir():
        message = f"dataset {name} not found (set ORCHESTRION_DATASETS to the datasets folder)"
        if required:
            pytest.fail(message)
        pytest.skip(message)
    return path
