"""Last.fm HetRec 2011 (2K users) → ``play`` and ``tag`` events, artists → ``music`` items.

* ``user_artists.dat``: one ``play`` event per user and artist, value = the listening count.
  The file has no timestamps: every play event gets the fixed ts **2011-05-01 00:00:00 UTC**, the
  dataset's publication (version 1.0, May 2011), i.e. "known by then". Do not read recency from it.
* ``user_taggedartists.dat``: one ``tag`` event per assignment on its day (00:00 UTC), item = the
  artist, ``{"tag": name, "tag_id": id}`` in properties, no value. A few dates are implausible
  (1956, 1957, 1979): they are kept as published, which is why loaders build arrow tables
  directly instead of going through the HTTP plausibility check. 390 tagged artists have no row
  in ``artists.dat``; their events are kept (the item is simply not in the catalog).
* ``artists.dat`` (UTF-8): items with title and creator = the name, tags = the artist's ten most
  assigned tags (ties by name), ``{"url", "picture_url"}`` in properties. ``tags.dat`` is latin-1.
* ``user_friends.dat`` is not loaded: orchestrion has no event or trait for friendship yet.

Ids: users ``lastfm:{userID}``, items ``lastfm:{artistID}``, events
``lastfm:play:{userID}:{artistID}`` and ``lastfm:tag:{userID}:{artistID}:{tagID}`` — the file
holds each pair (triple) once, and the same pair in a later release is the same fact.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Final

import polars as pl

from orchestrion.datasets.loading import (
    Dataset,
    DatasetFrames,
    decode_text,
    json_object,
    no_traits,
    split_rejected,
)

__all__ = ["DATASET", "PLAYS_TS", "read"]

PLAYS_TS: Final = datetime(2011, 5, 1)
"""The fixed timestamp of every play event: the dataset's publication (the file has no times)."""

TOP_TAGS: Final = 10
_FILES: Final = ("user_artists.dat", "user_taggedartists.dat", "artists.dat", "tags.dat")


def read(path: Path) -> DatasetFrames:
    """Read the HetRec folder; tag dates that are not calendar dates are rejected, old ones kept."""
    folder = path.parent if path.is_file() else path
    for name in _FILES:
        if not (folder / name).is_file():
            raise DATASET.missing(folder / name, "file")
    plays, plays_failed = _plays(_read_tsv(folder / "user_artists.dat"))
    tags = _read_tsv(folder / "tags.dat").rename({"tagValue": "tag"})
    tagged = _read_tsv(folder / "user_taggedartists.dat").join(tags, on="tagID", how="left", maintain_order="left")
    tag_events, tags_failed = _tag_events(tagged)
    events = pl.concat([plays, tag_events])
    failed = pl.concat([plays_failed, tags_failed])
    items = _artists(_read_tsv(folder / "artists.dat"), tagged)
    return DatasetFrames(events, failed, items, no_traits(events["user_id"]))


def _read_tsv(path: Path) -> pl.DataFrame:
    """A HetRec file as text columns; no quoting, since names and tags hold quote characters."""
    frame = pl.read_csv(decode_text(path), separator="\t", quote_char=None, infer_schema=False)
    return frame.with_columns(pl.all().str.strip_chars())


def _plays(raw: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    count = pl.col("weight").cast(pl.Float64, strict=False)
    valid, failed = split_rejected(
        raw,
        [
            (pl.col("userID").is_null() | pl.col("artistID").is_null(), "userID or artistID is missing"),
            (count.is_null(), "weight (the play count) is not a number"),
        ],
        event_id=pl.format("lastfm:play:{}:{}", "userID", "artistID"),
        fallback_prefix="lastfm:play",
        payload_columns=raw.columns,
    )
    events = valid.select(
        "event_id",
        ("lastfm:" + pl.col("userID")).alias("user_id"),
        pl.lit("play").alias("type"),
        ("lastfm:" + pl.col("artistID")).alias("item_id"),
        pl.lit("music").alias("domain"),
        pl.lit(PLAYS_TS, dtype=pl.Datetime("us")).alias("ts"),
        count.alias("value"),
        pl.lit(None, dtype=pl.String).alias("properties"),
    )
    return events, failed


def _tag_events(tagged: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    day = pl.format("{}-{}-{}", "year", "month", "day").str.strptime(pl.Datetime("us"), "%Y-%m-%d", strict=False)
    raw_columns = ["userID", "artistID", "tagID", "day", "month", "year"]
    valid, failed = split_rejected(
        tagged,
        [
            (
                pl.col("userID").is_null() | pl.col("artistID").is_null() | pl.col("tagID").is_null(),
                "userID, artistID or tagID is missing",
            ),
            (day.is_null(), "day, month and year are not a calendar date"),
        ],
        event_id=pl.format("lastfm:tag:{}:{}:{}", "userID", "artistID", "tagID"),
        fallback_prefix="lastfm:tag",
        payload_columns=raw_columns,
    )
    events = valid.select(
        "event_id",
        ("lastfm:" + pl.col("userID")).alias("user_id"),
        pl.lit("tag").alias("type"),
        ("lastfm:" + pl.col("artistID")).alias("item_id"),
        pl.lit("music").alias("domain"),
        day.alias("ts"),
        pl.lit(None, dtype=pl.Float64).alias("value"),
        json_object(tag=pl.col("tag"), tag_id=pl.col("tagID").cast(pl.Int64, strict=False)).alias("properties"),
    )
    return events, failed


def _artists(artists: pl.DataFrame, tagged: pl.DataFrame) -> pl.DataFrame:
    top = (
        tagged.filter(pl.col("tag").is_not_null())
        .group_by("artistID", "tag")
        .agg(pl.len().alias("n"))
        .sort(["artistID", "n", "tag"], descending=[False, True, False])
        .group_by("artistID", maintain_order=True)
        .agg(pl.col("tag").head(TOP_TAGS).alias("tags"))
    )
    return (
        artists.filter(pl.col("id").is_not_null())
        .join(top, left_on="id", right_on="artistID", how="left", maintain_order="left")
        .select(
            ("lastfm:" + pl.col("id")).alias("item_id"),
            pl.lit("music").alias("domain"),
            pl.col("name").alias("title"),
            pl.col("name").alias("creator"),
            pl.col("tags").fill_null(pl.lit([], dtype=pl.List(pl.String))),
            pl.struct(url=pl.col("url"), picture_url=pl.col("pictureURL")).alias("properties"),
        )
    )


DATASET: Final = Dataset(
    name="lastfm-hetrec-2k",
    folder="lastfm-hetrec-2k",
    domain="music",
    timezone="UTC",
    download_url="https://grouplens.org/datasets/hetrec-2011/",
    description="Last.fm play counts and tag assignments of 1,892 users (HetRec 2011)",
    read=read,
)
