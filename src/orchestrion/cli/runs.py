"""``orchestrion run daily|retrain``, ``orchestrion backfill daily`` and ``orchestrion runs list|show``.

Without a server the commands open the database and run the pipeline here, with a progress bar
(users/s) and a summary table. While ``orchestrion serve`` holds the database, they submit the run
through ``POST /v1/runs`` (admin key from ``--admin-key`` or ``ORCHESTRION_API_KEY``) and follow
its progress with ``GET /v1/runs/{run_id}``.

Two runs of one key from two processes: the second finds the key's lock file held and says the
run is already going (the first holds the database, so it could not even read the ledger).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date as Date
from datetime import timedelta
from pathlib import Path
from typing import Any

import typer

from orchestrion.cli.context import open_store, parse_day, settings
from orchestrion.errors import RunInProgressError

__all__ = ["backfill_app", "run_app", "runs_app"]

run_app = typer.Typer(help="Run a pipeline now: the daily deliverables or the nightly retrain.", no_args_is_help=True)
backfill_app = typer.Typer(help="Run a pipeline for a range of past days, in order.", no_args_is_help=True)
runs_app = typer.Typer(help="The run ledger: every pipeline run, its progress, counts and errors.",
                       no_args_is_help=True)

ADMIN_KEY = typer.Option(None, "--admin-key", envvar="ORCHESTRION_API_KEY",
                         help="Admin key for a running server (not needed without a server).")


@contextmanager
def _key_lock(name: str) -> Iterator[None]:
    """Hold ``<db>.locks/<name>.lock`` (flock) while this process runs that key; released even on
    kill -9. The files stay (removing a flock file races with a process opening it), in one folder
    beside the store rather than one per backfilled day beside it."""
    db = settings().database_path
    folder = db.with_name(f"{db.name}.locks")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.lock"
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunInProgressError(
                f"{name.replace('_', ' ')} is already running (pid {holder}); wait for it, or follow it with "
                "`orchestrion runs list` once it has finished"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _server_url() -> str | None:
    from orchestrion.store import running_server

    holder = running_server(settings().database_path)
    return None if holder is None else holder.url


def _call(url: str, method: str, path: str, admin_key: str | None, body: Any = None) -> Any:
    from orchestrion.cli.keys import _call as call

    return call(url, method, path, admin_key, body)


def _follow(url: str, run: dict[str, Any], admin_key: str | None, quiet: bool) -> dict[str, Any]:
    """Poll the server until the run is no longer running, drawing its progress."""
    from orchestrion.cli.progress import progress_bar

    with progress_bar(f"{run['pipeline']} {run['partition']}", unit="users") as update:
        while run["status"] == "running":
            update(run["users_done"], run["users_total"] or None)
            time.sleep(0.5)
            run = _call(url, "GET", f"/v1/runs/{run['run_id']}", admin_key)
        update(run["users_done"], run["users_total"] or None)
    return run


def _summary(rows: list[dict[str, Any]], title: str) -> None:
    """One line per run that fits 80 columns (`runs show RUN_ID` has everything else)."""
    width = max([len("run"), *(len(str(run["run_id"])) for run in rows)])
    typer.echo(title)
    typer.echo(f"{'run':<{width}}  {'status':<11} {'users':>11} {'seconds':>7} {'users/s':>7} {'goals':>6} "
               f"{'deliv.':>6}")
    for run in rows:
        counts = run.get("counts") or {}
        users = f"{run['users_done']}/{run['users_total']}"
        typer.echo(
            f"{run['run_id']:<{width}}  {run['status']:<11} {users:>11} {run['seconds']:>7.2f} "
            f"{run.get('users_per_second', 0):>7,.0f} {counts.get('goals', ''):>6} {counts.get('deliverables', ''):>6}"
        )
        if run.get("error"):
            typer.echo(f"  error: {run['error']}"[:80])


def _run_local_daily(day: Date, users: list[str] | None, force: bool, trigger: str) -> dict[str, Any]:
    from orchestrion.cli.progress import progress_bar
    from orchestrion.runs.daily import run_daily

    config = settings()
    with _key_lock(f"daily_{day.isoformat()}"), open_store(config) as store, \
            progress_bar(f"daily {day.isoformat()}", unit="users") as update:
        report = run_daily(store, config, day, users=users, force=force, trigger=trigger,
                           progress=lambda done, total: update(done, total))
    return report.as_dict()


@run_app.command("daily")
def daily(
    date: str = typer.Option(..., "--date", help="The delivery day, YYYY-MM-DD (uses events before it)."),
    users: list[str] = typer.Option(None, "--users", help="Only these users (repeatable; their own run key)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would run (users, batches); change nothing."),
    force: bool = typer.Option(False, "--force", help="Run a finished day again as a new attempt (effects once)."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
    admin_key: str = ADMIN_KEY,
) -> None:
    """Deliver a day: propose, rank, plan, execute, review and deliver for every active user."""
    day = parse_day(date)
    if users and any(not user.strip() for user in users):
        raise typer.BadParameter("--users takes a user id (repeat it for more); one given was empty")
    url = _server_url()
    if dry_run:
        from orchestrion.runs.daily import run_daily

        if url is not None:
            raise typer.BadParameter("--dry-run reads the database; stop the server or drop --dry-run")
        with open_store(read_only=True) as store:
            report = run_daily(store, settings(), day, users=users or None, dry_run=True)
        plan = report.plan or {}
        if as_json:
            typer.echo(json.dumps(plan, default=str))
        else:
            would = str(plan.get("would"))
            batches, people = int(plan.get("batches") or 0), int(plan.get("users") or 0)
            typer.echo(
                f"{plan.get('key')}: would {'do ' if would.startswith('nothing') else ''}{would}, "
                f"{people:,} active user{'' if people == 1 else 's'} in {batches} batch{'' if batches == 1 else 'es'} "
                f"of up to {int(plan.get('batch_size') or 0):,}. Nothing was changed."
            )
        return
    if url is not None:
        run = _call(url, "POST", "/v1/runs", admin_key,
                    {"pipeline": "daily", "date": day.isoformat(), "users": users or None, "force": force})
        # the server answers a day already done with its finished run (a new one starts `running`)
        already = run["status"] == "succeeded" and not force
        run = _follow(url, run, admin_key, as_json)
        outcome = {"date": day.isoformat(), "state": "done" if already else "server", "run": run}
    else:
        outcome = _run_local_daily(day, users or None, force, "cli")
    _finish(outcome, as_json)


def _finish(outcome: dict[str, Any], as_json: bool) -> None:
    run = outcome["run"]
    if as_json:
        typer.echo(json.dumps(outcome, default=str))
    elif outcome["state"] == "done":
        typer.echo(f"{run['run_id']} already succeeded; nothing to do (--force starts a new attempt)")
    else:
        _summary([run], f"daily {outcome['date']}")
    if run and run["status"] == "failed":
        raise typer.Exit(1)


@run_app.command("retrain")
def retrain(
    date: str = typer.Option(None, "--date", help="Train on events before this day (default: today, UTC)."),
    force: bool = typer.Option(False, "--force", help="Train again although this night's retrain succeeded."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
    admin_key: str = ADMIN_KEY,
) -> None:
    """Retrain the recommenders and the repurchase model, and the goal ranker (promoted only if better)."""
    from orchestrion.store import utcnow

    day = parse_day(date) if date else utcnow().date()
    url = _server_url()
    if url is not None:
        body = {"pipeline": "retrain", "date": day.isoformat(), "force": force}
        run = _call(url, "POST", "/v1/runs", admin_key, body)
        run = _follow(url, run, admin_key, as_json)
        models = run.get("counts", {}).get("models", {})
    else:
        from orchestrion.runs.retrain import run_retrain

        config = settings()
        with _key_lock(f"retrain_{day.isoformat()}"), open_store(config) as store:
            report = run_retrain(store, config, day, force=force)
        run, models = report.run.as_dict(), report.models
    if as_json:
        typer.echo(json.dumps({"run": run, "models": models}, default=str))
        return
    for name, what in models.items():
        if not what.get("ok"):
            state = f"failed: {what.get('error')}"
        elif what.get("version") is None:
            state = "not trained"
        else:
            state = f"{what.get('version')} {'promoted' if what.get('promoted') else 'not promoted'}"
        typer.echo(f"{name:<18} {state} ({what.get('seconds')}s){' - ' + what['note'] if what.get('note') else ''}")
    typer.echo(f"{run['run_id']}: {run['status']}")
    if run["status"] == "failed":
        raise typer.Exit(1)


@backfill_app.command("daily")
def backfill(
    start: str = typer.Option(..., "--from", help="First day, YYYY-MM-DD."),
    end: str = typer.Option(..., "--to", help="Last day, YYYY-MM-DD (inclusive)."),
    force: bool = typer.Option(False, "--force", help="Run finished days again as new attempts."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
    admin_key: str = ADMIN_KEY,
) -> None:
    """Run the daily pipeline for each day of a range, in order; done days are skipped, a stopped one resumes."""
    first, last = parse_day(start, "--from"), parse_day(end, "--to")
    if last < first:
        raise typer.BadParameter(f"--to {last} is before --from {first}")
    url = _server_url()
    results = []
    day = first
    while day <= last:
        if url is not None:
            body = {"pipeline": "daily", "date": day.isoformat(), "force": force}
            run = _call(url, "POST", "/v1/runs", admin_key, body)
            results.append(_follow(url, run, admin_key, as_json))
        else:
            results.append(_run_local_daily(day, None, force, "backfill")["run"])
        day += timedelta(days=1)
    if as_json:
        typer.echo(json.dumps(results, default=str))
    else:
        _summary(results, f"backfill daily {first} .. {last}")
    if any(r["status"] == "failed" for r in results):
        raise typer.Exit(1)


def _read_runs(admin_key: str | None, path: str, local: Any) -> Any:
    url = _server_url()
    if url is not None:
        return _call(url, "GET", path, admin_key)
    db: Path = settings().database_path
    if not db.exists():
        return local(None)
    with open_store(read_only=True) as store:
        return local(store)


@runs_app.command("list")
def list_(
    pipeline: str = typer.Option(None, help="Only this pipeline (daily, retrain)."),
    status: str = typer.Option(None, help="Only this status (running, succeeded, partial, failed, interrupted)."),
    limit: int = typer.Option(20, help="How many, the last started first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    admin_key: str = ADMIN_KEY,
) -> None:
    """The latest runs: status, progress, speed and counts."""
    from typing import get_args

    from orchestrion.errors import UsageError
    from orchestrion.runs.records import RunStatus, list_runs

    if status is not None and status not in get_args(RunStatus):
        raise UsageError(f"--status takes one of {', '.join(get_args(RunStatus))}, not {status!r}")

    query = "&".join(f"{k}={v}" for k, v in (("pipeline", pipeline), ("status", status), ("limit", limit)) if v)
    rows = _read_runs(admin_key, f"/v1/runs?{query}", lambda store: [] if store is None else [
        r.as_dict() for r in list_runs(store.con, pipeline=pipeline, status=status, limit=limit)])
    if as_json:
        typer.echo(json.dumps(rows, default=str))
    elif not rows and (status or pipeline):
        typer.echo("no run matches; `orchestrion runs list` shows them all")
    elif not rows:
        typer.echo("no runs yet; start one with `orchestrion run daily --date YYYY-MM-DD`")
    else:
        _summary(rows, "runs")


@runs_app.command("show")
def show(run_id: str = typer.Argument(..., help="The run id, e.g. daily-2011-11-01-a1."),
         admin_key: str = ADMIN_KEY) -> None:
    """One run in full: key, attempt, owner, timings, counts, error."""
    from orchestrion.errors import NotFoundError
    from orchestrion.runs.records import get_run

    def local(store: Any) -> Any:
        if store is None:
            raise NotFoundError(f"no run {run_id!r}: the database does not exist yet")
        return get_run(store.con, run_id).as_dict()

    typer.echo(json.dumps(_read_runs(admin_key, f"/v1/runs/{run_id}", local), indent=2, default=str))


def register(app: typer.Typer) -> None:
    app.add_typer(run_app, name="run")
    app.add_typer(backfill_app, name="backfill")
    app.add_typer(runs_app, name="runs")
