"""The person's pages: sign-in and out, the day's feed, one deliverable, thumbs.

Every page is plain HTML that reads without JavaScript; forms post normally and are answered
with a redirect back. With htmx loaded, the thumb forms post in the background and swap in the
updated buttons instead.
"""

from __future__ import annotations

import datetime as dt

import duckdb
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from orchestrion.errors import NotFoundError, PermissionDeniedError, UsageError
from orchestrion.feedback import Feedback, ItemThumb, record_feedback
from orchestrion.keys import KEY_PREFIX, verify_key
from orchestrion.web.context import WebContext, read_form, safe_next, today_for
from orchestrion.web.feed import Card, Day, card, day_feed, read_card_user
from orchestrion.web.session import COOKIE, SESSION_DAYS, Session

__all__ = ["build_router"]


def _signed_in(web: WebContext, response: Response, session: Session) -> Response:
    response.set_cookie(
        COOKIE,
        web.signer.session_cookie(session),
        max_age=SESSION_DAYS * 86_400,
        httponly=True,
        samesite="lax",
        path="/",
    )
    return response


def build_router(web: WebContext) -> APIRouter:
    """The sign-in, feed and deliverable pages of one app."""
    router = APIRouter(include_in_schema=False)

    async def session_for_credential(credential: str) -> Session | None:
        credential = credential.strip()
        if credential.startswith(KEY_PREFIX):
            key = await web.read(lambda con: verify_key(con, credential))
            if key is None:
                return None
            if key.role == "admin":
                return Session.admin()
            if key.role == "user" and key.user_id:
                return Session.user(key.user_id)
            return None
        user = web.signer.read_link(credential)
        return Session.user(user) if user else None

    @router.get("/signin")
    async def signin_page(request: Request, token: str | None = None) -> Response:
        if token:
            session = await session_for_credential(token)
            if session is None:
                return web.render(request, "signin.html", None, status=401,
                                  problem="This sign-in link is invalid or has expired; ask for a new one.")
            return _signed_in(web, RedirectResponse("/", status_code=303), session)
        return web.render(request, "signin.html", web.session(request), problem=None)

    @router.post("/signin")
    async def signin(request: Request) -> Response:
        form = await read_form(request)
        session = await session_for_credential(form.get("credential", ""))
        if session is None:
            return web.render(
                request, "signin.html", None, status=401,
                problem="That token or key was not recognised (a write key cannot sign in). Check it and try again.",
            )
        return _signed_in(web, RedirectResponse("/admin" if session.is_admin else "/", status_code=303), session)

    @router.post("/signout")
    async def signout(request: Request) -> Response:
        response = RedirectResponse("/signin", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    @router.get("/")
    async def feed_page(request: Request, date: str | None = None, user: str | None = None) -> Response:
        session = web.session(request)
        if session is None:
            return web.to_signin(request)
        user_id = session.user_id if not session.is_admin else user
        if user_id is None:
            return RedirectResponse("/admin", status_code=303)
        if not session.may_see(user_id):
            return web.error(request, session, 404, "There is nothing here for you.")
        try:
            wanted = None if not date else _parse_day(date)
        except UsageError as exc:
            return web.error(request, session, 400, str(exc))
        now = web.now()

        def work(con: duckdb.DuckDBPyConnection) -> tuple[dt.date, Day]:
            today = today_for(con, user_id, now)
            return today, day_feed(con, user_id, wanted or today)

        today, day = await web.read(work)
        viewing_as = user if session.is_admin else None
        return web.render(request, "feed.html", session, day=day, today=today, viewing_as=viewing_as)

    @router.get("/deliverables/{deliverable_id}")
    async def deliverable_page(request: Request, deliverable_id: str) -> Response:
        session = web.session(request)
        if session is None:
            return web.to_signin(request)
        found = await _own_card(web, session, deliverable_id)
        if found is None:
            return web.error(request, session, 404, f"No deliverable {deliverable_id} for you.")
        return web.render(request, "deliverable.html", session, card=found)

    @router.post("/deliverables/{deliverable_id}/thumbs")
    async def thumbs(request: Request, deliverable_id: str) -> Response:
        session = web.session(request)
        if session is None:
            return web.to_signin(request)
        form = await read_form(request)
        try:
            session.check_form(form.get("form_token"))
            thumb = form.get("thumb")
            if thumb not in ("up", "down"):
                raise UsageError("a thumb is 'up' or 'down'")
            item_id = form.get("item_id") or None
            body = Feedback(items=[ItemThumb(item_id=item_id, thumb=thumb)]) if item_id else Feedback(thumb=thumb)
        except (PermissionDeniedError, UsageError) as exc:
            return web.error(request, session, 403 if isinstance(exc, PermissionDeniedError) else 400, str(exc))
        owner = await _owner(web, deliverable_id)
        if owner is None or not session.may_see(owner):
            return web.error(request, session, 404, f"No deliverable {deliverable_id} for you.")
        now = web.now()
        await web.api.write(lambda con: record_feedback(con, deliverable_id, body, source="web", now=now))
        if request.headers.get("hx-request"):
            updated = await _own_card(web, session, deliverable_id)
            assert updated is not None
            if item_id:
                item = next((i for i in updated.items if i.item_id == item_id), None)
                if item is not None:
                    return web.fragment("macros.html", "item_thumbs", session, updated, item)
            return web.fragment("macros.html", "card_thumbs", session, updated)
        return RedirectResponse(safe_next(form.get("next")), status_code=303)

    return router


def _parse_day(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise UsageError(f"date {value!r} is not YYYY-MM-DD") from exc


async def _owner(web: WebContext, deliverable_id: str) -> str | None:
    def work(con: duckdb.DuckDBPyConnection) -> str | None:
        try:
            return read_card_user(con, deliverable_id)
        except NotFoundError:
            return None

    return await web.read(work)


async def _own_card(web: WebContext, session: Session, deliverable_id: str) -> Card | None:
    """The card when it exists and the session may see it; None alike for both refusals, so that
    another user's ids cannot be probed."""

    def work(con: duckdb.DuckDBPyConnection) -> Card | None:
        try:
            found = card(con, deliverable_id)
        except NotFoundError:
            return None
        return found if session.may_see(found.user_id) else None

    return await web.read(work)
