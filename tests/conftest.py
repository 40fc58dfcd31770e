"""Shared fixtures: a real in-memory store, and the real datasets (required in CI)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrion.store import Store

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
