"""``digest``: fresh articles on the user's topics, ranked for them (articles, news).

Topics are clusters of articles read by the same people (k-means on item embeddings from the
reading log, see :meth:`GoalContext.item_clusters`), so every article has one, with or without
text; a topic is named by the commonest words of its titled articles. An article is *fresh* while
its first reader is at most ``fresh_days`` old. Only articles a person can be shown — in the
catalog, with a title (:meth:`GoalContext.showable`) — are proposed: DeskDrop's reading log names
far more articles than its catalog holds, and a digest of ids is no digest.

Variants, each at most ``size`` fresh articles the user has not read:

* ``topic`` — one per topic holding at least ``min_topic_share`` of the user's reading (the
  ``max_topics`` largest), the recommender's best fresh articles of that topic;
* ``trending`` — the most read fresh articles of the last ``trending_days``, re-ranked for the user;
* ``for_you`` — the recommender's best fresh articles of any topic.

Numbers: ``utility`` = the digest's mean recommender score over the user's best fresh score;
``signal`` = the topic's share of the user's reading (``trending``: the share of their reads
made in an article's first week; ``for_you``: history depth); ``novelty`` = the share of the
digest from topics the user has never read. Reading costs nothing: ``risk`` is small and fixed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Final

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from orchestrion.goals.base import candidate_frame, cluster_labels, empty_candidates, fill_marks, json_column, mark

if TYPE_CHECKING:
    from orchestrion.goals.context import GoalContext

__all__ = ["Digest", "DigestConfig", "topic_labels"]

_STOPWORDS: Final = ENGLISH_STOP_WORDS | frozenset(
    [
        "você",
        "vocês",
        "ele",
        "ela",
        "eles",
        "elas",
        "nós",
        "seus",
        "suas",
        "nos",
        "nas",
        "aos",
        "até",
        "sem",
        "mas",
        "foi",
        "ser",
        "ter",
        "tem",
        "está",
        "estão",
        "pode",
        "podem",
        "quando",
        "onde",
        "qual",
        "quais",
        "quem",
        "muito",
        "muitos",
        "também",
        "ainda",
        "após",
        "todo",
        "toda",
        "todos",
        "todas",
        "cada",
        "outro",
        "outra",
        "mesmo",
        "porque",
        "sobre",
        "fazer",
        "faz",
        "the",
        "and",
        "for",
        "with",
        "that",
        "this",
        "from",
        "your",
        "what",
        "have",
        "will",
        "about",
        "into",
        "more",
        "than",
        "when",
        "how",
        "why",
        "are",
        "you",
        "our",
        "não",
        "para",
        "com",
        "uma",
        "que",
        "dos",
        "das",
        "como",
        "mais",
        "por",
        "sobre",
        "seu",
        "sua",
        "são",
        "pelo",
        "pela",
        "entre",
        "isso",
        "esta",
        "este",
        "new",
        "using",
        "use",
        "can",
        "its",
        "their",
        "they",
        "all",
        "one",
        "two",
        "not",
        "but",
        "has",
        "was",
        "were",
        "been",
    ]
)


class DigestConfig(BaseModel):
    """Knobs of :class:`Digest`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(5, ge=1, description="Most articles in one digest.")
    min_size: int = Field(2, ge=1, description="Fewest fresh articles worth a digest.")
    topics: int = Field(12, ge=1, description="Topics (article clusters) in the domain.")
    max_topics: int = Field(3, ge=1, description="Most topic digests per user.")
    min_topic_share: float = Field(0.1, ge=0, le=1, description="Share of the user's reading a topic needs.")
    fresh_days: float = Field(14.0, gt=0, description="An article is fresh this long after its first reader.")
    trending_days: float = Field(7.0, gt=0)
    trending_pool: int = Field(30, ge=1, description="Most read fresh articles the 'trending' digest re-ranks.")
    risk: float = Field(0.05, ge=0, le=1)


