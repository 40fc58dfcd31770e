"""The web page for people: today's feed with thumbs, approvals, the control panel, and the admin view.

Server-rendered HTML (Jinja2) with htmx for in-place updates; every page reads without
JavaScript and every form also works as a plain POST. :func:`mount_web` adds the pages at ``/``
next to the API under ``/v1``; sessions are stored and checked on every request (see
:mod:`orchestrion.web.session`), and every page carries the headers of :mod:`orchestrion.web.headers`.
"""

from __future__ import annotations

from fastapi import FastAPI
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
    return web
