from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from orchestrion.errors import NotFoundError
from orchestrion.training.versions import fingerprint, list_versions, model_version, promote, save_version

NOW = datetime(2024, 1, 2, 3, 4, 5)


def write(text: str):  # type: ignore[no-untyped-def]
    def writer(folder: Path) -> None:
        (folder / "weights.txt").write_text(text)
    return writer


def test_versions_promotion_and_metadata(tmp_path: Path) -> None:
    first = save_version(tmp_path, "als", write("one"), {"config": {"factors": 8}}, now=NOW)
    assert first.version == "v0001" and first.promoted  # the first version is promoted
    second = save_version(tmp_path, "als", write("two"), {"config": {"factors": 16}}, now=NOW)
    assert second.version == "v0002" and not second.promoted
    assert model_version(tmp_path, "als").version == "v0001"
    promote(tmp_path, "als", "v0002")
    current = model_version(tmp_path, "als")
    assert (current.path / "weights.txt").read_text() == "two"
    assert current.metadata["config"] == {"factors": 16}
    assert current.metadata["created_at"] == NOW.isoformat()
    assert {"python", "numpy", "duckdb"} <= set(current.metadata["libraries"])
    assert [v.version for v in list_versions(tmp_path)] == ["v0001", "v0002"]


def test_a_failed_save_leaves_no_version(tmp_path: Path) -> None:
    def broken(folder: Path) -> None:
        (folder / "partial").write_text("x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        save_version(tmp_path, "ease", broken, {}, now=NOW)
    assert list_versions(tmp_path, "ease") == []
    with pytest.raises(NotFoundError, match="orchestrion train ease"):
        model_version(tmp_path, "ease")


def test_fingerprint_changes_with_the_data() -> None:
    a = fingerprint(np.array([1, 2, 3]), np.array(["u1", "u2"]))
    assert a == fingerprint(np.array([1, 2, 3]), np.array(["u1", "u2"]))
    assert a != fingerprint(np.array([1, 2, 4]), np.array(["u1", "u2"]))
