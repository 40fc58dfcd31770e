"""Security headers on every web page and static file.

``Content-Security-Policy: default-src 'self'`` (no inline script or style anywhere in the
templates; htmx is told not to inject its indicator style), ``frame-ancestors 'none'`` (and
``X-Frame-Options: DENY`` for older browsers) against clickjacking, ``nosniff``, and
``Referrer-Policy: no-referrer``. Pages are also ``Cache-Control: no-store``: they show one
person's data. The API under ``/v1`` answers JSON and keeps its own headers, plus ``nosniff``;
the interactive docs (``/docs``, ``/redoc``) load their scripts from a CDN and are left alone.
"""

from __future__ import annotations

from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["PAGE_HEADERS", "SecurityHeaders"]

PAGE_HEADERS: Final[tuple[tuple[bytes, bytes], ...]] = (
    (b"content-security-policy",
     b"default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
_NOT_PAGES: Final = ("/v1/", "/docs", "/redoc", "/openapi.json")


class SecurityHeaders:
    """ASGI middleware adding :data:`PAGE_HEADERS` to web responses (``nosniff`` to all)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        page = not path.startswith(_NOT_PAGES)
        static = path.startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                wanted = PAGE_HEADERS if page else ((b"x-content-type-options", b"nosniff"),)
                headers.extend(h for h in wanted if h[0] not in present)
                if page and not static and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
