"""Read-only tools: what the planner may look at. Every read is scoped to the context's user."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import Field

from orchestrion.tools.base import ToolContext, tool

__all__ = ["due_reorders", "recommend_items", "search_catalog", "user_history"]

Limit = Annotated[int, Field(ge=1, le=50)]


def _brief(ctx: ToolContext, item_id: str) -> dict[str, Any]:
    item = ctx.item(item_id)
    return {"item_id": item.item_id, "title": item.title, "creator": item.creator, "price": item.price}


@tool()
def recommend_items(ctx: ToolContext, limit: Limit = 20) -> list[dict[str, Any]]:
    """The items the recommenders proposed for this goal, best first, without items the user excluded."""
    return [_brief(ctx, i) for i in ctx.goal.items if i not in ctx.excluded][:limit]


@tool()
def user_history(
    ctx: ToolContext, days: Annotated[int, Field(ge=1, le=365)] = 30, limit: Limit = 20
) -> list[dict[str, Any]]:
    """This user's most recent events (type, item, title, time) within the ``days`` days before the goal's day."""
    rows = (
        ctx.cursor()
        .execute(
            "SELECT e.type, e.item_id, i.title, e.ts FROM events e LEFT JOIN items i USING (item_id) "
            "WHERE e.user_id = $user AND e.ts < $now AND e.ts >= $now - to_days($days) "
            "ORDER BY e.ts DESC LIMIT $limit",
            {"user": ctx.user_id, "now": ctx.as_of, "days": days, "limit": limit},
        )
        .fetchall()
    )
    return [{"type": t, "item_id": i, "title": title, "ts": ts.isoformat()} for t, i, title, ts in rows]


@tool()
def search_catalog(
    ctx: ToolContext, query: Annotated[str, Field(min_length=1, max_length=200)], limit: Limit = 10
) -> list[dict[str, Any]]:
    """Catalog items of this goal's domain whose title or creator contains ``query`` (case-insensitive)."""
    domain = next((c.domain for c in ctx.catalog.values() if c.domain), None)
    rows = (
        ctx.cursor()
        .execute(
            "SELECT item_id, title, creator, price FROM items "
            "WHERE ($domain IS NULL OR domain = $domain) AND (title ILIKE $q OR creator ILIKE $q) "
            "ORDER BY title LIMIT $limit",
            {"domain": domain, "q": f"%{query}%", "limit": limit},
        )
        .fetchall()
    )
    return [{"item_id": i, "title": t, "creator": c, "price": p} for i, t, c, p in rows if i not in ctx.excluded]


@tool()
def due_reorders(ctx: ToolContext) -> list[dict[str, Any]]:
    """The items the repurchase model says are due for this user, with their usual quantities and prices."""
    lines = ctx.goal.details.get("lines") or [{"item_id": i, "quantity": 1} for i in ctx.goal.items]
    due = []
    for line in lines:
        item_id = str(line["item_id"])
        if item_id in ctx.excluded:
            continue
        brief = _brief(ctx, item_id)
        price = line.get("unit_price") or brief["price"]
        due.append({**brief, "price": price, "currency": line_currency(ctx, item_id),
                    "quantity": int(line.get("quantity") or 1)})
    return due


def cart_currency(ctx: ToolContext, item_ids: Iterable[str]) -> str:
    """The one currency of a cart of ``item_ids``: the goal's, else the first item's known one,
    else GBP (the shipped shop's). A line in another currency is left out of it."""
    known = (line_currency(ctx, item_id) for item_id in item_ids)
    return str(ctx.goal.details.get("currency") or next((c for c in known if c), None) or "GBP")


def line_currency(ctx: ToolContext, item_id: str) -> str | None:
    """The currency ``item_id`` is sold in: the catalog's when it says one, else the goal's for an
    item the goal priced from the person's own orders, else None (unknown)."""
    known = ctx.item(item_id).currency
    if known:
        return str(known).upper()
    if any(str(line["item_id"]) == item_id for line in ctx.goal.details.get("lines", [])):
        currency = ctx.goal.details.get("currency")
        return None if currency is None else str(currency)
    return None
