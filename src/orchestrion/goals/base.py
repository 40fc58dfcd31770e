"""The goal template interface and the shapes of what templates return.

A template proposes for a *batch* of users at once: it gets a :class:`~orchestrion.goals.context.
GoalContext` (frames and models, never a database) and returns one polars frame of candidates
in :data:`CANDIDATE_SCHEMA`, zero or more rows per user. Frames rather than lists of objects,
because a day's proposals for every user of a store are tens of thousands of rows and every step
after this one (features, ranking, choosing, writing) is a column operation.

The numbers every template fills in are on one scale, so that one ranker can compare a playlist
with a reorder cart:

* ``utility`` (0..1): the template's own estimate that the goal is welcome (for a reorder cart,
  the repurchase model's probability that at least one item is bought; for a list, how close its
  items are to the user's taste);
* ``signal`` (0..1): how much of the user's own history backs the goal;
* ``novelty`` (0..1): how much of the goal is new to the user;
* ``risk`` (0..1) and ``cost`` (money, 0 when nothing is bought).

``why`` quotes the actual signals ("you bought each of these 4 items on 3–6 separate days, usually
every 19–24 days; the last time was 26–30 days ago"); the contract test checks that its numbers are
the user's, and ``tests/test_why_numbers.py`` recomputes every one on real days. A number that
depends on the list itself (how many items, the first titles) is written as a mark (:data:`MARKS`)
in ``details["words"]``, so that the sentence can be written again for the list finally delivered.

>>> frame = candidate_frame(pl.DataFrame({"user_id": ["u"], "template": ["t"], "variant": ["v"],
...     "kind": ["v"], "params": ['{"a": 1}'], "title": ["T"], "items": [["i1"]], "details": ["{}"],
...     "utility": [0.5], "signal": [0.5], "novelty": [0.0], "cost": [0.0], "risk": [0.1],
...     "why": ["because"]}))
>>> Candidate.from_row(frame.row(0, named=True)).items
('i1',)
>>> goal_id("u", "t", '{"a": 1}', date(2024, 5, 1)) == goal_id("u", "t", '{"a":1}', date(2024, 5, 1))
True
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, runtime_checkable

import polars as pl

from orchestrion.errors import UsageError

if TYPE_CHECKING:
    from orchestrion.goals.context import GoalContext

__all__ = [
    "CANDIDATE_SCHEMA",
    "LIST_SQL",
    "MIN_LIST_ITEMS",
    "NUMBERS",
    "Candidate",
    "Goal",
    "GoalTemplate",
    "Reason",
    "Status",
    "candidate_frame",
    "canonical_params",
    "cluster_labels",
    "deliverable_id",
    "empty_candidates",
    "fill_marks",
    "goal_id",
    "goal_ids",
    "is_list",
    "json_column",
    "list_expr",
    "list_words",
    "mark",
]

CANDIDATE_SCHEMA: Final[Mapping[str, pl.DataType]] = {
    "user_id": pl.String(),
    "template": pl.String(),
    "variant": pl.String(),
    "kind": pl.String(),
    "params": pl.String(),
    "title": pl.String(),
    "items": pl.List(pl.String()),
    "details": pl.String(),
    "utility": pl.Float64(),
    "signal": pl.Float64(),
    "novelty": pl.Float64(),
    "cost": pl.Float64(),
    "risk": pl.Float64(),
    "why": pl.String(),
}
"""One row per candidate: who, which template and variant, parameters (JSON), the items in order,
rendering details (JSON), the shared numbers, and "why this"."""

NUMBERS: Final = ("utility", "signal", "novelty", "risk")
"""The numbers that must lie in [0, 1]."""

Status = Literal["chosen", "not_chosen"]
Reason = Literal["score", "budget", "policy", "fatigue"]


def empty_candidates() -> pl.DataFrame:
    """A frame with no candidates and the right columns (what a template returns for nobody)."""
    return pl.DataFrame(schema=dict(CANDIDATE_SCHEMA))


def cluster_labels(
    clusters: pl.DataFrame, terms: pl.DataFrame, *, top: int, fallback: str, distinctive: bool = False
) -> pl.DataFrame:
    """``cluster, label``: each cluster's ``top`` commonest terms joined by commas (ties by term),
    or ``fallback`` with ``{}`` standing for the cluster number where a cluster has no term.

    ``clusters`` has a ``cluster`` column; ``terms`` has ``cluster, term`` (one row per use). With
    ``distinctive``, terms are ranked by how much more this cluster uses them than the others
    (class-based TF-IDF: uses × log(1 + clusters ÷ clusters using it)), and a plural is not added
    beside its singular ("year, years"): words every topic uses ("big", "new", "year") do not name one.

    >>> c = pl.DataFrame({"cluster": [0, 1]})
    >>> t = pl.DataFrame({"cluster": [0, 0, 0], "term": ["rock", "pop", "rock"]})
    >>> cluster_labels(c, t, top=2, fallback="cluster {}").sort("cluster").get_column("label").to_list()
    ['rock, pop', 'cluster 1']
    >>> t = pl.DataFrame({"cluster": [0] * 6 + [1] * 5, "term": ["big", "big", "big", "bank", "bank", "banks",
    ...     "big", "big", "big", "cloud", "cloud"]})
    >>> cluster_labels(c, t, top=2, fallback="cluster {}", distinctive=True).sort("cluster")["label"].to_list()
    ['bank, big', 'cloud, big']
    """
    counted = terms.filter(pl.col("term").is_not_null()).group_by("cluster", "term").len()
    if distinctive:
        spread = counted.group_by("term").agg(pl.col("cluster").n_unique().alias("_in"))
        n = max(counted.get_column("cluster").n_unique(), 1)
        counted = (
            counted.join(spread, on="term")
            .with_columns((pl.col("len") * (1.0 + pl.lit(n) / pl.col("_in")).log()).alias("len"))
            .drop("_in")
        )
    ranked = counted.sort(["cluster", "len", "term"], descending=[False, True, False])
    if distinctive:
        picked: dict[Any, list[str]] = {}
        # a chosen term turns away at most four others (its plurals, or the singulars it is one of):
        # each cluster's best top × 5 hold its label, and the loop stays that short
        best = ranked.group_by("cluster", maintain_order=True).head(top * 5)
        for cluster, term in best.select("cluster", "term").iter_rows():
            mine = picked.setdefault(cluster, [])
            if len(mine) < top and not any(term in (t + "s", t + "es") or t in (term + "s", term + "es") for t in mine):
                mine.append(term)
        labels = pl.DataFrame(
            {"cluster": list(picked), "label": [", ".join(v) for v in picked.values()]},
            schema={"cluster": ranked.schema["cluster"], "label": pl.String},
        )
    else:
        labels = ranked.group_by("cluster", maintain_order=True).agg(
            pl.col("term").head(top).str.join(", ").alias("label")
        )
    return (
        clusters.select("cluster")
        .unique()
        .join(labels, on="cluster", how="left")
        .select("cluster", pl.coalesce("label", pl.format(fallback, "cluster")).alias("label"))
    )


MIN_LIST_ITEMS: Final = 2
"""The fewest items a list (a goal that buys nothing: a movie night, a digest, a playlist) is sent
with: a list of one is not proposed, and one left with one by the delivery is not sent."""


def is_list(cost: float | None, details: Mapping[str, Any]) -> bool:
    """A *list*: a goal that costs nothing and has no cart lines (a cart spends money; it has ``lines``).

    >>> is_list(0.0, {}), is_list(12.5, {"lines": [{"item_id": "a", "quantity": 1}]})
    (True, False)
    """
    return (cost or 0.0) <= 0 and not details.get("lines")


LIST_SQL: Final = "coalesce(g.cost, 0) <= 0 AND json_extract(g.details, '$.lines') IS NULL"
""":func:`is_list` over ``goals g``."""


def list_expr() -> pl.Expr:
    """:func:`is_list` over a frame of candidates (``cost``, ``details`` as JSON)."""
    return (pl.col("cost") <= 0) & pl.col("details").str.json_path_match("$.lines").is_null()


def candidate_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` checked and cast to :data:`CANDIDATE_SCHEMA`, in its column order.

    Raises UsageError naming the missing columns or the out-of-range numbers, so a plugin author
    sees what to fix.
    """
    missing = [name for name in CANDIDATE_SCHEMA if name not in frame.columns]
    if missing:
        raise UsageError(f"goal candidates lack columns {missing}; see orchestrion.goals.CANDIDATE_SCHEMA")
    out = frame.select([pl.col(name).cast(dtype) for name, dtype in CANDIDATE_SCHEMA.items()])
    for name in NUMBERS:
        bad = out.filter(~pl.col(name).is_between(0.0, 1.0) | pl.col(name).is_null())
        if bad.height:
            raise UsageError(f"goal candidates have {name} outside [0, 1] (e.g. {bad.row(0, named=True)[name]!r})")
    if out.filter(pl.col("items").list.len() == 0).height:
        raise UsageError("goal candidates must use at least one item; drop candidates with an empty item list")
    return out


