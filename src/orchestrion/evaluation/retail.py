"""The ``online-retail`` protocol: who buys what in the next 30 days?

Fixed protocol (documented in docs/evaluation.md, reproduced by ``orchestrion eval online-retail``):

* **Temporal split.** Train on every event before the cut-off (default: 30 days before the last
  event, 2011-11-09 on the full file); the test window is the ``horizon_days`` after it.
* **Users:** customers with a purchase on both sides of the cut-off.
* **Truth:** the distinct items each of them bought in the window (new items included — a model
  that only re-ranks a customer's history can never hit them, and is scored for that).
* **Predictions:** each model's top 10 items per customer; Recall@10, nDCG@10 (binary) and F1 of
  the predicted basket of 10 against the bought set (plus Precision@10 and MAP@10).
* **Models:** the repurchase model (trained on labelled cut-offs that all end before the test
  cut-off), the personal top-frequency and repeat-last-basket baselines, and the recommenders
  trained on purchase counts before the cut-off with already-bought items *kept* (re-buying is
  the point here); their few hyper-parameters are chosen on the validation window just before
  the cut-off, never on the test window.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl
import scipy.sparse as sp

from orchestrion.errors import UsageError
from orchestrion.evaluation.metrics import per_user_metrics
from orchestrion.recommenders import Interactions, Vocabulary, make_recommender
from orchestrion.recommenders.repurchase import RepurchaseConfig, RepurchaseModel, last_basket, top_frequency, top_n
from orchestrion.store import Store
from orchestrion.training.fits import repurchase_examples
from orchestrion.training.pipelines import interaction_arrays, purchase_features, purchases_between

__all__ = ["RETAIL_GRIDS", "RetailProtocol", "evaluate_retail"]

RETAIL_GRIDS: Final[Mapping[str, list[dict[str, Any]]]] = {
    "popularity": [{}],
    "itemknn": [{"k": 50}, {"k": 200}],
    "ease": [{"l2": 50.0}, {"l2": 250.0}, {"l2": 1000.0}],
    "als": [
        {"factors": 64, "regularization": 1.0, "alpha": 1.0},
        {"factors": 64, "regularization": 10.0, "alpha": 5.0},
    ],
    "bpr": [{"factors": 64}],
}


@dataclass(frozen=True)
class RetailProtocol:
    """The protocol's knobs (the defaults are the documented protocol)."""

    cutoff: datetime | None = None
    horizon_days: int = 30
    k: int = 10
    recommenders: tuple[str, ...] = ("popularity", "itemknn", "ease", "als", "bpr")
    repurchase: RepurchaseConfig = field(default_factory=RepurchaseConfig)


@dataclass(frozen=True)
class _Window:
    users: npt.NDArray[np.str_]
    truth: pl.DataFrame  # user_id, item_id


def _window(store: Store, cutoff: datetime, horizon_days: int) -> _Window:
    bought = purchases_between(store.con, cutoff, cutoff + timedelta(days=horizon_days))
    before = store.con.sql(
        "SELECT DISTINCT user_id FROM events WHERE type = 'purchase' AND ts < $cutoff", params={"cutoff": cutoff}
    ).pl()
    truth = bought.join(before, on="user_id", how="semi")
    users = np.asarray(sorted(set(truth.get_column("user_id").to_list())), dtype=str)
    return _Window(users, truth)


def _score(recommended_ids: npt.NDArray[Any], window: _Window, vocab: Vocabulary, k: int) -> dict[str, float]:
    """Metrics of a users × k array of item ids (empty string = no item) against the window."""
    rows = Vocabulary.from_ids(window.users).index(window.truth.get_column("user_id").to_numpy().astype(str))
    cols = vocab.index(window.truth.get_column("item_id").to_numpy().astype(str))
    n_relevant = np.bincount(rows, minlength=window.users.size)
    known = cols >= 0
    relevant = sp.csr_matrix(
        (np.ones(int(known.sum())), (rows[known], cols[known])), shape=(window.users.size, len(vocab))
    )
    recommended = vocab.index(np.where(recommended_ids == "", "\x00", recommended_ids).reshape(-1).astype(str))
    per_user = per_user_metrics(recommended.reshape(recommended_ids.shape), relevant, k, n_relevant)
    p, r = per_user[f"precision@{k}"], per_user[f"recall@{k}"]
    with np.errstate(invalid="ignore", divide="ignore"):
        per_user[f"f1@{k}"] = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
    per_user.pop("n_relevant")
    return {name: float(np.nanmean(values)) for name, values in per_user.items()} | {"users": float(window.users.size)}


def _ids_matrix(frame: pl.DataFrame, users: npt.NDArray[np.str_], k: int) -> npt.NDArray[Any]:
    """users × k item ids from a (user_id, item_id, rank) frame; missing slots are ``""``."""
    out = np.full((users.size, k), "", dtype=object)
    if frame.height:
        rows = Vocabulary.from_ids(users).index(frame.get_column("user_id").to_numpy().astype(str))
        ranks = frame.get_column("rank").to_numpy() - 1
        keep = (rows >= 0) & (ranks < k)
        out[rows[keep], ranks[keep]] = frame.get_column("item_id").to_numpy()[keep]
    return out.astype(str)


