"""What every web route needs: the API context, the signer, the templates, and small request helpers."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb
import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from orchestrion.access.sessions import find_session, touch_session
from orchestrion.api.context import FIRST_DAY, LAST_DAY, ApiContext
from orchestrion.delivery.rendering import kind_words
from orchestrion.errors import UsageError
from orchestrion.ingest.users import timezone_of
from orchestrion.money import format_money
from orchestrion.web.session import COOKIE, Session, Signer

__all__ = ["WebContext", "form_lists", "iso_day", "read_form", "safe_next", "static_folder", "today_for"]

T = TypeVar("T")
MAX_COOKIE = 256
"""Longer session cookies are not ours (a real one is 43 characters); they are not looked up."""
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _folder(name: str) -> Path:
    return Path(str(resources.files("orchestrion.web") / name))


def static_folder() -> Path:
    return _folder("static")


_ACTIONS: Final = {"place_order": "order", "publish": "delivery"}
"""What a waiting action is called on the page (the tool's name is not a word people use)."""
_TIERS: Final = {
    "approve": "waits for your approval",
    "notify": "runs on its own unless you cancel it",
    "suggest": "a suggestion",
    "auto": "runs on its own",
}
_OUTCOMES: Final = {
    "executed": "Done",
    "rejected": "You turned it down",
    "cancelled": "Cancelled",
    "suggested": "Left as a suggestion",
    "refused": "Not done: your limits did not allow it",
    "failed": "Could not be done",
    "waiting": "Waiting for you",
}


def _environment(locale: str | None = None) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_folder("templates")),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )

    def money(value: object, currency: str | None = None) -> str:
        return format_money(value, currency, locale) if isinstance(value, int | float) else ""

    env.filters["money"] = money
    env.filters["action_words"] = lambda action: _ACTIONS.get(action, str(action).replace("_", " "))
    env.filters["tier_words"] = lambda tier: _TIERS.get(tier, str(tier))
    env.filters["kind_words"] = kind_words
    env.filters["outcome_words"] = lambda status: _OUTCOMES.get(status, str(status).replace("_", " "))
    return env


def safe_next(value: str | None, default: str = "/") -> str:
    """A local path to go back to after a form post (never another site)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return default


def iso_day(value: str, name: str = "date") -> date:
    """A day written YYYY-MM-DD, strictly (``0``, ``20240102`` or ``2024-W01-1`` are refused)."""
    if not _DAY.fullmatch(value):
        raise UsageError(f"{name} {value[:40]!r} is not a date written YYYY-MM-DD")
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise UsageError(f"{name} {value!r} is not a date that exists; write it YYYY-MM-DD") from exc
    if not FIRST_DAY <= day <= LAST_DAY:
        raise UsageError(f"{name} {value!r} is outside {FIRST_DAY.isoformat()} to {LAST_DAY.isoformat()}")
    return day


def today_for(con: duckdb.DuckDBPyConnection, user_id: str, now: datetime) -> date:
    """The date at ``now`` (UTC) in the user's time zone (``users.timezone``, UTC when unknown)."""
    name = timezone_of(con, user_id)
    try:
        zone = ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError, OSError):
        zone = ZoneInfo("UTC")
    return now.replace(tzinfo=ZoneInfo("UTC")).astimezone(zone).date()


@dataclass
class WebContext:
    """The app's store, writer and key checker, the signer and the templates."""

    api: ApiContext
    templates: jinja2.Environment
    _signer: Signer | None = None

    @classmethod
    def build(cls, api: ApiContext) -> WebContext:
        return cls(api, _environment(api.settings.locale))

    @property
    def signer(self) -> Signer:
        """Made on first use, so that an app nobody signs in to never writes HOME/.web-secret."""
        if self._signer is None:
            self._signer = Signer.from_settings(self.api.settings)
        return self._signer

    @property
    def session_lifetime(self) -> timedelta:
        return timedelta(hours=self.api.settings.web_session_hours)

    async def session(self, request: Request) -> Session | None:
        """The live session of the request's cookie, looked up in the store on every request."""
        token = request.cookies.get(COOKIE)
        if not token or len(token) > MAX_COOKIE:
            return None
        now = self.now()
        idle = timedelta(hours=self.api.settings.web_session_idle_hours)
        found = await self.read(lambda con: find_session(con, token, now=now, idle=idle))
        if found is None:
            return None
        # idle expiry counts from the last request; refreshing it at most every few minutes keeps
        # page views from being writes
        if now - found.seen_at > min(idle / 20, timedelta(minutes=5)):
            hashed = found.session_hash
            await self.api.write(lambda con: touch_session(con, hashed, now=now))
        return Session.of(found)

    def is_https(self, request: Request) -> bool:
        """Served over https: directly, or behind a trusted proxy that says so in X-Forwarded-Proto."""
        if request.url.scheme == "https":
            return True
        proxies = self.api.settings.web_trusted_proxies
        peer = request.client.host if request.client else None
        if not proxies or peer is None:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        if not any(address in ipaddress.ip_network(p, strict=False) for p in proxies):
            return False
        # the proxy nearest to us appends last
        forwarded = request.headers.get("x-forwarded-proto", "").split(",")[-1].strip().lower()
        return forwarded == "https"

    def set_cookie(self, request: Request, response: Response, name: str, value: str, *, max_age: int,
                   path: str = "/", samesite: str = "lax") -> None:
        response.set_cookie(name, value, max_age=max_age, httponly=True, samesite=samesite,  # type: ignore[arg-type]
                            secure=self.is_https(request), path=path)

    def delete_cookie(self, request: Request, response: Response, name: str, *, path: str = "/") -> None:
        response.delete_cookie(name, path=path, httponly=True, samesite="lax", secure=self.is_https(request))

    async def read(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """Run a read on its own cursor in a worker thread."""

        def run() -> T:
            cursor = self.api.store.cursor()
            try:
                return work(cursor)
            finally:
                cursor.close()

        return await run_in_threadpool(run)

    def now(self) -> datetime:
        return self.api.clock()

    def render(
        self, request: Request, template: str, session: Session | None, *, status: int = 200, **values: Any
    ) -> HTMLResponse:
        html = self.templates.get_template(template).render(
            request_path=request.url.path,
            here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
            session=session,
            **values,
        )
        return HTMLResponse(html, status_code=status)

    def fragment(self, template: str, macro: str, session: Session, *args: Any) -> HTMLResponse:
        """One macro of a template, for htmx to swap in place."""
        module = self.templates.get_template(template).make_module({"session": session})
        return HTMLResponse(str(getattr(module, macro)(*args)))

    def error(self, request: Request, session: Session | None, status: int, message: str) -> HTMLResponse:
        return self.render(request, "error.html", session, status=status, status_code=status, message=message)

    def to_signin(self, request: Request) -> Response:
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": "/signin"})
        return RedirectResponse("/signin", status_code=303)


async def read_form(request: Request) -> Mapping[str, str]:
    """An urlencoded form body as a mapping (the last value wins for repeated names)."""
    body = await request.body()  # within the forms' limit: api.bodies.BodyLimit refused more
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


async def form_lists(request: Request) -> dict[str, list[str]]:
    """Every value of every name in an urlencoded form body (for multi-select fields)."""
    values: dict[str, list[str]] = {}
    for name, value in parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True):
        values.setdefault(name, []).append(value)
    return values
