"""Policies: what the operator (and each person, within it) lets orchestrion do on its own.

The LLM proposes; this module decides. :func:`check` is called by the executor immediately
before every side effect, with numbers computed by code (the cart total from catalog prices, the
month's spending from the ledger, the host parsed from the URL) — never with anything a prompt,
an item title or an event property said.

Action classes and their default autonomy tiers (DESIGN.md): spending money (``order``) and
reaching outside the system (``webhook``) wait for a person (``approve``); writing a finished
deliverable to the local ``outbox`` runs on its own (``auto``). ``notify`` runs when a cancel
window ends; ``suggest`` is only shown.

A person's own settings (:class:`UserOverrides`, the control panel) may only narrow the
operator's policy: :func:`effective_policy` takes the stricter tier, the lower cap, the
intersection of hosts and the smaller daily count.

>>> p = Policy()
>>> check(p, "order", amount=20.0, spent_this_month=0.0, local_time=time(9)).tier
'approve'
>>> check(p, "order", amount=500.0, spent_this_month=0.0, local_time=time(9)).rule
'money_per_order'
>>> effective_policy(p, UserOverrides(tiers={"outbox": "approve"})).tiers["outbox"]
'approve'
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestrion.errors import ConfigError

__all__ = [
    "ACTION_CLASSES",
    "TIERS",
    "ActionClass",
    "Policy",
    "Tier",
    "UserOverrides",
    "Verdict",
    "check",
    "effective_policy",
    "load_policy",
]

Tier = Literal["auto", "notify", "approve", "suggest"]
TIERS: Final[tuple[Tier, ...]] = get_args(Tier)
"""From least to most restrictive."""

ActionClass = Literal["order", "webhook", "outbox"]
ACTION_CLASSES: Final[tuple[ActionClass, ...]] = get_args(ActionClass)
DEFAULT_TIERS: Final[dict[ActionClass, Tier]] = {"order": "approve", "webhook": "approve", "outbox": "auto"}
"""Spending and reaching outside wait for a person; the local outbox runs on its own."""


def _hhmm(value: str) -> time:
    try:
        return time.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a time of day; write it as HH:MM, e.g. '22:00'") from exc


class Policy(BaseModel):
    """The operator's rules, read from a TOML file (``HOME/policy.toml`` or ``ORCHESTRION_POLICY_FILE``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tiers: dict[ActionClass, Tier] = Field(
        default_factory=lambda: dict(DEFAULT_TIERS), description="Autonomy tier per action class."
    )
    notify_window_minutes: int = Field(60, ge=0, description="How long a `notify` action can be cancelled.")
    max_order_amount: float = Field(150.0, ge=0, description="Largest single order, in the catalog currency.")
    max_monthly_spend: float = Field(400.0, ge=0, description="Most one user's orders may total in a month.")
    allowed_webhook_hosts: tuple[str, ...] = Field((), description="Hosts a webhook may be posted to.")
    deliverables_per_day: int = Field(3, ge=0, description="Deliverables per user per day.")
    quiet_start: str = Field("22:00", description="Quiet hours start (user's local time).")
    quiet_end: str = Field("07:00", description="Quiet hours end (user's local time).")

    @field_validator("quiet_start", "quiet_end")
    @classmethod
    def _time_of_day(cls, value: str) -> str:
        _hhmm(value)
        return value

    @field_validator("tiers")
    @classmethod
    def _every_class(cls, value: dict[ActionClass, Tier]) -> dict[ActionClass, Tier]:
        return {**DEFAULT_TIERS, **value}

    def in_quiet_hours(self, local: time) -> bool:
        """Whether ``local`` (the user's wall-clock time) falls in quiet hours (which may span midnight)."""
        start, end = _hhmm(self.quiet_start), _hhmm(self.quiet_end)
        if start == end:
            return False
        return start <= local < end if start < end else local >= start or local < end

    def quiet_until(self, local: datetime) -> datetime:
        """The end of the quiet period containing ``local`` (a naive local datetime)."""
        end = datetime.combine(local.date(), _hhmm(self.quiet_end))
        return end if end > local else end + timedelta(days=1)


