"""The plan: what a planner decided to do for one goal, validated.

"Nothing worth doing" is a legal plan: ``nothing_to_do=True`` with a ``reason`` and no calls.

>>> Plan(title="Friday mix", summary="12 tracks", calls=[ToolCall(tool="publish", arguments={})]).calls[0].tool
'publish'
>>> Plan.nothing("no fresh articles on your topics").nothing_to_do
True
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Plan", "ToolCall"]


class ToolCall(BaseModel):
    """One call: the tool's name and its (validated) arguments."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tool: str = Field(min_length=1, max_length=64)
    arguments: dict[str, Any] = Field(default_factory=dict)


class Plan(BaseModel):
    """Ordered tool calls plus the deliverable's title and summary."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field("", max_length=200)
    summary: str = Field("", max_length=2000)
    calls: list[ToolCall] = Field(default_factory=list)
    nothing_to_do: bool = False
    reason: str | None = Field(None, max_length=500)

    @classmethod
    def nothing(cls, reason: str) -> Plan:
        """The plan that does nothing, and why."""
        return cls(nothing_to_do=True, reason=reason)
