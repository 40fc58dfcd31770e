"""The run ledger: which pipeline ran for which day, how far it got, and who is running it.

A run key is (pipeline, partition date, shard). :func:`claim_run` decides what a new request
for a key does:

* nothing ran yet → a new attempt (``a1``);
* the latest attempt succeeded → nothing (``state="done"``), unless ``force`` → a new attempt
  (which still goes through the side-effect ledger, so no effect repeats);
* it finished ``partial`` (every user done, some deliverables failed) → the same attempt resumes
  and tries the failed deliverables that have attempts left (``force`` starts a new attempt);
* the latest attempt is running in a live process → :class:`~orchestrion.errors.RunInProgressError`;
* it is ``running`` with a dead owner (killed), ``interrupted`` or ``failed`` → the same attempt
  resumes: its users are fixed in batches when it starts, and only the batches not finished are
  done again.

The owner of a run is ``<host>:<pid>:<token>``, the token being drawn once per process: a row
whose owner is this process is live (the run is in another thread); a row from another process
is live only while that pid is alive on this host and its heartbeat is recent. DuckDB allows one
writing process per file, so in practice a row from another process is a killed run.

>>> from datetime import datetime, date
>>> with Store.open(":memory:") as s:
...     claim = claim_run(s, RunKey("daily", date(2024, 1, 2)), now=datetime(2024, 1, 2, 7))
...     _ = finish_run(s, claim.run.run_id, "succeeded", now=datetime(2024, 1, 2, 7, 1))
...     again = claim_run(s, RunKey("daily", date(2024, 1, 2)), now=datetime(2024, 1, 2, 8))
...     (claim.state, claim.run.run_id, again.state)
('new', 'daily-2024-01-02-a1', 'done')
"""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Final, Literal

import duckdb

from orchestrion.errors import NotFoundError, RunInProgressError, UsageError
from orchestrion.proposals.day import refuse_future_day
from orchestrion.store import Store, pid_alive

__all__ = [
    "PIPELINES",
    "Claim",
    "Owner",
    "Run",
    "RunKey",
    "RunStatus",
    "claim_run",
    "finish_run",
    "get_run",
    "latest_run",
    "list_runs",
    "pending_batches",
    "plan_users",
    "record_batch",
    "recover_dead_runs",
]

RunStatus = Literal["running", "succeeded", "partial", "failed", "interrupted"]
"""``partial``: finished, every user done, but some deliverables failed (their own faults, counted
in ``counts["failed_deliverables"]``); ``failed``: the run itself failed (the store)."""
PIPELINES: Final = ("daily", "retrain")
STALE_AFTER: Final = timedelta(minutes=15)
"""A run from another live process whose heartbeat is older than this is taken as dead."""

_TOKEN: Final = uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class Owner:
    """The process that runs a run: host, pid and a token drawn once per process."""

    host: str
    pid: int
    token: str

    @classmethod
    def current(cls) -> Owner:
        return cls(socket.gethostname(), os.getpid(), _TOKEN)

    @property
    def label(self) -> str:
        return f"{self.host}:{self.pid}:{self.token}"


@dataclass(frozen=True)
class RunKey:
    """What a run is for: a pipeline, a partition date and an optional shard."""

    pipeline: str
    partition: date
    shard: str = ""

    def __post_init__(self) -> None:
        if self.pipeline not in PIPELINES:
            raise UsageError(f"unknown pipeline {self.pipeline!r}; choose one of {', '.join(PIPELINES)}")

    def run_id(self, attempt: int) -> str:
        shard = f"-{self.shard}" if self.shard else ""
        return f"{self.pipeline}-{self.partition.isoformat()}{shard}-a{attempt}"

    def __str__(self) -> str:
        shard = f" ({self.shard})" if self.shard else ""
        return f"{self.pipeline} {self.partition.isoformat()}{shard}"


