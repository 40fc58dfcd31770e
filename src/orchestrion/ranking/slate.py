"""A day is a slate: what one person receives does not repeat itself or what they got lately.

Two deliverables *substantially overlap* when the Jaccard index of their item sets,
|A ∩ B| ÷ |A ∪ B|, is at least ``ChoiceConfig.redundancy`` (0.5 by default: a cart of 6 lines
and one of 4 of those lines overlap, 4 ÷ 6; two carts sharing 2 of 6 lines each do not,
2 ÷ 10); and the worse-scored one overlaps the better when more than that share of its own items
are in the other, or when it would be left with fewer than :data:`MIN_KEPT` (2) items without
them: two lists of 10 movies sharing 6 overlap (Jaccard 6 ÷ 14 = 0.43, but 6 of the second's
10), and so does a digest of 2 articles sharing 1 with a better one of 5 — the delivery, which
leaves out of a later list what an earlier one holds, would cancel the second list and leave its
place empty. Two *carts* (goals that spend money, ``cost`` > 0) from the same shop also overlap,
whatever their lines: a person gets at most one cart per shop a day.

* Within a day, of two overlapping candidates of a user the better-scored one is kept, the other
  is not chosen, reason ``redundant`` (:func:`suppressed`: a non-maximum suppression, so a goal
  that only overlapped a goal already suppressed stays in). It runs inside the chooser's
  greedy set, so the off-policy estimate of another ranker applies the same rule with that
  ranker's scores.
* Across days, a candidate that overlaps one of the user's deliverables of the last
  ``recent_days`` days (or earlier today: a trigger's cart), or one still awaiting approval
  however old, that has not failed is not chosen, reason ``recent`` (:func:`recent_overlaps`; it
  does not depend on the scores). It is compared with what the deliverable holds — overlapping
  it, or holding at least the same share of its items: the candidate may lose items to later cuts
  (the order cap, stock), and what it keeps then cannot overlap that deliverable — and with what
  its goal proposed (a cart cut to the order cap keeps few of its lines, and tomorrow's
  candidate, cut the same way, would be the same cart).
* A cart still waiting for approval holds back any candidate sharing even one item with it
  (``recent`` too): approving both would order that item twice, and the waiting cart already
  offers it.
* A deliverable the person rejected, thumbed down or left unapproved until it expired holds back
  what overlaps it for ``turned_down_days`` (60), not only ``recent_days``: what they turned down
  is not sent again a week later (nor the same day an ignored cart is cancelled).

Pairs are found with one join of the exploded item lists on (user, item): no loop over users.

>>> frame = pl.DataFrame({"user_id": ["u", "u", "u"], "items": [["a", "b"], ["a", "b", "c"], ["d"]],
...     "cost": [0.0, 0.0, 0.0]})
>>> suppressed(frame, np.array([0.9, 0.5, 0.1]), np.ones(3, dtype=bool), 0.5).tolist()
[-1, 0, -1]
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl

__all__ = ["DEFAULT_REDUNDANCY", "MIN_KEPT", "jaccard_pairs", "recent_overlaps", "shop_only", "suppressed"]

DEFAULT_REDUNDANCY: Final = 0.5
MIN_KEPT: Final = 2
"""A goal left with fewer items than this by the better one it shares items with overlaps it: the
delivery sends no list of one (``goals.MIN_LIST_ITEMS``)."""
# What an earlier deliverable matched by, best first: what it holds, what its goal proposed, its shop.
_WAITING: Final = 3
_HOLDS: Final = 2
_PROPOSED: Final = 1
_SHOP: Final = 0


def _exploded(frame: pl.DataFrame, key: str) -> pl.DataFrame:
    return (
        frame.select(key, "user_id", pl.col("items").list.unique().alias("item"))
        .with_columns(pl.col("item").list.len().alias("size"))
        .explode("item")
        .drop_nulls("item")
    )


def jaccard_pairs(left: pl.DataFrame, right: pl.DataFrame) -> pl.DataFrame:
    """``left, right, shared, jaccard`` for every pair of rows of one user sharing an item.

    ``left`` and ``right`` have ``key, user_id, items`` (``key`` named ``left`` and ``right``).
    """
    a = _exploded(left, "left").rename({"size": "left_size"})
    b = _exploded(right, "right").rename({"size": "right_size"})
    return (
        a.join(b, on=["user_id", "item"], how="inner")
        .group_by("left", "right")
        .agg(pl.len().alias("shared"), pl.col("left_size").first(), pl.col("right_size").first())
        .with_columns(
            (pl.col("shared") / (pl.col("left_size") + pl.col("right_size") - pl.col("shared"))).alias("jaccard")
        )
        .select(
            "left", "right", "shared", "jaccard", (pl.col("shared") / pl.col("right_size")).alias("covers"),
            "left_size", "right_size",
        )
    )


def _overlap(threshold: float, keep: int, size: str) -> pl.Expr:
    """A goal of ``size`` items overlaps a better one it shares ``shared`` items with (module docstring)."""
    shared, n = pl.col("shared"), pl.col(size)
    return (pl.col("jaccard") >= threshold) | (shared > threshold * n) | ((shared > 0) & (n - shared < keep))


def _edges(
    frame: pl.DataFrame, threshold: float, keep: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Unordered pairs (i < j) of rows of one user sharing an item, and whether they overlap when i,
    or when j, is the worse-scored of the two (module docstring); a second cart of a shop always does."""
    rows = frame.select("user_id", "items").with_row_index("key").with_columns(pl.col("key").cast(pl.Int64))
    pairs = (
        jaccard_pairs(rows.rename({"key": "left"}), rows.rename({"key": "right"}))
        .filter(pl.col("left") < pl.col("right"))
        .with_columns(
            _overlap(threshold, keep, "left_size").alias("_i_low"),
            _overlap(threshold, keep, "right_size").alias("_j_low"),
        )
        .filter(pl.col("_i_low") | pl.col("_j_low"))
    )
    i = pairs.get_column("left").to_numpy().astype(np.int64)
    j = pairs.get_column("right").to_numpy().astype(np.int64)
    i_low = pairs.get_column("_i_low").to_numpy().astype(bool)
    j_low = pairs.get_column("_j_low").to_numpy().astype(bool)
    if "cost" in frame.columns:
        shop = pl.col("shop") if "shop" in frame.columns else (pl.col("template") if "template" in frame.columns
                                                                 else pl.lit(""))
        carts = (
            frame.select("user_id", shop.alias("_shop"), pl.col("cost"))
            .with_row_index("key")
            .filter(pl.col("cost") > 0)
            .select(pl.col("key").cast(pl.Int64), "user_id", "_shop")
        )
        same = carts.join(carts, on=["user_id", "_shop"], suffix="_r").filter(pl.col("key") < pl.col("key_r"))
        i = np.concatenate([i, same.get_column("key").to_numpy().astype(np.int64)])
        j = np.concatenate([j, same.get_column("key_r").to_numpy().astype(np.int64)])
        both = np.ones(same.height, dtype=bool)
        i_low, j_low = np.concatenate([i_low, both]), np.concatenate([j_low, both])
    return i, j, i_low, j_low


