"""Builder tools: they make the deliverable's content (a playlist, a watchlist, a cart, a digest).

Content is assembled by code from the catalog: the model picks item ids and a title, never the
prices, the creators or the article text shown to the person.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field

from orchestrion.errors import ToolError
from orchestrion.tools.base import ToolContext, tool
from orchestrion.tools.reads import cart_currency, line_currency

__all__ = [
    "MAX_QUANTITY",
    "CartLine",
    "build_cart",
    "compose_digest",
    "create_playlist",
    "create_watchlist",
    "line_limit",
    "summarize",
]

Title = Annotated[str, Field(min_length=1, max_length=120)]
ItemIds = Annotated[list[Annotated[str, Field(min_length=1, max_length=256)]], Field(min_length=1, max_length=100)]
MAX_QUANTITY: Final = 99
"""Most units of one item an order line holds — unless the person usually buys more of it at a time
(:func:`line_limit`): a wholesaler who buys 144 at a time gets 144, not a silent 99."""
MAX_LINE_UNITS: Final = 100_000
"""No line holds more, whatever the history says (a typo in a feed must not become an order)."""
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'“])")


def summarize(text: str | None, max_chars: int = 280) -> str:
    """An extractive summary: the article's leading sentences, up to ``max_chars``.

    >>> summarize("First point. Second point here. Third.", 35)
    'First point. Second point here.'
    """
    if not text:
        return ""
    sentences = _SENTENCE.split(" ".join(text.split()))
    out = ""
    for sentence in sentences:
        if out and len(out) + 1 + len(sentence) > max_chars:
            break
        out = f"{out} {sentence}".strip()
    return out if len(out) <= max_chars else out[: max_chars - 1].rstrip() + "…"


def _items(ctx: ToolContext, item_ids: list[str]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for item_id in item_ids:
        if item_id in seen:
            raise ToolError(f"item {item_id!r} appears twice; list each item once")
        if item_id in ctx.excluded:
            raise ToolError(f"item {item_id!r} is excluded (the user thumbed it down, or another of today's lists "
                            "holds it); leave it out")
        seen.add(item_id)
        item = ctx.item(item_id)
        out.append({"item_id": item.item_id, "title": item.title or item.item_id, "creator": item.creator})
    return out


@tool()
def create_playlist(ctx: ToolContext, title: Title, item_ids: ItemIds) -> dict[str, Any]:
    """Create the playlist: a title and the track or artist ids in play order (each once, none excluded)."""
    items = _items(ctx, item_ids)
    ctx.content = {"kind": "playlist", "title": title, "items": items}
    return {"created": "playlist", "tracks": len(items)}


@tool()
def create_watchlist(ctx: ToolContext, title: Title, item_ids: ItemIds) -> dict[str, Any]:
    """Create the movie-night list: a title and the movie ids in the order to suggest them."""
    items = _items(ctx, item_ids)
    ctx.content = {"kind": "watchlist", "title": title, "items": items}
    return {"created": "watchlist", "movies": len(items)}


class CartLine(BaseModel):
    """One line of a cart: which item and how many."""

    model_config = ConfigDict(extra="forbid")

    item_id: str = Field(min_length=1, max_length=256)
    quantity: int = Field(ge=1, le=MAX_LINE_UNITS, description=f"At most {MAX_QUANTITY}, or the usual quantity.")


def line_limit(usual: float | None) -> int:
    """The most units one cart line may hold: :data:`MAX_QUANTITY`, or the quantity the person
    usually buys at a time (``usual``, the goal's own line) when that is more.

    >>> line_limit(None), line_limit(12), line_limit(143.5)
    (99, 99, 144)
    """
    return min(max(MAX_QUANTITY, math.ceil(float(usual or 0))), MAX_LINE_UNITS)


@tool()
def build_cart(
    ctx: ToolContext, lines: Annotated[list[CartLine], Field(min_length=1, max_length=50)]
) -> dict[str, Any]:
    """Build the cart: item ids with quantities. Prices and the total are computed from the catalog."""
    usual = {str(line["item_id"]): line for line in ctx.goal.details.get("lines", [])}
    items = _items(ctx, [line.item_id for line in lines])
    currency = cart_currency(ctx, [line.item_id for line in lines])
    out = []
    for line, item in zip(lines, items, strict=True):
        known = usual.get(line.item_id)
        limit = line_limit(known.get("quantity") if known else None)
        if line.quantity > limit:
            raise ToolError(
                f"item {line.item_id!r}: at most {limit} units in a line (the most an order line holds, or the "
                "quantity the person usually buys if more); lower the quantity"
            )
        price = known.get("unit_price") if known else ctx.item(line.item_id).price
        if price is None or float(price) <= 0:
            raise ToolError(f"item {line.item_id!r} has no price in the catalog; it cannot be ordered")
        other = line_currency(ctx, line.item_id)
        if other is not None and other != currency:
            raise ToolError(
                f"item {line.item_id!r} is priced in {other} and this cart in {currency}: a cart holds one "
                "currency; leave it out"
            )
        unit = round(float(price), 2)
        out.append(
            {**item, "quantity": line.quantity, "unit_price": unit, "line_total": round(unit * line.quantity, 2)}
        )
    total = round(sum(line["line_total"] for line in out), 2)
    ctx.content = {"kind": "cart", "items": out, "total": total, "currency": currency}
    queued = len(ctx.effects)
    ctx.effects[:] = [e for e in ctx.effects if e.tool != "place_order"]  # an order is for the cart it saw
    note = {"note": "the order queued for the previous cart was dropped; call place_order again"}
    return {"created": "cart", "lines": len(out), "total": total, "currency": currency} | (
        note if len(ctx.effects) < queued else {}
    )


@tool()
def compose_digest(ctx: ToolContext, title: Title, article_ids: ItemIds) -> dict[str, Any]:
    """Compose the digest: a title and the article ids in reading order; summaries come from each article's text."""
    items = _items(ctx, article_ids)
    for item in items:
        article = ctx.item(item["item_id"])
        item["summary"] = summarize(article.text)
        item["published"] = article.published
    ctx.content = {"kind": "digest", "title": title, "items": items}
    return {"created": "digest", "articles": len(items)}
