"""Who is looking at the page: sign-in links, the session cookie, and the tokens that forms carry.

A person signs in with a link made by ``orchestrion users link USER`` (a token signed with the
web secret, valid for ``web_link_days``, usable once), with a ``user`` API key of their own, or —
for the operator — with an ``admin`` API key. Credentials travel only in POST bodies: a link is
``/signin#token=…`` (a fragment never reaches the server or its logs) and a small script on the
sign-in page posts it.

The session is a random token in a cookie (HttpOnly, SameSite=Lax, Secure over https), looked up
in the store on every request (see :mod:`orchestrion.access.sessions`), so signing out, revoking the key
or link it came from, or signing the user out everywhere ends it at once. Forms carry the
session's form token back; the sign-in form, which has no session yet, carries a token bound to a
pre-session cookie (double submit, signed): another site can make a browser post neither.

The secret comes from ``ORCHESTRION_WEB_SECRET`` (or ``web_secret`` in ``orchestrion.toml``);
when unset, one is generated once into ``HOME/.web-secret`` (mode 0600) and reused, so links
survive a restart.

>>> signer = Signer("s3cret", link_days=1)
>>> token, link_id = signer.link_token("alice")
>>> found = signer.read_link(token)
>>> (found.user_id, found.link_id == link_id)
('alice', True)
>>> seed = "random pre-session value"
>>> signer.signin_check(seed, signer.signin_token(seed))
True
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from itsdangerous import BadSignature, URLSafeTimedSerializer

from orchestrion.access.sessions import Kind, StoredSession
from orchestrion.config import Settings
from orchestrion.errors import PermissionDeniedError

__all__ = ["COOKIE", "SIGNIN_COOKIE", "Link", "Session", "Signer", "same_token", "web_secret"]

COOKIE: Final = "orchestrion_session"
SIGNIN_COOKIE: Final = "orchestrion_signin"
SECRET_FILE: Final = ".web-secret"


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


def same_token(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a submitted token; any text (non-ASCII included) is merely wrong."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8", "replace"))


@dataclass(frozen=True)
class Session:
    """A signed-in person: a user (their own data only) or the admin (everyone's)."""

    kind: Kind
    user_id: str | None
    form_token: str
    session_hash: str
    key_id: str | None = None

    @classmethod
    def of(cls, stored: StoredSession) -> Session:
        return cls(stored.kind, stored.user_id, stored.form_token, stored.session_hash, stored.key_id)

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
        if not same_token(token, self.form_token):
            raise PermissionDeniedError("this form is stale or came from another site; reload the page and try again")


@dataclass(frozen=True)
class Link:
    """What a valid sign-in link says: who, which link (to use it once), and when it was made (naive UTC)."""

    user_id: str
    link_id: str
    issued_at: datetime


class Signer:
    """Signs and reads sign-in link tokens, and binds the sign-in form to its pre-session cookie."""

    def __init__(self, secret: str, *, link_days: int) -> None:
        self._links = URLSafeTimedSerializer(secret, salt="orchestrion-signin-link")
        self._form_key = hashlib.sha256(("orchestrion-signin-form:" + secret).encode()).digest()
        self.link_seconds = link_days * 86_400

    @classmethod
    def from_settings(cls, settings: Settings) -> Signer:
        return cls(web_secret(settings), link_days=settings.web_link_days)

    def link_token(self, user_id: str) -> tuple[str, str]:
        """A token that signs ``user_id`` in once until it expires, and its link id (to revoke it)."""
        link_id = secrets.token_hex(8)
        return self._links.dumps({"u": user_id, "n": link_id}), link_id

    def read_link(self, token: str) -> Link | None:
        """What a link token says, or None for a forged, mangled, old-format or expired one."""
        try:
            data, issued = self._links.loads(token, max_age=self.link_seconds, return_timestamp=True)
        except (BadSignature, UnicodeError):
            return None
        if not isinstance(data, dict):
            return None
        user, link_id = data.get("u"), data.get("n")
        if not (isinstance(user, str) and user and isinstance(link_id, str) and link_id):
            return None
        return Link(user, link_id, issued.astimezone(UTC).replace(tzinfo=None))

    def signin_token(self, seed: str) -> str:
        """The sign-in form's token for the pre-session cookie ``seed``."""
        return hmac.new(self._form_key, seed.encode("utf-8", "replace"), "sha256").hexdigest()

    def signin_check(self, seed: str | None, token: str | None) -> bool:
        """Whether a sign-in post carries the token of the pre-session cookie it came with."""
        return bool(seed) and same_token(token, self.signin_token(seed or ""))
