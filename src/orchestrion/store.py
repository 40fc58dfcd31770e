"""The store: the only module that opens DuckDB.

Opening applies the versioned migrations in ``orchestrion/migrations`` (``NNNN_name.sql``,
each in its own transaction, recorded in ``schema_migrations``). DuckDB allows one read-write
process per file; ``orchestrion serve`` announces itself in a small JSON file next to the
database (``<db>.server.json``: pid and URL) so that another process that tries to open the file
is told who holds it and how to reach it.
"""

from __future__ import annotations

import errno
import json
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Final

import duckdb

from orchestrion.errors import ConfigError, DatabaseLockedError, StorageError

__all__ = [
    "ServerInfo", "Store", "pid_alive", "registered", "running_server", "storage_error", "transaction", "utcnow",
]

MEMORY = ":memory:"


def utcnow() -> datetime:
    """The current UTC time as a naive datetime, the convention of every TIMESTAMP column."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class ServerInfo:
    """Who holds a database for writing: the ``orchestrion serve`` process and its URL."""

    pid: int
    url: str


def _server_file(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".server.json")


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists on this machine (one we may not signal counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_server(db_path: Path) -> ServerInfo | None:
    """The live server holding ``db_path``, or None (a stale announcement is ignored)."""
    path = _server_file(db_path)
    try:
        data = json.loads(path.read_text())
        info = ServerInfo(pid=int(data["pid"]), url=str(data["url"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if pid_alive(info.pid) and info.pid != os.getpid() else None


def storage_error(path: Path | None, exc: BaseException, *, doing: str) -> StorageError | None:
    """A :class:`StorageError` saying why ``path`` cannot be written (read-only filesystem, no
    permission, full disk), when ``exc`` (an OSError or DuckDB's IOException) is one of those."""
    text = str(exc)
    code = getattr(exc, "errno", None)
    folder = path.parent if path is not None else Path("the database folder")
    if code == errno.EROFS or "Read-only file system" in text:
        return StorageError(
            f"{folder} is on a read-only filesystem, so {doing} cannot write {path}; point "
            "ORCHESTRION_HOME (or ORCHESTRION_DATABASE) at a writable folder, or remount it read-write"
        )
    if code == errno.ENOSPC or "No space left on device" in text:
        return StorageError(
            f"the disk holding {folder} is full ({doing} could not write {path}); free space there "
            "or point ORCHESTRION_HOME at another disk, then run it again: nothing half-written was kept"
        )
    if code in (errno.EACCES, errno.EPERM) or "Permission denied" in text:
        return StorageError(
            f"no permission to write {path} in {folder} ({doing}); run as a user who may write "
            "there, or point ORCHESTRION_HOME at a folder you own"
        )
    return None


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """A transaction on ``con`` (a connection or a thread's cursor): committed on success, rolled back on error."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _migrations() -> list[tuple[int, str, str]]:
    folder = resources.files("orchestrion") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if match:
            found.append((int(match[1]), match[2], entry.read_text()))
    return sorted(found)


_QUIET: Final = "SET enable_progress_bar = false"
"""DuckDB draws a progress bar on the terminal for long queries; ours are in the CLI, and a server
or a benchmark's output is no place for it. A per-connection setting, so every cursor sets it."""


def _quiet(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """``con`` without DuckDB's progress bar (see :data:`_QUIET`)."""
    # In Jupyter without ipywidgets DuckDB refuses to change the setting (and draws no bar there).
    with suppress(duckdb.InvalidInputException):
        con.execute(_QUIET)
    return con


class Store:
    """An open DuckDB database with the current schema.

    >>> with Store.open(":memory:") as store:
    ...     store.scalar("SELECT count(*) FROM events")
    0
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path | None) -> None:
        self.con = con
        self.path = path

    @classmethod
    def open(cls, path: Path | str, *, read_only: bool = False, memory_limit: str | None = None) -> Store:
        """Open (creating if needed) and migrate the database at ``path`` (``":memory:"`` for tests).

        ``memory_limit`` caps DuckDB's own memory (e.g. ``"1GB"``; its default is 80 % of RAM):
        large queries spill to disk instead of growing with the data.
        """
        db_path = None if str(path) == MEMORY else Path(path)
        if db_path is not None:
            holder = running_server(db_path)
            if holder is not None:
                raise DatabaseLockedError(
                    f"{db_path} is held by orchestrion serve (pid {holder.pid}) at {holder.url}; "
                    "this command opens the database itself: stop the server first, or do it through the "
                    "server's API (`orchestrion run daily`, `run retrain`, `deliver`, `train ranker`, `keys` and "
                    "`runs` send their work there for you; ingestion goes to POST /v1/events)"
                )
            try:
                db_path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise (storage_error(db_path, exc, doing="opening the database") or exc) from exc
        try:
            con = duckdb.connect(str(path), read_only=read_only and db_path is not None)
        except duckdb.IOException as exc:
            problem = storage_error(db_path, exc, doing="opening the database")
            if problem is not None:
                raise problem from exc
            pid = re.search(r"PID (\d+)", str(exc))
            holder_text = f"process {pid[1]}" if pid else "another process"
            raise DatabaseLockedError(
                f"{path} is held for writing by {holder_text}; DuckDB allows one writer per file: "
                "stop that process, or talk to it through its API if it is `orchestrion serve`"
            ) from exc
        _quiet(con)
        if memory_limit is not None:
            try:
                con.execute("SET memory_limit = ?", [memory_limit])
            except duckdb.Error as exc:
                con.close()
                raise ConfigError(
                    f"DUCKDB_MEMORY_LIMIT {memory_limit!r} is not a memory size DuckDB understands ({exc}); "
                    "give it like 1GB or 512MB"
                ) from exc
        store = cls(con, db_path)
        if not read_only:
            try:
                store.migrate()
            except duckdb.Error as exc:
                problem = storage_error(db_path, exc, doing="creating the database's tables")
                if problem is None:
                    raise
                con.close()
                raise problem from exc
        return store

    def migrate(self) -> list[int]:
        """Apply the migrations not applied yet; returns their versions."""
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMP)"
        )
        done = {row[0] for row in self.con.execute("SELECT version FROM schema_migrations").fetchall()}
        applied = []
        for version, name, sql in _migrations():
            if version in done:
                continue
            with self.transaction() as con:
                con.execute(sql)
                con.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", [version, name, utcnow()])
            applied.append(version)
        return applied

    def transaction(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        """A transaction on this store's connection: committed on success, rolled back on error."""
        return transaction(self.con)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for another thread (DuckDB connections are not shared across threads)."""
        return _quiet(self.con.cursor())

    def scalar(self, sql: str, params: list[object] | None = None) -> object:
        rows = self.con.execute(sql, params or []).fetchall()  # fetch all: DuckDB 2 refuses new work mid-result
        return rows[0][0] if rows else None

    def announce_server(self, url: str) -> None:
        """Record that this process serves the database at ``url`` (see :func:`running_server`)."""
        if self.path is not None:
            try:
                _server_file(self.path).write_text(json.dumps({"pid": os.getpid(), "url": url}))
            except OSError as exc:
                raise (storage_error(self.path, exc, doing="announcing the server") or exc) from exc

    def close(self) -> None:
        if self.path is not None:
            server_file = _server_file(self.path)
            if running_server(self.path) is None and server_file.exists():
                try:
                    data = json.loads(server_file.read_text())
                    if data.get("pid") == os.getpid():
                        server_file.unlink()
                except (OSError, ValueError):
                    pass
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, rows: Sequence[Sequence[Any]], names: Sequence[str]) -> Iterator[str]:
    """``rows`` as a temporary relation (all text columns: values as their ``str``, None as NULL)
    for one set-based statement; its name. Cast columns back in the SQL (``CAST(x AS TIMESTAMP)``)."""
    import pyarrow as pa  # heavy: loaded by the first set-based write, not by `orchestrion --help`

    frame = pa.table(
        {n: pa.array([None if r[i] is None else str(r[i]) for r in rows], pa.string()) for i, n in enumerate(names)}
    )
    name = f"_orchestrion_rows_{id(frame)}"
    con.register(name, frame)
    try:
        yield name
    finally:
        con.unregister(name)
