"""``watchlist``: a movie-night list for a mood, ranked for the user (movies).

Variants, each a list of ``size`` movies the user has not rated, best first:

* ``mood`` — one per mood the user likes (at least ``min_liked`` movies of its genres rated
  ``liked_rating`` or more): the recommender's best unseen movies among the mood's genres;
* ``for_you`` — the recommender's best unseen movies of any genre;
* ``popular`` — the most watched movies of the last ``recent_days`` days, re-ranked for the user.

Moods group the MovieLens genres the way people pick a film for an evening; a genre outside
every mood (or a catalog with other tags) still reaches the user through ``for_you``.

Numbers: ``utility`` = the list's mean recommender score over the user's best score anywhere
(how close the list is to the top of their taste); ``signal`` = the share of the user's liked
movies in the mood (``for_you``: history depth; ``popular``: how mainstream their ratings are);
``novelty`` = the list's mean popularity percentile, inverted. Watching costs nothing and a
list only suggests, so ``risk`` is small and fixed.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from orchestrion.goals.base import candidate_frame, empty_candidates, fill_marks, json_column, mark

if TYPE_CHECKING:
    from orchestrion.goals.context import GoalContext

__all__ = ["MOODS", "Watchlist", "WatchlistConfig"]

MOODS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "feel-good": ("Comedy", "Romance", "Musical", "Animation", "Children's"),
        "edge-of-your-seat": ("Thriller", "Crime", "Mystery", "Horror", "Film-Noir"),
        "epic": ("Action", "Adventure", "War", "Western", "Sci-Fi", "Fantasy"),
        "thoughtful": ("Drama", "Documentary"),
    }
)


class WatchlistConfig(BaseModel):
    """Knobs of :class:`Watchlist`; saved with the goals it proposed (through their features)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(10, ge=1, description="Movies per list.")
    liked_rating: float = Field(4.0, description="A rating at or above this is a liked movie.")
    min_liked: int = Field(3, ge=1, description="Liked movies of a mood needed to propose it.")
    recent_days: float = Field(30.0, gt=0, description="Window of the 'popular' list.")
    popular_pool: int = Field(50, ge=1, description="Most watched movies the 'popular' list re-ranks.")
    risk: float = Field(0.05, ge=0, le=1)


