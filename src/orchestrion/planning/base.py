"""The planner interface: a planner turns one goal into a plan by calling tools through an executor.

The offline planner (:mod:`orchestrion.planning.offline`) is the embedded default; the LLM
planner (:mod:`orchestrion.planning.llm`) is used when an endpoint is configured and falls back to
the offline one when its budget is spent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from orchestrion.planning.plan import Plan

if TYPE_CHECKING:
    from orchestrion.planning.executor import Executor
    from orchestrion.tools import GoalRecord

__all__ = ["PlanOutcome", "Planner"]


@dataclass(frozen=True)
class PlanOutcome:
    """A planner's answer for one goal: the plan, what it cost, and whether the offline planner took over."""

    plan: Plan
    planner: str
    tokens: int = 0
    cost: float = 0.0
    fallback: str | None = None


@runtime_checkable
class Planner(Protocol):
    """Plans one goal. ``feedback`` carries the review's problems on a re-plan."""

    name: str

    def plan(self, goal: GoalRecord, executor: Executor, *, feedback: str | None = None) -> PlanOutcome:
        """Call tools through ``executor`` and return the plan (``Plan.nothing`` is allowed)."""
        ...