MARKS: Final = ("count", "first_two", "more", "lead", "known", "new")
"""The parts of a list's "why this" that depend on its items, written ``{count}`` etc. in the text a
template keeps in ``details["words"]``: the number of items, the first two titles ("A and B"), how
many after those two, the first article title in quotes, and (playlists) how many were played
before and how many not. :func:`list_words` fills them in for whatever list is finally delivered."""


def mark(name: str) -> pl.Expr:
    """The literal ``{name}`` of a mark, as an argument of ``pl.format``."""
    if name not in MARKS:
        raise UsageError(f"{name!r} is not a mark; use one of {', '.join(MARKS)}")
    return pl.lit("{" + name + "}")


_MARK: Final = re.compile(r"\{(" + "|".join(MARKS) + r")\}")


SINGULAR: Final = (
    (r"\bthese 1 unseen ones are\b", "this 1 unseen one is"),
    (
        r"\bthese 1 were watched most in the last (\d+) days and are\b",
        "this 1 was watched most in the last ${1} days and is",
    ),
    (r"\bthese 1 are the closest\b", "this 1 is the closest"),
    (r"\bthese 1 fresh ones are\b", "this 1 fresh one is"),
    (r"(^|; )1 fresh ones from\b", "${1}1 fresh one from"),
    (r"(^|; )1 trending ones ranked\b", "${1}1 trending one ranked"),
    (r"^1 artists you have never played\b", "1 artist you have never played"),
    (r"^you read 1 articles\b", "you read 1 article"),
)
"""The built-in sentences' words for a list of one item: regular expressions that match only a count
of exactly 1 (``these 1 ...``, never ``these 10 ...``), with their singular."""


