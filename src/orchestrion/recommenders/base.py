"""The one recommender interface, its data types, and the shared scoring, ranking and saving.

A model sees a user × item matrix and two vocabularies, never a database connection. Each
algorithm only says how to fit and how to score a batch; this module owns everything callers
see: id ↔ index mapping, exclusions, top-n with ``argpartition``, the unknown-user fallback and
the on-disk format.

Decisions every model shares (the contract test checks each one):

* **Unknown users** (not in the training vocabulary) get the training popularity ranking, and
  ``Recommendations.known`` is False for their row, so a caller can drop or label them.
* **Unknown items score as missing, not as a crash**: an unknown id in ``similar_items`` gives an
  empty row (``known`` False); unknown ids in ``exclude_items`` are ignored.
* **Missing scores** (an item a model cannot score, e.g. no neighbour in the user's history) are
  never recommended; rows are padded to ``n`` with index −1 and score NaN.
* **Ties** among the returned items are ordered by item index; which of several items tied at
  the cut-off makes the list is deterministic but unspecified. Rankings are reproducible.

Saved model layout (``save(dir)``): ``model.json`` (the recommender name, format version and
the pydantic config as JSON), ``users.npy`` / ``items.npy`` (vocabulary ids in index order),
``seen.npz`` (the training matrix) and ``state.npz`` (the model's arrays); everything is read
back with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Final, Generic, Self, TypeVar

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, ValidationError

from orchestrion.errors import NotFoundError, UsageError

__all__ = [
    "FORMAT_VERSION",
    "Interactions",
    "Recommendations",
    "Recommender",
    "RecommenderConfig",
    "Vocabulary",
]

FORMAT_VERSION: Final = 1
MODEL_FILE: Final = "model.json"
# Rows scored per batch are chosen so one dense float32 score block stays near 64 MiB.
_BATCH_BYTES: Final = 64 * 1024 * 1024

IdArray = npt.NDArray[Any]
IndexArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]


def _as_ids(values: Iterable[Any] | npt.ArrayLike) -> IdArray:
    """Ids as a 1-D int64 or unicode array; floats are refused (ids read as floats lose digits)."""
    arr = np.asarray(values if not isinstance(values, str | bytes) else [values])
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.size == 0:
        return arr.astype(np.int64) if arr.dtype.kind in "fiub" else arr.astype(str)
    kind = arr.dtype.kind
    if kind in "iu":
        return arr.astype(np.int64, copy=False)
    if kind == "U":
        return arr
    if kind == "O":
        if all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in arr.tolist()):
            return arr.astype(np.int64)
        if all(isinstance(v, str) for v in arr.tolist()):
            return arr.astype(str)
    raise UsageError(
        f"ids must all be integers or all be strings, got dtype {arr.dtype} (e.g. {arr[:3].tolist()}); "
        "read id columns as int64 or strings, never as floats"
    )


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """Ids ↔ row/column indices, kept next to a model's arrays.

    >>> v = Vocabulary.from_ids(["b", "a", "c"])
    >>> v.index(["c", "z", "b"]).tolist()
    [2, -1, 0]
    >>> v.ids[[1, 2]].tolist()
    ['a', 'c']
    """

    ids: IdArray
    _order: IndexArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ids = _as_ids(self.ids)
        order = np.argsort(ids, kind="stable").astype(np.int64)
        if ids.size > 1 and np.any(ids[order[1:]] == ids[order[:-1]]):
            dup = ids[order[1:]][ids[order[1:]] == ids[order[:-1]]][0]
            raise UsageError(f"vocabulary ids must be unique; {dup!r} appears more than once")
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "_order", order)

    @classmethod
    def from_ids(cls, ids: Iterable[Any] | npt.ArrayLike) -> Vocabulary:
        """A vocabulary whose index ``i`` is ``ids[i]``; ids must be unique."""
        return cls(_as_ids(ids))

    @classmethod
    def encode(cls, values: Iterable[Any] | npt.ArrayLike) -> tuple[Vocabulary, IndexArray]:
        """The sorted vocabulary of ``values`` (repeats allowed) and each value's index.

        >>> vocab, codes = Vocabulary.encode([30, 10, 30])
        >>> vocab.ids.tolist(), codes.tolist()
        ([10, 30], [1, 0, 1])
        """
        uniques, codes = np.unique(_as_ids(values), return_inverse=True)
        return cls(uniques), codes.astype(np.int64).reshape(-1)

    def __len__(self) -> int:
        return int(self.ids.size)

    def index(self, ids: Iterable[Any] | npt.ArrayLike) -> IndexArray:
        """The index of each id, −1 for ids not in the vocabulary (vectorised, never raises for
        an unknown id; an id of another type, e.g. a string in an integer vocabulary, is unknown)."""
        query = np.asarray(ids if not isinstance(ids, str | bytes) else [ids]).reshape(-1)
        if query.size == 0 or self.ids.size == 0:
            return np.full(query.size, -1, dtype=np.int64)
        try:
            query = _as_ids(query)
        except UsageError:
            return np.full(query.size, -1, dtype=np.int64)
        if (query.dtype.kind == "U") != (self.ids.dtype.kind == "U"):
            return np.full(query.size, -1, dtype=np.int64)
        sorted_ids = self.ids[self._order]
        pos = np.searchsorted(sorted_ids, query).clip(0, sorted_ids.size - 1)
        found = sorted_ids[pos] == query
        return np.where(found, self._order[pos], -1).astype(np.int64)


@dataclass(frozen=True, eq=False)
class Interactions:
    """A user × item CSR matrix of float32 weights with its two vocabularies.

    >>> x = Interactions.from_columns(["u1", "u1", "u2"], ["a", "b", "a"])
    >>> x.matrix.shape, x.users.ids.tolist(), x.items.ids.tolist()
    ((2, 2), ['u1', 'u2'], ['a', 'b'])
    """

    matrix: Any  # scipy.sparse.csr_matrix, users × items, float32, canonical (sorted, no duplicates)
    users: Vocabulary
    items: Vocabulary

    def __post_init__(self) -> None:
        if not sp.issparse(self.matrix):
            raise UsageError("Interactions.matrix must be a scipy.sparse matrix (users × items)")
        matrix = sp.csr_matrix(self.matrix, dtype=np.float32)
        matrix.sum_duplicates()
        matrix.sort_indices()
        if matrix.shape != (len(self.users), len(self.items)):
            raise UsageError(
                f"matrix shape {matrix.shape} does not match the vocabularies "
                f"({len(self.users)} users × {len(self.items)} items)"
            )
        if not np.all(np.isfinite(matrix.data)):
            raise UsageError("interaction weights must be finite numbers; drop or fix NaN/inf values")
        object.__setattr__(self, "matrix", matrix)

    @classmethod
    def from_columns(
        cls,
        user_ids: Iterable[Any] | npt.ArrayLike,
        item_ids: Iterable[Any] | npt.ArrayLike,
        weights: npt.ArrayLike | None = None,
    ) -> Interactions:
        """Build from parallel columns; repeated (user, item) pairs are summed; weights default to 1."""
        users, rows = Vocabulary.encode(user_ids)
        items, cols = Vocabulary.encode(item_ids)
        if rows.size != cols.size:
            raise UsageError(f"user_ids has {rows.size} values but item_ids has {cols.size}")
        data = np.ones(rows.size, np.float32) if weights is None else np.asarray(weights, np.float32)
        if data.shape != rows.shape:
            raise UsageError(f"weights has {data.size} values but there are {rows.size} interactions")
        matrix = sp.csr_matrix((data, (rows, cols)), shape=(len(users), len(items)), dtype=np.float32)
        return cls(matrix, users, items)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.users), len(self.items))


@dataclass(frozen=True, eq=False)
class Recommendations:
    """Top-n answers, one row per query (a user for ``recommend``, an item for ``similar_items``).

    ``indices`` (int64, −1 = padding) and ``scores`` (float32, NaN = padding) have shape
    queries × n, best first; ``item_ids`` holds the same answers as vocabulary ids (padding is
    ``""`` for string ids, −1 for integer ids: use ``mask``). ``known`` is False for a query
    missing from the training data (an unknown user gets the popularity fallback, an unknown
    item an empty row).
    """

    query_ids: IdArray
    item_ids: IdArray
    indices: IndexArray
    scores: FloatArray
    known: npt.NDArray[np.bool_]

    @property
    def mask(self) -> npt.NDArray[np.bool_]:
        """True where a slot holds a real answer rather than padding."""
        return self.indices >= 0

    def row(self, position: int) -> list[tuple[Any, float]]:
        """Query ``position``'s answers as ``(item_id, score)`` pairs, padding left out."""
        keep = self.mask[position]
        return list(zip(self.item_ids[position][keep].tolist(), self.scores[position][keep].tolist(), strict=True))


