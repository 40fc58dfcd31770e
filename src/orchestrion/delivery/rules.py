"""A user's effective rules: the operator's policy narrowed by their own overrides, their pause
switch, time zone and the orders the money and duplicate guards count (:func:`load_user_rules`).

The delivery stage, an approval and a thumbed-down cart each check an action against these rules
immediately before it (:func:`orchestrion.delivery.actions.verdict`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from orchestrion.encoding import canonical
from orchestrion.money import format_money
from orchestrion.tools.policies import Policy, UserOverrides, effective_policy

__all__ = ["UserRules", "load_user_rules", "order_lines"]


@dataclass(frozen=True)
class UserRules:
    """One user's effective policy and what the guard needs to apply it.

    ``orders`` are this month's orders that count toward the monthly spend (completed, or claimed
    within ``policy.in_flight_minutes``), by ledger key; ``recent_orders`` the orders placed or
    awaiting approval within ``policy.duplicate_order_days``, by their lines (:func:`order_lines`).
    """

    policy: Policy
    paused: bool
    excluded_templates: frozenset[str]
    timezone: ZoneInfo
    orders: Mapping[str, float] = field(default_factory=dict)
    recent_orders: Mapping[str, tuple[tuple[str, datetime, bool], ...]] = field(default_factory=dict)
    locale: str | None = None
    """Where money is written in refusal texts (``ORCHESTRION_LOCALE``; None = the currency's own)."""

    def local(self, now: datetime) -> datetime:
        return _in_zone(now, self.timezone)

    @property
    def spent_this_month(self) -> float:
        return self.spent_without(None)

    def spent_without(self, key: str | None) -> float:
        """The month's spend, without the order of ledger ``key`` (that order itself is being checked:
        a re-claim or an approval after a crash must not count it twice)."""
        return float(sum(amount for k, amount in self.orders.items() if k != key))

    def duplicate_of(
        self, effect: Mapping[str, Any], deliverable_id: str, created: datetime | None = None
    ) -> str | None:
        """The deliverable of a recent order with the same lines as ``effect`` (another deliverable's),
        or None. An order waiting for approval counts only when it was made before ``created``."""
        for other, at, placed in self.recent_orders.get(order_lines(effect), ()):
            if other != deliverable_id and (placed or created is None or at < created):
                return other
        return None

    def refusal_text(
        self,
        rule: str | None,
        effect: Mapping[str, Any],
        deliverable_id: str,
        *,
        now: datetime,
        spent: float | None = None,
    ) -> str:
        """Why the policy refused ``effect``, in plain words for the person it is for: no rule names,
        no ids (:func:`orchestrion.delivery.rendering.status_text` puts "Not ordered:" before it).

        >>> rules = UserRules(Policy(max_monthly_spend=100.0), False, frozenset(), ZoneInfo("UTC"))
        >>> rules.refusal_text("money_per_month", {"total": 30.0, "currency": "GBP"}, "d", now=datetime(2024, 5, 2),
        ...                    spent=80.0)
        "this month's spending limit is reached (£100.00 a month: £80.00 spent, this order £30.00)"
        """
        currency = str(effect.get("currency") or "") or None

        def money(value: float) -> str:
            return format_money(value, currency, self.locale)

        total = effect.get("total")
        if rule == "duplicate":
            when = [
                (at, placed)
                for other, at, placed in self.recent_orders.get(order_lines(effect), ())
                if other != deliverable_id
            ]
            at, placed = min(when, key=lambda w: (not w[1], w[0])) if when else (now, True)
            day = f"{at.day} {at:%b}"
            if placed:
                return f"the same items were ordered on {day}"
            return f"the same items are already waiting for your approval (since {day})"
        if rule == "money_per_month":
            cap = money(self.policy.max_monthly_spend)
            if spent is None or total is None:
                return f"this month's spending limit of {cap} is reached"
            return (
                f"this month's spending limit is reached ({cap} a month: {money(spent)} spent, this order "
                f"{money(float(total))})"
            )
        if rule == "money_per_order":
            cap = money(self.policy.max_order_amount)
            return f"the order is over the limit of {cap} per order" + (f" ({money(float(total))})" if total else "")
        if rule == "paused":
            return "you paused everything in your settings"
        if rule in ("webhook_host", "webhook_url"):
            return "the address it was to be sent to is not one you allowed"
        return "a safety rule did not allow it"


def order_lines(effect: Mapping[str, Any]) -> str:
    """An order's lines as text, whatever their order: item and quantity (prices may move)."""
    lines = sorted((str(line[0]), int(line[1])) for line in effect.get("lines") or [])
    return canonical(lines)


@lru_cache(maxsize=1024)
def _in_zone(now: datetime, zone: ZoneInfo) -> datetime:
    """UTC ``now`` as wall-clock time in ``zone`` (a batch asks it once per effect, for few zones)."""
    return now.replace(tzinfo=UTC).astimezone(zone).replace(tzinfo=None)


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def load_user_rules(
    con: Any, policy: Policy, users: Sequence[str], now: datetime, *, locale: str | None = None
) -> dict[str, UserRules]:
    """Effective policies for ``users``: overrides, pause switch, time zone, this month's orders
    (completed, or in flight: claimed within ``policy.in_flight_minutes``; never a cart awaiting
    approval nor a claim left stale) and the recent orders the duplicate guard compares against."""
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    rows = con.execute(
        """
        SELECT u.user_id, p.overrides, coalesce(p.paused, false), t.timezone
        FROM (SELECT unnest($users) AS user_id) u
        LEFT JOIN user_policies p USING (user_id)
        LEFT JOIN users t USING (user_id)
        """,
        {"users": list(users)},
    ).fetchall()
    orders: dict[str, dict[str, float]] = defaultdict(dict)
    for user_id, key, total in con.execute(
        """
        SELECT user_id, idempotency_key, coalesce(CAST(json_extract(effect, '$.total') AS DOUBLE), 0)
        FROM side_effects
        WHERE action = 'place_order' AND user_id IN (SELECT unnest($users))
          AND ((status = 'completed' AND coalesce(completed_at, claimed_at) >= $month)
               OR (status = 'claimed' AND claimed_at >= $month AND claimed_at >= $fresh))
        """,
        {"users": list(users), "month": month, "fresh": now - timedelta(minutes=policy.in_flight_minutes)},
    ).fetchall():
        orders[str(user_id)][str(key)] = float(total)
    recent: dict[str, dict[str, list[tuple[str, datetime, bool]]]] = defaultdict(lambda: defaultdict(list))
    if policy.duplicate_order_days > 0:
        # Placed: completed or claimed (even a stale claim may have reached the provider).
        for user_id, d_id, effect, at, placed in con.execute(
            """
            SELECT user_id, deliverable_id, effect, claimed_at, true FROM side_effects
            WHERE action = 'place_order' AND status IN ('claimed', 'completed') AND claimed_at >= $since
              AND user_id IN (SELECT unnest($users))
            UNION ALL
            SELECT user_id, deliverable_id, arguments, created_at, false FROM pending_actions
            WHERE action = 'place_order' AND status = 'waiting' AND created_at >= $since
              AND user_id IN (SELECT unnest($users))
            """,
            {"users": list(users), "since": now - timedelta(days=policy.duplicate_order_days)},
        ).fetchall():
            recent[str(user_id)][order_lines(json.loads(effect))].append((str(d_id), at, bool(placed)))
    rules = {}
    for user_id, overrides, paused, tz in rows:
        parsed = UserOverrides.model_validate_json(overrides) if overrides else None
        rules[str(user_id)] = UserRules(
            effective_policy(policy, parsed),
            bool(paused),
            frozenset(parsed.excluded_templates) if parsed else frozenset(),
            _zone(tz),
            orders.get(str(user_id), {}),
            {k: tuple(v) for k, v in recent.get(str(user_id), {}).items()},
            locale,
        )
    return rules
