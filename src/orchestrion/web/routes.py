"""The person's pages: sign-in and out, the day's feed, one deliverable, thumbs.

Signing in checks the credential (a single-use link, a user key or an admin key) and stores the
session in one writer transaction; the sign-in form is bound to its pre-session cookie and sign-out
needs the session's form token (see :mod:`orchestrion.web.session`).

Every page is plain HTML that reads without JavaScript; forms post normally and are answered
with a redirect back. With htmx loaded, the thumb forms post in the background and swap in the
updated buttons instead.
"""

from __future__ import annotations

import datetime as dt
import secrets

import duckdb
from fastapi import APIRouter
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from orchestrion.access.keys import KEY_PREFIX, verify_key
from orchestrion.access.sessions import (
    StoredSession,
    end_session,
    end_sessions,
    redeem_link,
    sign_out_user,
    start_session,
)
from orchestrion.delivery.feedback import Feedback, ItemThumb, record_feedback, trim_pending
from orchestrion.errors import NotFoundError, PermissionDeniedError, UsageError
from orchestrion.web.context import WebContext, iso_day, read_form, safe_next, today_for
from orchestrion.web.feed import Card, Day, card, day_feed, latest_day
from orchestrion.web.session import COOKIE, SIGNIN_COOKIE, Session

__all__ = ["build_router"]

MAX_CREDENTIAL = 2048
MAX_ID = 512
"""Longer deliverable or item ids than this are not looked up (none is made that long)."""


