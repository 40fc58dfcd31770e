"""What templates see: one day's history as frames, plus models fitted on it, shared and cached.

The caller (:mod:`orchestrion.proposals.day`, the replay) builds one :class:`GoalContext` per day from
the store; templates never open the database. Several templates need the same derived data (a
domain's interaction matrix, a recommender fitted on it, item embeddings and their clusters), so
the context computes each once, on first use, and keeps it. Models can also be handed in ready
made (a promoted recommender, a trained repurchase model); the context only fits what is missing.

Everything is computed from events strictly before ``as_of``: the context drops later events
itself, so a caller cannot leak the future into a proposal by accident.

Where the events come from is a :class:`History`: a frame held in memory (:class:`FrameHistory`,
the replay and the tests), or the store read on demand (:class:`orchestrion.proposals.history.StoreHistory`,
the daily run), where a batch reads only its own users' events and every user's events of a
domain are read only when a model of that domain has to be fitted. Purchase statistics are
either one frame or a function giving a batch's rows, so a day's run holds one batch's rows at
a time.

>>> from datetime import datetime
>>> events = pl.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": ["a", "b", "a"],
...     "type": ["play"] * 3, "domain": ["music"] * 3, "value": [3.0, 1.0, 2.0],
...     "ts": [datetime(2024, 1, 1)] * 3})
>>> ctx = GoalContext(datetime(2024, 2, 1), ["u2"], events, pl.DataFrame({"item_id": ["a", "b"]}))
>>> ctx.domain_users("music").tolist(), ctx.interactions("music").shape
(['u2'], (2, 2))
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from orchestrion.recommenders import Interactions, Recommender, Vocabulary, make_recommender
from orchestrion.recommenders.repurchase import RepurchaseModel

__all__ = ["EVENT_COLUMNS", "NEGATIVE_TYPES", "ContextConfig", "FrameHistory", "GoalContext", "History", "as_events"]

_PER_BATCH: Final = frozenset({"users", "activity", "batch_events", "purchase_stats"})
"""Cache keys whose values depend on the batch of users (see :meth:`GoalContext.for_users`)."""

NEGATIVE_TYPES: Final = ("return", "skip", "tag", "identify", "dislike", "remove_from_cart")
"""Event types that are not a sign of liking the item (a tag is a label, not a play)."""

EVENT_COLUMNS: Final[Mapping[str, pl.DataType]] = {
    "user_id": pl.String(),
    "item_id": pl.String(),
    "type": pl.String(),
    "domain": pl.String(),
    "ts": pl.Datetime("us"),
    "value": pl.Float64(),
}


def as_events(frame: pl.DataFrame, as_of: datetime) -> pl.DataFrame:
    """``frame`` with exactly the :data:`EVENT_COLUMNS` (missing ones as nulls), before ``as_of``."""
    cols = [pl.col(c).cast(t) if c in frame.columns else pl.lit(None, t).alias(c) for c, t in EVENT_COLUMNS.items()]
    return frame.select(cols).filter(pl.col("ts") < as_of)


class History(Protocol):
    """The events before a context's ``as_of``, in :data:`EVENT_COLUMNS`."""

    def domain_events(self, domain: str) -> pl.DataFrame:
        """Every user's events of ``domain`` (what a domain's models learn from)."""
        ...

    def user_events(self, users: Sequence[str]) -> pl.DataFrame:
        """The events of ``users``, every domain."""
        ...


class FrameHistory:
    """A :class:`History` over one frame of events held in memory."""

    def __init__(self, events: pl.DataFrame, as_of: datetime) -> None:
        self.events = as_events(events, as_of)

    def domain_events(self, domain: str) -> pl.DataFrame:
        return self.events.filter(pl.col("domain") == domain)

    def user_events(self, users: Sequence[str]) -> pl.DataFrame:
        return self.events.filter(pl.col("user_id").is_in(list(users)))


@runtime_checkable
class Prefetching(Protocol):
    """A history or purchase statistics source that can start reading a batch before it is asked."""

    def prefetch(self, users: Sequence[str]) -> None:
        """Start reading what a later call for ``users`` will ask for."""
        ...


