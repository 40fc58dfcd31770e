"""The transparent prior: how goals are ranked before any feedback exists (and in the replay's
"prior only" policy).

A fixed weighted sum, chosen from product sense before any replay was run and never tuned on
one::

    prior = 0.45 · utility + 0.25 · signal + 0.15 · novelty + 0.15 · (1 − fatigue_kind) − 0.10 · risk

Utility (the template's own estimate) leads; the evidence in the user's history comes next; a
little novelty is welcome (these are goals nobody asked for); a goal of a kind sent in the last
days is held back (fatigue halves every week); money and irreversible actions weigh against.

>>> import polars as pl
>>> frame = pl.DataFrame({"utility": [1.0, 0.0], "signal": [1.0, 0.0], "novelty": [0.0, 0.0],
...     "fatigue_kind": [0.0, 1.0], "risk": [0.0, 1.0]})
>>> prior_score(frame).round(2).tolist()
[0.85, -0.1]
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl

__all__ = ["PRIOR_WEIGHTS", "prior_score"]

PRIOR_WEIGHTS: Final[Mapping[str, float]] = MappingProxyType(
    {"utility": 0.45, "signal": 0.25, "novelty": 0.15, "freshness": 0.15, "risk": -0.10}
)


def prior_score(features: pl.DataFrame) -> npt.NDArray[np.float64]:
    """The prior score of each row (needs utility, signal, novelty, fatigue_kind and risk)."""
    w = PRIOR_WEIGHTS
    score = features.select(
        w["utility"] * pl.col("utility")
        + w["signal"] * pl.col("signal")
        + w["novelty"] * pl.col("novelty")
        + w["freshness"] * (1.0 - pl.col("fatigue_kind"))
        + w["risk"] * pl.col("risk")
    ).to_series()
    return np.asarray(score.to_numpy(), dtype=np.float64)
