"""Loaders for the real public datasets that orchestrion is tested and evaluated on.

Each module reads one dataset as published (no conversion step, no copy in the repository) and
maps it onto orchestrion's events, items and users; :func:`load_dataset` finds the files and
writes them in one transaction. Loading is idempotent: event ids come from the rows' content, so
loading the same files again stores nothing new.

>>> sorted(DATASETS)
['deskdrop', 'lastfm-hetrec-2k', 'movielens-100k', 'online-retail']
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Final

import polars as pl

from orchestrion.datasets import deskdrop, lastfm, movielens, online_retail
from orchestrion.datasets.loading import Dataset, LoadResult, Progress, write_frames
from orchestrion.errors import DatasetNotFoundError, IngestError, NotFoundError
from orchestrion.store import Store, utcnow

__all__ = ["DATASETS", "Dataset", "LoadResult", "Progress", "load_dataset", "locate"]

DATASETS: Final[Mapping[str, Dataset]] = MappingProxyType(
    {d.name: d for d in (movielens.DATASET, lastfm.DATASET, online_retail.DATASET, deskdrop.DATASET)}
)


def locate(name: str, path: Path | str | None = None, *, datasets_root: Path | None = None) -> Path:
    """Where dataset ``name`` is read from: ``path`` if given, else ``datasets_root/<folder>``.

    Raises :class:`~orchestrion.errors.DatasetNotFoundError` naming the official download page,
    because the datasets' licences keep them out of the repository: a person has to fetch them.
    """
    dataset = _dataset(name)
    if path is not None:
        found = Path(path).expanduser().absolute()
        if not found.exists():
            # --path names a folder or one of the dataset's files: say which it looked like
            raise dataset.missing(found, "file" if found.suffix else "folder")
        return found
    if datasets_root is None:
        raise DatasetNotFoundError(
            f"dataset {name}: no location; set ORCHESTRION_DATASETS to the folder holding "
            f"{dataset.folder}/ or pass --path; download it from {dataset.download_url}"
        )
    found = Path(datasets_root).expanduser().absolute() / dataset.folder
    if not found.is_dir():
        raise dataset.missing(found)
    return found


def load_dataset(
    store: Store,
    name: str,
    path: Path | str | None = None,
    *,
    datasets_root: Path | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
    chunk_rows: int = 200_000,
) -> LoadResult:
    """Load dataset ``name`` into ``store``; a second load of the same files stores nothing new.

    ``now`` (naive UTC) stamps ``received_at`` and new users; ``datasets_root`` is usually
    ``settings.datasets`` (``ORCHESTRION_DATASETS``).

    >>> load_dataset(Store.open(":memory:"), "online-retail", "/nowhere")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    orchestrion.errors.DatasetNotFoundError: dataset online-retail: folder /nowhere not found; ...
    """
    started = time.perf_counter()
    dataset = _dataset(name)
    found = locate(name, path, datasets_root=datasets_root)
    if progress is not None:
        progress("reading", 0, 0)
    try:
        frames = dataset.read(found)  # the whole dataset is read before anything is written
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, pl.exceptions.PolarsError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise IngestError(
            f"dataset {name}: cannot read {found} ({first}); nothing was stored: the files may be "
            f"truncated or re-encoded, download them again from {dataset.download_url}"
        ) from exc
    return write_frames(
        store,
        dataset,
        frames,
        path=found,
        now=now or utcnow(),
        chunk_rows=chunk_rows,
        progress=progress,
        started=started,
    )


def _dataset(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise NotFoundError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}") from None