@dataclass(frozen=True)
class Run:
    """One row of the ledger."""

    run_id: str
    pipeline: str
    partition: date
    shard: str
    attempt: int
    status: RunStatus
    trigger: str
    params: dict[str, Any]
    owner: str
    pid: int
    host: str
    started_at: datetime
    heartbeat_at: datetime
    finished_at: datetime | None
    resumes: int
    users_total: int
    users_done: int
    batches: int
    seconds: float
    counts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def key(self) -> RunKey:
        return RunKey(self.pipeline, self.partition, self.shard)

    @property
    def users_per_second(self) -> float:
        return self.users_done / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "partition": self.partition.isoformat(),
            "shard": self.shard,
            "attempt": self.attempt,
            "status": self.status,
            "trigger": self.trigger,
            "params": self.params,
            "owner": self.owner,
            "pid": self.pid,
            "started_at": self.started_at.isoformat(),
            "heartbeat_at": self.heartbeat_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "resumes": self.resumes,
            "users_total": self.users_total,
            "users_done": self.users_done,
            "batches": self.batches,
            "seconds": round(self.seconds, 3),
            "users_per_second": round(self.users_per_second, 1),
            "counts": self.counts,
            "error": self.error,
        }


@dataclass(frozen=True)
class Claim:
    """What :func:`claim_run` decided: ``new`` attempt, ``resumed`` attempt, or ``done`` already."""

    run: Run
    state: Literal["new", "resumed", "done"]


_COLUMNS: Final = (
    "run_id, pipeline, partition, shard, attempt, status, trigger, params, owner, pid, host, started_at, "
    "heartbeat_at, finished_at, resumes, users_total, users_done, batches, seconds, counts, error"
)


def _run(row: Sequence[Any]) -> Run:
    values = list(row)
    values[7] = json.loads(values[7]) if values[7] else {}
    values[19] = json.loads(values[19]) if values[19] else {}
    return Run(*values)


def _fetch(con: duckdb.DuckDBPyConnection, where: str, params: Sequence[object]) -> list[Run]:
    rows = con.execute(f"SELECT {_COLUMNS} FROM runs {where}", list(params)).fetchall()
    return [_run(r) for r in rows]


def get_run(con: duckdb.DuckDBPyConnection, run_id: str) -> Run:
    """The run ``run_id``; raises NotFoundError naming ``orchestrion runs list``."""
    found = _fetch(con, "WHERE run_id = ?", [run_id])
    if not found:
        raise NotFoundError(f"no run {run_id!r}; `orchestrion runs list` shows the runs")
    return found[0]


def latest_run(con: duckdb.DuckDBPyConnection, key: RunKey) -> Run | None:
    """The latest attempt at ``key``, or None."""
    found = _fetch(
        con, "WHERE pipeline = ? AND partition = ? AND shard = ? ORDER BY attempt DESC LIMIT 1",
        [key.pipeline, key.partition, key.shard],
    )
    return found[0] if found else None


def list_runs(
    con: duckdb.DuckDBPyConnection,
    *,
    pipeline: str | None = None,
    status: str | None = None,
    since: date | None = None,
    limit: int = 50,
) -> list[Run]:
    """The latest runs first (the last started first: a catch-up of recent days does not hide the run
    just made), filtered."""
    where: list[str] = ["TRUE"]
    params: list[object] = []
    if pipeline:
        where.append("pipeline = ?")
        params.append(pipeline)
    if status:
        where.append("status = ?")
        params.append(status)
    if since:
        where.append("partition >= ?")
        params.append(since)
    return _fetch(
        con,
        f"WHERE {' AND '.join(where)} ORDER BY started_at DESC, attempt DESC, partition DESC, run_id "
        f"LIMIT {int(limit)}",
        params,
    )


def owner_alive(run: Run, *, now: datetime, me: Owner | None = None) -> bool:
    """True when the process that owns ``run`` is still running it (see the module docstring)."""
    me = me or Owner.current()
    if run.owner == me.label:
        return True
    if run.host != me.host or run.pid == me.pid:
        return False
    return pid_alive(run.pid) and now - run.heartbeat_at < STALE_AFTER


