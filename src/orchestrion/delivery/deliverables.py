"""Deliverables as people see them, and the decisions people make on them.

Lifecycle: ``proposed → planned → awaiting_approval → delivered | not_done | cancelled | rejected |
failed``. ``not_done``: the deliverable's own action (its order; for others, publishing it) was
refused by the policy and none of it happened; its ``error`` holds the plain reason, which
:func:`orchestrion.delivery.rendering.status_text` shows as "Not ordered: <reason>" / "Not sent: <reason>".
:func:`get_deliverable` and :func:`feed` read records (with "why this" as written for the final
content — the goal's until it is planned —, the pending actions
and the feedback); :func:`decide` carries out a person's approve / reject / cancel; and
:func:`run_due_actions` runs ``notify`` actions whose cancel window has ended. An approved action
is checked against the policy again immediately before it runs and goes through the ledger, so
approving twice (or a crash and a retry) orders once.

Decisions on one deliverable are serialised (one lock per deliverable in the process that holds
the store, which is the only writer): the first decision wins, a later one raises
:class:`~orchestrion.errors.AlreadyDecidedError` with the deliverable as it stands (the API answers
409), so no record ever says ``rejected`` for an order that was placed. :func:`sweep_claims`
reconciles ledger claims left open (a receiver down, a crash) with the provider, by idempotency key.
:func:`drop_items` takes the items a person thumbed down out of their carts still waiting for
approval (re-priced and checked against the policy again; a cart left empty is cancelled), and
:func:`expire_approvals` cancels what waited for an approval longer than ``settings.approval_days``.
"""

from __future__ import annotations

import json
import logging
import threading
import zlib
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any, Final, Literal

from orchestrion.config import Settings
from orchestrion.delivery import actions, ledger
from orchestrion.delivery.actions import Action
from orchestrion.delivery.channels import Effector
from orchestrion.delivery.rendering import main_action, status_text
from orchestrion.delivery.rules import load_user_rules
from orchestrion.encoding import canonical
from orchestrion.errors import (
    AlreadyDecidedError,
    NotFoundError,
    OrchestrionError,
    PermissionDeniedError,
    RetryableError,
    UsageError,
)
from orchestrion.goals.words import final_words
from orchestrion.money import format_money
from orchestrion.planning.offline import summary_of
from orchestrion.proposals.day import retitle_reasons
from orchestrion.proposals.record import (
    CONFIRMING_SQL,
    Deliverable,
    insert_refusals,
    status_once_done,
    write_cart,
    write_decision,
    write_reconciled,
    write_recovered,
)
from orchestrion.store import Store, transaction
from orchestrion.tools.policies import Policy, load_policy

__all__ = [
    "Decision",
    "decide",
    "drop_items",
    "expire_approvals",
    "feed",
    "first_deliverables",
    "get_deliverable",
    "pending_actions",
    "refresh_outbox",
    "reject_waiting",
    "run_due_actions",
    "sweep_claims",
]

Decision = Literal["approve", "reject", "cancel"]
_JSON: Final = ("content", "plan", "trace", "review")
_COLUMNS: Final = (
    "d.deliverable_id, d.goal_id, d.user_id, d.date, d.template, d.title, d.summary, d.items, d.status, d.content, "
    "d.plan, d.trace, d.planner, d.fallback, d.tokens, d.cost, d.review, d.attempts, d.error, d.created_at, "
    "d.updated_at, coalesce(d.why, g.why) AS why, d.effects, " + CONFIRMING_SQL
)


log = logging.getLogger(__name__)

_LOCKS: Final = tuple(threading.Lock() for _ in range(64))
"""Decisions and sweeps on one deliverable take its lock (striped: bounded memory, few collisions)."""


def _lock(deliverable_id: str) -> threading.Lock:
    return _LOCKS[zlib.crc32(deliverable_id.encode()) % len(_LOCKS)]


_USER_LOCKS: Final = tuple(threading.Lock() for _ in range(64))


def _user_lock(user_id: str) -> threading.Lock:
    """One person's spending: the policy's verdict and the ledger claim of one of their actions at a
    time (taken inside a deliverable's lock, never the other way round). Two carts approved at the
    same moment were each checked against the month's spending without the other, and both ordered
    past the limit."""
    return _USER_LOCKS[zlib.crc32(user_id.encode()) % len(_USER_LOCKS)]


