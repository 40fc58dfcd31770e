"""The offline planner: deterministic plans per template through the same tools. No LLM needed.

Titles and summaries are written from the data: the artists of a playlist, the cart's line count
and total, the lead sentences of a digest's first articles. The same goal always gives the same
plan, so the same side effects and the same idempotency keys.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from orchestrion.goals.words import full_stop
from orchestrion.money import format_money
from orchestrion.planning.base import PlanOutcome
from orchestrion.planning.plan import Plan
from orchestrion.tools.builders import line_limit
from orchestrion.tools.reads import cart_currency

if TYPE_CHECKING:
    from orchestrion.planning.executor import Executor
    from orchestrion.tools import GoalRecord

__all__ = ["OfflinePlanner", "summary_of"]

NAME: Final = "offline"


def _names(items: list[dict[str, Any]], key: str, most: int = 3) -> str:
    seen: list[str] = []
    for item in items:
        value = item.get(key)
        if value and value not in seen:
            seen.append(str(value))
    if not seen:
        return ""
    shown = ", ".join(seen[:most])
    return shown + (f" and {len(seen) - most} more" if len(seen) > most else "")


def summary_of(content: dict[str, Any], locale: str | None = None) -> str:
    """A one-paragraph summary of built content, from the data only (money as ``locale`` writes it).

    >>> summary_of({"kind": "cart", "items": [{"title": "Tea"}], "total": 3.5, "currency": "GBP"})
    '1 item, £3.50 in total: Tea.'
    """
    items = content.get("items", [])
    kind = content.get("kind")
    if kind == "cart":
        lines = f"{len(items)} item{'s' if len(items) != 1 else ''}"
        total = format_money(content["total"], content.get("currency"), locale)
        return full_stop(f"{lines}, {total} in total: {_names(items, 'title', 4)}")
    if kind == "digest":
        lead = next((i["summary"] for i in items if i.get("summary")), "")
        text = full_stop(f"{len(items)} article{'s' if len(items) != 1 else ''}: {_names(items, 'title', 3)}")
        return f"{text} Top story: {lead}" if lead else text
    noun = "track" if kind == "playlist" else "movie"
    by = _names(items, "creator") or _names(items, "title")
    return full_stop(f"{len(items)} {noun}{'s' if len(items) != 1 else ''}" + (f" featuring {by}" if by else ""))


class OfflinePlanner:
    """Deterministic plans for the four built-in templates; "nothing to do" for others."""

    name: str = NAME

    def plan(self, goal: GoalRecord, executor: Executor, *, feedback: str | None = None) -> PlanOutcome:
        steps = _STEPS.get(goal.template)
        if steps is None:
            return PlanOutcome(Plan.nothing(f"no offline plan for template {goal.template!r}"), NAME)
        problem = steps(goal, executor)
        if problem is not None:
            return PlanOutcome(Plan.nothing(problem), NAME)
        content = executor.ctx.content
        title = content.get("title") or goal.title
        locale = executor.ctx.locale
        if content.get("kind") == "cart":  # the cart may differ from the goal's (cap, exclusions)
            total = format_money(content["total"], content.get("currency"), locale)
            title = f"Reorder: {len(content['items'])} items ({total})"
        return PlanOutcome(
            Plan(title=title, summary=summary_of(content, locale), calls=list(executor.calls)),
            NAME,
        )


def _usable(goal: GoalRecord, executor: Executor) -> list[str]:
    """The goal's items that are not excluded and have a catalog entry (a title to show)."""
    ctx = executor.ctx
    return [i for i in goal.items if i not in ctx.excluded and i in ctx.catalog]


def _list(builder: str, key: str) -> Callable[[GoalRecord, Executor], str | None]:
    def steps(goal: GoalRecord, executor: Executor) -> str | None:
        items = _usable(goal, executor)
        if not items:
            return "no item of this goal is both in the catalog and not excluded by the user"
        built = executor.call(builder, {"title": goal.title[:120], key: items[:100]})
        if not built.ok:
            return built.error
        executor.call("publish", {"channel": "outbox"})
        return None

    return steps


def _reorder(goal: GoalRecord, executor: Executor) -> str | None:
    due = executor.call("due_reorders", {})
    if not due.ok or not due.result:
        return "nothing is due" if due.ok else due.error
    cap = executor.ctx.max_order_amount
    lines: list[dict[str, Any]] = []
    total = 0.0
    currency = cart_currency(executor.ctx, [str(d["item_id"]) for d in due.result])  # build_cart's own rule
    for line in due.result[:50]:  # most due first; stop adding once the order cap would be passed
        if line.get("currency") not in (None, currency):
            continue
        quantity = min(int(line["quantity"]), line_limit(line["quantity"]))  # the usual quantity (due_reorders)
        cost = quantity * float(line.get("price") or 0.0)
        if cap is not None and total + cost > cap:
            continue
        lines.append({"item_id": line["item_id"], "quantity": quantity})
        total += cost
    if not lines:
        limit = format_money(cap, currency or None) if cap is not None else "order"
        return f"every item costs more than the {limit} order limit at the quantity you usually buy"
    cart = executor.call("build_cart", {"lines": lines})
    if not cart.ok:
        return cart.error
    executor.call("place_order", {})
    executor.call("publish", {"channel": "outbox"})
    return None


_STEPS: Final[dict[str, Callable[[GoalRecord, Executor], str | None]]] = {
    "playlist": _list("create_playlist", "item_ids"),
    "watchlist": _list("create_watchlist", "item_ids"),
    "digest": _list("compose_digest", "article_ids"),
    "reorder": _reorder,
}
