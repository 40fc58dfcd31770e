"""A loopback HTTP receiver that reads each request and answers ``{"success": true}`` at once:
what a sender's own cost is measured against (``ingest_segment.py``: the Segment SDK alone).

Run as a process: it prints its port on the first line of stdout (it listens by then), then serves
until killed. With
a folder as its argument it also keeps each request body there (``000001.body``, … in arrival
order), so the bodies a client really sent can be posted again elsewhere.
"""

from __future__ import annotations

import itertools
import socket
import sys
from pathlib import Path
from typing import Any

import uvicorn

_RECORD = Path(sys.argv[1]) if __name__ == "__main__" and len(sys.argv) > 1 else None
_COUNT = itertools.count(1)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    if _RECORD is not None and scope["method"] == "POST":
        (_RECORD / f"{next(_COUNT):06d}.body").write_bytes(b"".join(chunks))
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"success": true}'})


if __name__ == "__main__":
    # Bound here, so the port is printed only once it listens. Nagle's algorithm off: asyncio turns
    # it off only on servers it binds itself, and the reply's two sends would wait for the
    # client's delayed ACK (~40 ms a request; measured: the SDK at 39k events/s instead of 62k)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    print(listener.getsockname()[1], flush=True)  # a client may connect now: the kernel queues it
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[listener])