class UserOverrides(BaseModel):
    """A person's control-panel settings; each may only make the policy stricter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tiers: dict[ActionClass, Tier] = Field(default_factory=dict)
    max_order_amount: float | None = Field(None, ge=0)
    max_monthly_spend: float | None = Field(None, ge=0)
    allowed_webhook_hosts: tuple[str, ...] | None = None
    deliverables_per_day: int | None = Field(None, ge=0)
    quiet_start: str | None = None
    quiet_end: str | None = None
    excluded_templates: tuple[str, ...] = ()

    @field_validator("quiet_start", "quiet_end")
    @classmethod
    def _time_of_day(cls, value: str | None) -> str | None:
        if value is not None:
            _hhmm(value)
        return value


def _stricter(a: Tier, b: Tier) -> Tier:
    return a if TIERS.index(a) >= TIERS.index(b) else b


def _lower(a: float, b: float | None) -> float:
    return a if b is None else min(a, b)


def effective_policy(policy: Policy, overrides: UserOverrides | None) -> Policy:
    """The operator's ``policy`` narrowed by one person's ``overrides`` (never widened)."""
    if overrides is None:
        return policy
    hosts = policy.allowed_webhook_hosts
    if overrides.allowed_webhook_hosts is not None:
        hosts = tuple(h for h in hosts if h in overrides.allowed_webhook_hosts)
    daily = policy.deliverables_per_day
    if overrides.deliverables_per_day is not None:
        daily = min(daily, overrides.deliverables_per_day)
    return policy.model_copy(
        update={
            "tiers": {c: _stricter(policy.tiers[c], overrides.tiers.get(c, "auto")) for c in ACTION_CLASSES},
            "max_order_amount": _lower(policy.max_order_amount, overrides.max_order_amount),
            "max_monthly_spend": _lower(policy.max_monthly_spend, overrides.max_monthly_spend),
            "allowed_webhook_hosts": hosts,
            "deliverables_per_day": daily,
            "quiet_start": overrides.quiet_start or policy.quiet_start,
            "quiet_end": overrides.quiet_end or policy.quiet_end,
        }
    )


@dataclass(frozen=True)
class Verdict:
    """The decision on one side effect: refused (``rule`` says which), or allowed with a ``tier``.

    ``defer_quiet`` is set when an allowed effect falls in quiet hours: it waits until they end.
    """

    allowed: bool
    tier: Tier
    rule: str | None = None
    detail: str = ""
    defer_quiet: bool = False


def check(
    policy: Policy,
    action: ActionClass,
    *,
    amount: float | None = None,
    spent_this_month: float = 0.0,
    host: str | None = None,
    local_time: time,
    paused: bool = False,
) -> Verdict:
    """Whether ``action`` may happen now, and at which tier.

    ``amount`` is the order total computed from catalog prices; ``spent_this_month`` the user's
    completed and approved orders this month; ``host`` the webhook's host; ``local_time`` the
    user's wall-clock time.
    """
    tier = policy.tiers[action]
    if paused:
        return Verdict(False, tier, "paused", "the user paused everything in their settings")
    if action == "order":
        total = amount or 0.0
        if total > policy.max_order_amount:
            return Verdict(
                False, tier, "money_per_order", f"order total {total:.2f} exceeds the cap {policy.max_order_amount:.2f}"
            )
        if spent_this_month + total > policy.max_monthly_spend:
            return Verdict(
                False,
                tier,
                "money_per_month",
                f"{spent_this_month:.2f} already spent this month + {total:.2f} exceeds the monthly cap "
                f"{policy.max_monthly_spend:.2f}",
            )
    if action == "webhook" and (host is None or host not in policy.allowed_webhook_hosts):
        allowed = ", ".join(policy.allowed_webhook_hosts) or "none"
        detail = f"host {host!r} is not an allowed webhook host (allowed: {allowed})"
        return Verdict(False, tier, "webhook_host", detail)
    quiet = action != "outbox" and tier in ("auto", "notify") and policy.in_quiet_hours(local_time)
    return Verdict(True, tier, defer_quiet=quiet)


def load_policy(path: Path | None) -> Policy:
    """The policy in ``path`` (TOML), or the documented defaults when ``path`` is None or absent.

    Raises ConfigError naming the file and the bad key.
    """
    if path is None or not path.is_file():
        return Policy()
    try:
        raw = tomllib.loads(path.read_text())
        return Policy.model_validate(raw.get("policy", raw))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}; fix the file") from exc
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid policy in {path}: {problems}") from exc
