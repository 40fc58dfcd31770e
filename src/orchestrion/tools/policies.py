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
intersection of webhook origins and the smaller daily count.

Every check fails closed: a webhook URL that cannot be parsed into exactly one origin
(:func:`webhook_origin`) is refused, an order with the same lines as one placed or awaiting
approval within ``duplicate_order_days`` is refused as ``duplicate``, and an origin not listed
is refused.

>>> p = Policy()
>>> check(p, "order", amount=20.0, spent_this_month=0.0, local_time=time(9)).tier
'approve'
>>> check(p, "order", amount=500.0, spent_this_month=0.0, local_time=time(9)).rule
'money_per_order'
>>> effective_policy(p, UserOverrides(tiers={"outbox": "approve"})).tiers["outbox"]
'approve'
>>> webhook_origin("https://Hooks.Example/x?y=1")
'https://hooks.example:443'
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any, Final, Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrion.errors import ConfigError, PolicyViolation
from orchestrion.money import format_money

__all__ = [
    "ACTION_CLASSES",
    "MAX_URL_CHARS",
    "TIERS",
    "ActionClass",
    "Policy",
    "Tier",
    "UserOverrides",
    "Verdict",
    "check",
    "effective_policy",
    "load_policy",
    "order_limits",
    "save_user_policy",
    "stored_policy",
    "webhook_origin",
]

Tier = Literal["auto", "notify", "approve", "suggest"]
TIERS: Final[tuple[Tier, ...]] = get_args(Tier)
"""From least to most restrictive."""

ActionClass = Literal["order", "webhook", "outbox"]
ACTION_CLASSES: Final[tuple[ActionClass, ...]] = get_args(ActionClass)
DEFAULT_TIERS: Final[dict[ActionClass, Tier]] = {"order": "approve", "webhook": "approve", "outbox": "auto"}
"""Spending and reaching outside wait for a person; the local outbox runs on its own."""


MAX_URL_CHARS: Final = 2048
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
# A host is letters, digits, dots and hyphens (IDNs written in punycode) or a bracketed IPv6
# address; a port is digits. Anything else in the netloc (userinfo, a second '@', '\\', full-width
# or other non-ASCII look-alikes, spaces) is refused rather than guessed at.
_NETLOC = re.compile(
    r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?"
)