def _rows(con: Any, where: str, params: dict[str, Any]) -> list[Deliverable]:
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
        effects = record.pop("effects")
        if isinstance(record["content"], dict) and effects:  # the results of its effects, as before
            record["content"]["effects"] = json.loads(effects)
        record["date"] = record["date"].isoformat()
        confirming = bool(record.pop("confirming"))
        record["status_text"] = status_text(record["status"], record["error"], main_action(record),
                                            confirming=confirming, runs_at=record.pop("runs_at"))
        out.append(Deliverable(**record))
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


def get_deliverable(con: Any, deliverable_id: str, *, viewer: str | None = None) -> Deliverable:
    """One deliverable with its pending actions. ``viewer`` (a user id) must own it; None is an admin.

    Raises NotFoundError for an unknown id and PermissionDeniedError for another user's.
    """
    found = _rows(con, "d.deliverable_id = $id", {"id": deliverable_id})
    if not found:
        raise NotFoundError(f"no deliverable {deliverable_id!r}; list a user's with GET /v1/users/{{id}}/feed")
    record = found[0]
    if viewer is not None and record.user_id != viewer:
        raise PermissionDeniedError(f"deliverable {deliverable_id!r} belongs to another user")
    return replace(record, actions=tuple(pending_actions(con, deliverable_id=deliverable_id)))


def feed(con: Any, user_id: str, day: date) -> list[Deliverable]:
    """A user's deliverables of ``day`` (no ``proposed`` leftovers), in slot order."""
    found = _rows(con, "d.user_id = $u AND d.date = $day AND d.status <> 'proposed'", {"u": user_id, "day": day})
    actions = pending_actions(con, user_id=user_id)
    return [
        replace(record, actions=tuple(a for a in actions if a["deliverable_id"] == record.deliverable_id))
        for record in found
    ]


def first_deliverables(con: Any, day: date, users: list[str] | None) -> list[dict[str, Any]]:
    """The first 20 deliverables of ``day`` (of ``users``, else everyone's) by user: what
    ``orchestrion deliver`` lists after a day (and ``POST /v1/deliver`` answers)."""
    rows = con.execute(
        "SELECT user_id, deliverable_id, template, status, title, error, content, " + CONFIRMING_SQL +
        " FROM deliverables d WHERE date = ? "
        "AND (? IS NULL OR list_contains(?, user_id)) ORDER BY user_id, deliverable_id LIMIT 20",
        [day, users or None, users or None],
    ).fetchall()
    return [
        {
            "user_id": user_id,
            "deliverable_id": deliverable_id,
            "template": template,
            "status": status,
            "status_text": status_text(
                status, error, main_action({"template": template, "content": json.loads(content) if content else None}),
                confirming=bool(confirming), runs_at=runs_at,
            ),
            "title": title,
        }
        for user_id, deliverable_id, template, status, title, error, content, confirming, runs_at in rows
    ]


