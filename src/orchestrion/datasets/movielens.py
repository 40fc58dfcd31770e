"""MovieLens (GroupLens) ratings → ``rate`` events, movies → ``movies`` items.

Every GroupLens release has the same data model; the layout is recognised by the file the
folder holds (a path to one of these files is taken as its folder):

* ``u.data`` + ``u.item`` (ml-100k): tab-separated ratings; ``|``-separated latin-1 movies with
  19 genre flags and a release date;
* ``ratings.dat`` + ``movies.dat`` (ml-1m, ml-10m): ``::``-separated, genres joined by ``|``;
* ``ratings.csv`` + ``movies.csv`` (ml-latest, ml-latest-small): CSV with a header.

Ids: users ``movielens:{userId}``, items ``movielens:{movieId}``, events
``movielens:{userId}:{movieId}:{unix_ts}``. A rating is one person's judgement of one movie at
one moment, so a repeat of that triple is the same rating and is stored once; a re-rating at
another time is a new event. The ``movielens:`` prefix keeps these ids apart from other
datasets' in one store; releases number their users independently, so load one release per
store. Event value = the rating (0.5 to 5 stars); ``properties`` is empty. Movie items carry the
title as people say it ("The Game (1997)", published "Game, The (1997)": :func:`readable_title`),
the genres as tags (``unknown`` / ``(no genres listed)`` mean none) and ``{"year": ...}`` (from
the title's ``(YYYY)``, else the ml-100k release date) in properties.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

import polars as pl

from orchestrion.datasets.loading import Dataset, DatasetFrames, decode_text, no_traits, split_rejected

__all__ = ["DATASET", "read"]

Layout = Literal["100k", "dat", "csv"]

_FILES: Final[dict[Layout, tuple[str, str]]] = {
    "100k": ("u.data", "u.item"),
    "dat": ("ratings.dat", "movies.dat"),
    "csv": ("ratings.csv", "movies.csv"),
}
_GENRES_100K: Final = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
]  # fmt: skip
_NO_GENRE: Final = ["unknown", "(no genres listed)"]
_RAW: Final = ["userId", "movieId", "rating", "timestamp"]


def read(path: Path) -> DatasetFrames:
    """Read a GroupLens folder of any layout; rows with an unreadable field are rejected, not guessed."""
    folder = path.parent if path.is_file() else path
    layout = _layout(folder)
    ratings_file, movies_file = (folder / name for name in _FILES[layout])
    if not movies_file.is_file():
        raise DATASET.missing(movies_file, "file")
    ratings = _ratings(ratings_file, layout)
    rating = pl.col("rating").str.strip_chars().cast(pl.Float64, strict=False)
    seconds = pl.col("timestamp").str.strip_chars().cast(pl.Int64, strict=False)
    valid, failed = split_rejected(
        ratings,
        [
            (pl.col("userId").is_null(), "userId is missing"),
            (pl.col("movieId").is_null(), "movieId is missing"),
            (rating.is_null(), "rating is not a number"),
            (seconds.is_null(), "timestamp is not a whole number of unix seconds"),
        ],
        event_id=pl.format("movielens:{}:{}:{}", "userId", "movieId", seconds),
        fallback_prefix="movielens",
        payload_columns=_RAW,
    )
    events = valid.select(
        "event_id",
        ("movielens:" + pl.col("userId")).alias("user_id"),
        pl.lit("rate").alias("type"),
        ("movielens:" + pl.col("movieId")).alias("item_id"),
        pl.lit("movies").alias("domain"),
        pl.from_epoch(seconds, time_unit="s").cast(pl.Datetime("us")).alias("ts"),
        rating.alias("value"),
        pl.lit(None, dtype=pl.String).alias("properties"),
    )
    return DatasetFrames(events, failed, _movies(movies_file, layout), no_traits(events["user_id"]))


def _layout(folder: Path) -> Layout:
    for layout, (ratings, _) in _FILES.items():
        if (folder / ratings).is_file():
            return layout
    raise DATASET.missing(folder / "u.data", "u.data, ratings.dat or ratings.csv in")


def _ratings(path: Path, layout: Layout) -> pl.DataFrame:
    """The ratings as text columns ``userId, movieId, rating, timestamp``."""
    if layout == "100k":
        frame = _read_plain(path, "\t", _RAW)
    elif layout == "dat":
        # "::" is two one-byte separators around an empty field; ratings hold no other ":".
        gaps = ["userId", "_1", "movieId", "_2", "rating", "_3", "timestamp"]
        frame = _read_plain(path, ":", gaps).select(_RAW)
    else:
        frame = pl.read_csv(path, infer_schema=False).select(_RAW)
    return frame.with_columns(pl.col("userId", "movieId").str.strip_chars().replace("", None))


def _read_plain(source: Path | bytes, separator: str, names: list[str]) -> pl.DataFrame:
    """A headerless file without quoting (titles hold quotes) as text columns named ``names``."""
    return pl.read_csv(
        source,
        separator=separator,
        has_header=False,
        quote_char=None,
        infer_schema=False,
        new_columns=names,
    )


_ARTICLE: Final = r"^(.+), (The|A|An|La|Le|Les|Il|Lo|El|Los|Las|Das|Der|Die|Det|Den)((?: \([^()]*\))+)$"


def readable_title(title: pl.Expr) -> pl.Expr:
    """The title as people say it: MovieLens publishes "Game, The (1997)" (sorted by name), a
    person reads "The Game (1997)"; an alternative title in parentheses stays as published.

    >>> pl.select(readable_title(pl.lit("Game, The (1997)"))).item(), pl.select(
    ...     readable_title(pl.lit("City of Lost Children, The (Cité des enfants perdus, La) (1995)"))).item()
    ('The Game (1997)', 'The City of Lost Children (Cité des enfants perdus, La) (1995)')
    >>> pl.select(readable_title(pl.lit("Toy Story (1995)"))).item()
    'Toy Story (1995)'
    """
    return title.str.replace(_ARTICLE, "${2} ${1}${3}").alias("title")


def _movies(path: Path, layout: Layout) -> pl.DataFrame:
    """Movies as item rows: id, domain, title, tags (genres) and the year in properties."""
    text = decode_text(path)
    year_in_title = pl.col("title").str.extract(r"\((\d{4})\)\s*$", 1).cast(pl.Int32)
    if layout == "100k":
        flags = [f"g{i}" for i in range(len(_GENRES_100K))]
        names = ["movieId", "title", "release", "video_release", "imdb_url", *flags]
        raw = _read_plain(text, "|", names)
        released = pl.col("release").str.strptime(pl.Date, "%d-%b-%Y", strict=False)
        genres = pl.concat_list(
            [pl.when(pl.col(f) == "1").then(pl.lit(g)) for f, g in zip(flags, _GENRES_100K, strict=True)]
        ).list.drop_nulls()
        year = pl.coalesce(year_in_title, released.dt.year().cast(pl.Int32))
    else:
        if layout == "dat":
            lines = _read_plain(text, "\x1f", ["line"])  # a byte no line holds: one column per line
            raw = lines.select(pl.col("line").str.splitn("::", 3)).unnest("line")
            raw.columns = ["movieId", "title", "genres"]
        else:
            raw = pl.read_csv(text, infer_schema=False).select("movieId", "title", "genres")
        genres = pl.col("genres").str.split("|")
        year = year_in_title
    return raw.select(
        ("movielens:" + pl.col("movieId").str.strip_chars()).alias("item_id"),
        pl.lit("movies").alias("domain"),
        readable_title(pl.col("title").str.strip_chars()),
        genres.list.eval(pl.element().filter(~pl.element().is_in(_NO_GENRE))).alias("tags"),
        pl.struct(year.alias("year")).alias("properties"),
    ).filter(pl.col("item_id").is_not_null())


DATASET: Final = Dataset(
    name="movielens-100k",
    folder="ml-100k",
    domain="movies",
    timezone="UTC",
    download_url="https://grouplens.org/datasets/movielens/100k/",
    description="GroupLens MovieLens ratings (ml-100k; ml-1m/10m and ml-latest layouts too)",
    read=read,
)
