"""The goal ranker: a scikit-learn classifier of "thumb up" over goal features.

Input is a frame with the :data:`~orchestrion.ranking.features.FEATURES` columns plus
``template`` and ``variant`` (one-hot encoded against the vocabulary seen in training; an
unseen template scores through its numbers alone) and, for ``fit``, a 0/1 ``label``. Two model
families behind one config: logistic regression on standardised features (default: on the
replays it was as good as or better than boosting with the few thousand thumbs a ranker
learns from, and its coefficients can be read) and histogram gradient boosting (for when
feature interactions matter and there are many more thumbs).

Saved layout (through :func:`orchestrion.training.versions.save_version`, kind ``ranker``):
``config.json``, ``vocabulary.json`` (templates and variants in column order) and ``model.pkl``
(scikit-learn's own pickle; load only folders this installation wrote).
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from orchestrion.errors import UsageError
from orchestrion.ranking.features import FEATURES

__all__ = ["TEMPLATE_PROXIES", "GoalRanker", "RankerConfig", "design_matrix"]


class RankerConfig(BaseModel):
    """How the ranker is built; saved with every artifact."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Literal["logistic", "hgb"] = "logistic"
    max_iter: int = Field(120, gt=0, description="Boosting rounds (hgb).")
    learning_rate: float = Field(0.05, gt=0)
    max_leaf_nodes: int = Field(15, gt=1)
    min_samples_leaf: int = Field(30, gt=0)
    l2_regularization: float = Field(1.0, ge=0)
    c: float = Field(1.0, gt=0, description="Inverse L2 strength (logistic).")
    min_examples: int = Field(50, gt=0, description="Fewer labelled goals than this: keep the prior.")
    seed: int = 0


TEMPLATE_PROXIES: Final = ("risk", "log_cost")
"""Features that mostly say which template a goal is (a cart has a cost and a risk, a list has
neither). The ranker sees them *within* their template — minus the template's mean in the
training data — so the template's own columns carry what templates differ by, and these only
what differs between goals of one template (a pricier cart than usual). Left raw, they took the
template effect: the ranker put +1.43 on ``log_cost`` and +1.16 on ``risk`` and favoured pricier carts."""


def design_matrix(
    frame: pl.DataFrame,
    templates: list[str],
    variants: list[str],
    centres: Mapping[str, Mapping[str, float]] | None = None,
) -> npt.NDArray[np.float64]:
    """Numeric features, then one column per known template and per known ``template/variant``.

    ``centres`` gives, per :data:`TEMPLATE_PROXIES` feature, each template's mean to subtract.
    """
    missing = [name for name in (*FEATURES, "template", "variant") if name not in frame.columns]
    if missing:
        raise UsageError(f"ranker input lacks {missing}; build it with ranking.goal_features")
    numbers = frame.select([pl.col(n).cast(pl.Float64).fill_null(0.0) for n in FEATURES]).to_numpy()
    template = frame.get_column("template").to_numpy().astype(str)
    for name, means in (centres or {}).items():
        column = FEATURES.index(name)
        numbers[:, column] -= np.array([means.get(t, 0.0) for t in template.tolist()], dtype=np.float64)
    variant = np.char.add(np.char.add(template, "/"), frame.get_column("variant").to_numpy().astype(str))
    one_hot_t = (template[:, None] == np.asarray(templates, dtype=str)[None, :]).astype(np.float64)
    one_hot_v = (variant[:, None] == np.asarray(variants, dtype=str)[None, :]).astype(np.float64)
    return np.hstack([numbers, one_hot_t.reshape(len(frame), -1), one_hot_v.reshape(len(frame), -1)])


