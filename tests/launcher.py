"""Start ``orchestrion serve`` in a child process and wait until it answers.

Tests and benchmarks use a real server on loopback rather than an in-process app, so that what
they measure includes the HTTP parser, the event loop and the process boundary. The server runs
with ORCHESTRION_HOME set to the given folder and ``--port 0``; its URL is read from the
announcement file it writes next to the database, then ``/v1/health`` is polled.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from orchestrion.store import Store

__all__ = ["Server", "cli", "serve", "start_server"]

CLI = [sys.executable, "-c", "from orchestrion.cli import main; main()"]


def cli(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``orchestrion ARGS`` as a user would, with ORCHESTRION_HOME=home."""
    full_env = {**os.environ, "ORCHESTRION_HOME": str(home), **(env or {})}
    return subprocess.run([*CLI, *args], env=full_env, capture_output=True, text=True, timeout=60)


@dataclass
class Server:
    """A running server: its process, URL and home."""

    proc: subprocess.Popen[bytes]
    url: str
    home: Path

    @property
    def database(self) -> Path:
        return self.home / "data" / "orchestrion.duckdb"

    @property
    def log(self) -> str:
        return (self.home / "server.log").read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Send ``sig`` and wait for the process to end; returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """``kill -9``: no shutdown code runs at all."""
        self.stop(signal.SIGKILL)

    def open_store(self) -> Store:
        """The database, opened after the server stopped (read it like any later process would)."""
        assert self.proc.poll() is not None, "stop the server before opening its database"
        return Store.open(self.database)


def start_server(home: Path, *args: str, timeout: float = 60) -> Server:
    """Start ``orchestrion serve --port 0 ARGS`` and wait until it answers ``/v1/health``."""
    home.mkdir(parents=True, exist_ok=True)
    announce = home / "data" / "orchestrion.duckdb.server.json"
    with (home / "server.log").open("ab") as log:
        proc = subprocess.Popen(
            [*CLI, "serve", "--port", "0", *args],
            env={**os.environ, "ORCHESTRION_HOME": str(home)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited:\n" + (home / "server.log").read_text())
        try:
            info = json.loads(announce.read_text())
            if info["pid"] == proc.pid:
                url = str(info["url"])
                if httpx.get(url + "/v1/health", timeout=2).status_code == 200:
                    return Server(proc, url, home)
        except (OSError, ValueError, KeyError, httpx.HTTPError):
            pass
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise RuntimeError("server did not become healthy:\n" + (home / "server.log").read_text())


@contextmanager
def serve(home: Path, *args: str) -> Iterator[Server]:
    """A server for the duration of a ``with`` block, stopped with SIGTERM (as in production)."""
    server = start_server(home, *args)
    try:
        yield server
    finally:
        try:
            server.stop()
        except subprocess.TimeoutExpired:
            server.kill()  # never leave a server behind, even one that hangs on shutdown
            raise
