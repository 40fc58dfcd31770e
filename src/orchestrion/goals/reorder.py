"""``reorder``: one cart of things the user buys again, with usual quantities and a price total.

Reads the per (user, item) purchase statistics of ``pipelines/purchase_stats.sql`` (handed in
as ``ctx.purchase_stats``) and, when one is handed in, the repurchase model's probability that
each item is bought again within its horizon. Without a model, a transparent rhythm rule stands
in: an item bought at least twice is as due as the share of its usual interval that has passed
(capped at 1, fading once it is more than twice overdue), times how regular it is
((n − 1) / n for n purchases).

Variants (each at most ``size`` items; charges such as postage are never in a cart, nor an item
the user returned within ``returned_days``):

* ``due`` — the items most likely to be bought now (probability at least ``min_due``); its title
  calls them due only as far as the person's own rhythm says so (:data:`DUE_WITHIN_DAYS`);
* ``staples`` — the items bought on the most occasions;
* ``last_order`` — the items of the user's latest purchase day.

Numbers: ``utility`` = P(at least one cart item is bought) = 1 − Π(1 − pᵢ) with the per-item
probabilities above; ``signal`` = how repeated the cart's items are (mean of (n − 1)/4, capped
at 1); ``novelty`` = 0 (every item was bought before); ``cost`` = the cart's price total; a cart
spends money, so ``risk`` starts at 0.2 and grows with the total up to ``large_total``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from orchestrion.goals.base import candidate_frame, empty_candidates, json_column
from orchestrion.money import format_money

if TYPE_CHECKING:
    from orchestrion.goals.context import GoalContext

__all__ = ["Reorder", "ReorderConfig", "cart_words", "rhythm_probability"]

DUE_WITHIN_DAYS: Final = 14
"""A cart item is called *due* when its usual next purchase — its usual gap after the last time —
is at most this many days away (or past). The model may put an item in the ``due`` cart for other
reasons (a customer who buys often); its title then does not call it due."""

CURRENCY: Final = "GBP"
"""The carts' currency: the purchase history's prices are the shop's (Online Retail's are GBP)."""


class ReorderConfig(BaseModel):
    """Knobs of :class:`Reorder`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(8, ge=1, description="Most items in one cart.")
    min_due: float = Field(0.15, ge=0, le=1, description="Least probability for an item in the 'due' cart.")
    min_occasions: int = Field(2, ge=1, description="Purchase days needed before an item counts as a habit.")
    large_total: float = Field(1000.0, gt=0, description="A cart total at which risk reaches its maximum.")
    returned_days: int = Field(
        90, ge=0, description="An item the user returned within this many days is not reordered (0: returns ignored)."
    )
    max_line_total: float | None = Field(
        None, ge=0,
        description="An item costing more than this at its usual quantity is not offered: no "
        "order under the operator's order limit could hold it. None: no limit (the replay's default).",
    )


def rhythm_probability(frame: pl.DataFrame) -> pl.Expr:
    """The model-free due score of each purchase_stats row (see the module docstring)."""
    n = pl.col("n_purchases").cast(pl.Float64)
    ratio = (pl.col("days_since_last") / pl.col("median_interval_days")).fill_nan(None)
    fade = pl.when(ratio > 2.0).then((-(ratio - 2.0)).exp()).otherwise(1.0)
    return (ratio.clip(0.0, 1.0) * fade * (n - 1.0) / n).fill_null(0.0)


