"""The one app: the API and the web pages assembled (:func:`create_app`), and ``orchestrion serve``.

``orchestrion serve`` owns the database, announces it, and runs the app under uvicorn with the run
service, the schedules and the trigger watcher beside it.

The server holds the only write handle on the DuckDB file while it runs and says so in
``<db>.server.json`` (pid and URL), so that other processes are told where to send their work.
It refuses to listen beyond loopback while no API key exists: an open write API on a network
would accept anyone's events. SIGTERM and SIGINT stop it cleanly: in-flight requests finish,
the writer commits what it holds, and the database is checkpointed and closed.
"""

from __future__ import annotations

import importlib
import importlib.util
import ipaddress
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from datetime import datetime
from types import FrameType
from typing import Any

from fastapi import FastAPI

from orchestrion.access.keys import auth_required
from orchestrion.api import create_api
from orchestrion.api import runs as runs_api
from orchestrion.config import Settings
from orchestrion.delivery.deliverables import run_due_actions, sweep_claims
from orchestrion.errors import ConfigError, RunInProgressError
from orchestrion.runs.daily import runs_to_retry, settle_recovered
from orchestrion.runs.scheduler import RunRequest, RunService, Scheduler
from orchestrion.runs.triggers import TriggerWatcher
from orchestrion.store import Store, utcnow
from orchestrion.web import mount_web

__all__ = ["WAL_AUTOCHECKPOINT", "create_app", "is_loopback", "run_server"]

log = logging.getLogger(__name__)

# DuckDB checkpoints when the WAL reaches 16 MB by default, and a checkpoint re-writes the
# primary-key index: on the ingestion path that capped the writer near 200k events/s with 350 ms
# stalls. At 256 MB it sustained ~300k events/s with 30 ms worst commits (benchmarks/ingest_http.py).
# The price: a restart after a crash replays up to 256 MB of WAL, and closing checkpoints it.
WAL_AUTOCHECKPOINT = "256MB"


def create_app(store: Store, settings: Settings, *, clock: Callable[[], datetime] = utcnow) -> FastAPI:
    """The API under ``/v1`` and the web page for people at ``/``, over ``store``. ``clock`` is
    what "now" is for the web pages."""
    return create_api(store, settings, clock=clock, pages=mount_web)


class _Stopped(Exception):
    """Raised by our signal handler when uvicorn re-raises the signal it shut down for."""


def is_loopback(host: str) -> bool:
    """True when every address ``host`` resolves to is a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc}); pick another --port") from exc
    sock.set_inheritable(True)
    return sock


def _stop(signum: int, frame: FrameType | None) -> None:
    raise _Stopped(signum)


def _start_background(app: Any, store: Store, settings: Settings) -> Callable[[], None]:
    """Mount ``/v1/runs`` and start the run service, the schedules and the trigger watcher.

    Returns the function that stops them (daily runs stop after their batch and resume later).
    """
    service = RunService(store, settings)
    app.include_router(runs_api.build_router(app.state.ctx, service))

    def due_actions(now: Any) -> object:
        """Run the ``notify`` actions whose cancel window has ended; reconcile stale ledger claims;
        resume the partial daily runs whose failed deliverables have attempts left."""
        done = {"due": run_due_actions(store, settings, now), "claims": sweep_claims(store, settings, now)}
        own = Store(store.cursor(), None)
        try:
            settled = settle_recovered(own, settings, now)
            if settled:
                log.info("runs %s: every failed deliverable recovered since; now succeeded",
                         ", ".join(r.run_id for r in settled))
            partial = runs_to_retry(own, settings, now)
        finally:
            own.con.close()
        for run in partial:
            try:
                users = run.params.get("users")
                service.submit(RunRequest("daily", run.partition, users=users, shard=run.shard, trigger="retry"))
            except RunInProgressError:
                continue
        return done

    scheduler = Scheduler(store, settings, service, sweep=due_actions) if settings.scheduler else None
    watcher = TriggerWatcher(store, settings)
    if scheduler is not None:
        scheduler.start()
        for line in scheduler.schedule():
            print(f"schedule: {line}", flush=True)
    else:
        print("schedule: off (scheduler = false); runs start only when asked", flush=True)
    watcher.start()

    def stop() -> None:
        watcher.stop()
        if scheduler is not None:
            scheduler.stop()
        service.stop()

    return stop


def run_server(settings: Settings, host: str, port: int) -> None:
    """Serve the API on ``host:port`` (0 = any free port) until SIGTERM or SIGINT."""
    import uvicorn

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    # The event loop, the writer, the scheduler's runs share one GIL. Every DuckDB call releases it
    # and must take it back (several times a call) from whichever thread runs Python meanwhile,
    # which lets go only every switch interval: at Python's 5 ms, the writer's few calls per
    # commit waited tens of milliseconds behind the event loop decoding the next request.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(settings.switch_interval_ms / 1000)
    unlog = _log_to_stderr()
    store: Store | None = None
    sock: socket.socket | None = None
    stop_background: Callable[[], None] | None = None
    try:
        store = Store.open(settings.database_path, memory_limit=settings.duckdb_memory_limit)
        store.con.execute(f"SET wal_autocheckpoint = '{WAL_AUTOCHECKPOINT}'")
        if not auth_required(store.con) and not is_loopback(host):
            raise ConfigError(
                f"refusing to listen on {host}: no API key exists yet, so anyone who can reach it "
                "could write events. Create one first with `orchestrion keys create --role admin` "
                "(and a write key for your applications), or serve on 127.0.0.1"
            )
        sock = _bind(host, port)
        bound_port = sock.getsockname()[1]
        # The announced URL is for local clients (the CLI): a wildcard address is reached on loopback.
        local = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
        url_host = f"[{local}]" if ":" in local else local
        url = f"http://{url_host}:{bound_port}"
        store.announce_server(url)
        loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
        app = create_app(store, settings)
        stop_background = _start_background(app, store, settings)
        config = uvicorn.Config(
            app,
            http="httptools",
            loop=loop,
            lifespan="on",
            access_log=False,
            # X-Forwarded-* is believed only from web_trusted_proxies, by the web pages themselves
            proxy_headers=False,
            log_level="info",
            timeout_graceful_shutdown=30,
        )
        print(f"orchestrion serving {settings.database_path} on {url} (pid {os.getpid()})", flush=True)
        uvicorn.Server(config).run(sockets=[sock])
    except _Stopped:
        pass
    finally:
        if stop_background is not None:
            stop_background()
        if sock is not None:
            sock.close()
        if store is not None:
            store.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sys.setswitchinterval(switch_interval)
        unlog()
    print("orchestrion stopped; database closed", file=sys.stderr, flush=True)


def _log_to_stderr() -> Callable[[], None]:
    """Print the server's own log lines (catch-up, scheduled runs, triggers: INFO and up) on stderr
    while it serves, unless the embedding program configured the ``orchestrion`` logger itself.
    Returns what undoes it."""
    logger = logging.getLogger("orchestrion")
    if logger.handlers or logger.level != logging.NOTSET:
        return lambda: None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%Y-%m-%dT%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)

    return undo

