"""Deliverables as people see them, and the decisions people make on them.

Lifecycle: ``proposed → planned → awaiting_approval → delivered | cancelled | rejected | failed``.
:func:`get_deliverable` and :func:`feed` read records (with the goal's "why", the pending actions
and the feedback); :func:`decide` carries out a person's approve / reject / cancel; and
:func:`run_due_actions` runs ``notify`` actions whose cancel window has ended. An approved action
is checked against the policy again immediately before it runs and goes through the ledger, so
approving twice (or a crash and a retry) orders once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, Final, Literal

from orchestrion import ledger
from orchestrion.config import Settings
from orchestrion.effects import Effector
from orchestrion.errors import NotFoundError, OrchestrionError, PermissionDeniedError, RetryableError, UsageError
from orchestrion.policies import ActionClass, Policy, load_policy
from orchestrion.store import Store, transaction

__all__ = ["Decision", "decide", "feed", "get_deliverable", "pending_actions", "run_due_actions"]

Decision = Literal["approve", "reject", "cancel"]
_JSON: Final = ("content", "plan", "trace", "review")
_COLUMNS: Final = (
    "d.deliverable_id, d.goal_id, d.user_id, d.date, d.template, d.title, d.summary, d.items, d.status, d.content, "
    "d.plan, d.trace, d.planner, d.fallback, d.tokens, d.cost, d.review, d.attempts, d.error, d.created_at, "
    "d.updated_at, g.why"
)


def _rows(con: Any, where: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    cursor = con.execute(
        f"SELECT {_COLUMNS} FROM deliverables d LEFT JOIN goals g USING (goal_id) WHERE {where} "
        "ORDER BY d.date DESC, g.slot NULLS LAST, d.deliverable_id",
        params,
    )
    names = [c[0] for c in cursor.description or []]
    out = []
    for row in cursor.fetchall():
        record = dict(zip(names, row, strict=True))
        for key in _JSON:
            record[key] = json.loads(record[key]) if record[key] else None
        record["date"] = record["date"].isoformat()
        out.append(record)
    return out


def pending_actions(con: Any, *, user_id: str | None = None, deliverable_id: str | None = None) -> list[dict[str, Any]]:
    """Actions waiting for (or decided by) a person, newest first."""
    cursor = con.execute(
        "SELECT action_id, deliverable_id, user_id, action, arguments, tier, status, due_at, created_at, decided_at, "
        "decided_by, detail FROM pending_actions WHERE ($u IS NULL OR user_id = $u) AND ($d IS NULL OR "
        "deliverable_id = $d) ORDER BY created_at DESC, action_id",
        {"u": user_id, "d": deliverable_id},
    )
    names = [c[0] for c in cursor.description or []]
    rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    for row in rows:
        row["arguments"] = json.loads(row["arguments"])
    return rows


def get_deliverable(con: Any, deliverable_id: str, *, viewer: str | None = None) -> dict[str, Any]:
    """One deliverable with its pending actions. ``viewer`` (a user id) must own it; None is an admin.

    Raises NotFoundError for an unknown id and PermissionDeniedError for another user's.
    """
    found = _rows(con, "d.deliverable_id = $id", {"id": deliverable_id})
    if not found:
        raise NotFoundError(f"no deliverable {deliverable_id!r}; list a user's with GET /v1/users/{{id}}/feed")
    record = found[0]
    if viewer is not None and record["user_id"] != viewer:
        raise PermissionDeniedError(f"deliverable {deliverable_id!r} belongs to another user")
    record["actions"] = pending_actions(con, deliverable_id=deliverable_id)
    return record


def feed(con: Any, user_id: str, day: date) -> list[dict[str, Any]]:
    """A user's deliverables of ``day`` (no ``proposed`` leftovers), in slot order."""
    found = _rows(con, "d.user_id = $u AND d.date = $day AND d.status <> 'proposed'", {"u": user_id, "day": day})
    actions = pending_actions(con, user_id=user_id)
    for record in found:
        record["actions"] = [a for a in actions if a["deliverable_id"] == record["deliverable_id"]]
    return found


