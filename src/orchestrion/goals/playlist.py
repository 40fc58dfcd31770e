"""``playlist``: mixes from what the user listens to (music; items are artists or tracks).

Listening clusters are k-means clusters of item embeddings learned from who plays what (see
:meth:`GoalContext.item_clusters`), named by their artists' commonest tags. Variants:

* ``daily`` — one mix per cluster holding at least ``min_cluster_share`` of the user's plays (the
  ``max_mixes`` largest): their ``familiar`` most played artists of the cluster, then the
  recommender's best unplayed artists of the same cluster;
* ``discovery`` — the recommender's best artists the user has never played;
* ``throwback`` — loved artists (the user's top quarter by plays) not played for ``throwback_days``.

Numbers: ``utility`` = the mix's mean affinity (a familiar artist counts as 1, a new one as its
recommender score over the user's best score); ``signal`` = the cluster's share of the user's
plays (``discovery``: history depth; ``throwback``: the loved artists' share of plays);
``novelty`` = the share of artists new to the user. A playlist costs nothing: ``risk`` is small.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from orchestrion.goals.base import candidate_frame, cluster_labels, empty_candidates, fill_marks, json_column, mark

if TYPE_CHECKING:
    from orchestrion.goals.context import GoalContext

__all__ = ["Playlist", "PlaylistConfig"]


class PlaylistConfig(BaseModel):
    """Knobs of :class:`Playlist`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(10, ge=2, description="Artists per mix.")
    familiar: int = Field(6, ge=1, description="Played artists at the start of a daily mix.")
    clusters: int = Field(20, ge=1, description="Listening clusters in the domain.")
    max_mixes: int = Field(3, ge=1)
    min_cluster_share: float = Field(0.1, ge=0, le=1)
    min_cluster_artists: int = Field(3, ge=1, description="Played artists a cluster needs to become a mix.")
    throwback_days: float = Field(60.0, gt=0, description="Not played for this long makes a throwback.")
    risk: float = Field(0.05, ge=0, le=1)


def _cluster_labels(ctx: GoalContext, clusters: pl.DataFrame, domain: str) -> pl.DataFrame:
    """``cluster, label``: the three commonest tags of the cluster's artists, else ``cluster N``."""
    catalog = ctx.catalog(domain)
    if "tags" not in catalog.columns:
        no_tags = clusters.select("cluster", pl.lit(None, dtype=pl.String).alias("term")).clear()
        return cluster_labels(clusters, no_tags, top=3, fallback="cluster {}")
    tags = (
        clusters.join(catalog.select("item_id", "tags"), on="item_id", how="inner")
        .explode("tags")
        .select("cluster", pl.col("tags").alias("term"))
    )
    return cluster_labels(clusters, tags, top=3, fallback="cluster {}")