def suppressed(
    frame: pl.DataFrame,
    scores: npt.NDArray[np.float64],
    eligible: npt.NDArray[np.bool_],
    threshold: float,
    keep: int = MIN_KEPT,
) -> npt.NDArray[np.int64]:
    """Per row: the index of the better-scored row of the same user that made it redundant, else −1.

    Only ``eligible`` rows take part. Rows are visited best first (ties: the earlier row): a row
    overlapping a row already kept is suppressed, by the best-scored such row; the others are kept.
    Done in rounds over all users at once: a row is decided when every better row it overlaps is.
    """
    n = frame.height
    out = np.full(n, -1, dtype=np.int64)
    if n == 0 or "items" not in frame.columns:
        return out
    i, j, i_low, j_low = _edges(frame, threshold, keep)
    i_first = (scores[i] > scores[j]) | ((scores[i] == scores[j]) & (i < j))
    # an edge counts when the pair overlaps judged by the worse one's own items
    taking = eligible[i] & eligible[j] & np.where(i_first, j_low, i_low)
    i, j, i_first = i[taking], j[taking], i_first[taking]
    if i.size == 0:
        return out
    hi, lo = np.where(i_first, i, j), np.where(i_first, j, i)
    state = np.where(eligible, 0, 3)  # 0 undecided, 1 kept, 2 suppressed, 3 not taking part
    while (state == 0).any():
        kept_in = np.bincount(lo[state[hi] == 1], minlength=n)
        open_in = np.bincount(lo[state[hi] == 0], minlength=n)
        undecided = state == 0
        state = np.where(undecided & (kept_in > 0), 2, np.where(undecided & (open_in == 0), 1, state))
    by = state[hi] == 1
    losers = state[lo] == 2
    pick = by & losers
    # The best-scored kept row each suppressed row overlaps.
    order = np.lexsort((-scores[hi[pick]], lo[pick]))
    lo_p, hi_p = lo[pick][order], hi[pick][order]
    first = np.ones(lo_p.size, dtype=bool)
    first[1:] = lo_p[1:] != lo_p[:-1]
    out[lo_p[first]] = hi_p[first]
    return out


