"""The side-effect step, written once: an action checked against the user's rules immediately
before it, claimed in the ledger, reconciled or performed, and settled.

Both paths that touch the world go through it: the daily stage (:mod:`orchestrion.delivery.stage`,
many deliverables' actions claimed in one transaction and carried out a few deliverables at once)
and a person's approval or a ``notify`` window ending (:func:`orchestrion.delivery.deliverables.decide`,
one action at a time). An :class:`Action` is typed once, from a tool's intended effect, a ledger entry
or an action waiting for a person, so its policy class, amount and webhook origin are derived in
one place.

>>> a = Action.stored("u1", "d_1", "place_order", {"lines": [["i1", 2, 1.5]], "total": 3.0})
>>> a.kind, a.amount, a.key == ledger.effect_key("d_1", "place_order", "order")
('order', 3.0, True)
>>> Action.stored("u1", "d_1", "publish", {"channel": "webhook", "url": "https://x.example/h?q"}).origin
'https://x.example:443'
>>> Action.stored("u1", "d_1", "publish", {"channel": "webhook", "url": "https://me:pw@x.example/h"}).origin is None
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from orchestrion.delivery import ledger
from orchestrion.delivery.channels import Effector
from orchestrion.delivery.rules import UserRules
from orchestrion.encoding import canonical
from orchestrion.errors import OrchestrionError, PolicyViolation, RetryableError
from orchestrion.tools import IntendedEffect
from orchestrion.tools.policies import ActionClass, Verdict, check, webhook_origin

__all__ = ["Action", "Outcome", "carry", "refusal_row", "settle", "skipped", "verdict"]


@dataclass(frozen=True)
class Action:
    """One side effect of one deliverable: its ledger key, its tool (``place_order``, ``publish``),
    its policy class (``order``, ``outbox``, ``webhook``) and its canonical arguments, with what the
    policy checks (the order's amount, the webhook's origin). ``created_at``: when it started
    waiting for a person (the duplicate guard counts only carts waiting since before it)."""

    key: str
    user_id: str
    deliverable_id: str
    tool: str
    kind: ActionClass
    arguments: Mapping[str, Any]
    amount: float | None = None
    origin: str | None = None
    created_at: datetime | None = None
    text: str | None = None
    """The arguments' :func:`orchestrion.encoding.canonical` form, when already made."""

    @classmethod
    def planned(cls, user_id: str, deliverable_id: str, effect: IntendedEffect, text: str | None = None) -> Action:
        """The action a tool queued in a plan (its class, amount and origin as the tool computed them)."""
        key = ledger.effect_key(deliverable_id, effect.tool, effect.action)
        return cls(key, user_id, deliverable_id, effect.tool, effect.action, effect.effect, effect.amount,
                   effect.origin, text=text)

    @classmethod
    def stored(
        cls,
        user_id: str,
        deliverable_id: str,
        tool: str,
        arguments: Mapping[str, Any],
        *,
        key: str | None = None,
        created_at: datetime | None = None,
    ) -> Action:
        """An action read back (a ledger entry, an action waiting for a person). A webhook URL that is
        no longer one plain origin keeps no origin, which the policy refuses."""
        kind: ActionClass = (
            "order" if tool == "place_order" else "webhook" if arguments.get("channel") == "webhook" else "outbox"
        )
        origin = None
        url = arguments.get("url")
        if kind == "webhook" and url:
            with suppress(PolicyViolation):
                origin = webhook_origin(str(url))
        total = arguments.get("total")
        return cls(
            key or ledger.effect_key(deliverable_id, tool, kind),
            user_id,
            deliverable_id,
            tool,
            kind,
            arguments,
            float(total) if total is not None else None,
            origin,
            created_at,
        )

    @classmethod
    def of_entry(cls, entry: ledger.Entry) -> Action:
        """A ledger entry as the action it was claimed for."""
        return cls.stored(entry.user_id, entry.deliverable_id, entry.action, entry.effect, key=entry.key)

    @property
    def effect(self) -> ledger.Effect:
        """What the ledger claims."""
        return ledger.Effect(self.key, self.user_id, self.deliverable_id, self.tool, self.arguments, self.text)


