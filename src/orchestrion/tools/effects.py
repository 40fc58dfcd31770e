"""Side-effect tools: calling them records an intended effect; the executor runs it after review.

The effect is canonical and computed by code from the deliverable's content (the cart's lines and
total, the deliverable id and channel), so a retry or a re-plan that builds the same content makes
the same idempotency key, and nothing the model wrote can change the amount or add a recipient.
"""

from __future__ import annotations

from typing import Any, Literal

from orchestrion.errors import ToolError
from orchestrion.tools.base import IntendedEffect, ToolContext, tool
from orchestrion.tools.policies import webhook_origin

__all__ = ["place_order", "publish"]


@tool(action="order")
def place_order(ctx: ToolContext) -> dict[str, Any]:
    """Order the cart built with build_cart. It runs only as the user's policy allows (often after their approval)."""
    cart = ctx.content
    if cart.get("kind") != "cart" or not cart.get("items"):
        raise ToolError("there is no cart to order; call build_cart first")
    lines = [[line["item_id"], line["quantity"], line["unit_price"]] for line in cart["items"]]
    effect = {
        "deliverable_id": ctx.goal.deliverable_id,
        "lines": lines,
        "total": cart["total"],
        "currency": cart.get("currency"),
    }
    # One order per deliverable, for the cart as it stands: calling again replaces the queued order
    # (found by the prompt-injection suite: a second cart + place_order made two orders).
    ctx.effects[:] = [e for e in ctx.effects if e.tool != "place_order"]
    ctx.effects.append(IntendedEffect("place_order", "order", effect, amount=float(cart["total"])))
    return {"status": "queued", "total": cart["total"], "note": "runs after review, as the user's policy allows"}


@tool(action="outbox")
def publish(
    ctx: ToolContext, channel: Literal["outbox", "webhook"] = "outbox", url: str | None = None
) -> dict[str, Any]:
    """Publish the finished deliverable to the user's outbox (files) or to the configured webhook.

    ``url`` overrides the configured webhook; its origin (scheme, host, port) must be one the
    operator allows. A URL that is not plainly one http(s) origin is refused here, with the reason.
    """
    if not ctx.content:
        raise ToolError("there is nothing to publish yet; build the playlist, cart, digest or list first")
    if channel == "outbox":
        ctx.effects.append(
            IntendedEffect("publish", "outbox", {"deliverable_id": ctx.goal.deliverable_id, "channel": "outbox"})
        )
        return {"status": "queued", "channel": "outbox"}
    target = url or ctx.webhook_url
    if not target:
        raise ToolError("no webhook is configured; publish to the outbox instead")
    origin = webhook_origin(target)  # PolicyViolation: the executor records it and tells the model
    effect = {"deliverable_id": ctx.goal.deliverable_id, "channel": "webhook", "url": target}
    ctx.effects.append(IntendedEffect("publish", "webhook", effect, origin=origin))
    return {"status": "queued", "channel": "webhook", "origin": origin}
