"""A person's controls: the actions waiting for them, and their control panel.

The control panel edits the user's row of ``user_policies`` (a :class:`~orchestrion.tools.policies.
UserOverrides` and the pause switch), their ``users.timezone`` and their ``item_exclusions``. The
next run reads them (:func:`orchestrion.delivery.rules.load_user_rules`); overrides can only narrow the
operator's policy, and the page says so by offering only the stricter choices.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
from pydantic import ValidationError

from orchestrion.delivery.feedback import excluded_items, lift_exclusions
from orchestrion.delivery.rendering import status_text
from orchestrion.errors import UsageError
from orchestrion.goals.registry import BUILT_IN
from orchestrion.ingest.catalog import item_titles
from orchestrion.ingest.users import UserTraits, timezone_of, upsert_users, valid_timezone
from orchestrion.money import format_money
from orchestrion.proposals.record import user_actions
from orchestrion.tools.policies import (
    ACTION_CLASSES,
    TIERS,
    Policy,
    UserOverrides,
    effective_policy,
    save_user_policy,
    stored_policy,
)

__all__ = ["Panel", "Waiting", "read_panel", "save_panel", "waiting_actions"]

ACTION_NAMES: Mapping[str, str] = {
    "order": "Placing orders (spends money)",
    "webhook": "Sending to outside services (webhooks)",
    "outbox": "Writing finished deliverables to your outbox",
}
TIER_NAMES: Mapping[str, str] = {
    "auto": "auto — do it",
    "notify": "notify — do it after a cancel window",
    "approve": "approve — wait for my approval",
    "suggest": "suggest — only show it to me",
}


@dataclass(frozen=True)
class Panel:
    """What the control panel shows for one user."""

    operator: Policy
    overrides: UserOverrides
    effective: Policy
    paused: bool
    timezone: str
    excluded_items: list[tuple[str, str]]
    templates: list[str]
    updated_at: datetime | None

    def allowed_tiers(self, action: str) -> list[str]:
        """The tiers a person may pick for ``action``: the operator's or stricter."""
        floor = TIERS.index(self.operator.tiers[action])  # type: ignore[index]
        return list(TIERS[floor:])


@dataclass(frozen=True)
class Waiting:
    """One action of a deliverable, as the approvals page shows it."""

    action_id: str
    deliverable_id: str
    title: str
    action: str
    tier: str
    status: str
    total: float | None
    lines: list[tuple[str, float, float]]
    """(title, quantity, unit price) of each order line."""
    due_at: datetime | None
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    detail: str | None
    currency: str | None = None
    outcome: str | None = None
    """A decided action's outcome in the words every other view uses (``status_text``), when it
    says more than the status: why an order was not placed."""
    confirming: bool = False
    """Approved, and the provider has not confirmed it yet: approving again finishes it."""

    def seconds_left(self, now: datetime) -> int | None:
        """For a ``notify`` action: seconds until it runs on its own."""
        if self.due_at is None or self.status != "waiting":
            return None
        return max(0, int((self.due_at - now).total_seconds()))


def read_panel(con: duckdb.DuckDBPyConnection, operator: Policy, user_id: str) -> Panel:
    """The user's current settings against the operator's ``operator`` policy."""
    stored = stored_policy(con, user_id)
    overrides, paused, updated_at = stored if stored is not None else (UserOverrides(), False, None)
    return Panel(
        operator=operator,
        overrides=overrides,
        effective=effective_policy(operator, overrides),
        paused=paused,
        timezone=timezone_of(con, user_id) or "UTC",
        excluded_items=excluded_items(con, user_id),
        templates=sorted(BUILT_IN),
        updated_at=updated_at,
    )


def _cap(value: str | None, what: str, operator_cap: float) -> float | None:
    """A person's own limit: a number from zero up to the operator's (which applies anyway: one above
    it was shown as theirs and did nothing)."""
    if value is None or not value.strip():
        return None
    try:
        number = float(value)
    except ValueError as exc:
        raise UsageError(f"{what} {value[:40]!r} is not a number; write it like 50 or 49.99") from exc
    if not math.isfinite(number) or number < 0:
        raise UsageError(f"{what} is a number of zero or more, not {value[:40]!r}")
    if number > operator_cap:
        raise UsageError(
            f"{what} can be at most the operator's {format_money(operator_cap, 'GBP')}, not {number:.2f}; "
            "leave it empty to keep the operator's"
        )
    return number