def _execute(
    con: Any,
    action: Action,
    record: dict[str, Any],
    effector: Effector,
    policy: Policy,
    now: datetime,
) -> str:
    """Run one approved or due action through the one side-effect step (policy now, ledger,
    reconcile or perform, settle). Returns its new status; a refusal's or a failure's words go to
    ``record`` (``refused``, ``error``)."""
    with _user_lock(action.user_id):  # the claim counts in the next check of this person's spending
        rules = load_user_rules(con, policy, [action.user_id], now, locale=effector.settings.locale)[action.user_id]
        # This action's own amount is never part of the month's spending it is checked against (a
        # claim left by a crash is the same order, under the same key).
        spent = rules.spent_without(action.key)
        duplicate = (
            rules.duplicate_of(action.arguments, action.deliverable_id, action.created_at)
            if action.kind == "order" else None
        )
        verdict = actions.verdict(rules, action, now, spent=spent, duplicate_of=duplicate)
        if not verdict.allowed:
            with transaction(con):
                insert_refusals(con, [actions.refusal_row(action, verdict, now)])
            # What the person reads: "Not ordered: <this>" (rendering.status_text).
            record["refused"] = rules.refusal_text(verdict.rule, action.arguments, action.deliverable_id, now=now,
                                                   spent=spent)
            return "refused"
        state = ledger.claim(con, [action.effect], now=now)[action.key]
    if state != "completed" and action.kind == "order":
        # What the person was sent says "Approved: waiting for the shop to confirm the order" before the
        # shop is called: killed while waiting for it, the page said "Waiting for your approval" until
        # the sweep reconciled the claim (up to 15 minutes later).
        refresh_outbox(con, effector, action.deliverable_id)
    outcome = actions.carry(effector, action, state, record)
    if outcome.retryable and outcome.raised is not None:
        raise outcome.raised  # outcome unknown: the claim stays open and the next attempt reconciles it
    with transaction(con):  # a person's approved action that broke is theirs to see, not a claim to reconcile
        actions.settle(con, [outcome], now, give_up=True)
    if outcome.state != "done":
        record["error"] = f"{action.tool} failed: {outcome.error}"
        return "failed"
    return "executed"


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
) -> Deliverable:
    """Approve, reject or cancel a deliverable's waiting actions; returns the updated deliverable.

    ``approve`` runs each waiting action once (policy checked again now; ledger); ``reject`` drops
    them and marks the deliverable rejected; ``cancel`` stops ``notify`` actions inside their window.
    """
    own = effector is None
    effector = effector or Effector(settings)
    policy = policy or load_policy(settings.policy_path)
    con = store.cursor()
    try:
        get_deliverable(con, deliverable_id, viewer=viewer)  # unknown or another user's: no lock needed
        with _lock(deliverable_id):
            return _decide(store, con, settings, deliverable_id, decision, by, now, effector, policy, due_before)
    finally:
        con.close()
        if own:
            effector.close()


def _decide(
    store: Store,
    con: Any,
    settings: Settings,
    deliverable_id: str,
    decision: Decision,
    by: str,
    now: datetime,
    effector: Effector,
    policy: Policy,
    due_before: datetime | None,
) -> Deliverable:
    """:func:`decide` under the deliverable's lock."""
    record = get_deliverable(con, deliverable_id)
    waiting = [a for a in record.actions if a["status"] == "waiting"]
    if due_before is not None:  # the notify sweep: only actions whose window has ended
        waiting = [a for a in waiting if a["tier"] == "notify" and a["due_at"] and a["due_at"] <= due_before]
    if not waiting:
        raise AlreadyDecidedError(
            f"deliverable {deliverable_id!r} has no action waiting for a decision (status {record.status!r}); "
            "it was decided already",
            record.as_dict(),
        )
    if decision == "cancel" and not any(a["tier"] == "notify" for a in waiting):
        raise UsageError("only `notify` actions can be cancelled; use reject for actions awaiting approval")
    if decision != "approve":
        # An approval whose outcome is unknown (the provider did not answer) holds a claim: the
        # effect may have happened, so it can be finished by approving again, never rejected.
        started = {k for k, s in _ledger_states(con, [a["action_id"] for a in waiting]).items() if s != "failed"}
        if started:
            raise AlreadyDecidedError(
                f"deliverable {deliverable_id!r} has an approved action still being carried out; approve again "
                "to finish it (its outcome is reconciled with the provider), it can no longer be "
                f"{'rejected' if decision == 'reject' else 'cancelled'}",
                record.as_dict(),
            )
    published = record.as_dict()  # what the channels publish; an action refused or failed notes why in it
    updates: list[tuple[str, str]] = []
    for action in waiting:
        if decision == "approve":
            if action["tier"] == "suggest":
                updates.append((action["action_id"], "suggested"))
                continue
            typed = Action.stored(
                action["user_id"], action["deliverable_id"], action["action"], action["arguments"],
                key=action["action_id"], created_at=action["created_at"],
            )
            try:
                updates.append((action["action_id"], _execute(con, typed, published, effector, policy, now)))
            except RetryableError:
                # The provider did not answer: the approval stands (its claim is open) and the
                # outbox page says so ("Approved: waiting for the shop to confirm the order").
                refresh_outbox(con, effector, deliverable_id)
                raise
        elif decision == "reject":
            updates.append((action["action_id"], "rejected"))
        else:
            updates.append((action["action_id"], "cancelled"))
    final = {"approve": "delivered", "reject": "rejected", "cancel": "cancelled"}[decision]
    if any(status == "failed" for _, status in updates):
        final = "failed"
    decided = {action_id for action_id, _ in updates}
    if final != "failed" and any(a["status"] == "waiting" and a["action_id"] not in decided for a in record.actions):
        final = "awaiting_approval"
    error = published.get("error") if final == "failed" else None
    sending = False
    if final == "delivered":
        # The deliverable's own action refused now (a cap reached, the same order placed since),
        # and none of it done: it says so ("Not ordered: ..."), never "delivered".
        kinds = {a["action_id"]: a["action"] for a in record.actions}
        main = main_action(published)
        done = any(
            kinds[a] == main and s in ("executed", "suggested") for a, s in updates
        ) or any(a["action"] == main and a["status"] == "executed" for a in record.actions)
        if not done and any(kinds[a] == main and s == "refused" for a, s in updates):
            final, error = "not_done", published.get("refused")
        elif record.status == "failed" and _being_sent(con, deliverable_id):
            # Approved, but an earlier effect (a webhook that answered 500) is still being sent:
            # not finished until the sweep has sent it, which then says delivered.
            final, sending = "failed", True
    with transaction(con):
        write_decision(con, deliverable_id, updates, final, error, by=by, now=now,
                       max_attempts=0 if sending else settings.delivery_max_attempts)
    return refresh_outbox(con, effector, deliverable_id)


