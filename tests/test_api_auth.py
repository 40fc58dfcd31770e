"""API keys: the CLI, bearer and Segment basic auth, roles, revocation, and the loopback rule."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx

from launcher import cli, serve
from orchestrion.access.keys import hash_key, list_keys

EVENTS = json.dumps([{"event_id": "e1", "user_id": "u1", "type": "play"}])


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def create_key(home: Path, role: str, env: dict[str, str] | None = None) -> str:
    result = cli(home, "keys", "create", "--role", role, env=env)
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("orc_"), result.stdout
    return key


def test_keys_from_the_cli_guard_every_write(tmp_path: Path) -> None:
    write_key = create_key(tmp_path, "write")
    admin_key = create_key(tmp_path, "admin")
    with serve(tmp_path) as server:
        url = server.url
        missing = httpx.post(url + "/v1/events", content=EVENTS, timeout=30)
        assert missing.status_code == 401
        assert "Bearer" in missing.headers["WWW-Authenticate"]
        assert "orchestrion keys create" in missing.json()["detail"]
        assert missing.json()["stored"] is False
        wrong = httpx.post(url + "/v1/events", content=EVENTS, headers=bearer(write_key + "x"), timeout=30)
        assert wrong.status_code == 401 and "unknown or revoked" in wrong.json()["detail"]
        garbled = httpx.post(url + "/v1/events", content=EVENTS,
                             headers={"Authorization": "Basic !!!"}, timeout=30)
        assert garbled.status_code == 401

        ok = httpx.post(url + "/v1/events", content=EVENTS, headers=bearer(write_key), timeout=30)
        assert ok.status_code == 200 and ok.json()["accepted"] == 1
        segment = httpx.post(url + "/v1/track", auth=(write_key, ""), timeout=30,
                             json={"userId": "u1", "event": "Played", "messageId": "m1"})
        assert segment.status_code == 200 and segment.json()["accepted"] == 1
        basic = base64.b64encode(f"{admin_key}:".encode()).decode()
        as_admin = httpx.post(url + "/v1/events", content=EVENTS, timeout=30,
                              headers={"Authorization": f"Basic {basic}"})
        assert as_admin.status_code == 200 and as_admin.json()["duplicates"] == 1

        assert httpx.get(url + "/v1/stats", headers=bearer(write_key), timeout=30).status_code == 403
        stats = httpx.get(url + "/v1/stats", headers=bearer(admin_key), timeout=30)
        assert stats.status_code == 200 and stats.json()["events"] == 2
        assert httpx.get(url + "/v1/health", timeout=30).json()["auth_required"] is True

        # While the server holds the database, the CLI manages keys through its API.
        admin_env = {"ORCHESTRION_API_KEY": admin_key}
        listed = cli(tmp_path, "keys", "list", env=admin_env)
        assert listed.returncode == 0 and listed.stdout.count("active") == 2, listed.stderr
        refused = cli(tmp_path, "keys", "list", env={"ORCHESTRION_API_KEY": ""})
        assert refused.returncode == 2 and "401" in refused.stderr
        # the fix it names is one that works (it said: create a write key, with an admin key)
        assert "stop the server and run `orchestrion keys create --role admin`" in refused.stderr
        key_id = write_key.split("_")[1]
        assert cli(tmp_path, "keys", "revoke", key_id, env=admin_env).returncode == 0
        revoked = httpx.post(url + "/v1/events", content=EVENTS, headers=bearer(write_key), timeout=30)
        assert revoked.status_code == 401
        newer = create_key(tmp_path, "write", env=admin_env)
        assert httpx.post(url + "/v1/events", content=EVENTS, headers=bearer(newer),
                          timeout=30).status_code == 200
        unknown = cli(tmp_path, "keys", "revoke", "nope", env=admin_env)
        assert unknown.returncode == 2 and "no API key" in unknown.stderr

    with server.open_store() as store:
        keys = {k.key_id: k for k in list_keys(store.con)}
        assert keys[key_id].revoked_at is not None and len(keys) == 3
        hashes = {row[0] for row in store.con.execute("SELECT key_hash FROM api_keys").fetchall()}
        assert hash_key(admin_key) in hashes and admin_key not in hashes  # only hashes are stored


def test_no_key_means_loopback_only_until_the_first_key(tmp_path: Path) -> None:
    public = cli(tmp_path, "serve", "--host", "0.0.0.0", "--port", "0")
    assert public.returncode == 2
    assert "refusing to listen on 0.0.0.0" in public.stderr and "keys create" in public.stderr
    with serve(tmp_path) as server:
        open_write = httpx.post(server.url + "/v1/events", content=EVENTS, timeout=30)
        assert open_write.status_code == 200
        first = create_key(tmp_path, "admin")  # through the running server, no key needed yet
        closed = httpx.post(server.url + "/v1/events", content=EVENTS, timeout=30)
        assert closed.status_code == 401
        assert httpx.post(server.url + "/v1/events", content=EVENTS, headers=bearer(first),
                          timeout=30).json()["duplicates"] == 1


def test_the_open_api_makes_an_admin_key_first_and_checks_a_user_key_user_id(tmp_path: Path) -> None:
    """While no key exists the API is open (loopback); a first key that is not an admin's would close
    it with nobody able to create keys through it. So the first must be the admin's; and a user
    key's user_id is checked as events' ids are (no control character, at most 256 characters)."""
    with serve(tmp_path) as server:
        for body in ({"role": "user", "user_id": "alice"}, {"role": "write"}):
            refused = httpx.post(server.url + "/v1/keys", json=body, timeout=30)
            assert refused.status_code == 400 and "first key must be the operator's admin key" in refused.json()[
                "detail"], refused.text
        assert httpx.get(server.url + "/v1/stats", timeout=30).status_code == 200  # still open: nothing stored
        admin = httpx.post(server.url + "/v1/keys", json={"role": "admin"}, timeout=30)
        assert admin.status_code == 201
        auth = {"Authorization": f"Bearer {admin.json()['key']}"}
        for bad in ("a\u0000b", "x" * 257):
            answer = httpx.post(server.url + "/v1/keys", json={"role": "user", "user_id": bad}, headers=auth,
                                timeout=30)
            assert answer.status_code == 422 and "user_id" in answer.json()["detail"], answer.text
        made = httpx.post(server.url + "/v1/keys", json={"role": "write"}, headers=auth, timeout=30)
        assert made.status_code == 201, made.text
    with server.open_store() as store:
        assert sorted(k.role for k in list_keys(store.con)) == ["admin", "write"]
