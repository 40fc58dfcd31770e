"""Hold-out splits of interaction rows, per user, returned as boolean masks (True = held out).

Per user with n rows, ``min(n − 1, floor(fraction · n + 0.5))`` rows are held out: rounded half
up, and never all of them, so every user keeps at least one training row. Everything is
vectorised: one sort over all rows, no loop over users.

>>> users = np.array(["u", "u", "u", "u", "v"])
>>> held = random_split(users, 0.5, seed=42)
>>> int(held[:4].sum()), bool(held[4])
(2, False)
>>> temporal_split(users, np.array([4, 1, 3, 2, 9]), 0.25).tolist()
[True, False, False, False, False]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from orchestrion.errors import UsageError

__all__ = ["Fold", "cutoff_split", "held_out_counts", "random_split", "temporal_split"]

Mask = npt.NDArray[np.bool_]


def _codes(users: npt.ArrayLike) -> npt.NDArray[np.int64]:
    arr = np.asarray(users)
    if arr.ndim != 1:
        raise UsageError(f"users must be one id per row (1-D), got shape {arr.shape}")
    if arr.dtype.kind == "O":
        arr = arr.astype(str)
    return np.unique(arr, return_inverse=True)[1].astype(np.int64).reshape(-1)


def held_out_counts(rows_per_user: npt.NDArray[np.int64], fraction: float) -> npt.NDArray[np.int64]:
    """How many of each user's rows a split holds out: ``min(n − 1, floor(fraction · n + 0.5))``."""
    if not 0.0 < fraction < 1.0:
        raise UsageError(f"a hold-out fraction must be between 0 and 1 (exclusive), got {fraction}")
    rounded = np.floor(fraction * rows_per_user + 0.5).astype(np.int64)
    capped: npt.NDArray[np.int64] = np.minimum(rounded, np.maximum(rows_per_user - 1, 0))
    return capped


def _hold_out_first(codes: npt.NDArray[np.int64], order: npt.NDArray[np.int64], fraction: float) -> Mask:
    """Hold out, per user, the first rows of ``order`` (which groups rows by user)."""
    counts = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(codes.size, dtype=np.int64)
    rank[order] = np.arange(codes.size) - starts[codes[order]]
    return rank < held_out_counts(counts, fraction)[codes]


def random_split(users: npt.ArrayLike, fraction: float, seed: int | np.random.Generator = 42) -> Mask:
    """Hold out a random ``fraction`` of each user's rows.

    ``seed`` is an int (a fresh ``numpy.random.default_rng(seed)``) or a Generator, so that
    successive splits (test, then validation inside the training part) draw from one stream.
    """
    codes = _codes(users)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    order = np.lexsort((rng.random(codes.size), codes))
    return _hold_out_first(codes, order, fraction)


def temporal_split(users: npt.ArrayLike, timestamps: npt.ArrayLike, fraction: float) -> Mask:
    """Hold out the latest ``fraction`` of each user's rows (equal times: the later row is later)."""
    codes = _codes(users)
    ts: npt.NDArray[Any] = np.asarray(timestamps)
    if ts.shape != codes.shape:
        raise UsageError(f"timestamps has {ts.size} values for {codes.size} rows")
    position = np.arange(codes.size)
    order = np.lexsort((-position, _descending(ts), codes))
    return _hold_out_first(codes, order, fraction)


def _descending(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """A key that sorts ``values`` latest first (works for numbers and datetime64)."""
    return -np.unique(values, return_inverse=True)[1].reshape(-1)


def cutoff_split(timestamps: npt.ArrayLike, cutoff: Any) -> Mask:
    """Hold out every row at or after ``cutoff`` (a global time split; users may vanish from train)."""
    return np.asarray(np.asarray(timestamps) >= cutoff, dtype=bool)


@dataclass(frozen=True, eq=False)
class Fold:
    """Training rows and held-out rows as parallel id/value arrays: one fit-and-score round.

    The models see only the training rows; the held-out rows are the relevant items.

    >>> fold = Fold.from_mask(np.array([1, 1, 2]), np.array(["a", "b", "a"]), np.ones(3), np.array([0, 1, 0], bool))
    >>> fold.train_items.tolist(), fold.held_out_items.tolist()
    (['a', 'a'], ['b'])
    """

    train_users: npt.NDArray[Any]
    train_items: npt.NDArray[Any]
    train_values: npt.NDArray[np.float64]
    held_out_users: npt.NDArray[Any]
    held_out_items: npt.NDArray[Any]

    @classmethod
    def from_mask(
        cls,
        users: npt.NDArray[Any],
        items: npt.NDArray[Any],
        values: npt.NDArray[Any],
        held_out: Mask,
    ) -> Fold:
        """Split parallel columns by a mask from one of the split functions."""
        keep = ~held_out
        return cls(users[keep], items[keep], values[keep].astype(np.float64), users[held_out], items[held_out])

    def inner(self, fraction: float, rng: np.random.Generator) -> Fold:
        """A fold carved out of this fold's training rows only (for validation)."""
        held = random_split(self.train_users, fraction, rng)
        return Fold.from_mask(self.train_users, self.train_items, self.train_values, held)