def refresh_outbox(con: Any, effector: Effector, deliverable_id: str) -> Deliverable:
    """The deliverable as it stands now, its outbox files written again to say so (see
    :meth:`Effector.refresh`). Call it after every committed status change, under the
    deliverable's lock where decisions race. A file that cannot be written is logged, never
    undoes the decision; the feed (API and web page) reads the store and is always current."""
    record = get_deliverable(con, deliverable_id)
    try:
        effector.refresh(record.as_dict())
    except OSError as exc:
        log.warning("outbox files of %s not refreshed to %r: %s", deliverable_id, record.status, exc)
    return record


def _being_sent(con: Any, deliverable_id: str) -> bool:
    """Has the deliverable an effect claimed and not completed (the sweep sends it again)?"""
    found = con.execute(
        "SELECT count(*) FROM side_effects WHERE deliverable_id = ? AND status = 'claimed'", [deliverable_id]
    ).fetchone()
    return bool(found and found[0])


def _in_flight(con: Any, actions: Sequence[dict[str, Any]]) -> bool:
    """Is one of ``actions`` being carried out (approved: its ledger claim is open or done)?"""
    return any(s != "failed" for s in _ledger_states(con, [a["action_id"] for a in actions]).values())


def _ledger_states(con: Any, keys: Sequence[str]) -> dict[str, str]:
    if not keys:
        return {}
    rows = con.execute(
        "SELECT idempotency_key, status FROM side_effects WHERE idempotency_key IN (SELECT unnest(?))", [list(keys)]
    ).fetchall()
    return {str(k): str(s) for k, s in rows}


def run_due_actions(
    store: Store, settings: Settings, now: datetime, *, effector: Effector | None = None, policy: Policy | None = None
) -> int:
    """Run every ``notify`` action whose cancel window has ended; returns how many ran."""
    if effector is None:
        mine = Effector(settings)
        try:
            return run_due_actions(store, settings, now, effector=mine, policy=policy)
        finally:
            mine.close()
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
        try:
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
        except OrchestrionError:  # decided meanwhile, or a provider down: the others still run
            continue
        ran += 1
    return ran


