"""What a stranger can make the server do before it knows who they are, and how mistakes are named.

Every body, on every route, is refused past ``MAX_BODY_BYTES`` before the route reads it (the keys,
runs and sign-in routes read and parsed any size before checking the caller's key); a wrong
address is a 404, never a redirect built from the request's Host header; fields that do nothing
are refused; rejections name the id that was sent and what to do.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from launcher import Server, cli, serve


def admin_key(home: Path) -> str:
    made = cli(home, "keys", "create", "--role", "admin")
    assert made.returncode == 0, made.stderr
    return made.stdout.strip().splitlines()[-1]


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[tuple[Server, str, str]]:
    admin = admin_key(tmp_path)
    write = cli(tmp_path, "keys", "create", "--role", "write", env={"ORCHESTRION_API_KEY": admin})
    assert write.returncode == 0, write.stderr
    with serve(tmp_path) as server:
        yield server, admin, write.stdout.strip().splitlines()[-1]


def chunked(body: bytes, piece: int = 65_536) -> Iterator[bytes]:
    """A body sent without Content-Length (Transfer-Encoding: chunked)."""
    for start in range(0, len(body), piece):
        yield body[start:start + piece]


def test_a_large_body_is_refused_before_any_route_reads_it(keyed: tuple[Server, str, str]) -> None:
    server, admin, _ = keyed
    big = json.dumps({"date": "2011-11-01", "users": [f"u{i}" for i in range(300_000)]}).encode()  # 3.5 MB
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for path in ("/v1/runs", "/v1/keys", "/v1/deliver", "/v1/train/ranker"):
            for stream in (False, True):
                # without a key: refused before the body is read
                answer = http.post(path, content=chunked(big) if stream else big,
                                   headers={"Content-Type": "application/json"})
                assert answer.status_code == 401, (path, answer.status_code, answer.text[:200])
                # with one: refused past the limit, before the route reads it
                answer = http.post(path, content=chunked(big) if stream else big,
                                   headers={"Content-Type": "application/json", "Authorization": f"Bearer {admin}"})
                assert answer.status_code == 413, (path, answer.status_code, answer.text[:200])
                assert "ORCHESTRION_MAX_BODY_BYTES" in answer.json()["detail"]
        form = b"credential=" + b"a" * 1_000_000
        form_type = {"Content-Type": "application/x-www-form-urlencoded"}
        answer = http.post("/signin", content=chunked(form), headers=form_type)
        assert answer.status_code == 413, answer.text[:200]
        # A form over the page's own 64 KiB: said so, not "this sign-in form expired".
        page = http.post("/signin", content=b"credential=" + b"a" * 100_000,
                         headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "text/html"})
        assert page.status_code == 413 and "nothing was changed" in page.text and "expired" not in page.text
        # A chunked body within the limit reaches its route whole.
        small = json.dumps({"pipeline": "daily", "date": "2011-11-01"}).encode()
        run = http.post("/v1/runs", content=chunked(small, 7),
                        headers={"Content-Type": "application/json", "Authorization": f"Bearer {admin}"})
        assert run.status_code in (200, 202), run.text
        assert run.json()["partition"] == "2011-11-01"
        assert http.get("/v1/health").status_code == 200
        # and the API's document says so for every route that takes a body
        paths = http.get("/openapi.json").json()["paths"]
        for path in ("/v1/keys", "/v1/runs", "/v1/deliver", "/v1/train/ranker", "/v1/events"):
            assert {"408", "413"} <= set(paths[path]["post"]["responses"]), path


def test_wrong_addresses_and_fields_that_do_nothing_are_refused(keyed: tuple[Server, str, str]) -> None:
    server, admin, _ = keyed
    auth = {"Authorization": f"Bearer {admin}"}
    with httpx.Client(base_url=server.url, timeout=30, headers=auth) as http:
        slash = http.get("/v1/health/", headers={"Host": "evil.example"})
        assert slash.status_code == 404 and "location" not in slash.headers
        odd = http.delete("/v1/keys/%2F")
        assert odd.status_code in (404, 405) and "location" not in odd.headers
        retrain = http.post("/v1/runs", json={"pipeline": "retrain", "date": "2011-11-01", "users": ["a"]})
        assert retrain.status_code == 422 and "users is for daily runs only" in retrain.json()["detail"]
        for bad in ("%00", "%20", "a%7Fb"):
            out = http.delete(f"/v1/users/{bad}/sessions")
            assert out.status_code == 422, (bad, out.status_code, out.text)
        assert http.delete("/v1/users/alice/sessions").status_code == 200
        missing = http.get("/v1/users/x%3B%20touch%20%2Ftmp%2Fpwned/goals", params={"date": "2011-11-01"})
        assert missing.status_code == 404
        assert "--users 'x; touch /tmp/pwned'`" in missing.json()["detail"], missing.json()["detail"]


def test_rejections_name_the_id_sent_and_what_to_do(keyed: tuple[Server, str, str]) -> None:
    server, _, write = keyed
    auth = {"Authorization": f"Bearer {write}"}
    with httpx.Client(base_url=server.url, timeout=30, headers=auth) as http:
        body = b'[{"event_id": "big-1", "user_id": "u", "type": "play", "value": 1e400}, ' \
               b'{"event_id": "ok-1", "user_id": "u", "type": "play"}]'
        receipt = http.post("/v1/events", content=body, headers={"Content-Type": "application/json"}).json()
        assert (receipt["accepted"], receipt["rejected"]) == (1, 1), receipt
        assert receipt["errors"][0]["event_id"] == "big-1" and "value" in receipt["errors"][0]["reason"], receipt
        latin = http.post("/v1/events", content=b'[{"event_id": "latin-1", "user_id": "caf\xe9", "type": "play"}]',
                          headers={"Content-Type": "application/json"}).json()
        assert latin["rejected"] == 1 and latin["errors"][0]["event_id"] == "latin-1", latin
        array = b'[{"event_id": "a1", "user_id": "u", "type": "play"}, ' \
                b'{"event_id": "a2", "user_id": "u", "type": "play"}]'
        nd = http.post("/v1/events", content=array, headers={"Content-Type": "application/x-ndjson"}).json()
        assert nd["rejected"] == 1 and "one object per line" in nd["errors"][0]["reason"], nd
        for sent_at in ("9999-12-31T00:00:00Z", "1900-01-01T00:00:00Z"):
            message = {"messageId": f"s-{sent_at[:4]}", "userId": "u", "event": "play",
                       "timestamp": "2011-11-01T00:00:00Z", "sentAt": sent_at}
            track = http.post("/v1/track", json=message).json()
            assert track["rejected"] == 1 and "sentAt" in track["errors"][0]["reason"], track
            assert "leave sentAt out" in track["errors"][0]["reason"]
        lone = http.post("/v1/events", content=b'[{"event_id": "s1", "user_id": "\\ud800", "type": "play"}]',
                         headers={"Content-Type": "application/json"})
        assert lone.status_code == 400 and "lone surrogate" in lone.json()["detail"], lone.text


def raw(server: Server, head: str, body: bytes = b"", *, close: bool = False, wait: float = 5.0) -> bytes:
    """Send ``head`` (request line and headers) and ``body`` on a socket; what came back in ``wait``
    seconds (b"" when nothing did). ``close``: hang up right after sending."""
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(server.url)
    with socket.create_connection((where.hostname, where.port), timeout=wait) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        if close:
            return b""
        try:
            return sock.recv(65_536)
        except TimeoutError:
            return b""


def test_no_body_is_read_before_the_key_and_half_a_body_does_nothing(
    keyed: tuple[Server, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, admin, write = keyed
    # No key: refused at once, although the chunked body never ends (it used to be read, up to the limit).
    answer = raw(server, "POST /v1/keys HTTP/1.1\nHost: x\nContent-Type: application/json\n"
                         "Transfer-Encoding: chunked\n", b"10\r\n" + b"{" * 16 + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    bad = raw(server, "POST /v1/runs HTTP/1.1\nHost: x\nAuthorization: Bearer orc_nope\nContent-Length: 20\n", b"{")
    assert bad.startswith(b"HTTP/1.1 401"), bad[:200]
    with httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {admin}"}) as http:
        before = http.get("/v1/stats").json()
        # A chunked NDJSON upload cut off before its last chunk: one whole line was in it.
        line = json.dumps({"event_id": "cut-1", "user_id": "u-cut", "type": "play"}).encode() + b"\n"
        part = line + b'{"event_id": "cut-2", "user_'
        raw(server, f"POST /v1/events HTTP/1.1\nHost: x\nAuthorization: Bearer {write}\n"
                    "Content-Type: application/x-ndjson\nTransfer-Encoding: chunked\n",
            f"{len(part):x}\r\n".encode() + part + b"\r\n", close=True)
        # and a run request cut off the same way
        run = b'{"date": "2011-11-10"}'
        raw(server, f"POST /v1/runs HTTP/1.1\nHost: x\nAuthorization: Bearer {admin}\n"
                    "Content-Type: application/json\nTransfer-Encoding: chunked\n",
            f"{len(run):x}\r\n".encode() + run + b"\r\n", close=True)
        import time

        time.sleep(1.5)
        after = http.get("/v1/stats").json()
        assert (after["events"], after["failed_events"]) == (before["events"], before["failed_events"]), (before, after)
        assert [r for r in http.get("/v1/runs").json() if r["partition"] == "2011-11-10"] == []
    assert "ClientDisconnect" not in server.log and "Traceback" not in server.log


def test_a_body_that_trickles_is_refused_after_the_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    import time
    from urllib.parse import urlsplit

    admin = admin_key(tmp_path)
    monkeypatch.setenv("ORCHESTRION_BODY_TIMEOUT_S", "2")
    with serve(tmp_path) as server:
        where = urlsplit(server.url)
        with socket.create_connection((where.hostname, where.port), timeout=10) as sock:
            sock.sendall(f"POST /v1/keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\n"
                         "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{".encode())
            started = time.monotonic()
            answer = b""
            while not answer:
                try:
                    sock.sendall(b" ")  # one byte a second, never the whole body
                except OSError:
                    break
                sock.settimeout(1.0)
                try:
                    answer = sock.recv(65_536)
                except TimeoutError:
                    continue
            waited = time.monotonic() - started
            sock.settimeout(5.0)
            while b"took more than" not in answer:
                more = sock.recv(65_536)
                if not more:
                    break
                answer += more
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"took more than 2 s" in answer and waited < 8, waited
        assert httpx.get(server.url + "/v1/health", timeout=10).status_code == 200
