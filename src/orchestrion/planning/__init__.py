"""Planning: a goal becomes a validated plan of tool calls, offline or with an LLM."""

from __future__ import annotations

from orchestrion.planning.base import Planner, PlanOutcome
from orchestrion.planning.offline import OfflinePlanner
from orchestrion.planning.plan import Plan, ToolCall

__all__ = ["OfflinePlanner", "Plan", "PlanOutcome", "Planner", "ToolCall"]