PurchaseStats = pl.DataFrame | Callable[[Sequence[str]], pl.DataFrame]
"""Purchase statistics: one frame, or a function giving the rows of a batch's users."""

_PARAMS: Final[dict[str, dict[str, Any]]] = {
    "ease": {"l2": 250.0},
    "itemknn": {"k": 100, "num_threads": 1},
    "als": {"factors": 48, "iterations": 10, "num_threads": 1},
}


class ContextConfig(BaseModel):
    """Which recommender each domain uses when none is handed in, and the embedding size.

    The defaults follow the recommenders' own evaluations: EASE is strongest on dense movie
    ratings, item-kNN is cheap and good on short reading and purchase histories, ALS scales to
    the 17k Last.fm artists where a dense item-item model does not.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    recommenders: dict[str, str] = Field(
        default_factory=lambda: {"movies": "ease", "news": "itemknn", "music": "als", "retail": "itemknn"}
    )
    recommender_params: dict[str, dict[str, Any]] = Field(default_factory=lambda: dict(_PARAMS))
    fallback_recommender: str = "itemknn"
    embedding_dim: int = Field(24, ge=2, description="Item embedding size for clustering (truncated SVD).")
    seed: int = 7


class GoalContext:
    """One day's history and models for a batch of users (see the module docstring)."""

    def __init__(
        self,
        as_of: datetime,
        users: Iterable[str] | npt.NDArray[Any],
        events: pl.DataFrame | History,
        items: pl.DataFrame,
        *,
        exclusions: pl.DataFrame | None = None,
        purchase_stats: PurchaseStats | None = None,
        repurchase: RepurchaseModel | None = None,
        recommenders: Mapping[str, Recommender[Any]] | None = None,
        config: ContextConfig | None = None,
    ) -> None:
        self.as_of = as_of
        self.users: npt.NDArray[np.str_] = np.unique(np.asarray(list(users), dtype=str))
        self.history: History = FrameHistory(events, as_of) if isinstance(events, pl.DataFrame) else events
        self.items = items
        self.exclusions = (
            exclusions.select(pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String))
            if exclusions is not None
            else pl.DataFrame(schema={"user_id": pl.String, "item_id": pl.String})
        )
        self._purchase_stats = purchase_stats
        self.repurchase = repurchase
        self.config = config or ContextConfig()
        self._recommenders: dict[str, Recommender[Any]] = dict(recommenders or {})
        self._cache: dict[tuple[str, ...], Any] = {}
        self._mine: dict[tuple[str, ...], Any] = {}

    def _cached(self, key: tuple[str, ...], build: Any) -> Any:
        cache = self._mine if key[0] in _PER_BATCH else self._cache
        if key not in cache:
            cache[key] = build()
        return cache[key]

    def for_users(self, users: Iterable[str], *, exclusions: pl.DataFrame | None = None) -> GoalContext:
        """The same day for another batch of users, sharing every frame and model that does not
        depend on the batch (events, fitted recommenders, embeddings, clusters, popularity).

        The daily run builds one context per day and one of these per batch, so a batch costs
        its own users' work, not a new pass over the whole history.
        """
        other = copy.copy(self)  # shallow: the shared cache and recommenders are the same objects
        other.users = np.unique(np.asarray(list(users), dtype=str))
        if exclusions is not None:
            other.exclusions = exclusions.select(pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String))
        other._mine = {}
        return other

    def prefetch(self, users: Iterable[str]) -> None:
        """Let the sources that can (the daily run's store reads) start reading the batch of
        ``users`` now, for a later :meth:`for_users` of the same users; nothing otherwise."""
        wanted = list(users)  # each source keys its reads by the sorted unique users itself
        for source in (self.history, self._purchase_stats):
            if isinstance(source, Prefetching):
                source.prefetch(wanted)

    @property
    def purchase_stats(self) -> pl.DataFrame | None:
        """Per (user, item) purchase statistics: the whole frame, or the batch's rows (see the module docstring)."""
        stats = self._purchase_stats
        if stats is None or isinstance(stats, pl.DataFrame):
            return stats
        frame: pl.DataFrame = self._cached(("purchase_stats",), lambda: stats(self.users.tolist()))
        return frame

    def domain_events(self, domain: str) -> pl.DataFrame:
        """Every user's events of ``domain`` before ``as_of`` (the models learn from all users)."""
        frame: pl.DataFrame = self._cached(("events", domain), lambda: self.history.domain_events(domain))
        return frame

    def batch_events(self) -> pl.DataFrame:
        """The batch users' own events before ``as_of``, every domain."""
        frame: pl.DataFrame = self._cached(("batch_events",), lambda: self.history.user_events(self.users.tolist()))
        return frame

    def domain_users(self, domain: str) -> npt.NDArray[np.str_]:
        """The batch users with at least one event in ``domain``, sorted."""

        def build() -> npt.NDArray[np.str_]:
            mine = self.batch_events().filter(pl.col("domain") == domain)
            present = mine.get_column("user_id").unique().to_numpy().astype(str)
            return np.intersect1d(self.users, present)

        found: npt.NDArray[np.str_] = self._cached(("users", domain), build)
        return found

    def catalog(self, domain: str | None = None) -> pl.DataFrame:
        """The catalog rows of ``domain`` (items whose domain is missing are kept)."""
        if domain is None or "domain" not in self.items.columns:
            return self.items
        return self.items.filter(pl.col("domain").is_null() | (pl.col("domain") == domain))

    def showable(self, domain: str) -> npt.NDArray[np.str_]:
        """The item ids of ``domain`` a person can be shown: in the catalog, with a title.

        A goal proposes only these (:meth:`ranked` keeps to them): an article read by someone but
        missing from the catalog has nothing to show but its id.
        """

        def build() -> npt.NDArray[np.str_]:
            catalog = self.catalog(domain)
            if "title" not in catalog.columns:
                return np.asarray([], dtype=str)
            titled = catalog.filter(pl.col("title").is_not_null() & (pl.col("title").str.strip_chars() != ""))
            return np.unique(titled.get_column("item_id").cast(pl.String).to_numpy().astype(str))

        found: npt.NDArray[np.str_] = self._cached(("showable", domain), build)
        return found

    def positive(self, domain: str) -> pl.DataFrame:
        """Per (user, item) of ``domain``: weight, events, value sum, first and last time.

        Weight: the log of 1 + plays for ``play`` events (a play count spans orders of
        magnitude), one per event otherwise; returns, skips and tags do not count.
        """

        def build() -> pl.DataFrame:
            weight = (
                pl.when(pl.col("type") == "play").then(pl.col("value").fill_null(1.0).clip(0).log1p()).otherwise(1.0)
            )
            return (
                self.domain_events(domain)
                .filter(pl.col("item_id").is_not_null() & ~pl.col("type").is_in(list(NEGATIVE_TYPES)))
                .group_by("user_id", "item_id")
                .agg(
                    weight.sum().alias("weight"),
                    pl.len().alias("events"),
                    pl.col("value").fill_null(1.0).sum().alias("value_sum"),
                    pl.col("value").mean().alias("value_mean"),
                    pl.col("ts").min().alias("first_ts"),
                    pl.col("ts").max().alias("last_ts"),
                )
                .sort("user_id", "item_id")
            )

        frame: pl.DataFrame = self._cached(("positive", domain), build)
        return frame

    def interactions(self, domain: str) -> Interactions:
        """The user × item matrix of :meth:`positive` weights, for recommenders and embeddings."""

        def build() -> Interactions:
            pos = self.positive(domain)
            return Interactions.from_columns(
                pos.get_column("user_id").to_numpy().astype(str),
                pos.get_column("item_id").to_numpy().astype(str),
                pos.get_column("weight").to_numpy(),
            )

        found: Interactions = self._cached(("interactions", domain), build)
        return found

    def recommender(self, domain: str) -> Recommender[Any]:
        """The domain's recommender: the one handed in, else one fitted here and kept."""
        if domain not in self._recommenders:
            name = self.config.recommenders.get(domain, self.config.fallback_recommender)
            model = make_recommender(name, self.config.recommender_params.get(name))
            self._recommenders[domain] = model.fit(self.interactions(domain))
        return self._recommenders[domain]

    def item_embeddings(self, domain: str) -> tuple[Vocabulary, npt.NDArray[np.float64]]:
        """Unit-length item vectors from a truncated SVD of the item × user matrix.

        Items that the same people use end up close, which is what "a listening cluster" or "a
        topic" means here; no text or tags are needed, so every item with interactions gets one.
        """

        def build() -> tuple[Vocabulary, npt.NDArray[np.float64]]:
            x = self.interactions(domain)
            matrix = x.matrix.T.tocsr().astype(np.float64)
            dim = max(1, min(self.config.embedding_dim, min(matrix.shape) - 1))
            if min(matrix.shape) <= 2:
                vectors = np.asarray(matrix.todense(), dtype=np.float64)
            else:
                from sklearn.utils.extmath import randomized_svd
                from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

                # One BLAS thread: the matrices are small, and on a shared machine a BLAS thread
                # pool fighting over the cores made this 40x slower.
                with threadpool_limits(limits=1, user_api="blas"):
                    u, s, _ = randomized_svd(matrix, dim, n_iter=4, random_state=self.config.seed)
                vectors = u * np.sqrt(s)
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            return x.items, vectors / np.where(norms > 0, norms, 1.0)

        found: tuple[Vocabulary, npt.NDArray[np.float64]] = self._cached(("embeddings", domain), build)
        return found

    def item_clusters(self, domain: str, k: int) -> pl.DataFrame:
        """``item_id, cluster`` for every item with interactions: k-means on :meth:`item_embeddings`."""

        def build() -> pl.DataFrame:
            from sklearn.cluster import KMeans

            vocab, vectors = self.item_embeddings(domain)
            distinct = np.unique(vectors.round(6), axis=0).shape[0] if len(vocab) else 0
            n_clusters = max(1, min(k, distinct))
            if n_clusters == 1:
                labels = np.zeros(len(vocab), dtype=np.int64)
            else:
                model = KMeans(n_clusters=n_clusters, n_init=2, random_state=self.config.seed)
                labels = model.fit_predict(vectors)
            return pl.DataFrame({"item_id": vocab.ids.astype(str), "cluster": labels.astype(np.int64)})

        found: pl.DataFrame = self._cached(("clusters", domain, str(k)), build)
        return found

    def recent_popularity(self, domain: str, days: float) -> pl.DataFrame:
        """``item_id, recent_users`` over the last ``days`` days, most used first."""

        def build() -> pl.DataFrame:
            start = self.as_of - timedelta(days=days)
            return (
                self.domain_events(domain)
                .filter((pl.col("ts") >= start) & pl.col("item_id").is_not_null())
                .filter(~pl.col("type").is_in(list(NEGATIVE_TYPES)))
                .group_by("item_id")
                .agg(pl.col("user_id").n_unique().alias("recent_users"), pl.col("ts").min().alias("first_recent_ts"))
                .sort(["recent_users", "item_id"], descending=[True, False])
            )

        found: pl.DataFrame = self._cached(("recent", domain, str(days)), build)
        return found

    def first_seen(self, domain: str) -> pl.DataFrame:
        """``item_id, first_ts``: when anyone first used each item (an article's publication, roughly)."""

        def build() -> pl.DataFrame:
            return (
                self.domain_events(domain)
                .filter(pl.col("item_id").is_not_null())
                .group_by("item_id")
                .agg(pl.col("ts").min().alias("first_ts"), pl.col("user_id").n_unique().alias("users"))
            )

        found: pl.DataFrame = self._cached(("first_seen", domain), build)
        return found

    def ranked(
        self,
        domain: str,
        users: npt.NDArray[np.str_],
        n: int,
        *,
        exclude_seen: bool = True,
        allowed: Iterable[str] | None = None,
    ) -> pl.DataFrame:
        """``user_id, item_id, score, rank`` from the domain recommender, thumbed-down items removed,
        only items a person can be shown (:meth:`showable`).

        ``allowed`` restricts the answer to those items (e.g. one genre or the fresh articles);
        more than ``n`` are asked for so that per-user exclusions still leave ``n``.
        """
        model = self.recommender(domain)
        keep = self.showable(domain)
        if allowed is not None:
            keep = np.intersect1d(keep, np.asarray(list(allowed), dtype=str))
        exclude: npt.NDArray[Any] = np.setdiff1d(model.items.ids.astype(str), keep)
        if exclude.size == len(model.items):
            return pl.DataFrame(
                schema={"user_id": pl.String, "item_id": pl.String, "score": pl.Float64, "rank": pl.Int64}
            )
        most = self.exclusions.group_by("user_id").len().get_column("len").max() if self.exclusions.height else 0
        extra = int(most) if isinstance(most, int) else 0
        recs = model.recommend(users, n=n + extra, exclude_seen=exclude_seen, exclude_items=exclude)
        width = recs.indices.shape[1]
        frame = (
            pl.DataFrame(
                {
                    "user_id": np.repeat(np.asarray(users, dtype=str), width),
                    "item_id": recs.item_ids.reshape(-1).astype(str),
                    "score": recs.scores.reshape(-1).astype(np.float64),
                    "valid": recs.mask.reshape(-1),
                }
            )
            .filter(pl.col("valid"))
            .drop("valid")
        )
        if self.exclusions.height:
            frame = frame.join(self.exclusions, on=["user_id", "item_id"], how="anti")
        return frame.with_columns(pl.int_range(1, pl.len() + 1).over("user_id").alias("rank")).filter(
            pl.col("rank") <= n
        )

    def titles(self) -> pl.DataFrame:
        """``item_id, title`` for every catalog item (the id where the title is missing)."""

        def build() -> pl.DataFrame:
            if "title" not in self.items.columns:
                return self.items.select("item_id", pl.col("item_id").alias("title"))
            return self.items.select("item_id", pl.coalesce("title", "item_id").alias("title"))

        found: pl.DataFrame = self._cached(("titles",), build)
        return found

    def user_activity(self) -> pl.DataFrame:
        """Per batch user: how present and how habitual they are, whatever the template.

        ``days_idle`` (since their latest event), ``events_7d``, ``active_days_28d``,
        ``active_days_90d``, ``active_days`` (distinct days with an event, ever) and ``tenure_days``
        (since their first event). The same goal is far more welcome to someone who keeps coming
        back than to someone who tried the service once and has gone quiet.
        """

        def build() -> pl.DataFrame:
            mine = self.batch_events()
            week = self.as_of - timedelta(days=7)
            day = pl.col("ts").dt.date()

            def days_since(ts: pl.Expr) -> pl.Expr:
                return (pl.lit(self.as_of) - ts).dt.total_seconds() / 86400.0

            def active_in(days: int) -> pl.Expr:
                recent = pl.col("ts") >= self.as_of - timedelta(days=days)
                return day.filter(recent).n_unique().cast(pl.Float64)

            return mine.group_by("user_id").agg(
                days_since(pl.col("ts").max()).alias("days_idle"),
                (pl.col("ts") >= week).sum().cast(pl.Float64).alias("events_7d"),
                active_in(28).alias("active_days_28d"),
                active_in(90).alias("active_days_90d"),
                day.n_unique().cast(pl.Float64).alias("active_days"),
                days_since(pl.col("ts").min()).alias("tenure_days"),
            )

        found: pl.DataFrame = self._cached(("activity",), build)
        return found

    def drop_excluded(self, pairs: pl.DataFrame) -> pl.DataFrame:
        """``pairs`` (with user_id, item_id) without the items each user thumbed down."""
        if not self.exclusions.height:
            return pairs
        return pairs.join(self.exclusions, on=["user_id", "item_id"], how="anti")
