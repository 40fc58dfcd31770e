"""Goal features: the template's own numbers plus what the user's history says about the goal.

The history is every earlier deliverable of the user with its thumb, as a frame in
:data:`HISTORY_SCHEMA`. A thumb counts only from the moment it was received (``revealed_at``), so a
feature computed for day D never uses feedback that arrived on or after D.

Features (all numbers, one row per candidate):

* the template's ``utility``, ``signal``, ``novelty``, ``risk``; ``log_cost``; ``log_items``;
* ``fatigue_kind`` / ``fatigue_template``: 2^(−days since a deliverable of the same kind /
  template was sent ÷ 7), 0 when never — "how recently a similar deliverable was sent";
* ``user_kind_accept``, ``user_template_accept``, ``user_accept``: the user's share of thumbs up
  on this kind, this template and overall, smoothed towards the variant's global rate with
  :data:`SMOOTHING` pseudo-thumbs (so one thumb does not read as 0 % or 100 %);
* ``user_kind_n``, ``user_template_n``, ``user_n``: log(1 + thumbs received) for the same;
* ``last_kind_thumb``: +1 / −1 for the latest thumb on this kind, 0 when none;
* ``variant_accept``: the share of thumbs up on this template variant, all users, over the
  last :data:`RECENT_DAYS` days (how this kind of goal is doing lately);
* ``days_since_up``: log(1 + days since the user's latest thumb up), capped at a year;
* ``log_days_idle``, ``log_events_7d``, ``active_days_28d``, ``active_days_90d``,
  ``log_active_days``, ``log_tenure``: how present and how habitual the user is (days since
  their latest event, events in the last week, distinct active days in the last 4 and 13 weeks
  and ever, days since their first event; counts of days and events through log(1 + x)), from
  :meth:`GoalContext.user_activity`; 0 when not given;
* ``prior``: the transparent prior's score (:mod:`orchestrion.ranking.prior`), so that a ranker
  starts from the prior's ordering and learns its corrections.

>>> from datetime import datetime
>>> cands = pl.DataFrame({"user_id": ["u"], "template": ["t"], "variant": ["v"], "kind": ["v"],
...     "items": [["a"]], "utility": [0.5], "signal": [0.2], "novelty": [0.0], "risk": [0.1], "cost": [0.0]})
>>> feats = goal_features(cands, empty_history(), datetime(2024, 1, 8))
>>> feats.select("fatigue_kind", "user_kind_accept").row(0)
(0.0, 0.5)
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Final

import polars as pl

from orchestrion.ranking.prior import prior_score

__all__ = [
    "FEATURES",
    "HISTORY_SCHEMA",
    "RECENT_DAYS",
    "SMOOTHING",
    "empty_history",
    "goal_features",
]

FEATURES: Final = (
    "utility",
    "signal",
    "novelty",
    "risk",
    "log_cost",
    "log_items",
    "fatigue_kind",
    "fatigue_template",
    "user_kind_accept",
    "user_template_accept",
    "user_accept",
    "user_kind_n",
    "user_template_n",
    "user_n",
    "last_kind_thumb",
    "variant_accept",
    "days_since_up",
    "log_days_idle",
    "log_events_7d",
    "active_days_28d",
    "active_days_90d",
    "log_active_days",
    "log_tenure",
    "prior",
)
"""The numeric features, in the order the ranker's design matrix uses."""

HISTORY_SCHEMA: Final[Mapping[str, pl.DataType]] = {
    "user_id": pl.String(),
    "sent_at": pl.Datetime("us"),
    "template": pl.String(),
    "variant": pl.String(),
    "kind": pl.String(),
    "thumb": pl.Int8(),  # 1 up, 0 down, null: no thumb (yet)
    "revealed_at": pl.Datetime("us"),  # when the thumb was received; null without one
}
_ACTIVITY: Final = ("days_idle", "events_7d", "active_days_28d", "active_days_90d", "active_days", "tenure_days")
SMOOTHING: Final = 2.0
RECENT_DAYS: Final = 28.0
_NO_RATE: Final = 0.5  # before any thumb exists anywhere: no evidence either way


def empty_history() -> pl.DataFrame:
    """A history with no deliverables (a new store, the first step of a replay)."""
    return pl.DataFrame(schema=dict(HISTORY_SCHEMA))


def _rates(thumbs: pl.DataFrame, keys: list[str], name: str) -> pl.DataFrame:
    return thumbs.group_by(keys).agg(
        pl.col("thumb").sum().cast(pl.Float64).alias(f"{name}_up"), pl.len().cast(pl.Float64).alias(f"{name}_count")
    )