def _execute(
    store: Store,
    con: Any,
    action: dict[str, Any],
    record: dict[str, Any],
    effector: Effector,
    policy: Policy,
    now: datetime,
) -> str:
    """Run one approved or due action: policy now, ledger, perform. Returns its new status."""
    from orchestrion.delivery import load_user_rules
    from orchestrion.policies import check

    rules = load_user_rules(con, policy, [record["user_id"]], now)[record["user_id"]]
    args = action["arguments"]
    action_class: ActionClass = (
        "order" if action["action"] == "place_order" else ("webhook" if args.get("channel") == "webhook" else "outbox")
    )
    # This action's own amount is never part of the month's spending it is checked against (a
    # claim left by a crash is the same order, under the same key).
    verdict = check(
        rules.policy,
        action_class,
        amount=float(args.get("total") or 0.0),
        spent_this_month=rules.spent_without(action["action_id"]),
        origin=_origin(args.get("url")) if action_class == "webhook" else None,
        local_time=rules.local(now).time(),
        paused=rules.paused,
        duplicate_of=rules.duplicate_of(args, record["deliverable_id"], action["created_at"])
        if action_class == "order"
        else None,
    )
    if not verdict.allowed:
        with transaction(con):
            con.execute(
                "INSERT INTO policy_decisions (deliverable_id, user_id, action, rule, detail, arguments, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    record["deliverable_id"],
                    record["user_id"],
                    action["action"],
                    verdict.rule,
                    verdict.detail,
                    ledger.canonical(args),
                    now,
                ],
            )
        return "refused"
    key = action["action_id"]
    fx = ledger.Effect(key, record["user_id"], record["deliverable_id"], action["action"], args)
    state = ledger.claim(con, [fx], now=now)[key]
    if state == "completed":
        return "executed"
    outcome = effector.reconcile(action["action"], args, key, record) if state == "unknown" else None
    try:
        outcome = outcome or effector.perform(action["action"], args, key, record)
    except RetryableError:
        raise  # outcome unknown: the claim stays open and the next attempt reconciles it
    except OrchestrionError as exc:
        ledger.fail(con, {key: str(exc)}, now=now)
        return "failed"
    ledger.complete(con, {key: outcome}, now=now)
    return "executed"


def _origin(url: Any) -> str | None:
    """The webhook's origin, or None (refused by the check) when it is not one plain http(s) origin."""
    from orchestrion.errors import PolicyViolation
    from orchestrion.policies import webhook_origin

    try:
        return webhook_origin(str(url)) if url else None
    except PolicyViolation:
        return None


def decide(
    store: Store,
    settings: Settings,
    deliverable_id: str,
    decision: Decision,
    *,
    by: str,
    viewer: str | None,
    now: datetime,
    effector: Effector | None = None,
    policy: Policy | None = None,
    due_before: datetime | None = None,
) -> dict[str, Any]:
    """Approve, reject or cancel a deliverable's waiting actions; returns the updated deliverable.

    ``approve`` runs each waiting action once (policy checked again now; ledger); ``reject`` drops
    them and marks the deliverable rejected; ``cancel`` stops ``notify`` actions inside their window.
    """
    effector = effector or Effector(settings)
    policy = policy or load_policy(settings.policy_path)
    con = store.cursor()
    try:
        record = get_deliverable(con, deliverable_id, viewer=viewer)
        waiting = [a for a in record["actions"] if a["status"] == "waiting"]
        if due_before is not None:  # the notify sweep: only actions whose window has ended
            waiting = [a for a in waiting if a["tier"] == "notify" and a["due_at"] and a["due_at"] <= due_before]
        if not waiting:
            raise UsageError(
                f"deliverable {deliverable_id!r} has no action waiting for a decision (status {record['status']!r})"
            )
        if decision == "cancel" and not any(a["tier"] == "notify" for a in waiting):
            raise UsageError("only `notify` actions can be cancelled; use reject for actions awaiting approval")
        updates: list[tuple[str, str]] = []
        for action in waiting:
            if decision == "approve":
                if action["tier"] == "suggest":
                    updates.append((action["action_id"], "suggested"))
                    continue
                updates.append((action["action_id"], _execute(store, con, action, record, effector, policy, now)))
            elif decision == "reject":
                updates.append((action["action_id"], "rejected"))
            else:
                updates.append((action["action_id"], "cancelled"))
        final = {"approve": "delivered", "reject": "rejected", "cancel": "cancelled"}[decision]
        decided = {action_id for action_id, _ in updates}
        if any(a["status"] == "waiting" and a["action_id"] not in decided for a in record["actions"]):
            final = "awaiting_approval"
        with transaction(con):
            con.executemany(
                "UPDATE pending_actions SET status = ?, decided_at = ?, decided_by = ? WHERE action_id = ?",
                [[status, now, by, action_id] for action_id, status in updates],
            )
            con.execute(
                "UPDATE deliverables SET status = ?, updated_at = ? WHERE deliverable_id = ?",
                [final, now, deliverable_id],
            )
        return get_deliverable(con, deliverable_id)
    finally:
        con.close()


def run_due_actions(
    store: Store, settings: Settings, now: datetime, *, effector: Effector | None = None, policy: Policy | None = None
) -> int:
    """Run every ``notify`` action whose cancel window has ended; returns how many ran."""
    effector = effector or Effector(settings)
    policy = policy or load_policy(settings.policy_path)
    con = store.cursor()
    try:
        due: Sequence[tuple[Any, ...]] = con.execute(
            "SELECT DISTINCT deliverable_id FROM pending_actions WHERE status = 'waiting' AND tier = 'notify' "
            "AND due_at <= ?",
            [now],
        ).fetchall()
    finally:
        con.close()
    ran = 0
    for (deliverable_id,) in due:
        decide(
            store,
            settings,
            str(deliverable_id),
            "approve",
            by="notify-window",
            viewer=None,
            now=now,
            effector=effector,
            policy=policy,
            due_before=now,
        )
        ran += 1
    return ran
