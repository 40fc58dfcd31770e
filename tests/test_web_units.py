"""The web page's parts that need no browser: signed links, stored sessions (with a fixed clock),
form tokens, the secret, form parsing."""

from __future__ import annotations

import stat
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from orchestrion.access.keys import create_key, revoke_key
from orchestrion.access.sessions import (
    end_session,
    end_sessions,
    find_session,
    redeem_link,
    revoke_link,
    sign_out_user,
    start_session,
    touch_session,
)
from orchestrion.config import load_settings
from orchestrion.errors import PermissionDeniedError, UsageError
from orchestrion.store import Store
from orchestrion.tools.policies import Policy
from orchestrion.web.context import iso_day, safe_next
from orchestrion.web.controls import parse_overrides
from orchestrion.web.session import Session, Signer, web_secret


def test_a_link_signs_in_its_user_until_it_expires() -> None:
    signer = Signer("secret", link_days=1)
    token, link_id = signer.link_token("alice")
    link = signer.read_link(token)
    assert link is not None and (link.user_id, link.link_id) == ("alice", link_id)
    assert signer.link_token("alice")[1] != link_id  # every link has its own id (to use it once)
    assert Signer("another secret", link_days=1).read_link(token) is None
    assert signer.read_link(token[:-2] + ("AA" if token[-2:] != "AA" else "BB")) is None
    assert signer.read_link("ünïcode ☃") is None
    signer.link_seconds = -1  # itsdangerous: expired once its age exceeds max_age; no need to wait
    assert signer.read_link(token) is None


def test_form_tokens_are_compared_safely_whatever_is_sent() -> None:
    session = Session("user", "bob", "the-token", "hash")
    assert not session.may_see("alice") and session.may_see("bob")
    for guess in ("a guess", "", None, "thé-token", "\x00", "☃" * 1000):
        with pytest.raises(PermissionDeniedError):
            session.check_form(guess)
    session.check_form("the-token")
    signer = Signer("secret", link_days=1)
    assert signer.signin_check("seed", signer.signin_token("seed"))
    assert not signer.signin_check("other seed", signer.signin_token("seed"))
    assert not signer.signin_check(None, signer.signin_token("seed"))
    assert not signer.signin_check("seed", "é" + signer.signin_token("seed")[1:])


T0 = datetime(2026, 3, 1, 9, 0)
LIFE = timedelta(days=7)
IDLE = timedelta(hours=12)


def test_a_session_lasts_its_lifetime_and_ends_when_idle(store: Store) -> None:
    con = store.con
    token, made = start_session(con, "user", "alice", now=T0, lifetime=LIFE)
    assert len(token) >= 40 and token not in str(con.execute("SELECT * FROM web_sessions").fetchall())
    assert find_session(con, token, now=T0 + timedelta(hours=11), idle=IDLE) == made
    assert find_session(con, token, now=T0 + timedelta(hours=13), idle=IDLE) is None  # idle
    for hours in range(11, 7 * 24, 11):  # used every 11 hours: alive until the lifetime ends
        now = T0 + timedelta(hours=hours)
        assert find_session(con, token, now=now, idle=IDLE) is not None, hours
        touch_session(con, made.session_hash, now=now)
    assert find_session(con, token, now=T0 + LIFE, idle=IDLE) is None
    assert find_session(con, token + "x", now=T0, idle=IDLE) is None


def test_sessions_end_with_their_key_link_user_or_sign_out(store: Store) -> None:
    con = store.con
    key = create_key(con, "user", user_id="alice", now=T0)
    by_key, _ = start_session(con, "user", "alice", key_id=key.info.key_id, now=T0, lifetime=LIFE)
    by_link, _ = start_session(con, "user", "alice", link_id="l1", now=T0, lifetime=LIFE)
    other, other_made = start_session(con, "user", "bob", link_id="l2", now=T0, lifetime=LIFE)
    admin, _ = start_session(con, "admin", None, key_id="kadmin", now=T0, lifetime=LIFE)

    def live(token: str) -> bool:
        return find_session(con, token, now=T0 + timedelta(minutes=1), idle=IDLE) is not None

    revoke_key(con, key.info.key_id, now=T0)
    assert not live(by_key) and live(by_link) and live(other) and live(admin)
    assert revoke_link(con, "l1", now=T0) == 1
    assert not live(by_link) and live(other)
    end_session(con, other_made.session_hash, now=T0)
    assert not live(other) and live(admin)
    assert end_sessions(con, key_id="kadmin", kind="admin", now=T0, why="signed out everywhere") == 1
    assert not live(admin)


def test_a_link_signs_in_once_and_not_after_its_user_signed_out(store: Store) -> None:
    con = store.con
    redeem_link(con, "l1", "alice", issued_at=T0, now=T0 + timedelta(minutes=1))
    with pytest.raises(PermissionDeniedError, match="already used"):
        redeem_link(con, "l1", "alice", issued_at=T0, now=T0 + timedelta(minutes=2))
    revoke_link(con, "l2", now=T0)  # revoked before it was ever used
    with pytest.raises(PermissionDeniedError):
        redeem_link(con, "l2", "alice", issued_at=T0, now=T0 + timedelta(minutes=2))
    token, _ = start_session(con, "user", "alice", link_id="l3", now=T0, lifetime=LIFE)
    assert sign_out_user(con, "alice", now=T0 + timedelta(hours=1)) == 1
    assert find_session(con, token, now=T0 + timedelta(hours=1), idle=IDLE) is None
    with pytest.raises(PermissionDeniedError):  # made before the sign-out: refused
        redeem_link(con, "l4", "alice", issued_at=T0 + timedelta(minutes=30), now=T0 + timedelta(hours=2))
    redeem_link(con, "l5", "alice", issued_at=T0 + timedelta(hours=1, seconds=1), now=T0 + timedelta(hours=2))
    redeem_link(con, "l6", "bob", issued_at=T0, now=T0 + timedelta(hours=2))  # others are not affected


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
    # above the operator's own it would do nothing, though the page showed it as the person's
    with pytest.raises(UsageError, match=r"at most the operator's £150\.00"):
        parse_overrides({**form, "max_order_amount": ["1000"]}, operator)
    assert parse_overrides({**form, "max_monthly_spend": ["400"]}, operator)[0].max_monthly_spend == 400.0
    with pytest.raises(UsageError, match="Mars/Olympus"):
        parse_overrides({**form, "timezone": ["Mars/Olympus"]}, operator)
    with pytest.raises(UsageError, match="quiet_start"):
        parse_overrides({**form, "quiet_start": ["25:99"]}, operator)


def test_a_day_is_written_yyyy_mm_dd_and_nothing_else() -> None:
    assert iso_day("2024-02-29").isoformat() == "2024-02-29"
    for bad in ("0", "20240102", "2024-W01-1", "2024-02-30", "2024-1-2", " 2024-01-02", "２０２４-01-02", "x" * 70_000):
        with pytest.raises(UsageError, match="date"):
            iso_day(bad)