class Watchlist:
    """Movie-night lists per mood, for you, and what is popular now."""

    name: str = "watchlist"
    domain: str = "movies"
    variants: tuple[str, ...] = ("mood", "for_you", "popular")
    description: str = "A movie-night list for a mood, ranked for the user."

    def __init__(self, config: WatchlistConfig | None = None) -> None:
        self.config = config or WatchlistConfig()

    def propose(self, ctx: GoalContext) -> pl.DataFrame:
        users = ctx.domain_users(self.domain)
        if users.size == 0:
            return empty_candidates()
        c = self.config
        rated = ctx.positive(self.domain).filter(pl.col("user_id").is_in(users.tolist()))
        genres = self._genres(ctx)
        liked = rated.filter(pl.col("value_mean") >= c.liked_rating).join(genres, on="item_id", how="inner")
        n_liked = rated.group_by("user_id").agg(
            (pl.col("value_mean") >= c.liked_rating).sum().alias("n_liked"),
            pl.len().alias("n_rated"),
            pl.col("value_mean").mean().alias("mean_rating"),
        )
        frames = [self._for_you(ctx, users, n_liked), self._popular(ctx, users, rated)]
        frames.append(self._moods(ctx, liked, n_liked, genres))
        kept = [f for f in frames if f.height]
        found = pl.concat(kept, how="vertical_relaxed") if kept else pl.DataFrame()
        return candidate_frame(found) if found.height else empty_candidates()

    def _genres(self, ctx: GoalContext) -> pl.DataFrame:
        """``item_id, mood`` for every movie of a mood (a movie may be in several)."""
        by_genre = pl.DataFrame(
            {"genre": [g for gs in MOODS.values() for g in gs], "mood": [m for m, gs in MOODS.items() for _ in gs]}
        )
        catalog = ctx.catalog(self.domain)
        if "tags" not in catalog.columns:
            return pl.DataFrame(schema={"item_id": pl.String, "mood": pl.String})
        return (
            catalog.select("item_id", pl.col("tags").alias("genre"))
            .explode("genre")
            .join(by_genre, on="genre", how="inner")
            .select("item_id", "mood")
            .unique()
        )

    def _lists(self, ctx: GoalContext, ranked: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
        """One row per (user, keys): items in rank order, mean score, novelty, example titles."""
        pop = ctx.first_seen(self.domain).select(
            "item_id", (pl.col("users").rank("average") / pl.len()).alias("pop_pct")
        )
        return (
            ranked.join(pop, on="item_id", how="left")
            .join(ctx.titles(), on="item_id", how="left")
            .sort([*keys, "rank"])
            .group_by(["user_id", *keys], maintain_order=True)
            .agg(
                pl.col("item_id").alias("items"),
                pl.col("score").mean().alias("mean_score"),
                (1.0 - pl.col("pop_pct").fill_null(0.0)).mean().alias("novelty"),
                pl.col("title").fill_null(pl.col("item_id")).head(2).str.join(" and ").alias("examples"),
            )
        )

    def _top_scores(self, ctx: GoalContext, users: object) -> pl.DataFrame:
        ranked = ctx.ranked(self.domain, users, 1)  # type: ignore[arg-type]
        return ranked.select("user_id", pl.col("score").alias("top_score"))

    def _utility(self) -> pl.Expr:
        return (pl.col("mean_score") / pl.col("top_score")).fill_nan(0.0).fill_null(0.0).clip(0.0, 1.0)

    def _finish(
        self,
        frame: pl.DataFrame,
        variant: str,
        kind: pl.Expr,
        params: pl.Expr,
        title: pl.Expr,
        signal: pl.Expr,
        why: pl.Expr,
        details: dict[str, pl.Expr],
    ) -> pl.DataFrame:
        # `why` has the marks of the list's own numbers and titles ({count}, {first_two}): kept in the
        # details, they are filled in again for whatever list is finally delivered.
        filled = fill_marks(why, count=pl.col("items").list.len(), first_two=pl.col("examples"))
        return frame.select(
            "user_id",
            pl.lit(self.name).alias("template"),
            pl.lit(variant).alias("variant"),
            kind.alias("kind"),
            params.alias("params"),
            title.alias("title"),
            "items",
            json_column(**details, words=why).alias("details"),
            self._utility().alias("utility"),
            signal.clip(0.0, 1.0).alias("signal"),
            pl.col("novelty").clip(0.0, 1.0),
            pl.lit(0.0).alias("cost"),
            pl.lit(self.config.risk).alias("risk"),
            filled.alias("why"),
        )

    def _for_you(self, ctx: GoalContext, users: object, n_liked: pl.DataFrame) -> pl.DataFrame:
        size = self.config.size
        ranked = ctx.ranked(self.domain, users, size)  # type: ignore[arg-type]
        if not ranked.height:
            return pl.DataFrame()
        lists = (
            self._lists(ctx, ranked, []).join(self._top_scores(ctx, users), on="user_id").join(n_liked, on="user_id")
        )
        return self._finish(
            lists,
            "for_you",
            pl.lit("for_you"),
            json_column(size=size, variant="for_you"),
            pl.lit("Movie night: picked for you"),
            (pl.col("n_rated") / 50.0),
            pl.format(
                "you rated {} movies (mean {}★); these {} unseen ones are the closest to your taste, starting with {}",
                "n_rated",
                pl.col("mean_rating").round(1),
                mark("count"),
                mark("first_two"),
            ),
            {"examples": pl.col("examples")},
        )

    def _popular(self, ctx: GoalContext, users: object, rated: pl.DataFrame) -> pl.DataFrame:
        c = self.config
        recent = ctx.recent_popularity(self.domain, c.recent_days).head(c.popular_pool)
        if not recent.height:
            return pl.DataFrame()
        ranked = ctx.ranked(self.domain, users, c.size, allowed=recent.get_column("item_id").to_list())  # type: ignore[arg-type]
        if not ranked.height:
            return pl.DataFrame()
        top100 = ctx.first_seen(self.domain).sort(["users", "item_id"], descending=[True, False]).head(100)
        mainstream = (
            rated.with_columns(pl.col("item_id").is_in(top100.get_column("item_id").to_list()).alias("hit"))
            .group_by("user_id")
            .agg(pl.col("hit").mean().alias("mainstream"))
        )
        lists = (
            self._lists(ctx, ranked, [])
            .join(self._top_scores(ctx, users), on="user_id")
            .join(mainstream, on="user_id", how="left")
            .join(recent.select(pl.col("item_id").alias("lead"), "recent_users").head(1), how="cross")
        )
        return self._finish(
            lists,
            "popular",
            pl.lit("popular"),
            json_column(days=int(c.recent_days), size=c.size, variant="popular"),
            pl.lit("Movie night: what everyone is watching"),
            pl.col("mainstream").fill_null(0.0),
            pl.format(
                "{}% of the movies you rated are among the 100 most watched; these {} were watched most in the "
                "last {} days and are the closest to your taste, starting with {}",
                (pl.col("mainstream").fill_null(0.0) * 100).round(0).cast(pl.Int64),
                mark("count"),
                pl.lit(int(c.recent_days)),
                mark("first_two"),
            ),
            {"examples": pl.col("examples")},
        )

    def _moods(
        self, ctx: GoalContext, liked: pl.DataFrame, n_liked: pl.DataFrame, genres: pl.DataFrame
    ) -> pl.DataFrame:
        c = self.config
        per_mood = (
            liked.join(ctx.titles(), on="item_id", how="left")
            .sort(["user_id", "mood", "value_mean", "last_ts"], descending=[False, False, True, True])
            .group_by("user_id", "mood", maintain_order=True)
            .agg(pl.len().alias("liked_in_mood"), pl.col("title").head(2).str.join(" and ").alias("loved"))
            .filter(pl.col("liked_in_mood") >= c.min_liked)
        )
        frames = []
        for mood in MOODS:
            mood_users = per_mood.filter(pl.col("mood") == mood).get_column("user_id").to_numpy().astype(str)
            if mood_users.size == 0:
                continue
            allowed = genres.filter(pl.col("mood") == mood).get_column("item_id").to_list()
            ranked = ctx.ranked(self.domain, mood_users, c.size, allowed=allowed)
            if ranked.height:
                frames.append(self._lists(ctx, ranked.with_columns(pl.lit(mood).alias("mood")), ["mood"]))
        if not frames:
            return pl.DataFrame()
        users = per_mood.get_column("user_id").unique().to_numpy().astype(str)
        lists = (
            pl.concat(frames)
            .join(per_mood, on=["user_id", "mood"])
            .join(n_liked, on="user_id")
            .join(self._top_scores(ctx, users), on="user_id")
        )
        genre_text = pl.col("mood").replace_strict({m: ", ".join(g).lower() for m, g in MOODS.items()})
        return self._finish(
            lists,
            "mood",
            pl.format("mood:{}", "mood"),
            json_column(mood=pl.col("mood"), size=c.size, variant="mood"),
            pl.format("Movie night: {}", "mood"),
            pl.col("liked_in_mood") / pl.col("n_liked"),
            pl.format(
                "you rated {} {} movies ({}) {}★ or more, e.g. {}; these {} are the closest you have not seen",
                "liked_in_mood",
                "mood",
                genre_text,
                pl.lit(c.liked_rating),
                "loved",
                mark("count"),
            ),
            {"genres": genre_text, "loved": pl.col("loved")},
        )