def parse_overrides(form: Mapping[str, Sequence[str]], operator: Policy) -> tuple[UserOverrides, bool, str]:
    """The overrides, pause switch and time zone a submitted control-panel form asks for.

    Only what differs from the operator's ``operator`` policy is kept, so that a person who
    leaves a setting alone follows the operator's later changes to it.
    """

    def one(name: str) -> str | None:
        values = form.get(name)
        return values[-1] if values else None

    tiers = {c: one(f"tier_{c}") for c in ACTION_CLASSES}
    quiet = {k: one(k) or None for k in ("quiet_start", "quiet_end")}
    if quiet == {"quiet_start": operator.quiet_start, "quiet_end": operator.quiet_end}:
        quiet = {"quiet_start": None, "quiet_end": None}
    timezone = (one("timezone") or "UTC").strip()
    if len(timezone) > 64 or not valid_timezone(timezone):
        raise UsageError(f"time zone {timezone[:64]!r} is unknown; use a name such as Europe/Paris or UTC")
    unknown = sorted(set(form.get("excluded_templates", [])) - set(BUILT_IN))
    if unknown:
        raise UsageError(f"no deliverable kind {unknown[0][:40]!r}; the kinds are {', '.join(sorted(BUILT_IN))}")
    caps = {
        name: _cap(one(name), what, operator_cap)
        for name, what, operator_cap in (
            ("max_order_amount", "the most per order", operator.max_order_amount),
            ("max_monthly_spend", "the most per month", operator.max_monthly_spend),
        )
    }
    try:
        overrides = UserOverrides(
            tiers={c: t for c, t in tiers.items() if t and t != operator.tiers[c]},
            max_order_amount=caps["max_order_amount"],
            max_monthly_spend=caps["max_monthly_spend"],
            quiet_start=quiet["quiet_start"],
            quiet_end=quiet["quiet_end"],
            excluded_templates=tuple(sorted(set(form.get("excluded_templates", [])))),
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise UsageError(f"these settings are not valid: {problems}") from exc
    return overrides, one("paused") == "on", timezone


def save_panel(
    con: duckdb.DuckDBPyConnection,
    user_id: str,
    overrides: UserOverrides,
    *,
    paused: bool,
    timezone: str,
    restore: Sequence[str],
    now: datetime,
) -> None:
    """Store the user's settings (inside the caller's transaction); they apply to the next run."""
    save_user_policy(con, user_id, overrides, paused=paused, now=now)
    upsert_users(con, [UserTraits(user_id, {}, timezone)], now=now)
    lift_exclusions(con, user_id, restore)


def waiting_actions(con: duckdb.DuckDBPyConnection, user_id: str, *, recent: int = 20) -> list[Waiting]:
    """The user's actions waiting for them, then the latest ``recent`` decided ones."""
    rows = user_actions(con, user_id)
    found: list[Waiting] = []
    decided = 0
    ids = sorted({str(line[0]) for row in rows for line in (json.loads(row[6]) if row[6] else {}).get("lines", [])})
    titles = item_titles(con, ids)
    for row in rows:
        if row[5] != "waiting":
            decided += 1
            if decided > recent:
                break
        args: Any = json.loads(row[6]) if row[6] else {}
        lines = [
            (str(titles.get(line[0]) or line[0]), float(line[1]), float(line[2]))
            for line in args.get("lines", [])
            if isinstance(line, list) and len(line) == 3
        ]
        total = args.get("total")
        found.append(
            Waiting(
                row[0], row[1], row[2], row[3], row[4], row[5],
                float(total) if isinstance(total, int | float) else None,
                lines, row[7], row[8], row[9], row[10], row[11], row[12],
                status_text("not_done", row[11] or row[13], row[3]) if row[5] == "refused" else None,
                bool(row[14]),
            )
        )
    return found