def shop_only(
    frame: pl.DataFrame, redundant_by: npt.NDArray[np.int64], threshold: float | None, keep: int = MIN_KEPT
) -> npt.NDArray[np.bool_]:
    """Per row of :func:`suppressed`'s answer: made redundant only by the one-cart-per-shop rule —
    its items and the kept row's do not overlap — so that its sentence does not say it repeats it.

    >>> f = pl.DataFrame({"user_id": ["u"] * 3, "items": [["a", "b"], ["c"], ["a", "b", "d"]]})
    >>> shop_only(f, np.array([-1, 0, 0]), 0.5).tolist()
    [False, True, False]
    """
    out = np.zeros(frame.height, dtype=bool)
    rows = np.flatnonzero(redundant_by >= 0)
    if rows.size == 0 or "items" not in frame.columns:
        return out
    out[rows] = True
    if threshold is None:
        return out
    users, items = frame.get_column("user_id"), frame.get_column("items")
    left = pl.DataFrame({"left": rows, "user_id": users.gather(rows), "items": items.gather(rows)})
    right = pl.DataFrame({"right": rows, "user_id": users.gather(rows), "items": items.gather(redundant_by[rows])})
    pairs = jaccard_pairs(left, right).filter(
        (pl.col("left") == pl.col("right")) & _overlap(threshold, keep, "left_size")
    )
    out[pairs.get_column("left").to_numpy()] = False
    return out


def _flag(frame: pl.DataFrame, name: str, default: bool) -> pl.Expr:
    """``frame``'s boolean column ``name``, ``default`` where it is null or missing."""
    return (pl.col(name).fill_null(default) if name in frame.columns else pl.lit(default)).alias(name)