def webhook_origin(url: str) -> str:
    """The origin ``scheme://host:port`` of a webhook ``url``; PolicyViolation (rule ``webhook_url``)
    when the URL is not plainly one http(s) origin.

    Refused: over :data:`MAX_URL_CHARS` characters, any control or non-ASCII character or space
    (``urlsplit`` silently drops CR/LF/TAB, and NFKC-folds full-width ``＠``), a scheme other than
    http/https, credentials (``user:pass@``), a missing host, a port that is not a number in 1-65535.

    >>> webhook_origin("http://127.0.0.1:8080/hook")
    'http://127.0.0.1:8080'
    >>> webhook_origin("http://127.0.0.1:x35737/")
    Traceback (most recent call last):
    ...
    orchestrion.errors.PolicyViolation: refused by policy rule 'webhook_url': ...
    """

    def refuse(why: str) -> PolicyViolation:
        shown = url[:120] + ("…" if len(url) > 120 else "")
        return PolicyViolation("webhook_url", f"webhook URL {shown!r} refused: {why}")

    if not isinstance(url, str) or not url:
        raise PolicyViolation("webhook_url", "the webhook URL is empty")
    if len(url) > MAX_URL_CHARS:
        raise refuse(f"{len(url)} characters is longer than {MAX_URL_CHARS}")
    bad = next((c for c in url if not (0x21 <= ord(c) <= 0x7E) or c == "\\"), None)
    if bad is not None:
        raise refuse(f"it holds the character U+{ord(bad):04X}; only printable ASCII, no space or backslash")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise refuse(f"it does not parse ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise refuse(f"scheme {parts.scheme!r} is not http or https")
    if "@" in parts.netloc:
        raise refuse("it carries credentials (user@ or user:password@); they are never sent")
    found = _NETLOC.fullmatch(parts.netloc)
    if found is None:
        raise refuse(f"{parts.netloc!r} is not a host with an optional numeric port")
    port = int(found["port"]) if found["port"] is not None else _DEFAULT_PORTS[scheme]
    if not 1 <= port <= 65535:
        raise refuse(f"port {port} is out of range")
    return f"{scheme}://{found['host'].lower()}:{port}"


def _origins(value: tuple[str, ...] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    out = []
    for entry in value:
        try:
            origin = webhook_origin(entry)
        except PolicyViolation as exc:
            raise ValueError(f"{entry!r} is not an origin ({exc.detail}); write scheme://host[:port]") from None
        if urlsplit(entry).path not in ("", "/") or urlsplit(entry).query:
            raise ValueError(f"{entry!r} is not an origin; write scheme://host[:port] without a path")
        out.append(origin)
    return tuple(dict.fromkeys(out))


def _no_hosts(data: Any) -> Any:
    if isinstance(data, dict) and "allowed_webhook_hosts" in data:
        raise ValueError(
            "allowed_webhook_hosts was replaced by allowed_webhook_origins: list each receiver as "
            "scheme://host[:port] (a host alone would allow every port and scheme on it)"
        )
    return data


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
    allowed_webhook_origins: tuple[str, ...] = Field(
        (), description="Origins (scheme://host[:port]) a webhook may be posted to; nothing else on those hosts."
    )
    duplicate_order_days: int = Field(
        7, ge=0, description="An order with the same lines as one placed or awaiting approval within this many "
        "days (same user) is refused as `duplicate`; 0 turns the guard off."
    )
    in_flight_minutes: int = Field(
        60, gt=0, description="An order claimed this recently and not yet completed counts as in flight toward "
        "the monthly spend; an older claim is stale (reconciled, not counted)."
    )
    deliverables_per_day: int = Field(3, ge=0, description="Deliverables per user per day.")
    quiet_start: str = Field("22:00", description="Quiet hours start (user's local time).")
    quiet_end: str = Field("07:00", description="Quiet hours end (user's local time).")

    _renamed = model_validator(mode="before")(_no_hosts)

    @field_validator("quiet_start", "quiet_end")
    @classmethod
    def _time_of_day(cls, value: str) -> str:
        _hhmm(value)
        return value

    @field_validator("allowed_webhook_origins")
    @classmethod
    def _as_origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _origins(value) or ()

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
    allowed_webhook_origins: tuple[str, ...] | None = None
    deliverables_per_day: int | None = Field(None, ge=0)
    quiet_start: str | None = None
    quiet_end: str | None = None
    excluded_templates: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _legacy_hosts(cls, data: Any) -> Any:
        # Rows saved before origins carry "allowed_webhook_hosts" (null unless set). A host list
        # cannot say which scheme and port, so it narrows to no origin at all (fails closed).
        if isinstance(data, dict) and "allowed_webhook_hosts" in data:
            data = dict(data)
            hosts = data.pop("allowed_webhook_hosts")
            if hosts is not None and data.get("allowed_webhook_origins") is None:
                data["allowed_webhook_origins"] = ()
        return data

    @field_validator("allowed_webhook_origins")
    @classmethod
    def _as_origins(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return _origins(value)

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
    origins = policy.allowed_webhook_origins
    if overrides.allowed_webhook_origins is not None:
        origins = tuple(o for o in origins if o in overrides.allowed_webhook_origins)
    daily = policy.deliverables_per_day
    if overrides.deliverables_per_day is not None:
        daily = min(daily, overrides.deliverables_per_day)
    return policy.model_copy(
        update={
            "tiers": {c: _stricter(policy.tiers[c], overrides.tiers.get(c, "auto")) for c in ACTION_CLASSES},
            "max_order_amount": _lower(policy.max_order_amount, overrides.max_order_amount),
            "max_monthly_spend": _lower(policy.max_monthly_spend, overrides.max_monthly_spend),
            "allowed_webhook_origins": origins,
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
    origin: str | None = None,
    local_time: time,
    paused: bool = False,
    duplicate_of: str | None = None,
) -> Verdict:
    """Whether ``action`` may happen now, and at which tier.

    ``amount`` is the order total computed from catalog prices; ``spent_this_month`` the user's
    completed and in-flight orders this month (never this order itself); ``origin`` the webhook's
    origin (:func:`webhook_origin`); ``local_time`` the user's wall-clock time; ``duplicate_of``
    the deliverable of an order with the same lines placed or awaiting approval recently.
    """
    tier = policy.tiers[action]
    if paused:
        return Verdict(False, tier, "paused", "the user paused everything in their settings")
    if action == "order":
        if duplicate_of is not None:
            return Verdict(
                False,
                tier,
                "duplicate",
                f"an order with the same lines was placed or awaits approval within the last "
                f"{policy.duplicate_order_days} days (deliverable {duplicate_of})",
            )
        total = amount or 0.0
        if total > policy.max_order_amount:
            return Verdict(
                False,
                tier,
                "money_per_order",
                f"order total {format_money(total, None)} exceeds the cap "
                f"{format_money(policy.max_order_amount, None)}",
            )
        if spent_this_month + total > policy.max_monthly_spend:
            return Verdict(
                False,
                tier,
                "money_per_month",
                f"{format_money(spent_this_month, None)} already spent this month + {format_money(total, None)} "
                f"exceeds the monthly cap {format_money(policy.max_monthly_spend, None)}",
            )
    if action == "webhook" and (origin is None or origin not in policy.allowed_webhook_origins):
        allowed = ", ".join(policy.allowed_webhook_origins) or "none"
        detail = f"origin {origin!r} is not an allowed webhook origin (allowed: {allowed})"
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


def save_user_policy(con: Any, user_id: str, overrides: UserOverrides, *, paused: bool, now: datetime) -> None:
    """Store a person's overrides and pause switch (their row of ``user_policies``, which this module
    owns) inside the caller's transaction; the next run applies them."""
    con.execute(
        "INSERT INTO user_policies (user_id, overrides, paused, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (user_id) DO UPDATE SET overrides = excluded.overrides, paused = excluded.paused, "
        "updated_at = excluded.updated_at",
        [user_id, overrides.model_dump_json(), paused, now],
    )


def stored_policy(con: Any, user_id: str) -> tuple[UserOverrides, bool, datetime | None] | None:
    """A person's stored overrides, pause switch and when they were saved; None when they saved none."""
    rows = con.execute(
        "SELECT overrides, paused, updated_at FROM user_policies WHERE user_id = ?", [user_id]
    ).fetchall()
    if not rows:
        return None
    return UserOverrides.model_validate_json(rows[0][0]), bool(rows[0][1]), rows[0][2]


def order_limits(con: Any, policy: Policy, users: Sequence[str]) -> dict[str, float]:
    """Each of ``users``' largest single order: the operator's limit, or their own lower one."""
    limits = dict.fromkeys(users, policy.max_order_amount)
    rows = con.execute(
        "SELECT user_id, overrides FROM user_policies WHERE user_id IN (SELECT unnest(?::VARCHAR[]))", [list(users)]
    ).fetchall()
    for user_id, overrides in rows:
        own = UserOverrides.model_validate_json(overrides).max_order_amount
        limits[str(user_id)] = _lower(policy.max_order_amount, own)
    return limits