class Reorder:
    """A cart of due items, of staples, or of the last order, with quantities and a total."""

    name: str = "reorder"
    domain: str = "retail"
    variants: tuple[str, ...] = ("due", "staples", "last_order")
    description: str = "Restock what the user buys again, as one cart awaiting approval."

    def __init__(self, config: ReorderConfig | None = None, *, line_limits: Mapping[str, float] | None = None) -> None:
        self.config = config or ReorderConfig()
        self.line_limits = dict(line_limits or {})
        """Per user, a lower ``max_line_total`` than the config's (their own order limit)."""

    def propose(self, ctx: GoalContext) -> pl.DataFrame:
        users = ctx.domain_users(self.domain)
        stats = ctx.purchase_stats
        if users.size == 0 or stats is None or stats.height == 0:
            return empty_candidates()
        # The last order is the user's latest purchase day (before any item is left out): an item
        # bought the day before, even less than 24 hours earlier, was not in it.
        pairs = ctx.drop_excluded(
            stats.filter(pl.col("user_id").is_in(users.tolist())).with_columns(
                pl.col("last_ts").max().over("user_id").dt.date().alias("last_order_day")
            )
        )
        c = self.config
        if c.returned_days > 0:
            # A return says the person had too much of it, or did not want it: not "buy it again".
            since = ctx.as_of - timedelta(days=c.returned_days)
            returned = (
                ctx.batch_events()
                .filter((pl.col("type") == "return") & (pl.col("ts") >= since) & pl.col("item_id").is_not_null())
                .select("user_id", "item_id")
                .unique()
            )
            pairs = pairs.join(returned, on=["user_id", "item_id"], how="anti")
        habit = pl.col("n_purchases") >= c.min_occasions
        in_last_order = pl.col("last_ts").dt.date() == pl.col("last_order_day")
        # Only habits and last-order items can be in a cart, and of the last order's items that are
        # not habits only the first `size` of each user's can: the model scores just those rows
        # (half of them on Online Retail, whose last orders are long).
        pairs = self._priced(ctx, pairs.filter(habit | in_last_order))
        if c.max_line_total is not None or self.line_limits:  # no order could hold it: cancelled day after day
            line = pl.col("unit_price").fill_null(0.0) * pl.col("quantity")  # an order line holds the usual
            limit = pl.col("user_id").replace_strict(
                self.line_limits, default=c.max_line_total, return_dtype=pl.Float64
            ) if self.line_limits else pl.lit(c.max_line_total, pl.Float64)
            pairs = pairs.filter(limit.is_null() | (line <= limit))
        if pairs.height == 0:
            return empty_candidates()
        last_by, last_descending = ["user_id", "n_purchases", "item_id"], [False, True, False]
        last_cart = pairs.filter(in_last_order).sort(last_by, descending=last_descending)
        last_cart = last_cart.group_by("user_id", maintain_order=True).head(c.size)
        pairs = pl.concat([pairs.filter(habit), last_cart.filter(~habit)])
        if ctx.repurchase is not None:
            p = ctx.repurchase.predict(pairs)
        else:
            p = pairs.select(rhythm_probability(pairs)).to_series().to_numpy()
        pairs = pairs.with_columns(pl.Series("p", np.asarray(p, dtype=np.float64)))
        due = pairs.filter(habit & (pl.col("p") >= c.min_due)).sort(
            ["user_id", "p", "item_id"], descending=[False, True, False]
        )
        staples = pairs.filter(habit).sort(
            ["user_id", "n_purchases", "last_ts", "item_id"], descending=[False, True, True, False]
        )
        # every row of each user's first `size` last-order rows is still here, so the cart is the same
        last = pairs.filter(in_last_order).sort(last_by, descending=last_descending)
        carts = [
            self._cart(frame, variant, ctx.as_of)
            for frame, variant in ((due, "due"), (staples, "staples"), (last, "last_order"))
        ]
        kept = [cart for cart in carts if cart.height]
        found = pl.concat(kept) if kept else pl.DataFrame()
        return candidate_frame(found) if found.height else empty_candidates()

    def _priced(self, ctx: GoalContext, pairs: pl.DataFrame) -> pl.DataFrame:
        """Pairs with a title and a unit price (the last paid, else the catalog's), charges left out."""
        catalog = ctx.catalog(self.domain)
        columns = [pl.col("item_id")]
        columns.append(pl.col("title") if "title" in catalog.columns else pl.lit(None, pl.String).alias("title"))
        columns.append(pl.col("price") if "price" in catalog.columns else pl.lit(None, pl.Float64).alias("price"))
        columns.append(
            pl.col("category") if "category" in catalog.columns else pl.lit(None, pl.String).alias("category")
        )
        info = catalog.select(columns)
        return (
            pairs.join(info, on="item_id", how="left")
            .filter(pl.col("category").is_null() | (pl.col("category") != "charge"))
            .with_columns(
                pl.when(pl.col("last_price") > 0)
                .then(pl.col("last_price"))
                .otherwise(pl.col("price"))
                .fill_null(0.0)
                .alias("unit_price"),
                pl.col("usual_quantity").fill_null(1.0).clip(1.0).ceil().alias("quantity"),
                pl.coalesce("title", "item_id").alias("title"),
            )
        )

    def _cart(self, ranked: pl.DataFrame, variant: str, as_of: datetime) -> pl.DataFrame:
        c = self.config
        top = ranked.group_by("user_id", maintain_order=True).head(c.size)
        if top.height == 0:
            return pl.DataFrame()
        # Each line keeps the facts its sentence is written from, so that the sentence can be written
        # again for whatever part of the cart is finally delivered (cap, exclusions, stock, re-plan).
        line = pl.struct(
            "item_id",
            "title",
            "quantity",
            pl.col("unit_price").round(2),
            (pl.col("quantity") * pl.col("unit_price")).round(2).alias("line_total"),
            pl.col("n_purchases").alias("n"),
            pl.col("median_interval_days").round(4).alias("gap"),
            pl.col("days_since_last").round(4).alias("since"),
            pl.col("days_since_first").round(4).alias("first"),
        )
        carts = top.group_by("user_id", maintain_order=True).agg(
            pl.col("item_id").alias("items"),
            line.alias("lines"),
            (pl.col("quantity") * pl.col("unit_price")).sum().round(2).alias("total"),
            (1.0 - (1.0 - pl.col("p").clip(0.0, 1.0)).product()).alias("utility"),
            ((pl.col("n_purchases") - 1) / 4.0).clip(0.0, 1.0).mean().alias("signal"),
            pl.col("user_days_since_last").first().round(4).alias("user_since"),
        )
        words = [
            cart_words(variant, lines, user_since, as_of)
            for lines, user_since in zip(carts.get_column("lines").to_list(), carts.get_column("user_since").to_list(),
                                         strict=True)
        ]
        carts = carts.with_columns(
            pl.Series("title", [w[0] for w in words], dtype=pl.String),
            pl.Series("why", [w[1] for w in words], dtype=pl.String),
        )
        return carts.select(
            "user_id",
            pl.lit(self.name).alias("template"),
            pl.lit(variant).alias("variant"),
            pl.lit(variant).alias("kind"),
            json_column(size=c.size, variant=variant).alias("params"),
            "title",
            "items",
            json_column(
                as_of=as_of.isoformat(),
                currency=CURRENCY,
                lines=pl.col("lines"),
                total=pl.col("total"),
                user_since=pl.col("user_since"),
            ).alias("details"),
            pl.col("utility").clip(0.0, 1.0),
            pl.col("signal").clip(0.0, 1.0),
            pl.lit(0.0).alias("novelty"),
            pl.col("total").alias("cost"),
            (0.2 + 0.6 * (pl.col("total") / c.large_total).clip(0.0, 1.0)).alias("risk"),
            "why",
        )


