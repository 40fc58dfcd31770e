"""The executor: the one door between a planner and the tools.

Planners (offline or LLM) only *ask*: :meth:`Executor.call` checks that the tool exists and is
allowed for the goal's template, parses and validates the arguments, runs it with the
code-filled :class:`~orchestrion.tools.ToolContext`, and answers with a :class:`ToolOutcome` —
an error is a message for the planner to correct, never an exception that ends the run (whatever
a tool raises, ``ValueError`` or a bug included, becomes such a message). Side-effect
tools are checked against the policy at once (so the model hears "refused" and why) and queued;
:mod:`orchestrion.delivery.stage` runs the queue after review, checking the policy again immediately
before each effect and going through the ledger.

>>> from datetime import date, datetime
>>> from orchestrion.tools import GoalRecord, ToolContext
>>> goal = GoalRecord("g_1", "d_1", "u1", date(2024, 5, 1), "playlist", "daily", "Mix", ("a",), {}, {}, "why")
>>> ctx = ToolContext(goal, datetime(2024, 5, 1), {}, frozenset({"a"}), connect=lambda: None)  # type: ignore
>>> ex = Executor(ctx, ["recommend_items", "create_playlist", "publish"])
>>> ex.call("place_order", "{}").error
"tool 'place_order' is not allowed for a playlist goal; allowed: recommend_items, create_playlist, publish"
>>> ex.call("recommend_items", "{not json").ok
False
>>> ex.call("recommend_items", {"limit": 5}).result
[]
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrion.encoding import to_json
from orchestrion.errors import OrchestrionError, PolicyViolation, ToolError
from orchestrion.planning.plan import ToolCall
from orchestrion.tools import TOOLS, IntendedEffect, ToolContext

__all__ = ["Executor", "Guard", "Refusal", "ToolOutcome", "TraceStep"]

SUMMARY_CHARS = 300

Guard = Callable[[IntendedEffect], None]
"""Checks an intended effect against the policy; raises PolicyViolation to refuse it."""


@dataclass(frozen=True)
class ToolOutcome:
    """What a call returned: ``result`` when ``ok``, else ``error`` (a message for the planner)."""

    ok: bool
    result: Any = None
    error: str | None = None

    def for_model(self) -> str:
        """The outcome as the text a model reads back."""
        body = {"ok": True, "result": self.result} if self.ok else {"ok": False, "error": self.error}
        return json.dumps(body, default=str, ensure_ascii=False)


@dataclass(frozen=True)
class TraceStep:
    """One step of a deliverable's trace."""

    step: str
    arguments: Mapping[str, Any] | str | None
    ok: bool
    summary: str
    ms: float
    tokens: int = 0
    cost: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "arguments": self.arguments,
            "ok": self.ok,
            "summary": self.summary,
            "ms": round(self.ms, 2),
            "tokens": self.tokens,
            "cost": round(self.cost, 6),
        }


@dataclass(frozen=True)
class Refusal:
    """A side effect the policy refused while planning."""

    action: str
    rule: str
    detail: str
    arguments: Mapping[str, Any]


def _summary(value: Any) -> str:
    text = to_json(value)
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"


@dataclass
class Executor:
    """Runs one goal's tool calls; keeps the calls, the trace and the refusals."""

    ctx: ToolContext
    allowed: Sequence[str]
    guard: Guard | None = None
    calls: list[ToolCall] = field(default_factory=list)
    trace: list[TraceStep] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)

    def reset(self) -> None:
        """Forget the content, effects and calls (a re-plan starts clean); the trace is kept."""
        self.ctx.content = {}
        self.ctx.effects = []
        self.calls = []

    def note(self, step: str, summary: str, *, ms: float = 0.0, tokens: int = 0, cost: float = 0.0) -> None:
        """Add a non-tool step to the trace (an LLM request, a review)."""
        self.trace.append(TraceStep(step, None, True, summary, ms, tokens, cost))

    def call(self, name: str, arguments: str | Mapping[str, Any] | None) -> ToolOutcome:
        """Validate and run one call; never raises for the planner's mistakes."""
        started = time.perf_counter()
        outcome = self._run(name, arguments)
        shown = arguments if isinstance(arguments, Mapping | None) else arguments[:SUMMARY_CHARS]
        summary = _summary(outcome.result) if outcome.ok else str(outcome.error)
        self.trace.append(TraceStep(name, shown, outcome.ok, summary, (time.perf_counter() - started) * 1000))
        return outcome

    def _run(self, name: str, arguments: str | Mapping[str, Any] | None) -> ToolOutcome:
        tool = TOOLS.get(name)
        if tool is None or name not in self.allowed:
            allowed = ", ".join(self.allowed)
            what = "no tool" if tool is None else f"tool {name!r} is not allowed for a {self.ctx.goal.template} goal;"
            if tool is None:
                return ToolOutcome(False, error=f"{what} named {name!r}; allowed: {allowed}")
            return ToolOutcome(False, error=f"{what} allowed: {allowed}")
        if isinstance(arguments, str):
            try:
                parsed = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as exc:
                return ToolOutcome(
                    False, error=f"arguments for {name} are not valid JSON ({exc.msg}); send a JSON object"
                )
        else:
            parsed = dict(arguments or {})
        if not isinstance(parsed, dict):
            return ToolOutcome(False, error=f"arguments for {name} must be a JSON object, not {type(parsed).__name__}")
        # A tool may replace a queued effect (a new cart drops the order queued for the old one), so
        # "new" is by identity, and a refused or failed call restores the queue as it was.
        before = list(self.ctx.effects)
        try:
            result = tool(self.ctx, parsed)
            queued = {id(b) for b in before}
            for effect in [e for e in self.ctx.effects if id(e) not in queued]:
                if self.guard is not None:
                    self.guard(effect)
        except PolicyViolation as exc:
            self.ctx.effects[:] = before
            self.refusals.append(Refusal(name, exc.rule, exc.detail, parsed))
            return ToolOutcome(False, error=str(exc))
        except ToolError as exc:
            self.ctx.effects[:] = before
            return ToolOutcome(False, error=str(exc))
        except OrchestrionError as exc:
            self.ctx.effects[:] = before
            return ToolOutcome(False, error=f"{name} failed: {exc}")
        except Exception as exc:  # model-driven code never ends a run: the planner hears what broke
            self.ctx.effects[:] = before
            return ToolOutcome(False, error=f"{name} failed: {type(exc).__name__}: {exc}")
        self.calls.append(ToolCall(tool=name, arguments=parsed))
        return ToolOutcome(True, result=result)
