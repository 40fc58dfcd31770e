"""Off-policy evaluation: how would another ranker have done on the days already logged?

The chooser (:mod:`orchestrion.ranking.exploration`) logs, for every goal it delivered, its
probability p of being delivered. Another ranker, run through the same chooser with the same
rules on the same candidates, would deliver each candidate with a probability q we can compute
exactly (its own greedy set and each user's pool). Over the delivered goals with a thumb r (1 up, 0 down) and
importance weights w = q / p:

* IPS   = Σ w·r ÷ (goals the new policy would deliver)   — unbiased when every p is right;
* SNIPS = Σ w·r ÷ Σ w                                      — self-normalised: a little bias,
  much less variance; the promotion rule uses it, with its delta-method standard error: a new
  ranker is promoted only when the one-sided 95 % lower bound of its SNIPS minus the current
  policy's, compared decision by decision on the same log, is above the margin
  (:func:`should_promote`).

Both estimate the *acceptance* (share of thumbs up) the new policy would have had. Goals
without a thumb are treated as missing at random (the IPS denominator is scaled by each day's
share of delivered goals with a thumb); candidates held back by fatigue, the risk cap or the
slate (``recent``, ``redundant``: as logged) stay held back under either policy. Exploration
happens within a user's own candidates, so the
estimates speak for the users the logging policy served: a user it never served has no
logged outcome, and a new policy that would serve them is judged on the users both serve.

>>> ips([1.0, 0.0], [0.5, 0.5], [0.25, 1.0]), snips([1.0, 0.0], [0.5, 0.5], [0.25, 1.0])
(1.0, 0.8)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl

from orchestrion.ranking.exploration import ChoiceConfig, greedy_set, inclusion_propensity

__all__ = ["Z_PROMOTE", "Estimate", "difference_lower", "estimate", "ips", "should_promote", "snips", "snips_se"]

ArrayLike = Sequence[float] | npt.NDArray[np.float64]


def ips(rewards: ArrayLike, target: ArrayLike, logged: ArrayLike) -> float:
    """Inverse propensity scoring over n logged actions: (1/n) Σ r · target / logged."""
    r, t, p = (np.asarray(a, dtype=np.float64) for a in (rewards, target, logged))
    return float(np.mean(r * t / p)) if r.size else float("nan")


def snips(rewards: ArrayLike, target: ArrayLike, logged: ArrayLike) -> float:
    """Self-normalised IPS: Σ w r / Σ w with w = target / logged."""
    r, t, p = (np.asarray(a, dtype=np.float64) for a in (rewards, target, logged))
    w = t / p
    return float(np.sum(w * r) / np.sum(w)) if r.size and np.sum(w) > 0 else float("nan")


@dataclass(frozen=True)
class Estimate:
    """One policy's off-policy acceptance on a log, with how much the log could say about it."""

    ips: float
    snips: float
    decisions: int
    logged_value: float
    effective_size: float
    snips_se: float = float("nan")  # the SNIPS estimate's standard error (delta method)
    # Each logged decision's influence on the SNIPS estimate, w·(r − V) ÷ Σw, in log order: two
    # policies estimated on one log are compared decision by decision (:func:`should_promote`).
    influence: npt.NDArray[np.float64] | None = field(default=None, repr=False, compare=False)

    @property
    def lower(self) -> float:
        """A one-sided 95 % lower confidence bound on the SNIPS estimate."""
        return self.snips - Z_PROMOTE * self.snips_se if np.isfinite(self.snips_se) else float("nan")

    def as_dict(self) -> dict[str, Any]:
        """Rounded, JSON-ready (for model metadata and command output)."""
        return {
            k: (round(v, 5) if isinstance(v, float) else v)
            for k, v in asdict(self).items()
            if k != "influence"
        }


_EMPTY = Estimate(float("nan"), float("nan"), 0, float("nan"), 0.0)
Z_PROMOTE: Final = 1.645
"""One-sided 95 %: a new ranker is promoted when its SNIPS lower bound clears the current estimate."""


def snips_se(rewards: ArrayLike, weights: ArrayLike) -> float:
    """The delta-method standard error of SNIPS: √(Σ w²(r − V)²) ÷ Σ w, V the SNIPS estimate.

    >>> round(snips_se([1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]), 3)
    0.25
    """
    r, w = np.asarray(rewards, dtype=np.float64), np.asarray(weights, dtype=np.float64)
    total = float(w.sum())
    if r.size == 0 or total <= 0:
        return float("nan")
    value = float(np.sum(w * r) / total)
    return float(np.sqrt(np.sum(w**2 * (r - value) ** 2)) / total)


