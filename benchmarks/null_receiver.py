"""A loopback HTTP receiver that reads each request and answers ``{"success": true}`` at once:
what a sender's own cost is measured against (``ingest_segment.py``: the Segment SDK alone).

Run as a process: it prints its port on the first line of stdout, then serves until killed.
"""

from __future__ import annotations

import socket
from typing import Any

import uvicorn


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"success": true}'})


if __name__ == "__main__":
    with socket.socket() as probe:  # a free port (another process could take it first: it would fail loudly)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    print(port, flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
