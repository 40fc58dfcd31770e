"""Loopback HTTP servers that record every request: an order provider, a webhook receiver, an attacker's host.

The order provider honours ``Idempotency-Key`` the way real payment APIs do: a second POST with a
known key returns the first order and creates nothing; ``GET ?idempotency_key=K`` answers 200 with
the order or 404. ``before_reply`` runs after an order is recorded and before the answer is sent
(the crash test kills the client there).

>>> import httpx
>>> with Recorder() as shop:
...     first = httpx.post(shop.url + "/orders", json={"total": 3}, headers={"Idempotency-Key": "k1"}).json()
...     again = httpx.post(shop.url + "/orders", json={"total": 3}, headers={"Idempotency-Key": "k1"}).json()
...     found = httpx.get(shop.url + "/orders", params={"idempotency_key": "k1"}).status_code
>>> first == again, len(shop.orders), found
(True, 1, 200)
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["Recorder", "Request"]


@dataclass(frozen=True)
class Request:
    """One request as received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", self.server.owner.location)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_GET(self) -> None:
        owner = self.server.owner
        parts = urlsplit(self.path)
        owner.record(Request("GET", self.path, {k.lower(): v for k, v in self.headers.items()}, b""))
        key = parse_qs(parts.query).get("idempotency_key", [""])[0]
        order = owner.orders.get(key)
        self._answer(200 if order else 404, order or {"error": "no such order"})

    def do_POST(self) -> None:
        owner = self.server.owner
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        request = Request("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        owner.record(request)
        if not urlsplit(self.path).path.endswith("/orders"):
            self._answer(owner.post_status, {"received": True})
            return
        key = request.headers.get("idempotency-key", "")
        with owner.lock:
            order = owner.orders.get(key)
            created = order is None
            if order is None:
                order = {"order_id": f"o{len(owner.orders) + 1}", "idempotency_key": key, "order": request.json()}
                owner.orders[key] = order
        if created and owner.before_reply is not None:
            owner.before_reply(request)
        self._answer(201 if created else 200, order)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: Recorder

    def handle_error(self, request: Any, client_address: Any) -> None:
        return


class Recorder:
    """A recording server on ``host`` (any 127.x address is loopback on Linux).

    ``post_status`` is the answer to POSTs other than orders (a 3xx carries ``Location: location``).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        before_reply: Callable[[Request], None] | None = None,
        post_status: int = 200,
        location: str = "http://127.0.0.2/elsewhere",
    ) -> None:
        self.post_status = post_status
        self.location = location
        self.requests: list[Request] = []
        self.orders: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.before_reply = before_reply
        self._http = _Server((host, 0), _Handler)
        self._http.owner = self
        self._thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return int(self._http.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._http.server_address[0]!s}:{self.port}"

    def record(self, request: Request) -> None:
        with self.lock:
            self.requests.append(request)

    def __enter__(self) -> Recorder:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)