def goal_features(
    candidates: pl.DataFrame, history: pl.DataFrame, as_of: datetime, activity: pl.DataFrame | None = None
) -> pl.DataFrame:
    """``candidates`` with the :data:`FEATURES` columns added (history before ``as_of`` only).

    ``activity`` is :meth:`GoalContext.user_activity` (``user_id, days_idle, events_7d,
    active_days_28d``).
    """
    if activity is None:
        activity = pl.DataFrame(schema={"user_id": pl.String, **{name: pl.Float64 for name in _ACTIVITY}})
    sent = history.filter(pl.col("sent_at") < as_of)
    thumbs = sent.filter(pl.col("thumb").is_not_null() & (pl.col("revealed_at") <= as_of))
    overall = float(thumbs.get_column("thumb").mean()) if thumbs.height else _NO_RATE  # type: ignore[arg-type]
    recent = thumbs.filter(pl.col("revealed_at") > as_of - timedelta(days=RECENT_DAYS))
    variant = _rates(recent, ["template", "variant"], "variant").join(
        _rates(thumbs, ["template", "variant"], "variant_all"), on=["template", "variant"], how="full", coalesce=True
    )
    last_kind = (
        thumbs.sort("revealed_at")
        .group_by("user_id", "template", "kind")
        .agg((pl.col("thumb").last().cast(pl.Float64) * 2 - 1).alias("last_kind_thumb"))
    )
    last_sent_kind = sent.group_by("user_id", "template", "kind").agg(pl.col("sent_at").max().alias("kind_sent"))
    last_sent_template = sent.group_by("user_id", "template").agg(pl.col("sent_at").max().alias("template_sent"))
    last_up = thumbs.filter(pl.col("thumb") == 1).group_by("user_id").agg(pl.col("sent_at").max().alias("up_at"))
    base = (pl.col("variant_all_up").fill_null(0.0) + SMOOTHING * overall) / (
        pl.col("variant_all_count").fill_null(0.0) + SMOOTHING
    )

    def smoothed(prefix: str) -> pl.Expr:
        return (pl.col(f"{prefix}_up").fill_null(0.0) + SMOOTHING * pl.col("_base")) / (
            pl.col(f"{prefix}_count").fill_null(0.0) + SMOOTHING
        )

    def days(column: str) -> pl.Expr:
        return (pl.lit(as_of) - pl.col(column)).dt.total_seconds() / 86400.0

    frame = (
        candidates.join(variant, on=["template", "variant"], how="left")
        .with_columns(base.alias("_base"))
        .join(_rates(thumbs, ["user_id", "template", "kind"], "uk"), on=["user_id", "template", "kind"], how="left")
        .join(_rates(thumbs, ["user_id", "template"], "ut"), on=["user_id", "template"], how="left")
        .join(_rates(thumbs, ["user_id"], "uu"), on="user_id", how="left")
        .join(last_kind, on=["user_id", "template", "kind"], how="left")
        .join(last_sent_kind, on=["user_id", "template", "kind"], how="left")
        .join(last_sent_template, on=["user_id", "template"], how="left")
        .join(last_up, on="user_id", how="left")
        .join(activity.select("user_id", *_ACTIVITY), on="user_id", how="left")
    )
    out = frame.with_columns(
        (pl.col("cost").clip(0.0) + 1.0).log().alias("log_cost"),
        (pl.col("items").list.len().cast(pl.Float64) + 1.0).log().alias("log_items"),
        pl.when(pl.col("kind_sent").is_null())
        .then(0.0)
        .otherwise(2.0 ** (-days("kind_sent") / 7.0))
        .alias("fatigue_kind"),
        pl.when(pl.col("template_sent").is_null())
        .then(0.0)
        .otherwise(2.0 ** (-days("template_sent") / 7.0))
        .alias("fatigue_template"),
        smoothed("uk").alias("user_kind_accept"),
        smoothed("ut").alias("user_template_accept"),
        smoothed("uu").alias("user_accept"),
        (pl.col("uk_count").fill_null(0.0) + 1.0).log().alias("user_kind_n"),
        (pl.col("ut_count").fill_null(0.0) + 1.0).log().alias("user_template_n"),
        (pl.col("uu_count").fill_null(0.0) + 1.0).log().alias("user_n"),
        pl.col("last_kind_thumb").fill_null(0.0),
        (
            (pl.col("variant_up").fill_null(0.0) + SMOOTHING * pl.col("_base"))
            / (pl.col("variant_count").fill_null(0.0) + SMOOTHING)
        ).alias("variant_accept"),
        (pl.when(pl.col("up_at").is_null()).then(365.0).otherwise(days("up_at").clip(0.0, 365.0)) + 1.0)
        .log()
        .alias("days_since_up"),
        (pl.col("days_idle").fill_null(0.0).clip(0.0) + 1.0).log().alias("log_days_idle"),
        (pl.col("events_7d").fill_null(0.0) + 1.0).log().alias("log_events_7d"),
        pl.col("active_days_28d").fill_null(0.0),
        pl.col("active_days_90d").fill_null(0.0),
        (pl.col("active_days").fill_null(0.0) + 1.0).log().alias("log_active_days"),
        (pl.col("tenure_days").fill_null(0.0).clip(0.0) + 1.0).log().alias("log_tenure"),
    ).drop(
        "_base",
        "variant_up",
        "variant_count",
        "variant_all_up",
        "variant_all_count",
        "uk_up",
        "uk_count",
        "ut_up",
        "ut_count",
        "uu_up",
        "uu_count",
        "kind_sent",
        "template_sent",
        "up_at",
        "days_idle",
        "events_7d",
        "active_days",
        "tenure_days",
    )
    return out.with_columns(pl.Series("prior", prior_score(out)))