def fill_marks(text: pl.Expr, **values: pl.Expr) -> pl.Expr:
    """``text`` with each ``{mark}`` replaced by its value (the vectorised :func:`list_words`); the
    marks that stand for titles last, so that a title is never read for a mark."""
    for name, value in sorted(values.items(), key=lambda kv: kv[0] in ("first_two", "lead")):
        text = text.str.replace_all("{" + name + "}", value.cast(pl.String), literal=True)
    if "count" in values:
        for many, single in SINGULAR:
            text = text.str.replace(many, single)
    return text


def list_words(text: str, items: Sequence[Mapping[str, Any]], known: Sequence[str] = ()) -> str:
    """``text`` (with :data:`MARKS`) written for the final ``items`` (dicts with ``item_id``, ``title``).

    >>> list_words("these {count} are the closest", [{"item_id": "a"}])
    'this 1 is the closest'
    >>> list_words("these {count}, starting with {first_two}; {known} known", [
    ...     {"item_id": "a", "title": "Alien"}, {"item_id": "b", "title": "Brazil"}, {"item_id": "c"}], known=["c"])
    'these 3, starting with Alien and Brazil; 1 known'
    """
    titles = [str(i.get("title") or i["item_id"]) for i in items]
    lead = next(
        (f"“{i['title']}”" for i in items if i.get("title") and i.get("title") != i["item_id"]),
        "an article without a catalog entry",
    )
    familiar = sum(1 for i in items if i["item_id"] in set(known))
    values = {
        "count": str(len(items)),
        "first_two": " and ".join(titles[:2]),
        "more": str(max(len(items) - 2, 0)),
        "lead": lead,
        "known": str(familiar),
        "new": str(len(items) - familiar),
    }
    text = _MARK.sub(lambda m: values[m[1]], text)
    for many, single in SINGULAR:
        text = re.sub(many, single.replace("${1}", r"\g<1>"), text, count=1)
    return text


