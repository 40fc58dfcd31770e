"""The web page's parts that need no browser: signed links and cookies, the secret, form parsing."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest

from orchestrion.config import load_settings
from orchestrion.errors import PermissionDeniedError, UsageError
from orchestrion.policies import Policy
from orchestrion.web.context import safe_next
from orchestrion.web.controls import parse_overrides
from orchestrion.web.session import Session, Signer, web_secret


def test_a_link_signs_in_its_user_until_it_expires() -> None:
    signer = Signer("secret", link_days=1)
    token = signer.link_token("alice")
    assert signer.read_link(token) == "alice"
    assert Signer("another secret", link_days=1).read_link(token) is None
    assert signer.read_link(token[:-2] + ("AA" if token[-2:] != "AA" else "BB")) is None
    signer.link_seconds = 0
    time.sleep(1.1)  # itsdangerous timestamps have one-second resolution
    assert signer.read_link(token) is None


def test_a_session_cookie_cannot_be_forged_or_turned_into_admin() -> None:
    signer = Signer("secret", link_days=1)
    cookie = signer.session_cookie(Session.user("bob"))
    session = signer.read_session(cookie)
    assert session is not None and session.user_id == "bob" and not session.is_admin
    assert not session.may_see("alice") and session.may_see("bob")
    payload, _, signature = cookie.partition(".")
    tampered = payload[:-1] + ("A" if payload[-1] != "A" else "B")
    assert signer.read_session(f"{tampered}.{signature}") is None
    assert signer.read_session("not a cookie") is None
    assert signer.read_session(None) is None
    with pytest.raises(PermissionDeniedError):
        session.check_form("a guess")
    session.check_form(session.form_token)


def test_the_secret_is_made_once_and_kept_private(tmp_path: Path) -> None:
    settings = load_settings({"ORCHESTRION_HOME": str(tmp_path)})
    first = web_secret(settings)
    assert web_secret(settings) == first and len(first) >= 32
    assert stat.S_IMODE((tmp_path / ".web-secret").stat().st_mode) == 0o600
    assert web_secret(load_settings({"ORCHESTRION_HOME": str(tmp_path), "ORCHESTRION_WEB_SECRET": "s"})) == "s"


def test_after_a_form_only_local_paths_are_followed() -> None:
    assert safe_next("/?date=2024-01-02#d_x") == "/?date=2024-01-02#d_x"
    for bad in ("https://evil.example/", "//evil.example/", "/\\evil.example", None, ""):
        assert safe_next(bad) == "/"


def test_the_control_panel_keeps_only_what_is_stricter_than_the_operator() -> None:
    operator = Policy()
    form = {"tier_order": ["approve"], "tier_outbox": ["approve"], "max_order_amount": ["20"],
            "quiet_start": [operator.quiet_start], "quiet_end": [operator.quiet_end], "timezone": ["Europe/Paris"],
            "excluded_templates": ["playlist", "playlist"], "paused": ["on"]}
    overrides, paused, zone = parse_overrides(form, operator)
    assert overrides.tiers == {"outbox": "approve"}
    assert overrides.max_order_amount == 20.0 and overrides.quiet_start is None
    assert overrides.excluded_templates == ("playlist",) and paused and zone == "Europe/Paris"
    with pytest.raises(UsageError, match="not a number"):
        parse_overrides({**form, "max_order_amount": ["lots"]}, operator)
    with pytest.raises(UsageError, match="Mars/Olympus"):
        parse_overrides({**form, "timezone": ["Mars/Olympus"]}, operator)
    with pytest.raises(UsageError, match="quiet_start"):
        parse_overrides({**form, "quiet_start": ["25:99"]}, operator)
