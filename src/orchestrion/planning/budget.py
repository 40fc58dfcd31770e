"""What LLM planning may spend: steps, tokens and estimated cost, per deliverable and per run.

A :class:`Budget` counts what was spent against its :class:`Caps`; a deliverable's budget has the
run's budget as its parent, so one charge counts in both and either cap stops the planner. The
cost is estimated from the usage the endpoint reports and the prices per 1,000 tokens in the
settings. Budgets are shared between planning threads, so they lock.

>>> prices = Prices(prompt_1k=0.5, completion_1k=1.5)
>>> run = Budget(Caps(steps=10, tokens=1_000, cost=1.0), prices)
>>> one = Budget(Caps(steps=2, tokens=500, cost=1.0), prices, parent=run)
>>> one.charge(Usage(prompt_tokens=300, completion_tokens=100))
>>> (one.steps, one.tokens, round(one.cost, 3), run.tokens)
(1, 400, 0.3, 400)
>>> one.charge(Usage(prompt_tokens=200, completion_tokens=0))
>>> try:
...     one.check()
... except LLMBudgetError as exc:
...     print(str(exc)[:54])
the deliverable's LLM budget is spent: 2 of 2 steps, 6
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

from orchestrion.config import Settings
from orchestrion.errors import LLMBudgetError

__all__ = ["Budget", "Caps", "Prices", "Usage"]


@dataclass(frozen=True)
class Usage:
    """Tokens one response used, as the endpoint reported them (0 when it reported none)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Prices:
    """Price per 1,000 prompt and completion tokens (any currency; 0 = cost is not capped in effect)."""

    prompt_1k: float = 0.0
    completion_1k: float = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Prices:
        return cls(settings.llm_price_prompt_1k, settings.llm_price_completion_1k)

    @property
    def priced(self) -> bool:
        return self.prompt_1k > 0 or self.completion_1k > 0

    def cost(self, usage: Usage) -> float:
        return (usage.prompt_tokens * self.prompt_1k + usage.completion_tokens * self.completion_1k) / 1000.0


@dataclass(frozen=True)
class Caps:
    """Most model turns, tokens and estimated cost allowed."""

    steps: int
    tokens: int
    cost: float

    @classmethod
    def per_deliverable(cls, settings: Settings) -> Caps:
        return cls(settings.llm_max_steps, settings.llm_max_tokens, settings.llm_max_cost)

    @classmethod
    def per_run(cls, settings: Settings) -> Caps:
        return cls(settings.llm_run_max_steps, settings.llm_run_max_tokens, settings.llm_run_max_cost)


class Budget:
    """Spending against ``caps``, charged to ``parent`` too; safe to share between threads."""

    def __init__(
        self,
        caps: Caps,
        prices: Prices,
        *,
        parent: Budget | None = None,
        scope: Literal["deliverable", "run"] | None = None,
    ) -> None:
        self.caps = caps
        self.prices = prices
        self.parent = parent
        self.scope = scope or ("deliverable" if parent is not None else "run")
        self.steps = 0
        self.tokens = 0
        self.cost = 0.0
        self._lock = threading.Lock()

    def child(self, caps: Caps) -> Budget:
        """A deliverable's budget inside this run's budget."""
        return Budget(caps, self.prices, parent=self)

    def charge(self, usage: Usage) -> None:
        """Count one model turn and its usage here and in every parent."""
        cost = self.prices.cost(usage)
        budget: Budget | None = self
        while budget is not None:
            with budget._lock:
                budget.steps += 1
                budget.tokens += usage.total_tokens
                budget.cost += cost
            budget = budget.parent

    def check(self) -> None:
        """Raise :class:`LLMBudgetError` when this budget or a parent has no turn, token or cost left."""
        budget: Budget | None = self
        while budget is not None:
            reason = budget.spent()
            if reason is not None:
                raise LLMBudgetError(f"the {budget.scope}'s LLM budget is spent: {reason}")
            budget = budget.parent

    def spent(self) -> str | None:
        """Why this budget (not its parents) allows no further turn, or None."""
        with self._lock:
            steps, tokens, cost = self.steps, self.tokens, self.cost
        caps = self.caps
        over_cost = self.prices.priced and cost >= caps.cost  # with no prices, cost is not capped
        if steps >= caps.steps or tokens >= caps.tokens or over_cost:
            fix = "ORCHESTRION_LLM_" + ("RUN_" if self.scope == "run" else "") + "MAX_STEPS/_TOKENS/_COST"
            return (
                f"{steps} of {caps.steps} steps, {tokens} of {caps.tokens} tokens, "
                f"cost {cost:.4f} of {caps.cost:.4f} (raise {fix})"
            )
        return None