def claim_run(
    store: Store,
    key: RunKey,
    *,
    now: datetime,
    force: bool = False,
    trigger: str = "cli",
    params: Mapping[str, Any] | None = None,
    owner: Owner | None = None,
) -> Claim:
    """Start, resume or skip the run of ``key`` (see the module docstring), in one transaction.

    Claims are serialised within the process (the one that holds the store): of several requests
    for one key at once, one claims it and the others find it running (RunInProgressError, the
    API's 409), never a write conflict."""
    owner = owner or Owner.current()
    refuse_future_day(key.partition, now)
    with _CLAIMS:
        try:
            return _claim(store, key, now=now, force=force, trigger=trigger, params=params, owner=owner)
        except (duckdb.ConstraintException, duckdb.TransactionException) as exc:
            raise RunInProgressError(
                f"{key} was claimed by another run at the same moment; follow it with `orchestrion runs list`"
            ) from exc


_CLAIMS: Final = threading.Lock()


def _claim(
    store: Store,
    key: RunKey,
    *,
    now: datetime,
    force: bool,
    trigger: str,
    params: Mapping[str, Any] | None,
    owner: Owner,
) -> Claim:
    with store.transaction() as con:
        latest = latest_run(con, key)
        if latest is not None and latest.status == "running" and owner_alive(latest, now=now, me=owner):
            raise RunInProgressError(
                f"{key} is already running as {latest.run_id} (pid {latest.pid} on {latest.host}, "
                f"{latest.users_done}/{latest.users_total} users, heartbeat {latest.heartbeat_at:%H:%M:%S} UTC); "
                f"follow it with `orchestrion runs show {latest.run_id}`"
            )
        if latest is not None and latest.status == "succeeded" and not force:
            return Claim(latest, "done")
        if latest is None or latest.status == "succeeded" or (force and latest.status == "partial"):
            attempt = 1 if latest is None else latest.attempt + 1
            run_id = key.run_id(attempt)
            con.execute(
                "INSERT INTO runs (run_id, pipeline, partition, shard, attempt, status, trigger, params, owner, pid, "
                "host, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                [run_id, key.pipeline, key.partition, key.shard, attempt, trigger, json.dumps(dict(params or {})),
                 owner.label, owner.pid, owner.host, now, now],
            )
            state: Literal["new", "resumed"] = "new"
        else:
            run_id = latest.run_id
            note = f"resumed after {latest.status}" + (f": {latest.error}" if latest.error else "")
            con.execute(
                "UPDATE runs SET status = 'running', owner = ?, pid = ?, host = ?, heartbeat_at = ?, "
                "finished_at = NULL, resumes = resumes + 1, error = ? WHERE run_id = ?",
                [owner.label, owner.pid, owner.host, now, note, run_id],
            )
            state = "resumed"
        return Claim(get_run(con, run_id), state)


def recover_dead_runs(store: Store, *, now: datetime, owner: Owner | None = None) -> list[str]:
    """Mark ``running`` rows whose owner is gone as ``interrupted``; returns their ids.

    The scheduler calls this at start-up, so ``runs list`` tells the truth after a crash.
    """
    owner = owner or Owner.current()
    stale = [r for r in _fetch(store.con, "WHERE status = 'running'", []) if not owner_alive(r, now=now, me=owner)]
    for run in stale:
        store.con.execute(
            "UPDATE runs SET status = 'interrupted', error = ?, finished_at = NULL WHERE run_id = ? "
            "AND status = 'running'",
            [f"its process (pid {run.pid} on {run.host}) stopped; the next run of this key resumes it", run.run_id],
        )
    return [r.run_id for r in stale]


