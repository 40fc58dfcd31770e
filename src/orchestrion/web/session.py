"""Who is looking at the page: sign-in links, signed session cookies and form tokens.

A person signs in with a link made by ``orchestrion users link USER`` (a token signed with the
web secret, valid for ``web_link_days``), with a ``user`` API key of their own, or — for the
operator — with an ``admin`` API key. The session is then a signed cookie (HttpOnly,
SameSite=Lax) holding who they are and a random form token; every form carries that token back,
so another site cannot post forms in their name.

The secret comes from ``ORCHESTRION_WEB_SECRET`` (or ``web_secret`` in ``orchestrion.toml``);
when unset, one is generated once into ``HOME/.web-secret`` (mode 0600) and reused, so links
and sessions survive a restart.

>>> from orchestrion.config import Settings
>>> signer = Signer("s3cret", link_days=1)
>>> signer.read_link(signer.link_token("alice"))
'alice'
>>> session = Session.user("alice")
>>> signer.read_session(signer.session_cookie(session)) == session
True
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from itsdangerous import BadSignature, URLSafeTimedSerializer

from orchestrion.config import Settings
from orchestrion.errors import PermissionDeniedError

__all__ = ["COOKIE", "Session", "Signer", "web_secret"]

COOKIE: Final = "orchestrion_session"
SESSION_DAYS: Final = 30
SECRET_FILE: Final = ".web-secret"

Kind = Literal["user", "admin"]


def web_secret(settings: Settings) -> str:
    """The configured secret, or the one kept in ``HOME/.web-secret`` (created on first use)."""
    if settings.web_secret:
        return settings.web_secret
    path = Path(settings.home) / SECRET_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    # O_EXCL: two processes creating it at once keep the first one's secret
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return secret


@dataclass(frozen=True)
class Session:
    """A signed-in person: a user (their own data only) or the admin (everyone's)."""

    kind: Kind
    user_id: str | None
    form_token: str = field(default_factory=lambda: secrets.token_urlsafe(18))

    @classmethod
    def user(cls, user_id: str) -> Session:
        return cls("user", user_id)

    @classmethod
    def admin(cls) -> Session:
        return cls("admin", None)

    @property
    def is_admin(self) -> bool:
        return self.kind == "admin"

    @property
    def label(self) -> str:
        return "admin" if self.is_admin else str(self.user_id)

    def may_see(self, user_id: str) -> bool:
        """Admins see everyone; a user only themselves."""
        return self.is_admin or self.user_id == user_id

    def check_form(self, token: str | None) -> None:
        """Refuse a form that does not carry this session's token (a cross-site post)."""
        if token is None or not hmac.compare_digest(token, self.form_token):
            raise PermissionDeniedError("this form is stale or came from another site; reload the page and try again")


class Signer:
    """Signs and reads sign-in link tokens and session cookies with one secret."""

    def __init__(self, secret: str, *, link_days: int) -> None:
        self._links = URLSafeTimedSerializer(secret, salt="orchestrion-signin-link")
        self._sessions = URLSafeTimedSerializer(secret, salt="orchestrion-session")
        self.link_seconds = link_days * 86_400

    @classmethod
    def from_settings(cls, settings: Settings) -> Signer:
        return cls(web_secret(settings), link_days=settings.web_link_days)

    def link_token(self, user_id: str) -> str:
        """A token that signs ``user_id`` in until it expires."""
        return self._links.dumps({"u": user_id})

    def read_link(self, token: str) -> str | None:
        """The user a link token signs in, or None for a forged, mangled or expired one."""
        try:
            data = self._links.loads(token, max_age=self.link_seconds)
        except BadSignature:
            return None
        user = data.get("u") if isinstance(data, dict) else None
        return user if isinstance(user, str) and user else None

    def session_cookie(self, session: Session) -> str:
        return self._sessions.dumps({"k": session.kind, "u": session.user_id, "f": session.form_token})

    def read_session(self, cookie: str | None) -> Session | None:
        """The session in a cookie, or None for a missing, forged or expired one."""
        if not cookie:
            return None
        try:
            data = self._sessions.loads(cookie, max_age=SESSION_DAYS * 86_400)
        except BadSignature:
            return None
        if not isinstance(data, dict) or data.get("k") not in ("user", "admin") or not isinstance(data.get("f"), str):
            return None
        user = data.get("u")
        if data["k"] == "user" and not (isinstance(user, str) and user):
            return None
        return Session(data["k"], user if data["k"] == "user" else None, data["f"])