def verdict(
    rules: UserRules, action: Action, now: datetime, *, spent: float, duplicate_of: str | None = None
) -> Verdict:
    """The policy's decision on ``action`` now: the user's rules, their local time, ``spent`` this
    month without this action's own order, and the deliverable of an equal recent order."""
    return check(
        rules.policy,
        action.kind,
        amount=action.amount,
        spent_this_month=spent,
        origin=action.origin,
        local_time=rules.local(now).time(),
        paused=rules.paused,
        duplicate_of=duplicate_of,
    )


def refusal_row(action: Action, refused: Verdict, now: datetime) -> list[Any]:
    """The ``policy_decisions`` row of a refused action."""
    return [action.deliverable_id, action.user_id, action.tool, refused.rule, refused.detail,
            action.text or canonical(action.arguments), now]


@dataclass(frozen=True)
class Outcome:
    """What carrying out one claimed action came to.

    ``done``: it happened (``result``; reconciled, performed, or completed earlier); ``failed``: it
    certainly did not happen (the provider said no: the claim is settled failed and it may be tried
    again); ``unknown``: whether it happened is not known (the provider did not answer, or an
    unexpected error part-way): the claim stays open and is reconciled later; ``skipped``: not
    attempted because an earlier action of its deliverable did not happen (settled failed).
    """

    action: Action
    state: Literal["done", "failed", "unknown", "skipped"]
    result: Mapping[str, Any] | None = None
    error: str | None = None
    retryable: bool = False
    """``unknown`` because the provider did not answer (:class:`RetryableError`), not a fault of ours."""
    performed: bool = False
    """Done now (performed or reconciled), not completed by an earlier attempt."""
    raised: Exception | None = None
    """The provider's error, when it did not answer (the approval path passes it on: the API answers 503)."""


def carry(
    effector: Effector,
    action: Action,
    state: ledger.ClaimState,
    deliverable: Mapping[str, Any],
    *,
    completed: Mapping[str, Any] | None = None,
) -> Outcome:
    """Carry out one claimed ``action`` (``state``: what :func:`ledger.claim` said of its key): one
    completed earlier keeps its result (``completed``), one claimed by an attempt whose outcome is
    unknown is reconciled with the provider by its key before anything is done again, a new one is
    performed. ``deliverable`` is the record as published with it (the outbox page, the webhook's body).
    Never raises for the action's own faults: they are the outcome."""
    if state == "completed":
        return Outcome(action, "done", completed or {})
    try:
        result = None
        if state == "unknown":
            result = effector.reconcile(action.tool, action.arguments, action.key, deliverable)
        if result is None:
            result = effector.perform(action.tool, action.arguments, action.key, deliverable)
    except RetryableError as exc:
        return Outcome(action, "unknown", error=str(exc), retryable=True, raised=exc)
    except OrchestrionError as exc:
        return Outcome(action, "failed", error=str(exc))
    except Exception as exc:  # a file error (ENOSPC, ENAMETOOLONG), a malformed URL, ...
        return Outcome(action, "unknown", error=f"{type(exc).__name__}: {exc}")
    return Outcome(action, "done", result, performed=True)


def skipped(action: Action, problem: str) -> Outcome:
    """``action`` not attempted because an earlier action of its deliverable did not happen."""
    return Outcome(action, "skipped", error=f"not attempted: {problem}")


def settle(con: Any, outcomes: Sequence[Outcome], now: datetime, *, give_up: bool = False) -> None:
    """Settle ``outcomes`` in the ledger, inside the caller's transaction: ``done`` → completed with
    its result, ``failed`` and ``skipped`` → failed with the error; ``unknown`` stays claimed (with
    ``give_up``, an unexpected error is settled failed instead: a person's approval that broke is
    theirs to see, not a claim to reconcile)."""
    failed = {
        o.action.key: canonical({"error": o.error})
        for o in outcomes
        if o.state in ("failed", "skipped") or (give_up and o.state == "unknown" and not o.retryable)
    }
    ledger.settle(con, "failed", failed, now)
    ledger.settle(con, "completed", {o.action.key: canonical(o.result) for o in outcomes
                                     if o.state == "done" and o.performed}, now)
