"""The tools planners may call, and which goal templates may use which.

>>> sorted(TOOLS) == sorted(t.name for t in TOOLS.values())
True
>>> "place_order" in allowed_tools("reorder") and "place_order" not in allowed_tools("playlist")
True
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from orchestrion.tools.base import CatalogItem, GoalRecord, IntendedEffect, Tool, ToolContext, tool
from orchestrion.tools.builders import build_cart, compose_digest, create_playlist, create_watchlist, summarize
from orchestrion.tools.effects import place_order, publish
from orchestrion.tools.reads import due_reorders, recommend_items, search_catalog, user_history

__all__ = [
    "TEMPLATE_TOOLS",
    "TOOLS",
    "CatalogItem",
    "GoalRecord",
    "IntendedEffect",
    "Tool",
    "ToolContext",
    "allowed_tools",
    "openai_tool_specs",
    "summarize",
    "tool",
]

TOOLS: Final[dict[str, Tool]] = {
    t.name: t
    for t in (
        recommend_items,
        user_history,
        search_catalog,
        due_reorders,
        create_playlist,
        create_watchlist,
        build_cart,
        place_order,
        compose_digest,
        publish,
    )
}

READS: Final = ("recommend_items", "user_history", "search_catalog")
TEMPLATE_TOOLS: Final[dict[str, tuple[str, ...]]] = {
    "playlist": (*READS, "create_playlist", "publish"),
    "watchlist": (*READS, "create_watchlist", "publish"),
    "reorder": ("due_reorders", "user_history", "search_catalog", "build_cart", "place_order", "publish"),
    "digest": (*READS, "compose_digest", "publish"),
}
"""Each template may use only its own tools; a plugin template gets the read tools and publish
unless it declares ``tools`` itself."""


def allowed_tools(template: str, declared: Iterable[str] | None = None) -> tuple[str, ...]:
    """The tools a goal of ``template`` may call."""
    if declared is not None:
        return tuple(name for name in declared if name in TOOLS)
    return TEMPLATE_TOOLS.get(template, (*READS, "publish"))


def openai_tool_specs(names: Iterable[str]) -> list[dict[str, Any]]:
    """The OpenAI function-calling specs of ``names``."""
    return [TOOLS[name].openai_spec() for name in names]