def _history_scores(store: Store, cutoff: datetime, window: _Window, protocol: RetailProtocol) -> dict[str, Any]:
    """Top-k ids of the repurchase model and both baselines, and the model's fit time."""
    features = purchase_features(store.con, cutoff).join(
        pl.DataFrame({"user_id": window.users}), on="user_id", how="semi"
    )
    started = time.perf_counter()
    examples = repurchase_examples(
        store,
        cutoff,
        horizon_days=protocol.horizon_days,
        cutoffs=protocol.repurchase.training_cutoffs,
        step_days=protocol.repurchase.cutoff_step_days,
    )
    model = RepurchaseModel(protocol.repurchase).fit(examples)
    fit_seconds = time.perf_counter() - started
    return {
        "repurchase": _ids_matrix(top_n(features, model.predict(features), protocol.k), window.users, protocol.k),
        "top_frequency": _ids_matrix(top_n(features, top_frequency(features), protocol.k), window.users, protocol.k),
        "last_basket": _ids_matrix(top_n(features, last_basket(features), protocol.k), window.users, protocol.k),
        "_fit_seconds": fit_seconds,
    }


def _interactions(store: Store, cutoff: datetime) -> Interactions:
    """Purchase counts before ``cutoff`` (the interactions pipeline runs once per cut-off)."""
    arrays = interaction_arrays(store.con, domain="retail", weighting="count", as_of=cutoff)
    return Interactions(arrays.matrix, Vocabulary(arrays.user_ids), Vocabulary(arrays.item_ids))


def _recommender_ids(
    interactions: Interactions, name: str, config: dict[str, Any], users: npt.NDArray[np.str_], k: int
) -> tuple[npt.NDArray[Any], float]:
    started = time.perf_counter()
    model = make_recommender(name, config).fit(interactions)
    seconds = time.perf_counter() - started
    recs = model.recommend(users, n=k, exclude_seen=False)
    return np.where(recs.mask, recs.item_ids, "").astype(str), seconds


def evaluate_retail(
    store: Store,
    protocol: RetailProtocol | None = None,
    *,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the protocol on a store holding the ``online-retail`` dataset; returns the results dict
    ``{"protocol", "dataset", "cutoff", "results": {model: {metric: value}}, "params", "fit_seconds"}``."""
    protocol = protocol or RetailProtocol()
    say = progress or (lambda _message: None)
    last = store.scalar("SELECT max(ts) FROM events WHERE type = 'purchase'")
    if not isinstance(last, datetime):
        raise UsageError(
            "no purchase events in the store; load the dataset with `orchestrion datasets load online-retail`"
        )
    cutoff = protocol.cutoff or (last - timedelta(days=protocol.horizon_days)).replace(hour=0, minute=0, second=0)
    validation_cutoff = cutoff - timedelta(days=protocol.horizon_days)
    test, validation = (
        _window(store, cutoff, protocol.horizon_days),
        _window(store, validation_cutoff, protocol.horizon_days),
    )
    vocab = Vocabulary.from_ids(
        np.asarray(
            store.con.sql(
                "SELECT DISTINCT item_id FROM events WHERE domain = 'retail' AND item_id IS NOT NULL"
            ).fetchnumpy()["item_id"],
            dtype=str,
        )
    )
    results: dict[str, dict[str, float]] = {}
    params: dict[str, dict[str, Any]] = {}
    fit_seconds: dict[str, float] = {}
    say("repurchase model and baselines")
    history = _history_scores(store, cutoff, test, protocol)
    fit_seconds["repurchase"] = history.pop("_fit_seconds")
    for name, ids in history.items():
        results[name] = _score(ids, test, vocab, protocol.k)
    params["repurchase"] = protocol.repurchase.model_dump(mode="json")
    test_interactions, validation_interactions = _interactions(store, cutoff), _interactions(store, validation_cutoff)
    for name in protocol.recommenders:
        grid = RETAIL_GRIDS.get(name, [{}])
        best, best_score = grid[0], -1.0
        if len(grid) > 1:
            for candidate in grid:
                say(f"{name}: validating {candidate}")
                ids, _ = _recommender_ids(validation_interactions, name, candidate, validation.users, protocol.k)
                score = _score(ids, validation, vocab, protocol.k)[f"ndcg@{protocol.k}"]
                if score > best_score:
                    best, best_score = candidate, score
        say(f"{name}: test with {best}")
        ids, seconds = _recommender_ids(test_interactions, name, best, test.users, protocol.k)
        results[name] = _score(ids, test, vocab, protocol.k)
        params[name], fit_seconds[name] = best, seconds
    return {
        "protocol": "online-retail",
        "dataset": "online-retail",
        "cutoff": cutoff.isoformat(),
        "horizon_days": protocol.horizon_days,
        "results": results,
        "params": params,
        "fit_seconds": fit_seconds,
    }
