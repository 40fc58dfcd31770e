"""The HTTP API: events, Segment, items, keys and stats over one group-commit writer.

``create_api(store, settings)`` builds the API for an open store; :func:`orchestrion.app.create_app`
adds the web pages to it and ``orchestrion serve`` (:mod:`orchestrion.app`) runs it under uvicorn.
Everything the routes need is passed in, so tests and benchmarks can build as many apps as they like.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Final

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrion import __version__
from orchestrion.api import admin, bodies, deliverables, feedback, ingest
from orchestrion.api.auth import Authenticator
from orchestrion.api.context import ApiContext
from orchestrion.api.receipts import ApiError, refusal_response
from orchestrion.config import Settings
from orchestrion.ingest.writer import Writer
from orchestrion.store import Store, utcnow

__all__ = ["create_api"]

DESCRIPTION = """\
Every 200 is a **receipt** (`accepted`, `duplicates`, `rejected`, `errors` by index), sent only
after the transaction holding the events committed. Every other status is a **refusal**
(`stored: false`): nothing from that body was stored; fix it (4xx) or resend it (503).
"""


class _FormsAreJson:
    """``curl -d '{…}'`` labels its body a form (``application/x-www-form-urlencoded``). Every body
    the API takes (under ``/v1/``) is JSON, so there a form's label is read as JSON — as the event
    and feedback routes always read their bodies — instead of refusing a well-formed request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith("/v1/"):
            headers = list(scope.get("headers") or [])
            form = [k == b"content-type" and v.split(b";")[0].strip().lower() == _FORM for k, v in headers]
            if any(form):
                scope = {**scope, "headers": [(k, b"application/json" if f else v)
                                              for (k, v), f in zip(headers, form, strict=True)]}
        await self.app(scope, receive, send)


_FORM = b"application/x-www-form-urlencoded"

_BODY_REFUSALS: Final = {
    408: "The body took longer than BODY_TIMEOUT_S to arrive; nothing was stored.",
    413: "The body is over MAX_BODY_BYTES; nothing was stored.",
}


def _document_body_refusals(app: FastAPI) -> None:
    """Every API route that takes a body documents the refusals of :class:`~orchestrion.api.bodies.BodyLimit`,
    which answers them before the route runs (with the refusal model of the route's own 401)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        done = app.openapi_schema is not None
        schema = generate()
        if done:
            return schema
        for path, operations in schema.get("paths", {}).items():
            if not path.startswith("/v1/"):
                continue
            for method in ("post", "put", "patch", "delete"):
                responses = operations.get(method, {}).get("responses")
                if responses is None:
                    continue
                refusal = responses.get("401", {}).get("content")
                for status, description in _BODY_REFUSALS.items():
                    responses.setdefault(str(status), {"description": description, **({"content": refusal}
                                                                                        if refusal else {})})
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_api(
    store: Store,
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utcnow,
    pages: Callable[[FastAPI, ApiContext], object] | None = None,
) -> FastAPI:
    """The API over ``store``; its writer thread runs between the app's startup and shutdown.
    ``clock`` is what "now" is for the pages that ``pages`` mounts after the API's routes."""
    writer = Writer(store, max_events=settings.commit_max_events, max_delay_ms=settings.commit_max_delay_ms)
    ctx = ApiContext(store=store, settings=settings, writer=writer, auth=Authenticator(store), clock=clock)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx.auth.load()
        writer.start()
        try:
            yield
        finally:
            writer.close()

    # fastapi-offline serves Swagger UI's and ReDoc's assets from the package: /docs works offline
    from fastapi_offline import FastAPIOffline

    # no slash redirects: a 307 to the same path without it is built from the request's Host header,
    # and sends a DELETE of /v1/keys/%2F to /v1/keys; a wrong address is a plain 404
    app = FastAPIOffline(
        title="orchestrion", version=__version__, description=DESCRIPTION, lifespan=lifespan, redirect_slashes=False
    )
    app.state.ctx = ctx
    app.add_middleware(_FormsAreJson)
    # outermost: a key is checked and a body read (within limits) before any route reads it
    app.add_middleware(bodies.BodyLimit, limit=settings.max_body_bytes, authenticate=ctx.auth.authenticate,
                       seconds=settings.body_timeout_s)
    app.include_router(ingest.build_router(ctx))
    app.include_router(admin.build_router(ctx))
    app.include_router(feedback.build_router(ctx))
    app.include_router(deliverables.build_router(ctx))

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return refusal_response(exc.status, exc.detail, exc.headers)

    async def on_invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        kind = request.headers.get("content-type", "")
        if "json" not in kind and any(tuple(e["loc"]) == ("body",) for e in exc.errors()):
            # curl -d sends a form: the body never reached the JSON parser.
            problems = (
                f"body: send a JSON object with the header Content-Type: application/json "
                f"(this request's content type is {kind or 'missing'})"
            )
        return refusal_response(422, f"invalid request: {problems}")

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # Allow names every method of the path, not the first route's
            methods = {m for route in app.router.routes if isinstance(route, Route)
                       and route.matches(request.scope)[0] == Match.PARTIAL for m in route.methods or ()}
            headers["Allow"] = ", ".join(sorted(methods))
        return refusal_response(exc.status_code, str(exc.detail), headers)

    _document_body_refusals(app)
    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(HTTPException, on_http_error)
    if pages is not None:  # the web page for people at / (after the API routes, which all live under /v1)
        pages(app, ctx)
    return app
