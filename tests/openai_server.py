"""A real OpenAI-compatible chat-completions server on loopback, scripted per test.

It speaks just enough of ``POST /v1/chat/completions`` for the real ``openai`` client: every
request is recorded (body, headers, arrival time) and answered by the next :class:`Reply` of the
script, or, once the script is spent, by the ``responder`` (a function of the request body). A
reply can carry tool calls (arguments as a JSON string, malformed on purpose if a test wants),
plain content, an error status with headers (``Retry-After``), a delay (to trip the client's
timeout) and the usage the endpoint reports.

>>> with OpenAIServer([message("hi")]) as server:
...     import openai
...     client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
...     answer = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "?"}])
...     client.close()
>>> answer.choices[0].message.content, len(server.requests)
('hi', 1)
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = [
    "OpenAIServer",
    "Recorded",
    "Reply",
    "Responder",
    "error",
    "goal_of",
    "last_tool_results",
    "message",
    "planning_reply",
    "planning_responder",
    "tool_calls",
    "user_text",
]

_ids = itertools.count(1)


@dataclass(frozen=True)
class Reply:
    """One scripted answer: HTTP status, JSON body (or raw bytes), headers, and a delay before it."""

    status: int = 200
    body: Mapping[str, Any] | bytes = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def after(self, seconds: float) -> Reply:
        """The same reply, sent ``seconds`` later (longer than the client's timeout = a timeout)."""
        return Reply(self.status, self.body, self.headers, seconds)


Responder = Callable[[Mapping[str, Any]], Reply]
"""Answers a request body once the script is spent (the obedient model, the fixed-latency model)."""


def _completion(msg: dict[str, Any], finish: str, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{next(_ids)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "scripted",
        "choices": [{"index": 0, "message": msg, "finish_reason": finish, "logprobs": None}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def tool_calls(
    *calls: tuple[str, Mapping[str, Any] | str], prompt_tokens: int = 200, completion_tokens: int = 30
) -> Reply:
    """A reply calling ``calls`` in order; a ``str`` argument is sent verbatim (malformed JSON on purpose)."""
    made = [
        {
            "id": f"call_{next(_ids)}",
            "type": "function",
            "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)},
        }
        for name, args in calls
    ]
    msg = {"role": "assistant", "content": None, "tool_calls": made}
    return Reply(body=_completion(msg, "tool_calls", prompt_tokens, completion_tokens))


def message(content: str, *, prompt_tokens: int = 200, completion_tokens: int = 30) -> Reply:
    """A reply with plain content and no tool call."""
    msg = {"role": "assistant", "content": content}
    return Reply(body=_completion(msg, "stop", prompt_tokens, completion_tokens))


def error(status: int, *, retry_after: str | None = None, text: str = "scripted failure") -> Reply:
    """An error reply in OpenAI's shape, with ``Retry-After`` when given."""
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return Reply(status=status, body={"error": {"message": text, "type": "scripted", "code": status}}, headers=headers)


@dataclass(frozen=True)
class Recorded:
    """One request as the server saw it."""

    body: dict[str, Any]
    headers: dict[str, str]
    at: float

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))

    @property
    def tool_names(self) -> list[str]:
        return [t["function"]["name"] for t in self.body.get("tools", [])]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest turns noise into failures
        return

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        owner = self.server.owner
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(Reply(404, {"error": {"message": f"no route {self.path}"}}))
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._send(Reply(400, {"error": {"message": "body is not JSON"}}))
            return
        owner.arrived()
        try:
            self._send(owner.answer(body, dict(self.headers.items())))
        finally:
            owner.left()

    def _send(self, reply: Reply) -> None:
        if reply.delay:
            time.sleep(reply.delay)
        data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: OpenAIServer

    def handle_error(self, request: Any, client_address: Any) -> None:  # a client hung up mid-reply
        return


class OpenAIServer:
    """The scripted server; a context manager that serves on ``127.0.0.1`` from a daemon thread.

    ``script`` replies are used first, in order; then ``responder``; with neither, a 500 that
    says the script ran out (so a test that expected fewer calls fails loudly).
    """

    def __init__(self, script: Iterable[Reply] = (), *, responder: Responder | None = None) -> None:
        self.script: deque[Reply] = deque(script)
        self.responder = responder
        self.requests: list[Recorded] = []
        self.in_flight = 0
        self.max_in_flight = 0
        """The most requests the server was answering at once: how concurrent the client was."""
        self._lock = threading.Lock()
        self._http = _Server(("127.0.0.1", 0), _Handler)
        self._http.owner = self
        self._thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def push(self, *replies: Reply) -> None:
        """Append replies to the script."""
        with self._lock:
            self.script.extend(replies)

    def arrived(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def left(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def answer(self, body: dict[str, Any], headers: dict[str, str]) -> Reply:
        with self._lock:
            self.requests.append(Recorded(body, {k.lower(): v for k, v in headers.items()}, time.monotonic()))
            scripted = self.script.popleft() if self.script else None
        if scripted is not None:
            return scripted
        if self.responder is not None:
            return self.responder(body)
        return error(500, text="the test script ran out of replies")

    def __enter__(self) -> OpenAIServer:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)


def last_tool_results(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The tool messages after the last assistant turn of a request (what the model is answering)."""
    out: list[dict[str, Any]] = []
    for msg in reversed(list(body.get("messages", []))):
        if msg.get("role") != "tool":
            break
        out.append(msg)
    return out[::-1]


def user_text(body: Mapping[str, Any]) -> str:
    """Everything the model was shown (system, user and tool messages) as one string."""
    parts: Sequence[Mapping[str, Any]] = body.get("messages", [])
    return "\n".join(str(m.get("content") or "") for m in parts)


def goal_of(body: Mapping[str, Any]) -> dict[str, Any]:
    """The goal JSON the LLM planner put in its first user message."""
    for msg in body.get("messages", []):
        text = str(msg.get("content") or "")
        if msg.get("role") == "user" and "{" in text:
            decoded: dict[str, Any] = json.JSONDecoder().raw_decode(text[text.index("{") :])[0]
            return decoded
    raise ValueError("no goal in the conversation")


ORDER_CAP = 150.0
"""The default policy's cap on one order (``max_order_amount``): what the scripted shopper fits."""

BUILDERS = {
    "playlist": ("create_playlist", "item_ids"),
    "watchlist": ("create_watchlist", "item_ids"),
    "digest": ("compose_digest", "article_ids"),
}


def planning_reply(body: Mapping[str, Any], *, usage: tuple[int, int] = (400, 60)) -> Reply:
    """What a competent model answers next: build from the candidates, (order,) publish, finish.

    The turn is read from the conversation: the number of assistant messages so far; the reorder
    cart is built from the ``due_reorders`` result it was sent. After a failed call it gives up
    politely (``finish`` with nothing to do), so a benchmark never loops.
    """
    goal = goal_of(body)
    history = list(body.get("messages", []))
    turn = sum(1 for m in history if m.get("role") == "assistant")
    results = [json.loads(m["content"]) for m in last_tool_results(body)]
    prompt, completion = usage

    def say(*calls: tuple[str, Mapping[str, Any] | str]) -> Reply:
        return tool_calls(*calls, prompt_tokens=prompt, completion_tokens=completion)

    done = ("finish", {"title": goal["title"][:120], "summary": f"Built for: {goal['why'][:200]}"})
    if any(not r.get("ok", False) for r in results):
        return say(("finish", {"nothing_to_do": True, "reason": "a tool failed"}))
    ids = [c["item_id"] for c in goal["candidates"]][:20]
    template = goal["template"]
    if template == "reorder":
        if turn == 0:
            return say(("due_reorders", {}))
        if turn == 1:
            due = results[0]["result"] if results else []
            # as many of the due lines as fit the default order cap (150), as a careful shopper would
            lines, total = [], 0.0
            for d in due[:50]:
                quantity = min(int(d["quantity"]), 99)
                cost = quantity * float(d.get("price") or 0.0)
                if lines and total + cost > ORDER_CAP:
                    continue
                lines.append({"item_id": d["item_id"], "quantity": quantity})
                total += cost
            return say(("build_cart", {"lines": lines}), ("place_order", {}))
        return say(("publish", {"channel": "outbox"}), done)
    if turn == 0:
        builder, key = BUILDERS.get(template, ("create_playlist", "item_ids"))
        return say((builder, {"title": goal["title"][:120], key: ids}))
    return say(("publish", {"channel": "outbox"}), done)


def planning_responder(latency: float = 0.0, *, usage: tuple[int, int] = (400, 60)) -> Responder:
    """A competent model that answers after ``latency`` seconds (the benchmark's fixed-latency endpoint)."""

    def respond(body: Mapping[str, Any]) -> Reply:
        reply = planning_reply(body, usage=usage)
        return reply.after(latency) if latency else reply

    return respond
