"""The approvals page and the control panel (routes; the data lives in :mod:`orchestrion.web.controls`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import duckdb
from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from orchestrion.delivery.deliverables import Decision, decide, get_deliverable
from orchestrion.errors import (
    AlreadyDecidedError,
    NotFoundError,
    OrchestrionError,
    PermissionDeniedError,
    RetryableError,
    UsageError,
)
from orchestrion.goals.words import full_stop
from orchestrion.tools.policies import ACTION_CLASSES, load_policy
from orchestrion.web.context import WebContext, form_lists
from orchestrion.web.controls import ACTION_NAMES, TIER_NAMES, read_panel, save_panel, waiting_actions
from orchestrion.web.controls import parse_overrides as parse_panel
from orchestrion.web.session import Session

__all__ = ["build_router"]

_DECISIONS: dict[str, Decision] = {"approve": "approve", "reject": "reject", "cancel": "cancel"}


def _last(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[-1] if values else None


def build_router(web: WebContext) -> APIRouter:
    """The approvals and control-panel pages of one app."""
    router = APIRouter(include_in_schema=False)

    async def person(request: Request) -> Session | Response:
        session = await web.session(request)
        if session is None:
            return web.to_signin(request)
        if session.is_admin:
            return web.error(request, session, 403, "Approvals and the control panel belong to each user; "
                             "sign in with their link.")
        return session

    async def approvals_view(request: Request, session: Session, status: int = 200, **extra: Any) -> Response:
        assert session.user_id is not None
        user_id = session.user_id
        actions = await web.read(lambda con: waiting_actions(con, user_id))
        return web.render(request, "approvals.html", session, status=status, actions=actions, now=web.now(),
                          **extra)

    @router.get("/approvals")
    async def approvals(request: Request, done: str | None = None, d: str | None = None) -> Response:
        session = await person(request)
        if not isinstance(session, Session):
            return session
        notice = {"approve": "Approved.", "reject": "Rejected.", "cancel": "Cancelled."}.get(done or "")
        problem = None
        if notice is not None and d:
            # What the decision did, read from the store: an approved order the limits refused
            # says "Not ordered: …" here, never a green "Approved."
            user_id = session.user_id
            try:
                record = await web.read(lambda con: get_deliverable(con, d[:512], viewer=user_id))
            except (NotFoundError, PermissionDeniedError):
                record = None
            if record is not None:
                said = full_stop(f"“{record.title}”: {record.status_text}")
                bad = record.status in ("not_done", "failed")
                notice, problem = (None, said) if bad else (said, None)
        return await approvals_view(request, session, problem=problem, notice=notice)

    @router.post("/approvals/{deliverable_id}")
    async def decide_action(request: Request, deliverable_id: str) -> Response:
        session = await person(request)
        if not isinstance(session, Session):
            return session
        form = await form_lists(request)
        decision = _DECISIONS.get(_last(form, "decision") or "")
        try:
            session.check_form(_last(form, "form_token"))
        except PermissionDeniedError as exc:
            return web.error(request, session, 403, str(exc))
        try:
            if decision is None:
                raise UsageError("the decision is approve, reject or cancel")
            await run_in_threadpool(
                decide, web.api.store, web.api.settings, deliverable_id, decision,
                by=f"web:{session.user_id}", viewer=session.user_id, now=web.now(),
            )
        except (NotFoundError, PermissionDeniedError):
            return web.error(request, session, 404, f"No deliverable {deliverable_id[:512]} for you.")
        except OrchestrionError as exc:
            # a wrong decision is the form's fault; anything else (already decided, a provider
            # that did not answer) is a conflict with the current state, shown with its reason
            status = (409 if isinstance(exc, AlreadyDecidedError) else 400 if isinstance(exc, UsageError)
                      else 503 if isinstance(exc, RetryableError) else 409)
            problem = str(exc)
            if isinstance(exc, RetryableError) and decision == "approve":
                problem += "; your approval stands: ask again later to finish it (nothing is done twice)"
            return await approvals_view(request, session, status=status, problem=problem, notice=None)
        return RedirectResponse(f"/approvals?{urlencode({'done': decision, 'd': deliverable_id})}", status_code=303)

    async def panel_view(request: Request, session: Session, status: int = 200, **extra: Any) -> Response:
        assert session.user_id is not None
        user_id = session.user_id
        operator = await run_in_threadpool(load_policy, web.api.settings.policy_path)
        panel = await web.read(lambda con: read_panel(con, operator, user_id))
        return web.render(
            request, "settings.html", session, status=status, panel=panel, classes=ACTION_CLASSES,
            action_names=ACTION_NAMES, tier_names=TIER_NAMES, **extra,
        )

    @router.get("/settings")
    async def settings_page(request: Request, saved: int = 0) -> Response:
        session = await person(request)
        if not isinstance(session, Session):
            return session
        notice = "Saved. The next run follows these settings." if saved else None
        return await panel_view(request, session, problem=None, notice=notice)

    @router.post("/settings")
    async def save_settings(request: Request) -> Response:
        session = await person(request)
        if not isinstance(session, Session):
            return session
        assert session.user_id is not None
        user_id = session.user_id
        form = await form_lists(request)
        try:
            session.check_form(_last(form, "form_token"))
            operator = await run_in_threadpool(load_policy, web.api.settings.policy_path)
            overrides, paused, timezone = parse_panel(form, operator)
        except PermissionDeniedError as exc:
            return web.error(request, session, 403, str(exc))
        except UsageError as exc:
            return await panel_view(request, session, status=400, problem=str(exc), notice=None)
        now = web.now()
        restore = form.get("restore", [])

        def work(con: duckdb.DuckDBPyConnection) -> None:
            save_panel(con, user_id, overrides, paused=paused, timezone=timezone, restore=restore, now=now)

        await web.api.write(work)
        return RedirectResponse("/settings?saved=1", status_code=303)

    return router