class GoalRanker:
    """P(thumb up) for goal candidates.

    >>> rng = np.random.default_rng(0)
    >>> n = 400
    >>> frame = pl.DataFrame({name: rng.random(n) for name in FEATURES}).with_columns(
    ...     pl.lit("t").alias("template"), pl.lit("v").alias("variant"))
    >>> frame = frame.with_columns((pl.col("utility") > 0.5).cast(pl.Int8).alias("label"))
    >>> ranker = GoalRanker(RankerConfig(model="logistic")).fit(frame)
    >>> bool(ranker.predict(frame.filter(pl.col("label") == 1)).mean() > 0.5)
    True
    """

    def __init__(self, config: RankerConfig | None = None) -> None:
        self.config = config or RankerConfig()
        self.templates: list[str] = []
        self.variants: list[str] = []
        self.centres: dict[str, dict[str, float]] = {}
        self._model: Any = None

    @property
    def is_fitted(self) -> bool:
        return self._model is not None

    def fit(self, frame: pl.DataFrame) -> GoalRanker:
        """Learn from labelled goals (``label`` 1 = thumb up, 0 = down)."""
        if "label" not in frame.columns:
            raise UsageError("ranker training needs a label column (1 = thumb up, 0 = thumb down)")
        labels = frame.get_column("label").cast(pl.Int8).to_numpy()
        if labels.size < self.config.min_examples:
            raise UsageError(
                f"only {labels.size} labelled goals; the ranker needs at least {self.config.min_examples} "
                "(until then the prior ranks goals)"
            )
        if labels.min() == labels.max():
            raise UsageError("every labelled goal has the same thumb; the ranker needs both ups and downs")
        self.templates = sorted(frame.get_column("template").unique().to_list())
        self.variants = sorted(frame.select(pl.format("{}/{}", "template", "variant")).to_series().unique().to_list())
        means = frame.group_by("template").agg(
            [pl.col(n).cast(pl.Float64).fill_null(0.0).mean() for n in TEMPLATE_PROXIES]
        )
        self.centres = {
            name: dict(zip(means.get_column("template").to_list(), means.get_column(name).to_list(), strict=True))
            for name in TEMPLATE_PROXIES
        }
        x = design_matrix(frame, self.templates, self.variants, self.centres)
        c = self.config
        if c.model == "hgb":
            from sklearn.ensemble import HistGradientBoostingClassifier

            model: Any = HistGradientBoostingClassifier(
                max_iter=c.max_iter,
                learning_rate=c.learning_rate,
                max_leaf_nodes=c.max_leaf_nodes,
                min_samples_leaf=c.min_samples_leaf,
                l2_regularization=c.l2_regularization,
                random_state=c.seed,
                early_stopping=False,
            )
        else:
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            model = make_pipeline(StandardScaler(), LogisticRegression(C=c.c, max_iter=1000))
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

        # One thread: a few thousand rows fit in a fraction of a second; an OpenMP pool on a
        # busy machine made the same fit ten times slower.
        with threadpool_limits(limits=1):
            model.fit(x, labels)
        self._model = model
        return self

    def predict(self, frame: pl.DataFrame) -> npt.NDArray[np.float64]:
        """P(thumb up) for each row."""
        if self._model is None:
            raise UsageError("the ranker is not trained; fit it or load a saved version")
        if frame.height == 0:
            return np.zeros(0)
        proba = self._model.predict_proba(design_matrix(frame, self.templates, self.variants, self.centres))
        return np.asarray(proba[:, 1], dtype=np.float64)

    def columns(self) -> list[str]:
        """The design matrix's column names, in order."""
        return [*FEATURES, *(f"template={t}" for t in self.templates), *(f"variant={v}" for v in self.variants)]

    def coefficients(self) -> dict[str, float] | None:
        """What the ranker leans on: the logistic model's weight per column (on standardised
        features: comparable with each other), largest magnitude first; None for boosting."""
        if self._model is None or self.config.model != "logistic":
            return None
        weights = np.asarray(self._model[-1].coef_[0], dtype=np.float64)
        pairs = sorted(zip(self.columns(), weights.tolist(), strict=True), key=lambda p: -abs(p[1]))
        return {name: round(weight, 4) for name, weight in pairs}

    def save(self, folder: Path) -> None:
        """Write ``config.json``, ``vocabulary.json`` and ``model.pkl``."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(self.config.model_dump_json(indent=2))
        (folder / "vocabulary.json").write_text(
            json.dumps({"templates": self.templates, "variants": self.variants, "centres": self.centres})
        )
        with (folder / "model.pkl").open("wb") as handle:
            pickle.dump(self._model, handle)

    @classmethod
    def load(cls, folder: Path) -> GoalRanker:
        """Read a saved ranker; never retrains."""
        ranker = cls(RankerConfig.model_validate_json((folder / "config.json").read_text()))
        vocabulary = json.loads((folder / "vocabulary.json").read_text())
        ranker.templates, ranker.variants = list(vocabulary["templates"]), list(vocabulary["variants"])
        ranker.centres = {k: dict(v) for k, v in vocabulary.get("centres", {}).items()}
        with (folder / "model.pkl").open("rb") as handle:
            ranker._model = pickle.load(handle)
        return ranker