def json_column(**fields: pl.Expr | str | float | int) -> pl.Expr:
    """A JSON object per row from named expressions or constants, keys sorted (for params/details).

    >>> pl.select(json_column(b=pl.lit("x"), a=1)).item()
    '{"a":1,"b":"x"}'
    """
    exprs = [(v if isinstance(v, pl.Expr) else pl.lit(v)).alias(k) for k, v in sorted(fields.items())]
    return pl.struct(exprs).struct.json_encode()


def canonical_params(params: str | Mapping[str, Any]) -> str:
    """Parameters as compact JSON with sorted keys: equal parameters give equal text (and ids)."""
    value = json.loads(params) if isinstance(params, str) else dict(params)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _digest(user_id: str, template: str, params: str, day: date) -> str:
    key = "|".join((user_id, template, canonical_params(params), day.isoformat()))
    return hashlib.blake2b(key.encode(), digest_size=10).hexdigest()


def goal_id(user_id: str, template: str, params: str | Mapping[str, Any], day: date) -> str:
    """The stable id of a goal: the same (user, template, params, date) always gives the same id."""
    return "g_" + _digest(user_id, template, params if isinstance(params, str) else canonical_params(params), day)


def deliverable_id(goal: str) -> str:
    """The deliverable of a chosen goal shares its hash: ``g_abc`` → ``d_abc``."""
    if not goal.startswith("g_"):
        raise UsageError(f"{goal!r} is not a goal id (they start with 'g_')")
    return "d_" + goal[2:]


def goal_ids(user_ids: Sequence[str], templates: Sequence[str], params: Sequence[str], day: date) -> list[str]:
    """:func:`goal_id` for parallel columns (one hash per candidate; no per-event work)."""
    return ["g_" + _digest(u, t, p, day) for u, t, p in zip(user_ids, templates, params, strict=True)]


@dataclass(frozen=True)
class Candidate:
    """One candidate as a Python object (for display and tests; the pipeline keeps frames)."""

    user_id: str
    template: str
    variant: str
    kind: str
    params: dict[str, Any]
    title: str
    items: tuple[str, ...]
    details: dict[str, Any]
    utility: float
    signal: float
    novelty: float
    cost: float
    risk: float
    why: str

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Candidate:
        """From a named row of a candidate frame (params and details decoded from JSON)."""
        return cls(
            user_id=str(row["user_id"]),
            template=str(row["template"]),
            variant=str(row["variant"]),
            kind=str(row["kind"]),
            params=json.loads(row["params"]),
            title=str(row["title"]),
            items=tuple(row["items"]),
            details=json.loads(row["details"] or "{}"),
            utility=float(row["utility"]),
            signal=float(row["signal"]),
            novelty=float(row["novelty"]),
            cost=float(row["cost"]),
            risk=float(row["risk"]),
            why=str(row["why"]),
        )


@dataclass(frozen=True)
class Goal:
    """A candidate after the ranker and the chooser: what ``goals show`` prints."""

    goal_id: str
    date: date
    candidate: Candidate
    score: float
    status: Status
    policy: str
    propensity: float | None = None
    slot: int | None = None
    reason: Reason | None = None
    reason_detail: str | None = None
    features: Mapping[str, float] | None = None

    @property
    def deliverable_id(self) -> str | None:
        """The deliverable's id when the goal was chosen."""
        return deliverable_id(self.goal_id) if self.status == "chosen" else None


@runtime_checkable
class GoalTemplate(Protocol):
    """A kind of goal: proposes candidates for a batch of users from a context.

    ``name`` is the registry key and the ``template`` column of its rows; ``domain`` is the
    events domain it reads (``music``, ``retail``, ...); ``variants`` lists the values its rows
    may have in ``variant`` (the ranker one-hot encodes them).
    """

    name: str
    domain: str
    variants: tuple[str, ...]
    description: str

    def propose(self, ctx: GoalContext) -> pl.DataFrame:
        """Candidates in :data:`CANDIDATE_SCHEMA` for the users of ``ctx.users`` (others never)."""
        ...