def build_router(web: WebContext) -> APIRouter:
    """The sign-in, feed and deliverable pages of one app."""
    router = APIRouter(include_in_schema=False)

    def signin_page(request: Request, session: Session | None, *, status: int = 200,
                    problem: str | None = None) -> Response:
        """The sign-in form, bound to a pre-session cookie (kept when the browser already has one)."""
        seed = request.cookies.get(SIGNIN_COOKIE)
        if not seed or len(seed) > 64:
            seed = secrets.token_urlsafe(24)
        response = web.render(request, "signin.html", session, status=status, problem=problem,
                              signin_token=web.signer.signin_token(seed))
        # SameSite=Strict: a post from another site does not carry it, so its form token cannot match
        web.set_cookie(request, response, SIGNIN_COOKIE, seed, max_age=86_400, path="/signin", samesite="strict")
        return response

    async def start_for(credential: str, replacing: Session | None) -> tuple[str, StoredSession] | None:
        """Check a credential and start its session in one write (so a revocation cannot slip between)."""
        now, lifetime = web.now(), web.session_lifetime
        link = None if credential.startswith(KEY_PREFIX) else web.signer.read_link(credential)
        if link is None and not credential.startswith(KEY_PREFIX):
            return None

        def work(con: duckdb.DuckDBPyConnection) -> tuple[str, StoredSession] | None:
            if link is not None:
                try:
                    redeem_link(con, link.link_id, link.user_id, issued_at=link.issued_at, now=now)
                except PermissionDeniedError:
                    return None
                made = start_session(con, "user", link.user_id, link_id=link.link_id, now=now, lifetime=lifetime)
            else:
                key = verify_key(con, credential)
                if key is None or key.role == "write" or (key.role == "user" and not key.user_id):
                    return None
                if key.role == "admin":
                    made = start_session(con, "admin", None, key_id=key.key_id, now=now, lifetime=lifetime)
                else:
                    made = start_session(con, "user", key.user_id, key_id=key.key_id, now=now, lifetime=lifetime)
            if replacing is not None:
                end_session(con, replacing.session_hash, now=now, why="signed in again")
            return made

        return await web.api.write(work)

    @router.get("/signin")
    async def signin_form(request: Request) -> Response:
        session = await web.session(request)
        if "token" in request.query_params:
            # credentials never travel in URLs (they end up in logs, history and Referer headers)
            return signin_page(
                request, session, status=400,
                problem="Sign-in tokens are never taken from the address. Links now put the token after '#'; "
                        "ask for a new link, or paste the token below.",
            )
        return signin_page(request, session)

    @router.post("/signin")
    async def signin(request: Request) -> Response:
        form = await read_form(request)
        if not web.signer.signin_check(request.cookies.get(SIGNIN_COOKIE), form.get("signin_token")):
            return signin_page(request, None, status=403,
                               problem="This sign-in form expired or came from another site; try again here.")
        credential = form.get("credential", "").strip()
        made = None
        if 0 < len(credential) <= MAX_CREDENTIAL:
            made = await start_for(credential, await web.session(request))
        if made is None:
            return signin_page(
                request, None, status=401,
                problem="That token or key was not recognised, or the link was already used or revoked "
                        "(a link signs in once; a write key cannot sign in). Check it or ask for a new link.",
            )
        token, stored = made
        response = RedirectResponse("/admin" if stored.kind == "admin" else "/", status_code=303)
        web.set_cookie(request, response, COOKIE, token, max_age=int(web.session_lifetime.total_seconds()))
        web.delete_cookie(request, response, SIGNIN_COOKIE, path="/signin")
        return response

    @router.post("/signout")
    async def signout(request: Request) -> Response:
        session = await web.session(request)
        if session is None:
            # nothing to end; the cookie is left alone (a post from another site does not carry it,
            # and must not be able to delete it either)
            return RedirectResponse("/signin", status_code=303)
        form = await read_form(request)
        everywhere = form.get("everywhere", "")
        try:
            session.check_form(form.get("form_token"))
            if everywhere not in ("", "1"):
                raise UsageError("everywhere is 1 (sign out on every device) or absent")
        except UsageError as exc:
            return web.error(request, session, 403 if isinstance(exc, PermissionDeniedError) else 400, str(exc))
        now = web.now()

        def work(con: duckdb.DuckDBPyConnection) -> None:
            if not everywhere:
                end_session(con, session.session_hash, now=now)
            elif session.is_admin and session.key_id:
                end_sessions(con, key_id=session.key_id, now=now, why="signed out everywhere")
            elif session.user_id:
                sign_out_user(con, session.user_id, now=now)

        await web.api.write(work)
        response = RedirectResponse("/signin", status_code=303)
        web.delete_cookie(request, response, COOKIE)
        return response

    @router.get("/")
    async def feed_page(request: Request, date: str | None = None, user: str | None = None) -> Response:
        session = await web.session(request)
        if session is None:
            return web.to_signin(request)
        user_id = session.user_id if not session.is_admin else user
        if user_id is None:
            return RedirectResponse("/admin", status_code=303)
        if not session.may_see(user_id):
            return web.error(request, session, 404, "There is nothing here for you.")
        try:
            wanted = None if date is None else iso_day(date)
        except UsageError as exc:
            return web.error(request, session, 400, str(exc))
        now = web.now()

        def work(con: duckdb.DuckDBPyConnection) -> tuple[dt.date, Day, bool]:
            today = today_for(con, user_id, now)
            day = day_feed(con, user_id, wanted or today)
            if wanted is None and not day.cards:  # nothing today yet: open on the latest day that has some
                latest = latest_day(con, user_id, today)
                if latest is not None:
                    return today, day_feed(con, user_id, latest), True
            return today, day, False

        today, day, latest = await web.read(work)
        viewing_as = user if session.is_admin else None
        return web.render(request, "feed.html", session, day=day, today=today, viewing_as=viewing_as, latest=latest)

    @router.get("/deliverables/{deliverable_id}")
    async def deliverable_page(request: Request, deliverable_id: str) -> Response:
        session = await web.session(request)
        if session is None:
            return web.to_signin(request)
        found = await _own_card(web, session, deliverable_id)
        if found is None:
            return web.error(request, session, 404, f"No deliverable {deliverable_id[:MAX_ID]} for you.")
        return web.render(request, "deliverable.html", session, card=found)

    @router.post("/deliverables/{deliverable_id}/thumbs")
    async def thumbs(request: Request, deliverable_id: str) -> Response:
        session = await web.session(request)
        if session is None:
            return web.to_signin(request)
        form = await read_form(request)
        try:
            session.check_form(form.get("form_token"))
            thumb = form.get("thumb")
            if thumb not in ("up", "down"):
                raise UsageError("a thumb is 'up' or 'down'")
            item_id = form.get("item_id") or None
        except UsageError as exc:
            return web.error(request, session, 403 if isinstance(exc, PermissionDeniedError) else 400, str(exc))
        found = await _own_card(web, session, deliverable_id)
        if found is None:
            return web.error(request, session, 404, f"No deliverable {deliverable_id[:MAX_ID]} for you.")
        if item_id is not None and item_id not in {i.item_id for i in found.items}:
            return web.error(request, session, 400, f"item {item_id[:MAX_ID]!r} is not part of this deliverable")
        try:
            body = Feedback(items=[ItemThumb(item_id=item_id, thumb=thumb)]) if item_id else Feedback(thumb=thumb)
        except ValidationError as exc:
            return web.error(request, session, 400, f"this thumb cannot be recorded: {exc.errors()[0]['msg']}")
        now = web.now()
        receipt = await web.api.write(lambda con: record_feedback(con, deliverable_id, body, source="web", now=now))
        if receipt.excluded or receipt.thumb == "down":  # a cart turned down is not ordered; an item leaves carts
            settings = web.api.settings
            await run_in_threadpool(trim_pending, web.api.store, settings, [receipt], now=now)
        if request.headers.get("hx-request"):
            updated = await _own_card(web, session, deliverable_id)
            assert updated is not None
            item = next((i for i in updated.items if i.item_id == item_id), None) if item_id else None
            if item is not None and updated.status == found.status:
                return web.fragment("macros.html", "item_thumbs", session, updated, item)
            if item_id or updated.status != found.status:
                # The item left a cart waiting for approval, or "Not for me" rejected the cart: the
                # whole card changed (its lines, total, status, the link to approve), so the whole
                # card is swapped, not only the buttons.
                whole = web.fragment("macros.html", "card_view", session, updated)
                whole.headers["HX-Retarget"] = "closest article.card"
                whole.headers["HX-Reswap"] = "outerHTML"
                return whole
            return web.fragment("macros.html", "card_thumbs", session, updated)
        return RedirectResponse(safe_next(form.get("next")), status_code=303)

    return router


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
