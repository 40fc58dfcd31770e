"""Goals nobody asked for: templates that turn a day's signals into goal candidates.

>>> from orchestrion.goals import templates
>>> sorted(t.domain for t in templates().values())
['movies', 'music', 'news', 'retail']

Each template (``playlist``, ``reorder``, ``digest``, ``watchlist``, plus plugins from the
``orchestrion.goal_templates`` entry-point group) proposes for a batch of users from a
:class:`GoalContext` and returns a frame in :data:`CANDIDATE_SCHEMA`; :func:`propose_candidates`
runs several and stacks their answers. Ranking and choosing live in :mod:`orchestrion.ranking`.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from orchestrion.goals.base import (
    CANDIDATE_SCHEMA,
    MIN_LIST_ITEMS,
    Candidate,
    Goal,
    GoalTemplate,
    candidate_frame,
    deliverable_id,
    empty_candidates,
    goal_id,
    goal_ids,
    list_expr,
)
from orchestrion.goals.context import ContextConfig, GoalContext
from orchestrion.goals.registry import ENTRY_POINT_GROUP, discover_plugins, templates

__all__ = [
    "CANDIDATE_SCHEMA",
    "ENTRY_POINT_GROUP",
    "MIN_LIST_ITEMS",
    "Candidate",
    "ContextConfig",
    "Goal",
    "GoalContext",
    "GoalTemplate",
    "candidate_frame",
    "deliverable_id",
    "discover_plugins",
    "empty_candidates",
    "goal_id",
    "goal_ids",
    "propose_candidates",
    "templates",
]


def propose_candidates(ctx: GoalContext, chosen: Iterable[GoalTemplate] | None = None) -> pl.DataFrame:
    """Every template's candidates for ``ctx.users``, stacked, in a stable order.

    Only templates whose domain some batch user has events in are run, so a store holding one
    dataset does not pay for the other domains' models.
    """
    frames = []
    for template in chosen if chosen is not None else templates().values():
        if ctx.domain_users(template.domain).size == 0:
            continue
        frames.append(candidate_frame(template.propose(ctx)))
    if not frames:
        return empty_candidates()
    stacked = pl.concat(frames)
    # A list of a single item is not worth a place of the day.
    stacked = stacked.filter(~(list_expr() & (pl.col("items").list.len() < MIN_LIST_ITEMS)))
    return stacked.sort("user_id", "template", "kind", maintain_order=True)