def sweep_claims(
    store: Store, settings: Settings, now: datetime, *, effector: Effector | None = None
) -> dict[str, int]:
    """Reconcile ledger claims older than ``settings.claim_stale_minutes`` with the provider.

    Each open claim is asked about by its idempotency key (:meth:`Effector.reconcile`): found →
    ``completed`` (an approved action waiting on it becomes ``executed``); certainly not done →
    ``failed`` (it may be tried again: approved again, or by the next run); no answer → it stays
    ``claimed`` while its deliverable still has attempts left or an approval waiting, and is given
    up (``failed``, the error saying the outcome is unknown) once it has none. Returns the counts.
    """
    own = effector is None
    effector = effector or Effector(settings)
    counts = {"completed": 0, "failed": 0, "open": 0}
    con = store.cursor()
    try:
        stale = ledger.stale_claims(con, before=now - timedelta(minutes=settings.claim_stale_minutes))
        for entry in stale:
            with _lock(entry.deliverable_id):
                if _ledger_states(con, [entry.key]).get(entry.key) != "claimed":
                    continue  # settled meanwhile
                found = _rows(con, "d.deliverable_id = $id", {"id": entry.deliverable_id})
                # the record as stored (the sweep reads no actions), else what the ledger knows of it
                record: dict[str, Any] = {"deliverable_id": entry.deliverable_id, "user_id": entry.user_id}
                if found:
                    record = {k: v for k, v in found[0].as_dict().items() if k != "actions"}
                    # A webhook sent again says what the deliverable will be once it is taken, not "failed".
                    once = status_once_done(con, entry.deliverable_id, entry.key)
                    if once is not None:
                        record = {**record, "status": once, "error": None}
                counts[_settle_claim(con, settings, entry, record, effector, now)] += 1
    finally:
        con.close()
        if own:
            effector.close()
    return counts


def _settle_claim(
    con: Any, settings: Settings, entry: ledger.Entry, record: dict[str, Any], effector: Effector, now: datetime
) -> str:
    """One stale claim reconciled: ``completed``, ``failed`` or still ``open``."""
    action = con.execute(
        "SELECT status FROM pending_actions WHERE action_id = ?", [entry.key]
    ).fetchall()
    try:
        outcome = effector.reconcile(entry.action, entry.effect, entry.key, record)
    except Exception as exc:  # the provider cannot say: keep asking while someone may still finish it
        retrying = record.get("status") in ("proposed", "failed") and _failures(con, entry.deliverable_id) < (
            settings.delivery_max_attempts
        )
        if retrying or (action and action[0][0] == "waiting"):
            return "open"
        ledger.fail(
            con,
            {entry.key: f"outcome unknown, given up after {entry.attempts} attempt(s): {type(exc).__name__}: {exc}"},
            now=now,
        )
        return "failed"
    if outcome is None:
        ledger.fail(con, {entry.key: "did not happen (reconciled with the provider)"}, now=now)
        return "failed"
    with transaction(con):
        ledger.settle(con, "completed", {entry.key: canonical(outcome)}, now)
        if action and action[0][0] == "waiting":
            write_reconciled(con, entry.key, entry.deliverable_id, now)
        recovered = write_recovered(con, entry.deliverable_id, entry.key, now)
    if recovered or (action and action[0][0] == "waiting" and record.get("status") != "delivered"):
        refresh_outbox(con, effector, entry.deliverable_id)
    return "completed"


def _failures(con: Any, deliverable_id: str) -> int:
    rows = con.execute("SELECT coalesce(failures, 0) FROM deliverables WHERE deliverable_id = ?", [deliverable_id])
    found = rows.fetchall()
    return int(found[0][0]) if found else 0


def reject_waiting(
    store: Store, settings: Settings, deliverable_ids: Sequence[str], *, by: str, now: datetime
) -> dict[str, str]:
    """Reject those of ``deliverable_ids`` that still wait for approval (the person turned them
    down); returns each rejected one's status. One query finds them (a bulk import thumbs many
    delivered ones down); one decided meanwhile, or whose approval is being carried out, is left."""
    con = store.cursor()
    try:
        rows = con.execute(
            "SELECT DISTINCT deliverable_id FROM pending_actions WHERE status = 'waiting' "
            "AND deliverable_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY 1",
            [sorted(set(deliverable_ids))],
        ).fetchall()
    finally:
        con.close()
    changed: dict[str, str] = {}
    for (deliverable_id,) in rows:
        with suppress(AlreadyDecidedError):
            changed[str(deliverable_id)] = decide(
                store, settings, str(deliverable_id), "reject", by=by, viewer=None, now=now
            ).status
    return changed


