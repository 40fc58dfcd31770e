"""Review before delivery: a deliverable is checked against its goal by rules, plus an optional critic.

Rules: something was built (unless the plan says nothing is worth doing), its length is within
bounds, no item appears twice, no excluded item is used, a cart is within the order cap and its
total adds up, a digest's articles are fresh. The critic (an LLM when an endpoint is configured)
may add problems; a critic that raises fails the review (a check that cannot decide refuses).
A failed review sends the goal back for one re-plan; a second failure marks the deliverable
failed.

>>> review({"kind": "playlist", "items": [{"item_id": "a"}, {"item_id": "a"}]}, excluded=frozenset(),
...        max_order_amount=100.0).problems
["item 'a' appears 2 times"]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from orchestrion.money import format_money

__all__ = ["Critic", "Review", "review"]

MAX_ITEMS: Final = 100
FRESH_DAYS: Final = 30

Critic = Callable[[Mapping[str, Any]], tuple[bool, str]]
"""Reads a deliverable (title, summary, content, why) and answers (ok, notes)."""


@dataclass(frozen=True)
class Review:
    """The outcome: ``ok`` when there are no problems."""

    problems: list[str] = field(default_factory=list)
    critique: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": self.problems, "critique": self.critique}

    def feedback(self) -> str:
        """The problems as instructions for a re-plan."""
        return "The review found problems; fix them: " + "; ".join(self.problems)


def review(
    content: Mapping[str, Any],
    *,
    excluded: frozenset[str],
    max_order_amount: float,
    first_seen: Mapping[str, datetime] | None = None,
    as_of: datetime | None = None,
    deliverable: Mapping[str, Any] | None = None,
    critic: Critic | None = None,
) -> Review:
    """Check built ``content`` (the executor's) against the rules, then the critic if any."""
    problems: list[str] = []
    items = list(content.get("items", []))
    if not content or not items:
        problems.append("nothing was built: call the template's builder tool with at least one item")
    if len(items) > MAX_ITEMS:
        problems.append(f"{len(items)} items is too many; use at most {MAX_ITEMS}")
    counts = Counter(str(i.get("item_id")) for i in items)
    problems += [f"item {k!r} appears {n} times" for k, n in counts.items() if n > 1]
    problems += [f"item {k!r} was excluded by the user" for k in counts if k in excluded]
    if content.get("kind") == "cart":
        total = round(sum(float(i["line_total"]) for i in items), 2)
        if abs(total - float(content.get("total", 0.0))) > 0.01:
            problems.append(f"cart total {content.get('total')} does not match its lines ({total})")
        if total > max_order_amount:
            currency = content.get("currency")
            problems.append(
                f"cart total {format_money(total, currency)} is over the order cap "
                f"{format_money(max_order_amount, currency)}; drop items"
            )
    if content.get("kind") == "digest" and first_seen is not None and as_of is not None:
        oldest = as_of - timedelta(days=FRESH_DAYS)
        stale = [k for k in counts if (seen := first_seen.get(k)) is None or seen < oldest or seen >= as_of]
        problems += [f"article {k!r} is not fresh (first read over {FRESH_DAYS} days ago)" for k in stale]
    critique = None
    if critic is not None and not problems and deliverable is not None:
        try:
            ok, critique = critic(deliverable)
        except Exception as exc:  # the critic's own fault: this deliverable fails its review, nothing else
            ok, critique = False, f"the critique failed ({type(exc).__name__}: {str(exc)[:200]})"
        if not ok:
            problems.append(f"critic: {critique}")
    return Review(problems, critique)
