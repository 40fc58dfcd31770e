"""Shared fixtures: a real in-memory store, and the real datasets (required in CI); and the test tiers.

Tiers (markers registered in pyproject.toml) are assigned here, from what a test uses, so that a new
test file lands in the right tier without marking itself:

- ``datasets``: reads a real public dataset (imports ``dataset_path`` or uses ``evaluation_reports``);
- ``processes``: starts processes — a server or the CLI through ``tests/launcher.py``, ``subprocess``,
  a notebook kernel;
- ``browser``: drives Chromium (uses the ``browser`` fixture);
- ``slow``: a whole file known to take long (``SLOW_FILES``), a single long test (``SLOW_TESTS``),
  or a test marked ``slow`` itself.

``make test-fast`` (the dev loop) runs none of them; ``make test`` (CI) runs everything, on two
workers (pytest-xdist) that each take whole files, the heaviest tiers first (see
``pytest_collection_modifyitems``): a file's tests share its module fixtures (a server, a notebook's
run) on one worker, so no fixture is built twice — an expensive fixture is therefore defined in, or
used by, one file only (``evaluation_reports`` in ``test_evaluation_notebook.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Under pytest-xdist (`make test`) the workers already fill the cores; the models' own thread pools
# (implicit's OpenMP, OpenBLAS) on top of them only made the processes wait on each other (the
# MovieLens and Last.fm protocols: the same figures for a fifth less CPU on one thread). One thread
# each, in the workers and in every process a test starts (servers, CLIs, notebook kernels inherit
# the environment; numpy is not loaded yet when this runs); set one of these variables to choose otherwise.
if "PYTEST_XDIST_WORKER" in os.environ:
    for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, "1")

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


def _weight(item: pytest.Item) -> int:
    """0 for a slow test, 1 for one of the other marked tiers, 2 for the fast tier."""
    if item.get_closest_marker("slow") is not None:
        return 0
    return 1 if any(item.get_closest_marker(t) is not None for t in ("processes", "browser", "datasets")) else 2


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for tier in sorted(_tiers(item)):
            item.add_marker(getattr(pytest.mark, tier))
    # The heaviest files first, each file's tests together and in their order: `make test` hands
    # whole files to its workers in this order (-n 2 --dist loadfile --no-loadscope-reorder), so the
    # long ones start at once and the many short ones fill in at the end, instead of a notebook or
    # a replay starting last on one worker while the other has nothing left to do.
    weight: dict[Path, int] = {}
    for item in items:
        weight[item.path] = min(weight.get(item.path, 2), _weight(item))
    items.sort(key=lambda item: weight[item.path])


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