def drop_items(
    store: Store,
    settings: Settings,
    user_id: str,
    items: Sequence[str],
    *,
    now: datetime,
    policy: Policy | None = None,
) -> dict[str, str]:
    """Take ``items`` (just thumbed down by ``user_id``) out of the user's carts still waiting for
    approval; returns each changed deliverable's status now.

    The cart shown and the order waiting are changed together: lines, total, title and summary,
    and the order checked against the policy again (a cheaper cart may now equal one ordered
    recently: refused, ``not_done``). A cart left with no line is cancelled with the reason. An
    order an approval is carrying out at that moment (a ledger claim) is left as approved.
    Deliverables not planned yet need nothing: planning never uses an excluded item.
    """
    gone = {str(i) for i in items}
    if not gone:
        return {}
    policy = policy or load_policy(settings.policy_path)
    changed: dict[str, str] = {}
    con = store.cursor()
    try:
        rows = con.execute(
            "SELECT DISTINCT deliverable_id FROM pending_actions WHERE user_id = ? AND action = 'place_order' "
            "AND status = 'waiting' ORDER BY 1",
            [user_id],
        ).fetchall()
        effector = Effector(settings)
        try:
            for (deliverable_id,) in rows:
                with _lock(str(deliverable_id)):
                    status = _drop(con, str(deliverable_id), gone, policy, now, settings.locale)
                    if status is not None:  # its outbox page shows the cart as it is now
                        refresh_outbox(con, effector, str(deliverable_id))
                if status is not None:
                    changed[str(deliverable_id)] = status
        finally:
            effector.close()
    finally:
        con.close()
    return changed


def _drop(
    con: Any, deliverable_id: str, gone: set[str], policy: Policy, now: datetime, locale: str | None = None
) -> str | None:
    """:func:`drop_items` for one deliverable, under its lock; its new status, or None (unchanged)."""
    record = get_deliverable(con, deliverable_id)
    orders = [a for a in record.actions if a["status"] == "waiting" and a["action"] == "place_order"]
    content = record.content if isinstance(record.content, dict) else {}
    if not orders or _in_flight(con, orders):
        return None  # decided meanwhile, or an approval is placing it now
    kept = [i for i in content.get("items") or [] if str(i.get("item_id")) not in gone]
    lines = {a["action_id"]: [ln for ln in a["arguments"].get("lines") or [] if str(ln[0]) not in gone] for a in orders}
    if len(kept) == len(content.get("items") or []) and all(
        len(lines[a["action_id"]]) == len(a["arguments"].get("lines") or []) for a in orders
    ):
        return None
    others = any(a["status"] == "waiting" and a["action"] != "place_order" for a in record.actions)
    total = round(sum(float(i.get("line_total") or 0.0) for i in kept), 2)
    currency = content.get("currency") or ""
    new_content = {**{k: v for k, v in content.items() if k != "effects"}, "items": kept, "total": total}
    decided: list[tuple[str, str, str | None]] = []  # action, status, detail
    refusals: list[list[Any]] = []
    final, reason = record.status, record.error
    if not kept or not all(lines.values()):
        decided = [(a["action_id"], "cancelled", "every item was thumbed down") for a in orders]
        final = "awaiting_approval" if others else "cancelled"
        reason = None if others else "you thumbed down every item in it, so nothing will be ordered"
    else:
        rules = load_user_rules(con, policy, [record.user_id], now, locale=locale)[record.user_id]
        for action in orders:
            args = {**action["arguments"], "lines": lines[action["action_id"]]}
            args["total"] = round(sum(round(float(q) * float(p), 2) for _, q, p in args["lines"]), 2)
            action["arguments"] = args
            spent = rules.spent_without(action["action_id"])
            order = Action.stored(record.user_id, deliverable_id, "place_order", args, key=action["action_id"],
                                  created_at=action["created_at"])
            verdict = actions.verdict(rules, order, now, spent=spent,
                                      duplicate_of=rules.duplicate_of(args, deliverable_id, action["created_at"]))
            if verdict.allowed:
                continue
            shown = {**args, "currency": currency}
            text = rules.refusal_text(verdict.rule, shown, deliverable_id, now=now, spent=spent)
            decided.append((action["action_id"], "refused", text))
            refusals.append(actions.refusal_row(order, verdict, now))
            if not others:
                final, reason = "not_done", text
    title = record.title
    if kept and str(title).startswith("Reorder:"):  # the offline planner's title states the cart's numbers
        title = f"Reorder: {len(kept)} items ({format_money(total, currency or None, locale)})"
    summary = summary_of(new_content, locale) if kept else record.summary
    why = record.why
    if not kept:  # nothing of the numbers it stated holds for an empty cart: say what it is now
        had = len(content.get("items") or [])
        every = "the only item" if had == 1 else f"all {had} items"
        title = "Cart cancelled: nothing left to order"
        summary = f"You thumbed down {every} of this cart, so it was cancelled and nothing will be ordered."
        why = f"This cart had {had} item{'' if had == 1 else 's'}; you thumbed down {every}."
    goal = con.execute(
        "SELECT g.template, g.variant, g.why, g.details, g.reason_detail FROM deliverables d JOIN goals g "
        "USING (goal_id) WHERE d.deliverable_id = ?",
        [deliverable_id],
    ).fetchone()
    if kept and goal is not None:  # every number of the title and "why this" holds for the cart as it is now
        title, why = final_words(
            goal[0], goal[1], str(title), str(why or goal[2]), json.loads(goal[3] or "{}"), new_content, note=goal[4]
        )
    with transaction(con):
        day = date.fromisoformat(record.date)
        retitle_reasons(con, [(record.user_id, day, str(record.title), str(title))])
        write_cart(
            con,
            deliverable_id,
            {a["action_id"]: a["arguments"] for a in orders},
            decided,
            refusals,
            content=new_content,
            items=[str(i.get("item_id")) for i in kept],
            title=title,
            summary=summary,
            why=why,
            status=str(final),
            error=reason,
            now=now,
        )
    return str(final)


