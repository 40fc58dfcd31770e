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

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrion.store import Store

SLOW_FILES = frozenset({
    "test_api_reliability.py", "test_api_schema.py", "test_delivery_datasets.py", "test_evaluation_notebook.py",
    "test_offline_lastfm.py", "test_offline_movielens.py", "test_prompt_injection.py", "test_quickstart_notebook.py",
    "test_replay.py", "test_runs_reliability.py", "test_examples.py",
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


EVALUATION_NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "evaluation.ipynb"


@pytest.fixture(scope="session")
def evaluation_reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The reports of the three offline protocols, written by executing ``notebooks/evaluation.ipynb``
    once per session: the notebook test and the protocol tests read the same run, never a second one."""
    import nbformat
    from nbclient import NotebookClient

    for name in ("movielens-100k", "lastfm-hetrec-2k", "online-retail"):
        dataset_path(name)
    results = tmp_path_factory.mktemp("results")
    notebook = nbformat.read(EVALUATION_NOTEBOOK, as_version=4)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ORCHESTRION_RESULTS", str(results))
        NotebookClient(notebook, timeout=900, kernel_name="python3",
                       resources={"metadata": {"path": str(results)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 3  # one chart per protocol
    return {p: json.loads((results / p / "results.json").read_text()) for p in ("movielens", "lastfm", "online-retail")}
