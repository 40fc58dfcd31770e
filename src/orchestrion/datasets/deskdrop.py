"""CI&T DeskDrop reading log → ``news`` events, ``articles.csv`` → ``news`` items.

* ``users_interactions.csv(.gz)``: eventType VIEW, LIKE, BOOKMARK, COMMENT CREATED, FOLLOW →
  ``view``, ``like``, ``bookmark``, ``comment``, ``follow``; ts from unix seconds; no value;
  ``session_id``, ``user_agent``, ``region`` and ``country`` in properties.
* ``articles.csv``: the 213 articles with text, as items with title, text and
  ``{"language", "url", "shared_at"}`` in properties. The other contents have no catalog entry.
* IDs are signed 64-bit integers: every column is read as text, never as a number, so no id is
  rounded through a float.

Ids: users ``deskdrop:{personId}``, items ``deskdrop:{contentId}``, events
``deskdrop:{personId}:{contentId}:{type}:{timestamp}:{sessionId}``. That key is one action of one
person in one session at one second, so rows repeating it are the same event logged twice: the
file holds 2,284 such repeats (all VIEW; 2,273 pairs where one copy lacks the user agent,
region and country, and 11 exact copies). One event is kept per key, the copy with the most
client fields, and the others are counted as duplicates of the load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import polars as pl

from orchestrion.datasets.loading import Dataset, DatasetFrames, json_object, no_traits, split_rejected

__all__ = ["DATASET", "EVENT_TYPES", "read"]

EVENT_TYPES: Final = {
    "VIEW": "view",
    "LIKE": "like",
    "BOOKMARK": "bookmark",
    "COMMENT CREATED": "comment",
    "FOLLOW": "follow",
}
_RAW: Final = ["timestamp", "eventType", "contentId", "personId", "sessionId", "userAgent", "userRegion", "userCountry"]
_CLIENT: Final = ["userAgent", "userRegion", "userCountry"]
_KEY: Final = ["personId", "contentId", "eventType", "timestamp", "sessionId"]


def read(path: Path) -> DatasetFrames:
    """Read the DeskDrop folder; unknown event types and unreadable times are rejected."""
    folder = path.parent if path.is_file() else path
    log = next(
        (folder / n for n in ("users_interactions.csv.gz", "users_interactions.csv") if (folder / n).is_file()), None
    )
    articles = folder / "articles.csv"
    if log is None:
        raise DATASET.missing(folder / "users_interactions.csv.gz", "file")
    if not articles.is_file():
        raise DATASET.missing(articles, "file")
    raw = pl.read_csv(log, infer_schema=False).select(_RAW).with_columns(pl.all().str.strip_chars().replace("", None))
    kind = pl.col("eventType").replace_strict(EVENT_TYPES, default=None)
    seconds = pl.col("timestamp").cast(pl.Int64, strict=False)
    valid, failed = split_rejected(
        raw,
        [
            (pl.col("personId").is_null() | pl.col("contentId").is_null(), "personId or contentId is missing"),
            (kind.is_null(), f"eventType is not one of {', '.join(EVENT_TYPES)}"),
            (seconds.is_null(), "timestamp is not a whole number of unix seconds"),
        ],
        event_id=pl.format("deskdrop:{}:{}:{}:{}:{}", "personId", "contentId", kind, "timestamp", "sessionId"),
        fallback_prefix="deskdrop",
        payload_columns=_RAW,
    )
    unique = _keep_richest(valid)
    events = unique.select(
        "event_id",
        ("deskdrop:" + pl.col("personId")).alias("user_id"),
        kind.alias("type"),
        ("deskdrop:" + pl.col("contentId")).alias("item_id"),
        pl.lit("news").alias("domain"),
        pl.from_epoch(seconds, time_unit="s").cast(pl.Datetime("us")).alias("ts"),
        pl.lit(None, dtype=pl.Float64).alias("value"),
        json_object(
            session_id=pl.col("sessionId"),
            user_agent=pl.col("userAgent"),
            region=pl.col("userRegion"),
            country=pl.col("userCountry"),
        ).alias("properties"),
    )
    return DatasetFrames(
        events,
        failed,
        _articles(articles),
        no_traits(events["user_id"]),
        duplicates=valid.height - unique.height,
    )


def _keep_richest(valid: pl.DataFrame) -> pl.DataFrame:
    """One row per event key: the one with the most client fields, then the first in the file."""
    missing = pl.sum_horizontal([pl.col(c).is_null() for c in _CLIENT])
    return (
        valid.with_row_index("_row")
        .sort(missing, "_row")
        .unique("event_id", keep="first", maintain_order=True)
        .sort("_row")
        .drop("_row")
    )


def _articles(path: Path) -> pl.DataFrame:
    articles = pl.read_csv(path, infer_schema=False)
    shared = pl.from_epoch(pl.col("shared_timestamp").cast(pl.Int64, strict=False), time_unit="s")
    return articles.filter(pl.col("contentId").is_not_null()).select(
        ("deskdrop:" + pl.col("contentId").str.strip_chars()).alias("item_id"),
        pl.lit("news").alias("domain"),
        "title",
        "text",
        pl.struct(
            language=pl.col("lang"),
            url=pl.col("url"),
            shared_at=shared.dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        ).alias("properties"),
    )


DATASET: Final = Dataset(
    name="deskdrop",
    folder="deskdrop",
    domain="news",
    timezone="UTC",
    download_url="https://www.kaggle.com/datasets/gspmoreira/articles-sharing-reading-from-cit-deskdrop",
    description="CI&T DeskDrop internal-news reading log, 2016-03 .. 2017-02 (evaluation only)",
    read=read,
)