class Playlist:
    """Daily mixes per listening cluster, a discovery mix and a throwback."""

    name: str = "playlist"
    domain: str = "music"
    variants: tuple[str, ...] = ("daily", "discovery", "throwback")
    description: str = "Mixes per listening cluster, new artists near the taste, and loved ones not played lately."

    def __init__(self, config: PlaylistConfig | None = None) -> None:
        self.config = config or PlaylistConfig()

    def propose(self, ctx: GoalContext) -> pl.DataFrame:
        users = ctx.domain_users(self.domain)
        if users.size == 0:
            return empty_candidates()
        plays = (
            ctx.positive(self.domain)
            .filter(pl.col("user_id").is_in(users.tolist()))
            .join(ctx.titles(), on="item_id", how="left")
            .with_columns(pl.col("title").fill_null(pl.col("item_id")))
        )
        totals = plays.group_by("user_id").agg(
            pl.col("value_sum").sum().alias("user_plays"),
            pl.len().alias("user_artists"),
            pl.col("weight").max().alias("max_weight"),
        )
        top = ctx.ranked(self.domain, users, 1).select("user_id", pl.col("score").alias("top_score"))
        frames = [
            self._daily(ctx, plays, totals, top),
            self._discovery(ctx, users, plays, totals, top),
            self._throwback(ctx, plays, totals),
        ]
        kept = [f for f in frames if f.height]
        found = pl.concat(kept, how="vertical_relaxed") if kept else pl.DataFrame()
        return candidate_frame(found) if found.height else empty_candidates()

    def _shape(
        self,
        frame: pl.DataFrame,
        variant: str,
        kind: pl.Expr,
        params: pl.Expr,
        title: pl.Expr,
        utility: pl.Expr,
        signal: pl.Expr,
        novelty: pl.Expr,
        why: pl.Expr,
    ) -> pl.DataFrame:
        return frame.select(
            "user_id",
            pl.lit(self.name).alias("template"),
            pl.lit(variant).alias("variant"),
            kind.alias("kind"),
            params.alias("params"),
            title.alias("title"),
            "items",
            json_column(artists=pl.col("names"), known=pl.col("known"), words=why).alias("details"),
            utility.fill_nan(0.0).fill_null(0.0).clip(0.0, 1.0).alias("utility"),
            signal.fill_nan(0.0).fill_null(0.0).clip(0.0, 1.0).alias("signal"),
            novelty.clip(0.0, 1.0).alias("novelty"),
            pl.lit(0.0).alias("cost"),
            pl.lit(self.config.risk).alias("risk"),
            fill_marks(
                why,
                count=pl.col("items").list.len(),
                more=(pl.col("items").list.len() - 2).clip(0),
                known=pl.col("known").list.len(),
                new=pl.col("items").list.len() - pl.col("known").list.len(),
                first_two=pl.col("names").list.head(2).list.join(" and "),
            ).alias("why"),
        )

    def _daily(self, ctx: GoalContext, plays: pl.DataFrame, totals: pl.DataFrame, top: pl.DataFrame) -> pl.DataFrame:
        c = self.config
        clusters = ctx.item_clusters(self.domain, c.clusters)
        labels = _cluster_labels(ctx, clusters, self.domain)
        in_cluster = plays.join(clusters, on="item_id", how="inner")
        chosen = (
            in_cluster.group_by("user_id", "cluster")
            .agg(pl.col("value_sum").sum().alias("cluster_plays"), pl.len().alias("cluster_artists"))
            .join(totals, on="user_id")
            .with_columns((pl.col("cluster_plays") / pl.col("user_plays")).alias("share"))
            .filter((pl.col("share") >= c.min_cluster_share) & (pl.col("cluster_artists") >= c.min_cluster_artists))
            .sort(["user_id", "share", "cluster"], descending=[False, True, False])
            .group_by("user_id", maintain_order=True)
            .head(c.max_mixes)
        )
        if chosen.height == 0:
            return pl.DataFrame()
        familiar = (
            in_cluster.join(chosen.select("user_id", "cluster"), on=["user_id", "cluster"], how="semi")
            .sort(["user_id", "cluster", "weight", "item_id"], descending=[False, False, True, False])
            .group_by("user_id", "cluster", maintain_order=True)
            .head(c.familiar)
            .select("user_id", "cluster", "item_id", "title", pl.lit(1.0).alias("affinity"), pl.lit(False).alias("new"))
        )
        fresh_frames = []
        for cluster in np.unique(chosen.get_column("cluster").to_numpy()):
            who = chosen.filter(pl.col("cluster") == cluster).get_column("user_id").to_numpy().astype(str)
            allowed = clusters.filter(pl.col("cluster") == cluster).get_column("item_id").to_list()
            ranked = ctx.ranked(self.domain, who, c.size - 1, allowed=allowed)
            fresh_frames.append(ranked.with_columns(pl.lit(int(cluster)).alias("cluster")))
        fresh = (
            pl.concat(fresh_frames)
            .join(top, on="user_id", how="left")
            .join(ctx.titles(), on="item_id", how="left")
            .select(
                "user_id",
                "cluster",
                "item_id",
                pl.col("title").fill_null(pl.col("item_id")),
                (pl.col("score") / pl.col("top_score")).fill_nan(0.0).fill_null(0.0).clip(0.0, 1.0).alias("affinity"),
                pl.lit(True).alias("new"),
            )
        )
        mixes = (
            pl.concat([familiar, fresh.cast(familiar.schema)])
            .group_by("user_id", "cluster", maintain_order=True)
            .head(c.size)
            .group_by("user_id", "cluster", maintain_order=True)
            .agg(
                pl.col("item_id").alias("items"),
                pl.col("title").alias("names"),
                pl.col("affinity").mean().alias("affinity"),
                pl.col("new").cast(pl.Float64).mean().alias("novelty"),
                pl.col("title").filter(~pl.col("new")).head(2).str.join(" and ").alias("examples"),
                pl.col("item_id").filter(~pl.col("new")).alias("known"),
            )
            .join(chosen, on=["user_id", "cluster"])
            .join(labels, on="cluster", how="left")
        )
        return self._shape(
            mixes,
            "daily",
            pl.format("daily:{}", "cluster"),
            json_column(cluster=pl.col("cluster"), size=c.size, variant="daily"),
            pl.format("Daily mix: {}", "label"),
            pl.col("affinity"),
            pl.col("share"),
            pl.col("novelty"),
            pl.format(
                "you played {} artists like {} {} times ({}% of your listening); {} of them and {} close ones "
                "you have not played",
                "cluster_artists",
                "examples",
                pl.col("cluster_plays").round(0).cast(pl.Int64),
                (pl.col("share") * 100).round(0).cast(pl.Int64),
                mark("known"),
                mark("new"),
            ),
        )

    def _discovery(
        self, ctx: GoalContext, users: object, plays: pl.DataFrame, totals: pl.DataFrame, top: pl.DataFrame
    ) -> pl.DataFrame:
        c = self.config
        ranked = ctx.ranked(self.domain, users, c.size)  # type: ignore[arg-type]
        if not ranked.height:
            return pl.DataFrame()
        favourites = (
            plays.sort(["user_id", "weight", "item_id"], descending=[False, True, False])
            .group_by("user_id", maintain_order=True)
            .agg(pl.col("title").head(2).str.join(" and ").alias("favourites"))
        )
        mixes = (
            ranked.join(ctx.titles(), on="item_id", how="left")
            .sort("user_id", "rank")
            .group_by("user_id", maintain_order=True)
            .agg(
                pl.col("item_id").alias("items"),
                pl.col("title").fill_null(pl.col("item_id")).alias("names"),
                pl.col("score").mean().alias("mean_score"),
            )
            .join(top, on="user_id", how="left")
            .join(totals, on="user_id")
            .join(favourites, on="user_id")
            .with_columns(pl.col("items").list.head(0).alias("known"))  # none played before
        )
        return self._shape(
            mixes,
            "discovery",
            pl.lit("discovery"),
            json_column(size=c.size, variant="discovery"),
            pl.lit("Discovery mix: new artists near your taste"),
            pl.col("mean_score") / pl.col("top_score"),
            pl.col("user_artists") / 50.0,
            pl.lit(1.0),
            pl.format(
                "{} artists you have never played, the closest to the {} you listen to (most of all {})",
                mark("count"),
                "user_artists",
                "favourites",
            ),
        )

    def _throwback(self, ctx: GoalContext, plays: pl.DataFrame, totals: pl.DataFrame) -> pl.DataFrame:
        c = self.config
        cutoff = ctx.as_of - timedelta(days=c.throwback_days)
        loved = plays.with_columns(
            (
                pl.col("weight").rank("ordinal", descending=True).over("user_id")
                <= (pl.len().over("user_id") / 4).ceil()
            ).alias("loved")
        ).filter(pl.col("loved"))
        old = (
            loved.filter(pl.col("last_ts") < cutoff)
            .sort(["user_id", "weight", "item_id"], descending=[False, True, False])
            .group_by("user_id", maintain_order=True)
            .head(c.size)
        )
        mixes = (
            old.group_by("user_id", maintain_order=True)
            .agg(
                pl.col("item_id").alias("items"),
                pl.col("title").alias("names"),
                pl.col("value_sum").sum().alias("old_plays"),
                pl.col("weight").mean().alias("mean_weight"),
                pl.col("title").head(2).str.join(" and ").alias("examples"),
                pl.col("last_ts").max().alias("last_played"),
            )
            .filter(pl.col("items").list.len() >= 2)
            .join(totals, on="user_id")
            .with_columns(pl.col("items").alias("known"))  # every one played before
        )
        if mixes.height == 0:
            return pl.DataFrame()
        months = ((pl.lit(ctx.as_of) - pl.col("last_played")).dt.total_days() / 30.4).round(0).cast(pl.Int64).clip(1)
        return self._shape(
            mixes,
            "throwback",
            pl.lit("throwback"),
            json_column(days=int(c.throwback_days), size=c.size, variant="throwback"),
            pl.lit("Throwback: loved, not played lately"),
            pl.col("mean_weight") / pl.col("max_weight"),
            pl.col("old_plays") / pl.col("user_plays"),
            pl.lit(0.0),
            pl.format(
                "you played {} and {} more of your favourites {} times, but none in the last {} months",
                mark("first_two"),
                mark("more"),
                pl.col("old_plays").round(0).cast(pl.Int64),
                months,
            ),
        )