def recent_overlaps(candidates: pl.DataFrame, previous: pl.DataFrame, threshold: float) -> pl.DataFrame:
    """``candidates`` with ``recent`` (bool) and ``recent_detail`` (the sentence, or null).

    ``previous`` holds the users' recent deliverables: ``user_id, date, title, items`` and, for
    the one-cart-per-shop rule, ``cost`` and ``shop`` (the candidates then need ``cost, shop,
    date``: a cart made earlier the same day from the same shop counts, whatever its lines).
    A candidate is ``recent`` when it overlaps one of them (module docstring); the detail names
    the best-overlapping one.
    """
    none = candidates.with_columns(pl.lit(False).alias("recent"), pl.lit(None, pl.String).alias("recent_detail"))
    if previous.height == 0 or candidates.height == 0:
        return none
    # what became of each earlier deliverable; a frame without a column says the common case
    previous = previous.with_columns(
        _flag(previous, "waiting", False), _flag(previous, "turned_down", False), _flag(previous, "expired", False),
        _flag(previous, "kept", True),
    )
    rows = candidates.select("user_id", "items").with_row_index("left")
    earlier = previous.select("user_id", "items").with_row_index("right")
    # Or it holds at least that share of an earlier deliverable's own items: whatever the candidate
    # loses to later cuts (the order cap, stock), what it keeps can then not overlap that one.
    columns = ("left", "right", "shared", "jaccard")
    waiting = previous.select(pl.col("waiting").alias("_waiting")).with_row_index("right")
    pairs = (
        jaccard_pairs(rows, earlier)
        .join(waiting, on="right")
        .filter((pl.col("jaccard") >= threshold) | (pl.col("covers") >= threshold) | pl.col("_waiting"))
        .select(*columns, pl.when(pl.col("_waiting")).then(_WAITING).otherwise(_HOLDS).alias("_by"))
    )
    if "goal_items" in previous.columns:
        # What the earlier goal proposed: a cart cut to the order cap holds fewer lines than the
        # candidate that would be cut the same way, so its own lines alone would not match.
        proposed = previous.select("user_id", pl.col("goal_items").alias("items")).with_row_index("right")
        more = jaccard_pairs(rows, proposed).filter(pl.col("jaccard") >= threshold)
        pairs = pl.concat([pairs, more.select(*columns, pl.lit(_PROPOSED).alias("_by"))])
    if {"cost", "shop", "date"} <= set(candidates.columns) and {"cost", "shop"} <= set(previous.columns):
        # One cart per shop a day, and none while a cart from the shop waits for the person's approval
        # (whatever its day): one open order a shop, not a new one every day nobody answers.
        carts = candidates.select("user_id", "shop", "cost", "date").with_row_index("left").filter(pl.col("cost") > 0)
        sent = previous.select(
            "user_id", "shop", "cost", "date", pl.col("waiting").alias("_open")
        ).with_row_index("right").filter(pl.col("cost") > 0)
        same_shop = (
            carts.join(sent, on=["user_id", "shop"])
            .filter((pl.col("date") == pl.col("date_right")) | pl.col("_open"))
            .select(
                "left", "right", pl.lit(0, pl.UInt32).alias("shared"), pl.lit(0.0).alias("jaccard"),
                pl.lit(_SHOP).alias("_by"),
            )
        )
        pairs = pl.concat([pairs.cast({"shared": pl.UInt32}), same_shop], how="vertical_relaxed")
    if pairs.height == 0:
        return none
    cart = (pl.col("cost").fill_null(0.0) > 0) if "cost" in previous.columns else pl.lit(False)
    meta = previous.select(
        "title", pl.col("date").cast(pl.String), "turned_down", "expired", "kept", pl.col("waiting").alias("_pending"),
        pl.when(cart).then(pl.lit("ordered")).otherwise(pl.lit("sent")).alias("_done"),
    ).with_row_index("right")
    shares = pl.when(pl.col("shared") == 1).then(pl.lit("an item")).otherwise(pl.format("{} items", "shared"))
    have = pl.when(pl.col("_pending")).then(
        pl.format("which was waiting for your approval at the time (from {})", "date")
    ).otherwise(pl.format("which you already have from {}", "date"))
    best = (
        pairs.join(meta, on="right")
        .sort("left", "_by", "jaccard", "date", descending=[False, True, True, True])
        .unique("left", keep="first")
        .with_columns(
            pl.when(pl.col("_by") == _WAITING)
            .then(pl.format("it shares {} with '{}', which was waiting for your approval at the time (from {})",
                            shares, "title", "date"))
            .when(pl.col("expired"))
            .then(pl.format("it is much like '{}', which you left unapproved until it was cancelled (from {})",
                            "title", "date"))
            .when(pl.col("turned_down"))
            .then(pl.format("it is much like '{}', which you turned down (from {})", "title", "date"))
            .when((pl.col("_by") == _SHOP) & pl.col("_pending"))
            .then(pl.format("a cart from the same shop, '{}', from {}, was waiting for your approval at the time",
                            "title", "date"))
            .when(pl.col("_by") == _SHOP)
            .then(pl.format("you already have a cart from the same shop, '{}', from {}", "title", "date"))
            .when(pl.col("kept").not_())  # cancelled, or not ordered: nobody has it, but it would be the same again
            .then(pl.format("it would repeat '{}', from {}, which was not {}", "title", "date", "_done"))
            .when(pl.col("_by") == _PROPOSED)  # like what the earlier goal proposed, not what its cart kept
            .then(pl.format("it is much the same as what was first proposed for '{}' (from {}), before that was "
                            "cut to fit", "title", "date"))
            .when(pl.col("_by") == _HOLDS)
            .then(pl.format("it shares {} with '{}', {}", shares, "title", have))
            .otherwise(pl.format("it would repeat '{}', {}", "title", have))
            .alias("recent_detail")
        )
        .select("left", "recent_detail")
    )
    return (
        candidates.with_row_index("left")
        .join(best, on="left", how="left")
        .with_columns(pl.col("recent_detail").is_not_null().alias("recent"))
        .drop("left")
    )
