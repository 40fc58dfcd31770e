"""The web page for people: today's feed with thumbs, approvals, the control panel, and the admin view.

Server-rendered HTML (Jinja2) with htmx for in-place updates; every page reads without
JavaScript and every form also works as a plain POST. :func:`mount_web` adds the pages at ``/``
next to the API under ``/v1``; sessions are stored and checked on every request (see
:mod:`orchestrion.web.session`), and every page carries the headers of :mod:`orchestrion.web.headers`.
"""

from __future__ import annotations

import inspect
from typing import Final

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from orchestrion.api.context import ApiContext
from orchestrion.web import admin, panel, routes
from orchestrion.web.context import WebContext, static_folder
from orchestrion.web.headers import SecurityHeaders
from orchestrion.web.session import Signer

__all__ = ["Signer", "mount_web"]


def mount_web(app: FastAPI, api: ApiContext) -> WebContext:
    """Add the web pages and their static files to ``app``."""
    web = WebContext.build(api)
    app.include_router(routes.build_router(web))
    app.include_router(panel.build_router(web))
    app.include_router(admin.build_router(web))
    app.mount("/static", StaticFiles(directory=static_folder()), name="static")
    app.add_middleware(SecurityHeaders)
    _pages_for_people(app, web)
    return web


_SAID: Final = {
    404: "There is no page at this address. The links in your deliverables and on your page lead to the right ones.",
    405: "This page cannot be used that way; open it from your page.",
}


def _pages_for_people(app: FastAPI, web: WebContext) -> None:
    """A browser that asks for an address outside the API (a mistyped link, an old bookmark) gets
    the web page's own "Not found" page, not the API's JSON refusal; API clients, and every path
    under ``/v1``, keep the JSON."""
    api_answer = app.exception_handlers[HTTPException]

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        person = "text/html" in request.headers.get("accept", "")
        if not person or request.url.path.startswith(("/v1/", "/static/")) or request.url.path == "/v1":
            answer = api_answer(request, exc)
            return await answer if inspect.isawaitable(answer) else answer
        session = await web.session(request)
        message = _SAID.get(exc.status_code, str(exc.detail))
        page = web.error(request, session, exc.status_code, message)
        for name, value in (exc.headers or {}).items():
            page.headers[name] = value
        return page

    app.add_exception_handler(HTTPException, on_http_error)