def expire_approvals(
    store: Store, settings: Settings, users: Sequence[str], day: date, *, now: datetime
) -> dict[str, str]:
    """Cancel the ``users``' deliverables dated more than ``settings.approval_days`` before ``day``
    that still wait for an approval (0: never); returns each cancelled deliverable's status.

    A cart nobody approves would otherwise wait for ever, and hold back every new cart sharing an
    item with it (:func:`orchestrion.ranking.slate.recent_overlaps`). It says why ("Cancelled: not
    approved within 14 days, so nothing was ordered"); an approval being carried out (an open
    ledger claim) is left to finish.
    """
    if settings.approval_days <= 0 or not users:
        return {}
    con = store.cursor()
    try:
        rows = con.execute(
            "SELECT DISTINCT a.deliverable_id FROM pending_actions a JOIN deliverables d USING (deliverable_id) "
            "WHERE a.status = 'waiting' AND a.tier <> 'notify' AND d.status = 'awaiting_approval' AND d.date < ? "
            "AND d.user_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY 1",
            [day - timedelta(days=settings.approval_days), sorted(set(users))],
        ).fetchall()
        if not rows:
            return {}
        expired: dict[str, str] = {}
        effector = Effector(settings)
        try:
            for (deliverable_id,) in rows:
                with _lock(str(deliverable_id)):
                    if _expire(con, str(deliverable_id), settings.approval_days, now):
                        refresh_outbox(con, effector, str(deliverable_id))
                        expired[str(deliverable_id)] = "cancelled"
        finally:
            effector.close()
    finally:
        con.close()
    if expired:
        log.info("%d deliverable(s) cancelled after waiting %d days for an approval", len(expired),
                 settings.approval_days)
    return expired


def _expire(con: Any, deliverable_id: str, days: int, now: datetime) -> bool:
    """:func:`expire_approvals` for one deliverable, under its lock: whether it was cancelled."""
    record = get_deliverable(con, deliverable_id)
    waiting = [a for a in record.actions if a["status"] == "waiting"]
    if record.status != "awaiting_approval" or not waiting or _in_flight(con, waiting):
        return False  # decided meanwhile, or an approval is carrying it out now
    nothing = "nothing was ordered" if main_action(record.as_dict()) == "place_order" else "nothing was sent"
    with transaction(con):
        write_decision(
            con, deliverable_id, [(a["action_id"], "cancelled") for a in waiting], "cancelled",
            f"not approved within {days} days, so {nothing}", by="expiry", now=now, max_attempts=0,
        )
    return True