def topic_labels(clusters: pl.DataFrame, titles: pl.DataFrame, *, words: int = 2) -> pl.DataFrame:
    """``cluster, label``: each cluster's commonest title words (``topic N`` when none has a title).

    >>> c = pl.DataFrame({"item_id": ["a", "b", "c"], "cluster": [0, 0, 1]})
    >>> t = pl.DataFrame({"item_id": ["a", "b"], "title": ["Google Cloud launch", "Cloud pricing at Google"]})
    >>> topic_labels(c, t).sort("cluster").get_column("label").to_list()
    ['cloud, google', 'topic 1']
    """
    title_words = (
        clusters.join(titles, on="item_id", how="inner")
        .filter(pl.col("title") != pl.col("item_id"))
        .select(
            "cluster",
            # a contraction ("aren't") is one word, and a stop word: its pieces are not labels
            pl.col("title").str.to_lowercase().str.extract_all(r"[a-zà-ÿ]+(?:['’][a-zà-ÿ]+)?").alias("term"),
        )
        .explode("term")
        .filter(
            (pl.col("term").str.len_chars() >= 3)
            & ~pl.col("term").str.contains("['’]")
            & ~pl.col("term").is_in(list(_STOPWORDS))
        )
    )
    return cluster_labels(clusters, title_words, top=words, fallback="topic {}", distinctive=True)


_EXAMPLE_CHARS: Final = 40
"""A topic digest's title quotes at most this much of the article it is named after (cut at a word)."""


