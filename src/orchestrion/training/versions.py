"""The model registry under ``models/``: one versioned folder per trained artifact.

Layout::

    models/<kind>/v0001/metadata.json   type, config, dataset, data fingerprint, metrics,
                        ...artifacts    created_at, library versions
    models/<kind>/PROMOTED              the version the rest of the system uses

A version is written into a temporary folder and renamed into place, so a crash never leaves a
half-written version; promotion replaces ``PROMOTED`` atomically. Loading reads files only —
it never retrains.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from orchestrion.errors import NotFoundError, UsageError

__all__ = [
    "ModelVersion",
    "fingerprint",
    "library_versions",
    "list_versions",
    "model_version",
    "promote",
    "save_version",
]

_VERSION = re.compile(r"v(\d{4,})")
_LIBRARIES = ("orchestrion", "numpy", "scipy", "implicit", "scikit-learn", "duckdb", "polars")


@dataclass(frozen=True)
class ModelVersion:
    """One saved model version and its metadata."""

    kind: str
    version: str
    path: Path
    metadata: dict[str, Any]
    promoted: bool


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that shape a model, saved with every artifact."""
    found = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            found[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return found


def fingerprint(*arrays: npt.ArrayLike) -> str:
    """A short stable hash of the training data (e.g. a CSR matrix's arrays and its vocabularies)."""
    digest = hashlib.sha256()
    for array in arrays:
        values = np.ascontiguousarray(np.asarray(array))
        digest.update(str(values.dtype).encode())
        digest.update(str(values.shape).encode())
        digest.update(values.astype(str).tobytes() if values.dtype.kind in "OU" else values.tobytes())
    return digest.hexdigest()[:16]


def _kind_dir(root: Path, kind: str) -> Path:
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", kind):
        raise UsageError(f"model kind {kind!r} must be lower-case letters, digits, - or _")
    return root / kind


def _versions(kind_dir: Path) -> list[str]:
    if not kind_dir.is_dir():
        return []
    found = [p.name for p in kind_dir.iterdir() if p.is_dir() and _VERSION.fullmatch(p.name)]
    return sorted(found, key=lambda v: int(v[1:]))


def _promoted(kind_dir: Path) -> str | None:
    marker = kind_dir / "PROMOTED"
    return marker.read_text().strip() if marker.is_file() else None


def save_version(
    root: Path,
    kind: str,
    write_artifacts: Callable[[Path], None],
    metadata: dict[str, Any],
    *,
    now: datetime,
    promote_it: bool = False,
    auto_promote_first: bool = True,
) -> ModelVersion:
    """Save a new version of ``kind``: ``write_artifacts(folder)`` writes the files, then the
    metadata (with created_at and library versions added) is written and the folder renamed
    into place. The first version of a kind is promoted automatically unless
    ``auto_promote_first`` is False (for models promoted only when they beat the current policy)."""
    kind_dir = _kind_dir(root, kind)
    kind_dir.mkdir(parents=True, exist_ok=True)
    existing = _versions(kind_dir)
    number = int(existing[-1][1:]) + 1 if existing else 1
    version = f"v{number:04d}"
    meta = {
        "type": kind,
        "version": version,
        **metadata,
        "created_at": now.isoformat(),
        "libraries": library_versions(),
    }
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=kind_dir))
    try:
        write_artifacts(staging)
        (staging / "metadata.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
        staging.rename(kind_dir / version)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if promote_it or (not existing and auto_promote_first):
        promote(root, kind, version)
    return model_version(root, kind, version)


def promote(root: Path, kind: str, version: str) -> ModelVersion:
    """Make ``version`` the one the system uses (atomic replace of ``PROMOTED``)."""
    kind_dir = _kind_dir(root, kind)
    if version not in _versions(kind_dir):
        raise NotFoundError(
            f"no {kind} version {version!r} in {kind_dir}; see `orchestrion models list {kind}`"
        )
    fd, tmp = tempfile.mkstemp(dir=kind_dir, prefix=".PROMOTED-")
    with os.fdopen(fd, "w") as handle:
        handle.write(version)
    os.replace(tmp, kind_dir / "PROMOTED")
    return model_version(root, kind, version)


def model_version(root: Path, kind: str, version: str | None = None) -> ModelVersion:
    """A saved version (default: the promoted one). Raises NotFoundError saying how to train one."""
    kind_dir = _kind_dir(root, kind)
    promoted = _promoted(kind_dir)
    chosen = version or promoted
    if chosen is None or not (kind_dir / chosen / "metadata.json").is_file():
        what = f"version {chosen}" if chosen else "promoted version"
        raise NotFoundError(f"no {kind} {what} under {root}; train one with `orchestrion train {kind}`")
    path = kind_dir / chosen
    meta = json.loads((path / "metadata.json").read_text())
    return ModelVersion(kind, chosen, path, meta, chosen == promoted)


def list_versions(root: Path, kind: str | None = None) -> list[ModelVersion]:
    """Every saved version, by kind then version number."""
    if not root.is_dir():
        return []
    kinds = [kind] if kind else sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    return [model_version(root, k, v) for k in kinds for v in _versions(_kind_dir(root, k))]