def estimate(
    log: pl.DataFrame,
    score: Callable[[pl.DataFrame], npt.NDArray[np.float64]],
    config: ChoiceConfig,
    *,
    volumes: Mapping[date, int] | None = None,
) -> Estimate:
    """The acceptance of "the chooser with ``config`` on ``score``" over the days in ``log``.

    ``log`` holds every candidate of the logged days (``date``, ``user_id``, the ranker's
    features, ``status``, ``propensity``, ``reward`` on delivered goals, null without a thumb);
    ``volumes`` gives a day's volume when the logging policy had one (the replay).
    """
    weighted: list[float] = []
    rewards: list[float] = []
    logged: list[float] = []
    expected = 0.0
    for (day,), frame in log.partition_by("date", as_dict=True, maintain_order=True).items():
        volume = None if volumes is None else volumes.get(day)
        rules = config.model_copy(update={"volume": volume}) if volume is not None else config
        g = greedy_set(frame, score(frame), rules, as_logged=True)
        q = inclusion_propensity(g, config.epsilon)
        sent = (frame.get_column("status") == "chosen").to_numpy()
        reward = frame.get_column("reward").cast(pl.Float64).to_numpy()
        known = sent & ~np.isnan(reward)
        if not known.any():
            continue
        p = frame.get_column("propensity").cast(pl.Float64).to_numpy()
        weighted.extend((q[known] / p[known]).tolist())
        rewards.extend(reward[known].tolist())
        logged.extend(p[known].tolist())
        expected += float(q.sum()) * known.sum() / max(sent.sum(), 1)
    if not rewards:
        return _EMPTY
    w, r = np.asarray(weighted), np.asarray(rewards)
    ess = float(w.sum() ** 2 / np.sum(w**2)) if np.sum(w**2) > 0 else 0.0
    value = float(np.sum(w * r) / expected) if expected > 0 else float("nan")
    total = float(w.sum())
    v = snips(r, w, np.ones_like(w))
    influence = w * (r - v) / total if total > 0 else None
    return Estimate(value, v, int(r.size), float(r.mean()), ess, snips_se(r, w), influence)


def difference_lower(candidate: Estimate, current: Estimate, *, z: float = Z_PROMOTE) -> float:
    """A one-sided lower bound (95 % with the default ``z``) on ``candidate.snips − current.snips``.

    Estimated on the same log (the same decisions, in the same order), the two are compared
    decision by decision — the difference's delta-method standard error is √Σ(φᵢ − ψᵢ)², φ and ψ
    their influences — which is much tighter than two separate intervals, since both are
    judged on the same thumbs. Without the influences, the candidate's own lower bound less the
    current estimate (:attr:`Estimate.lower`).
    """
    a, b = candidate.influence, current.influence
    if a is not None and b is not None and a.shape == b.shape:
        se = float(np.sqrt(np.sum((a - b) ** 2)))
        return candidate.snips - current.snips - z * se
    return candidate.snips - z * candidate.snips_se - current.snips


def should_promote(
    candidate: Estimate, current: Estimate, *, min_decisions: int = 50, margin: float = 0.0, z: float = Z_PROMOTE
) -> bool:
    """Promote only with enough evidence and a margin the evidence supports: the lower bound of the
    new ranker's SNIPS minus the current policy's (:func:`difference_lower`, one-sided 95 %) must
    be above ``margin``. A difference the log cannot tell from noise keeps the current policy.

    >>> should_promote(Estimate(0.3, 0.40, 800, 0.2, 400.0, 0.02), Estimate(0.2, 0.30, 800, 0.2, 700.0, 0.02))
    True
    >>> should_promote(Estimate(0.3, 0.301, 800, 0.2, 400.0, 0.02), Estimate(0.2, 0.30, 800, 0.2, 700.0, 0.02))
    False
    >>> should_promote(Estimate(0.3, 0.3, 10, 0.2, 5.0, 0.01), Estimate(0.2, 0.25, 10, 0.2, 9.0, 0.01))
    False
    """
    if candidate.decisions < min_decisions or not np.isfinite(candidate.snips):
        return False
    if not np.isfinite(candidate.lower):
        return False
    if not np.isfinite(current.snips):
        return True
    return bool(difference_lower(candidate, current, z=z) > margin)