class Digest:
    """A digest per topic, of what is trending, and of fresh articles for you."""

    name: str = "digest"
    domain: str = "news"
    variants: tuple[str, ...] = ("topic", "trending", "for_you")
    description: str = "Fresh articles on the user's topics, ranked for them."

    def __init__(self, config: DigestConfig | None = None) -> None:
        self.config = config or DigestConfig()

    def propose(self, ctx: GoalContext) -> pl.DataFrame:
        users = ctx.domain_users(self.domain)
        c = self.config
        if users.size == 0:
            return empty_candidates()
        seen_first = ctx.first_seen(self.domain)
        # Fresh articles a person can be shown: read lately, and in the catalog with a title.
        fresh = seen_first.filter(
            (pl.col("first_ts") >= ctx.as_of - timedelta(days=c.fresh_days))
            & pl.col("item_id").is_in(ctx.showable(self.domain).tolist())
        )
        if fresh.height == 0:
            return empty_candidates()
        clusters = ctx.item_clusters(self.domain, c.topics)
        labels = topic_labels(clusters, ctx.titles())
        reads = ctx.positive(self.domain).filter(pl.col("user_id").is_in(users.tolist()))
        profile = self._profile(reads, clusters, seen_first, ctx.titles())
        top = ctx.ranked(self.domain, users, 1, allowed=fresh.get_column("item_id").to_list())
        top = top.select("user_id", pl.col("score").alias("top_score"))
        read_topics = reads.join(clusters, on="item_id").select("user_id", "cluster").unique()
        frames = [
            self._topics(ctx, profile, fresh, clusters, labels),
            self._trending(ctx, users, profile),
            self._for_you(ctx, users, fresh, profile),
        ]
        kept = [f for f in frames if f.height]
        found = pl.concat(kept, how="vertical_relaxed") if kept else pl.DataFrame()
        if found.height == 0:
            return empty_candidates()
        novelty = (
            found.select("user_id", "kind", "items")
            .explode("items")
            .join(clusters, left_on="items", right_on="item_id", how="left")
            .join(read_topics.with_columns(pl.lit(True).alias("known")), on=["user_id", "cluster"], how="left")
            .group_by("user_id", "kind")
            .agg((1.0 - pl.col("known").fill_null(False).cast(pl.Float64).mean()).alias("novelty"))
        )
        found = found.join(top, on="user_id", how="left").join(novelty, on=["user_id", "kind"], how="left")
        return candidate_frame(
            found.with_columns(
                (pl.col("mean_score") / pl.col("top_score"))
                .fill_nan(0.0)
                .fill_null(0.0)
                .clip(0.0, 1.0)
                .alias("utility"),
                pl.col("novelty").fill_null(0.0),
                pl.lit(0.0).alias("cost"),
                pl.lit(c.risk).alias("risk"),
            )
        )

    def _profile(
        self, reads: pl.DataFrame, clusters: pl.DataFrame, seen_first: pl.DataFrame, titles: pl.DataFrame
    ) -> pl.DataFrame:
        """Per user: articles read, the share read in their first week, top-topic rows — each with
        ``example``, the title of the article of that topic the user read last (null when none of
        theirs there has a title): a topic is named to a person by what they read in it."""
        early = (pl.col("first_ts") - pl.col("item_first")) <= timedelta(days=7)
        titled = titles.filter(pl.col("title") != pl.col("item_id"))
        return (
            reads.join(seen_first.select("item_id", pl.col("first_ts").alias("item_first")), on="item_id", how="left")
            .group_by("user_id")
            .agg(pl.len().alias("n_read"), early.cast(pl.Float64).mean().alias("early_share"))
        ).join(
            reads.join(clusters, on="item_id", how="inner")
            .join(titled, on="item_id", how="left")
            .sort("user_id", "cluster", "last_ts", "item_id")
            .group_by("user_id", "cluster")
            .agg(pl.len().alias("topic_reads"), pl.col("title").drop_nulls().last().alias("example")),
            on="user_id",
            how="left",
        )

    def _lists(self, ctx: GoalContext, ranked: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
        return (
            ranked.join(ctx.titles(), on="item_id", how="left")
            .sort(["user_id", *keys, "rank"])
            .group_by(["user_id", *keys], maintain_order=True)
            .agg(
                pl.col("item_id").alias("items"),
                pl.col("score").mean().alias("mean_score"),
                pl.col("title").fill_null(pl.col("item_id")).alias("titles"),
                pl.format("“{}”", "title")
                .drop_nulls()
                .first()
                .fill_null("an article without a catalog entry")
                .alias("lead"),
            )
            .filter(pl.col("items").list.len() >= self.config.min_size)
        )

    def _shape(
        self,
        frame: pl.DataFrame,
        variant: str,
        kind: pl.Expr,
        params: pl.Expr,
        title: pl.Expr,
        signal: pl.Expr,
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
            json_column(titles=pl.col("titles"), words=why).alias("details"),
            "mean_score",
            signal.clip(0.0, 1.0).fill_null(0.0).alias("signal"),
            fill_marks(why, count=pl.col("items").list.len(), lead=pl.col("lead")).alias("why"),
        )

    def _topics(
        self, ctx: GoalContext, profile: pl.DataFrame, fresh: pl.DataFrame, clusters: pl.DataFrame, labels: pl.DataFrame
    ) -> pl.DataFrame:
        c = self.config
        chosen = (
            profile.with_columns((pl.col("topic_reads") / pl.col("n_read")).alias("share"))
            .filter((pl.col("share") >= c.min_topic_share) & (pl.col("topic_reads") >= 2))
            .sort(["user_id", "share", "cluster"], descending=[False, True, False])
            .group_by("user_id", maintain_order=True)
            .head(c.max_topics)
        )
        fresh_topics = fresh.join(clusters, on="item_id", how="inner")
        frames = []
        for cluster in np.unique(chosen.get_column("cluster").to_numpy()) if chosen.height else []:
            allowed = fresh_topics.filter(pl.col("cluster") == cluster).get_column("item_id").to_list()
            if len(allowed) < c.min_size:
                continue
            who = chosen.filter(pl.col("cluster") == cluster).get_column("user_id").to_numpy().astype(str)
            ranked = ctx.ranked(self.domain, who, c.size, allowed=allowed)
            if ranked.height:
                frames.append(self._lists(ctx, ranked.with_columns(pl.lit(int(cluster)).alias("cluster")), ["cluster"]))
        if not frames:
            return pl.DataFrame()
        lists = pl.concat(frames).join(chosen, on=["user_id", "cluster"]).join(labels, on="cluster", how="left")
        # Named by an article the person read in the topic ("more like 'X'"): the commonest words of a
        # cluster's titles often appear in none of the digest's articles, nor say what it is about.
        example = pl.col("example").str.replace_all("{", "(", literal=True).str.replace_all("}", ")", literal=True)
        # cut at a word: "‘ita está oferecendo 10 cursos…’", not "‘… a distância - engen…’"
        cut = example.str.slice(0, _EXAMPLE_CHARS).str.replace(r"\s+\S*$", "").str.strip_chars_end(" -–—,;:")
        short = pl.when(example.str.len_chars() > _EXAMPLE_CHARS).then(pl.concat_str(cut, pl.lit("…"))).otherwise(
            example
        )
        named = pl.when(example.is_not_null())
        return self._shape(
            lists,
            "topic",
            pl.format("topic:{}", "cluster"),
            json_column(size=c.size, topic=pl.col("cluster"), variant="topic"),
            named.then(pl.format("Digest: more like ‘{}’", short)).otherwise(pl.format("Digest: {}", "label")),
            pl.col("share"),
            pl.format(
                "you read {} articles {} ({}% of your reading); {} fresh ones from the last {} days, ranked "
                "for you, starting with {}",
                "topic_reads",
                named.then(pl.format("like ‘{}’", example)).otherwise(pl.format("on {}", "label")),
                (pl.col("share") * 100).round(0).cast(pl.Int64),
                mark("count"),
                pl.lit(int(c.fresh_days)),
                mark("lead"),
            ),
        )

    def _trending(self, ctx: GoalContext, users: object, profile: pl.DataFrame) -> pl.DataFrame:
        c = self.config
        recent = ctx.recent_popularity(self.domain, c.trending_days)
        first = ctx.first_seen(self.domain).filter(pl.col("first_ts") >= ctx.as_of - timedelta(days=c.fresh_days))
        trending = recent.join(first.select("item_id"), on="item_id", how="semi")
        # Only articles a person can be shown make the digest; the sentence's "most read fresh
        # article" is the most read of all, shown or not, as it says.
        shown = trending.filter(pl.col("item_id").is_in(ctx.showable(self.domain).tolist()))
        pool = shown.head(c.trending_pool)
        if pool.height < c.min_size:
            return pl.DataFrame()
        ranked = ctx.ranked(self.domain, users, c.size, allowed=pool.get_column("item_id").to_list())  # type: ignore[arg-type]
        if not ranked.height:
            return pl.DataFrame()
        lead = trending.head(1).select(pl.col("recent_users").alias("lead_users"))
        people = profile.select("user_id", "early_share").unique("user_id")
        lists = self._lists(ctx, ranked, []).join(people, on="user_id", how="left").join(lead, how="cross")
        return self._shape(
            lists,
            "trending",
            pl.lit("trending"),
            json_column(days=int(c.trending_days), size=c.size, variant="trending"),
            pl.lit("Digest: trending this week"),
            pl.col("early_share"),
            pl.format(
                "the most read fresh article was read by {} people in the last {} days; {}% of your reads are of "
                "articles in their first week; {} trending ones ranked for you, starting with {}",
                "lead_users",
                pl.lit(int(c.trending_days)),
                (pl.col("early_share").fill_null(0.0) * 100).round(0).cast(pl.Int64),
                mark("count"),
                mark("lead"),
            ),
        )

    def _for_you(self, ctx: GoalContext, users: object, fresh: pl.DataFrame, profile: pl.DataFrame) -> pl.DataFrame:
        c = self.config
        ranked = ctx.ranked(self.domain, users, c.size, allowed=fresh.get_column("item_id").to_list())  # type: ignore[arg-type]
        if not ranked.height:
            return pl.DataFrame()
        people = profile.select("user_id", "n_read").unique("user_id")
        lists = self._lists(ctx, ranked, []).join(people, on="user_id", how="left")
        return self._shape(
            lists,
            "for_you",
            pl.lit("for_you"),
            json_column(size=c.size, variant="for_you"),
            pl.lit("Digest: fresh for you"),
            pl.col("n_read") / 30.0,
            pl.format(
                "you read {}; these {} fresh ones are the closest to {}, starting with {}",
                pl.when(pl.col("n_read") == 1).then(pl.lit("1 article")).otherwise(pl.format("{} articles", "n_read")),
                mark("count"),
                pl.when(pl.col("n_read") == 1).then(pl.lit("it")).otherwise(pl.lit("them")),
                mark("lead"),
            ),
        )