def plan_users(store: Store, run_id: str, users: Sequence[str], batch_size: int) -> int:
    """Fix the run's users in batches of ``batch_size`` (sorted; once per run); returns the total.

    Batches are fixed when the run starts, so a resumed run does the same batches as an
    uninterrupted one and its results (exploration draws included) are the same.
    """
    if batch_size <= 0:
        raise UsageError(f"batch size must be positive, got {batch_size}; set ORCHESTRION_DAILY_BATCH_SIZE")
    import pyarrow as pa

    ordered = sorted(set(users))
    table = pa.table({
        "run_id": pa.array([run_id] * len(ordered), pa.string()),
        "user_id": pa.array(ordered, pa.string()),
        "batch": pa.array([i // batch_size for i in range(len(ordered))], pa.int32()),
    })
    with store.transaction() as con:
        if con.execute("SELECT count(*) FROM run_users WHERE run_id = ?", [run_id]).fetchall()[0][0]:
            return int(con.execute("SELECT users_total FROM runs WHERE run_id = ?", [run_id]).fetchall()[0][0])
        con.register("_orchestrion_run_users", table)
        try:
            con.execute("INSERT INTO run_users SELECT run_id, user_id, batch, NULL FROM _orchestrion_run_users")
        finally:
            con.unregister("_orchestrion_run_users")
        con.execute(
            "UPDATE runs SET users_total = ?, batches = ? WHERE run_id = ?",
            [len(ordered), (len(ordered) + batch_size - 1) // batch_size, run_id],
        )
    return len(ordered)


def pending_batches(con: duckdb.DuckDBPyConnection, run_id: str) -> list[list[str]]:
    """The run's batches that still have users to do, in order, each with those users (sorted)."""
    rows = con.execute(
        "SELECT batch, list(user_id ORDER BY user_id) FROM run_users WHERE run_id = ? AND done_at IS NULL "
        "GROUP BY batch ORDER BY batch",
        [run_id],
    ).fetchall()
    return [list(r[1]) for r in rows]


def _merge(counts: dict[str, Any], more: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(counts)
    for name, value in more.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            merged[name] = merged.get(name, 0) + value
        else:
            merged[name] = value
    return merged


def record_batch(
    store: Store,
    run_id: str,
    users: Sequence[str],
    counts: Mapping[str, Any],
    *,
    now: datetime,
    seconds: float,
) -> Run:
    """Mark ``users`` of ``run_id`` done, add ``counts`` and ``seconds``, beat the heart."""
    with store.transaction() as con:
        before = get_run(con, run_id)
        if users:
            con.execute(
                "UPDATE run_users SET done_at = ? WHERE run_id = ? AND done_at IS NULL AND user_id IN "
                "(SELECT unnest(?::VARCHAR[]))",
                [now, run_id, list(users)],
            )
        done = con.execute(
            "SELECT count(*) FROM run_users WHERE run_id = ? AND done_at IS NOT NULL", [run_id]
        ).fetchall()[0][0]
        con.execute(
            "UPDATE runs SET users_done = ?, counts = ?, seconds = seconds + ?, heartbeat_at = ? WHERE run_id = ?",
            [done, json.dumps(_merge(before.counts, counts)), seconds, now, run_id],
        )
        return get_run(con, run_id)


def finish_run(
    store: Store,
    run_id: str,
    status: RunStatus,
    *,
    now: datetime,
    error: str | None = None,
    counts: Mapping[str, Any] | None = None,
    seconds: float = 0.0,
    totals: Mapping[str, Any] | None = None,
) -> Run:
    """Close ``run_id`` as ``status`` (with the error when it failed or was interrupted); ``counts``
    are added to the run's, ``totals`` replace them."""
    with store.transaction() as con:
        before = get_run(con, run_id)
        con.execute(
            "UPDATE runs SET status = ?, finished_at = ?, heartbeat_at = ?, error = ?, counts = ?, "
            "seconds = seconds + ? WHERE run_id = ?",
            [status, now if status != "interrupted" else None, now, error,
             json.dumps({**_merge(before.counts, counts or {}), **(totals or {})}), seconds, run_id],
        )
        return get_run(con, run_id)