class RecommenderConfig(BaseModel):
    """Base of every model config: frozen, no unknown keys, values round-trip through JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid")


ConfigT = TypeVar("ConfigT", bound=RecommenderConfig)


def pack_csr(prefix: str, matrix: Any) -> dict[str, npt.NDArray[Any]]:
    """A CSR matrix as plain arrays for ``state.npz`` (no pickling)."""
    m = sp.csr_matrix(matrix)
    return {
        f"{prefix}_data": m.data,
        f"{prefix}_indices": m.indices,
        f"{prefix}_indptr": m.indptr,
        f"{prefix}_shape": np.asarray(m.shape, dtype=np.int64),
    }


def unpack_csr(prefix: str, state: Mapping[str, npt.NDArray[Any]]) -> Any:
    """The CSR matrix stored by :func:`pack_csr`."""
    shape = tuple(int(s) for s in state[f"{prefix}_shape"])
    return sp.csr_matrix((state[f"{prefix}_data"], state[f"{prefix}_indices"], state[f"{prefix}_indptr"]), shape=shape)


def sparse_scores(product: Any) -> FloatArray:
    """A sparse score block as dense float32, structural zeros as −inf (missing, not zero)."""
    product = sp.csr_matrix(product)
    dense = np.full(product.shape, -np.inf, dtype=np.float32)
    rows = np.repeat(np.arange(product.shape[0]), np.diff(product.indptr))
    dense[rows, product.indices] = product.data
    return dense


def _top_n(scores: FloatArray, n: int) -> tuple[IndexArray, FloatArray]:
    """Best-first top ``n`` of each row; −inf/NaN entries become padding (−1, NaN).

    ``scores`` is overwritten (NaN → −inf): callers hand in a block they own.
    """
    rows, cols = scores.shape
    out_idx = np.full((rows, n), -1, dtype=np.int64)
    out_scores = np.full((rows, n), np.nan, dtype=np.float32)
    if rows == 0 or cols == 0:
        return out_idx, out_scores
    scores[np.isnan(scores)] = -np.inf
    finite = np.isfinite(scores)
    alive = np.flatnonzero(finite.any(axis=0))
    if alive.size == 0:
        return out_idx, out_scores
    if alive.size < 0.9 * cols:
        # Items nobody in the block can get (e.g. not modelled by a pruned EASE) are dropped
        # before selecting, and the answers mapped back to catalogue indices.
        sub_idx, sub_scores = _top_n(scores[:, alive], n)
        return np.where(sub_idx >= 0, alive[np.maximum(sub_idx, 0)], -1), sub_scores
    if np.count_nonzero(finite) <= scores.size // 4:
        _top_n_sparse(scores, finite, out_idx, out_scores)
        return out_idx, out_scores
    take = min(n, cols)
    if take < cols:
        # O(items) selection per row; only the selected ``take`` columns are sorted.
        part = np.argpartition(scores, cols - take, axis=1)[:, cols - take :]
    else:
        part = np.broadcast_to(np.arange(cols), (rows, cols)).copy()
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    best = np.take_along_axis(part, order, axis=1)
    best_scores = np.take_along_axis(part_scores, order, axis=1)
    valid = np.isfinite(best_scores)
    out_idx[:, :take] = np.where(valid, best, -1)
    out_scores[:, :take] = np.where(valid, best_scores, np.nan)
    return out_idx, out_scores


def _top_n_sparse(
    scores: FloatArray, finite: npt.NDArray[np.bool_], out_idx: IndexArray, out_scores: FloatArray
) -> None:
    """Top-n when most entries are missing: sort only the scored entries.

    ``argpartition`` slows down ~10× on rows that are mostly one repeated value (−inf), which is
    what item-kNN and pruned EASE produce; sorting the few finite entries is cheaper.
    """
    row, col = np.nonzero(finite)  # row-major: ascending column within each row
    value = scores[row, col]
    # Two stable sorts (best score first, then by row) keep ties in column order.
    order = np.argsort(-value, kind="stable")
    order = order[np.argsort(row[order], kind="stable")]
    row, col, value = row[order], col[order], value[order]
    starts = np.searchsorted(row, np.arange(scores.shape[0]))
    rank = np.arange(row.size) - starts[row]
    keep = rank < out_idx.shape[1]
    out_idx[row[keep], rank[keep]] = col[keep]
    out_scores[row[keep], rank[keep]] = value[keep]


class Recommender(ABC, Generic[ConfigT]):
    """Fit on :class:`Interactions`, then rank items for users and items for items.

    Subclasses set ``name`` and ``config_type`` and implement ``_fit``, ``_score_users``,
    ``_score_items``, ``_state`` and ``_restore``; everything else is shared.

    >>> from orchestrion.recommenders import make_recommender
    >>> x = Interactions.from_columns(["u1", "u1", "u2", "u3"], ["a", "b", "a", "c"])
    >>> model = make_recommender("popularity").fit(x)
    >>> model.recommend(["u2", "new"], n=2).row(0)
    [('b', 1.0), ('c', 1.0)]
    >>> model.recommend(["new"], n=1).known.tolist()
    [False]
    """

    name: ClassVar[str]
    config_type: ClassVar[type[RecommenderConfig]]
    #: False for models that give every user the same ranking (popularity).
    personalised: ClassVar[bool] = True

    def __init__(self, config: ConfigT | None = None) -> None:
        self.config: ConfigT = config if config is not None else self.config_type()  # type: ignore[assignment]
        if not isinstance(self.config, self.config_type):
            raise UsageError(f"{self.name} takes a {self.config_type.__name__}, got {type(self.config).__name__}")
        self._seen: Any = None
        self._users: Vocabulary | None = None
        self._items: Vocabulary | None = None
        self._popularity: FloatArray | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    # -- what each algorithm implements ------------------------------------------------------------

    @abstractmethod
    def _fit(self, matrix: Any) -> None:
        """Learn from the users × items CSR matrix (float32, canonical)."""

    @abstractmethod
    def _score_users(self, rows: IndexArray, history: Any) -> FloatArray:
        """Dense float32 scores (len(rows) × items) for known users; −inf = cannot score.

        Returns a new array: the caller overwrites it (exclusions) without copying.
        """

    @abstractmethod
    def _score_items(self, items: IndexArray) -> FloatArray:
        """Dense float32 similarity of each query item to every item; −inf = no similarity."""

    @abstractmethod
    def _state(self) -> dict[str, npt.NDArray[Any]]:
        """The fitted arrays to save (plain numpy arrays only)."""

    @abstractmethod
    def _restore(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        """Set the fitted arrays from what :meth:`_state` returned."""

    # -- shared behaviour -----------------------------------------------------------------------------

    @property
    def is_fitted(self) -> bool:
        return self._seen is not None

    @property
    def users(self) -> Vocabulary:
        """The training users' vocabulary."""
        self._require_fitted()
        assert self._users is not None
        return self._users

    @property
    def items(self) -> Vocabulary:
        """The training items' vocabulary (the catalogue the model can recommend)."""
        self._require_fitted()
        assert self._items is not None
        return self._items

    def _require_fitted(self) -> None:
        if self._seen is None:
            raise UsageError(f"the {self.name} recommender is not fitted; call fit(interactions) first")

    def fit(self, interactions: Interactions) -> Self:
        """Learn from ``interactions``; returns the model itself."""
        if not isinstance(interactions, Interactions):
            raise UsageError(f"fit() takes an Interactions, got {type(interactions).__name__}")
        matrix = interactions.matrix
        if matrix.nnz == 0:
            raise UsageError("cannot fit a recommender on zero interactions")
        self._fit(matrix)
        self._seen = matrix
        self._users, self._items = interactions.users, interactions.items
        self._popularity = np.bincount(matrix.indices, minlength=matrix.shape[1]).astype(np.float32)
        return self

    def _batch_rows(self) -> int:
        return max(1, _BATCH_BYTES // (4 * max(1, len(self.items))))

    def _exclusion_columns(self, exclude_items: Iterable[Any] | npt.ArrayLike | None) -> IndexArray:
        if exclude_items is None:
            return np.empty(0, dtype=np.int64)
        cols = self.items.index(exclude_items)
        return cols[cols >= 0]

    def recommend(
        self,
        user_ids: Iterable[Any] | npt.ArrayLike,
        n: int = 10,
        *,
        exclude_seen: bool = True,
        exclude_items: Iterable[Any] | npt.ArrayLike | None = None,
    ) -> Recommendations:
        """The top ``n`` items for each user, best first, shape users × n.

        ``exclude_seen`` drops the items in the user's training row; ``exclude_items`` drops
        those ids for every user. Unknown users get the popularity ranking (``known`` False).
        """
        self._require_fitted()
        if n < 1:
            raise UsageError(f"n must be at least 1, got {n}")
        queries = _as_ids(user_ids)
        rows = self.users.index(queries)
        excluded = self._exclusion_columns(exclude_items)
        assert self._popularity is not None
        indices = np.full((rows.size, n), -1, dtype=np.int64)
        scores = np.full((rows.size, n), np.nan, dtype=np.float32)
        step = self._batch_rows()
        for start in range(0, rows.size, step):
            batch = rows[start : start + step]
            known = batch >= 0
            history = self._seen[batch[known]]
            if known.all():
                block = self._score_users(batch, history)
            else:
                block = np.empty((batch.size, len(self.items)), dtype=np.float32)
                block[~known] = self._popularity
                if known.any():
                    block[known] = self._score_users(batch[known], history)
            if exclude_seen:
                where = np.flatnonzero(known)
                block[np.repeat(where, np.diff(history.indptr)), history.indices] = -np.inf
            block[:, excluded] = -np.inf
            indices[start : start + step], scores[start : start + step] = _top_n(block, n)
        return self._answers(queries, indices, scores, rows >= 0)

    def similar_items(self, item_ids: Iterable[Any] | npt.ArrayLike, n: int = 10) -> Recommendations:
        """The ``n`` items most similar to each item, best first, the item itself left out.

        An unknown item gets an empty row (``known`` False), never an error.
        """
        self._require_fitted()
        if n < 1:
            raise UsageError(f"n must be at least 1, got {n}")
        queries = _as_ids(item_ids)
        cols = self.items.index(queries)
        indices = np.full((cols.size, n), -1, dtype=np.int64)
        scores = np.full((cols.size, n), np.nan, dtype=np.float32)
        step = self._batch_rows()
        for start in range(0, cols.size, step):
            batch = cols[start : start + step]
            known = batch >= 0
            block = np.full((batch.size, len(self.items)), -np.inf, dtype=np.float32)
            if known.any():
                block[known] = self._score_items(batch[known])
                block[np.flatnonzero(known), batch[known]] = -np.inf
            indices[start : start + step], scores[start : start + step] = _top_n(block, n)
        return self._answers(queries, indices, scores, cols >= 0)

    def _answers(
        self, queries: IdArray, indices: IndexArray, scores: FloatArray, known: npt.NDArray[np.bool_]
    ) -> Recommendations:
        ids = self.items.ids
        pad: Any = "" if ids.dtype.kind == "U" else -1
        item_ids = ids[np.maximum(indices, 0)] if ids.size else np.full(indices.shape, pad)
        item_ids = np.where(indices >= 0, item_ids, np.asarray(pad, dtype=ids.dtype))
        return Recommendations(queries, item_ids, indices, scores, known)

    # -- persistence --------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write the fitted model to ``directory`` (created if needed); returns the directory."""
        self._require_fitted()
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        meta = {"recommender": self.name, "format_version": FORMAT_VERSION, "config": self.config_json()}
        np.save(path / "users.npy", self.users.ids, allow_pickle=False)
        np.save(path / "items.npy", self.items.ids, allow_pickle=False)
        sp.save_npz(path / "seen.npz", self._seen, compressed=False)  # zlib was most of the save time
        arrays: dict[str, Any] = self._state()
        np.savez(path / "state.npz", **arrays)
        # Written last: a directory with model.json is a complete model.
        (path / MODEL_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return path

    def config_json(self) -> dict[str, Any]:
        """The config as a JSON-compatible dict (what ``save`` writes)."""
        dumped: dict[str, Any] = self.config.model_dump(mode="json")
        return dumped

    @classmethod
    def load(cls, directory: str | Path) -> Recommender[Any]:
        """Read a model written by :meth:`save`. On the base class, the saved name picks the model."""
        path = Path(directory)
        meta_path = path / MODEL_FILE
        if not meta_path.is_file():
            raise NotFoundError(f"no saved recommender in {path} ({MODEL_FILE} is missing); save one first")
        try:
            meta = json.loads(meta_path.read_text())
            name, version, raw_config = meta["recommender"], meta["format_version"], meta["config"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise UsageError(f"{meta_path} is not a recommender description: {exc}") from exc
        if version != FORMAT_VERSION:
            raise UsageError(
                f"{path} holds format version {version}; this orchestrion reads {FORMAT_VERSION}: refit and save"
            )
        from orchestrion.recommenders import RECOMMENDERS

        model_type: type[Recommender[Any]] | None = RECOMMENDERS.get(name)
        if model_type is None or (cls is not Recommender and model_type is not cls):
            expected = "a registered recommender" if cls is Recommender else cls.name
            raise UsageError(f"{path} holds recommender {name!r}, expected {expected}")
        try:
            config = model_type.config_type.model_validate(raw_config)
        except ValidationError as exc:
            raise UsageError(f"{meta_path} has an invalid {name} config: {exc}") from exc
        model = model_type(config)
        users = Vocabulary.from_ids(np.load(path / "users.npy", allow_pickle=False))
        items = Vocabulary.from_ids(np.load(path / "items.npy", allow_pickle=False))
        seen = sp.csr_matrix(sp.load_npz(path / "seen.npz"), dtype=np.float32)
        with np.load(path / "state.npz", allow_pickle=False) as state:
            model._restore({key: state[key] for key in state.files})
        model._seen, model._users, model._items = seen, users, items
        model._popularity = np.bincount(seen.indices, minlength=seen.shape[1]).astype(np.float32)
        return model