def _range(values: Sequence[int]) -> str:
    """'4' when every value is 4, else '2–9' (smallest to largest): true of each value."""
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}–{high}"


def days_ago(as_of: datetime, days: float) -> int:
    """Calendar days between ``as_of`` and the moment ``days`` (a float) before it.

    >>> days_ago(datetime(2011, 11, 1, 7), 3.5)  # 28 October, 19:00
    4
    """
    return (as_of.date() - (as_of - timedelta(days=days)).date()).days


def _ago(days: str) -> str:
    """'4 days ago', '1 day ago', 'earlier today', '2–5 days ago'."""
    return {"0": "earlier today", "1": "1 day ago"}.get(days, f"{days} days ago")


def cart_words(
    variant: str, lines: Sequence[Mapping[str, Any]], user_since: float | None, as_of: datetime
) -> tuple[str, str]:
    """The title and "why this" of a cart of ``lines`` (each with its facts: ``n`` purchase days,
    ``gap`` median days between them, ``since`` and ``first`` days since the latest and the first),
    written for exactly these lines: every number holds for each of them.

    "Days ago" counts calendar days, as a person reading the page counts them (an order of 28
    October is "4 days ago" on 1 November, whatever its hour); ranges run from the smallest to the
    largest value among the lines.

    >>> line = {"quantity": 2, "line_total": 3.0, "n": 3, "gap": 20.5, "since": 18.2, "first": 70.0}
    >>> title, why = cart_words("due", [line, {**line, "gap": 41.0, "since": 30.9}], 5.0, datetime(2011, 11, 1))
    >>> title
    'Reorder: 2 items due (£6.00)'
    >>> why
    'you bought each of these 2 items on 3 separate days, usually every 20–41 days; the last time was 19–31 days ago'

    A ``due`` cart is called due only as far as its items are (:data:`DUE_WITHIN_DAYS`):

    >>> cart_words("due", [line, {**line, "gap": 70.0, "since": 8.0}], 5.0, datetime(2011, 11, 1))[0]
    'Reorder: 2 items, 1 of them due (£6.00)'
    >>> cart_words("due", [{**line, "gap": 147.0, "since": 15.0}], 5.0, datetime(2011, 11, 1))[0]
    'Reorder: 1 item you may want again (£3.00)'
    """
    known = [line for line in lines if line.get("n") is not None]
    total = round(sum(float(line.get("line_total") or 0.0) for line in lines), 2)
    n = len(known)
    noun = "item" if len(lines) == 1 else "items"
    each = "this item" if n == 1 else f"each of these {n} items"
    money = format_money(total, CURRENCY)
    if not known:
        return f"Reorder: {len(lines)} {noun} ({money})", "items picked for this cart while it was planned"
    times = _range([int(line["n"]) for line in known])
    since = _ago(_range([days_ago(as_of, float(line["since"])) for line in known]))
    if variant == "due":
        gaps = [math.floor(float(line["gap"])) for line in known if line.get("gap") is not None]
        due = sum(
            1 for line in known
            if line.get("gap") is not None
            and days_ago(as_of, float(line["since"])) + DUE_WITHIN_DAYS >= math.floor(float(line["gap"]))
        )
        if due == len(lines):
            title = f"Reorder: {len(lines)} {noun} due ({money})"
        elif due:
            title = f"Reorder: {len(lines)} {noun}, {due} of them due ({money})"
        else:
            title = f"Reorder: {len(lines)} {noun} you may want again ({money})"
        rhythm = _range(gaps)
        every = ("" if len(gaps) != n else ", usually every day" if rhythm == "1" else f", usually every {rhythm} days")
        why = f"you bought {each} on {times} separate days{every}; the last time was {since}"
    elif variant == "staples":
        title = f"Reorder your staples: {len(lines)} {noun} ({money})"
        start = (as_of - timedelta(days=max(float(line["first"]) for line in known))).date()
        why = f"you bought {each} on {times} separate days since {start.isoformat()}"
    else:
        title = f"From your last order: {len(lines)} {noun} ({money})"
        days = _ago(str(days_ago(as_of, float(user_since)))) if user_since is not None else since
        these = "this item was" if n == 1 else f"these {n} items were"
        before = sum(1 for line in known if int(line["n"]) >= 2)
        if n == 1:
            had = "bought it" if before else "not bought it"
        else:
            had = (f"bought all {before} of them" if before == n else f"bought {before} of them") if before else (
                "bought none of them"
            )
        why = f"{these} in your last order, {days}; you had {had} before"
    if len(known) < len(lines):
        why += f"; {len(lines) - len(known)} more picked for this cart while it was planned"
    return title, why
