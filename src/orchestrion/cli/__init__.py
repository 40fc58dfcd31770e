"""The ``orchestrion`` command: thin shells over library functions.

Each command group lives in its own module and is registered here; heavy libraries are imported
inside the commands so that ``orchestrion --help`` starts fast.
"""

from __future__ import annotations

import sys

import typer

from orchestrion.cli import (
    core,
    datasets,
    deliver,
    evaluate,
    feedback,
    goals,
    ingest,
    keys,
    models,
    replay,
    runs,
    serve,
    users,
)
from orchestrion.errors import IngestError, OrchestrionError

__all__ = ["app", "main"]

app = typer.Typer(
    name="orchestrion",
    help="A proactive orchestrator: ingest signals, propose goals, plan and deliver them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"orchestrion {version('orchestrion')}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_version, help="Print the installed version and exit."
    ),
) -> None:
    """A proactive orchestrator: ingest signals, propose goals, plan and deliver them."""


core.register(app)
serve.register(app)
app.add_typer(ingest.app, name="ingest")
app.add_typer(datasets.app, name="datasets")
app.add_typer(keys.app, name="keys")
models.register(app)
evaluate.app.command("replay")(replay.replay)
app.add_typer(evaluate.app, name="eval")
app.add_typer(goals.app, name="goals")
app.add_typer(feedback.app, name="feedback")
runs.register(app)
app.add_typer(users.app, name="users")
app.command("deliver")(deliver.deliver)


def main(args: list[str] | None = None) -> None:
    """Entry point: run the app, turning orchestrion errors and usage mistakes into one clear line
    (and a hint) on stderr with exit code 2, never a traceback."""
    try:
        code = app(args=args, prog_name="orchestrion", standalone_mode=False)
    except IngestError as exc:  # a file that cannot be read: the run failed, not its usage
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(1)
    except OrchestrionError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except typer.Abort as exc:
        # click also turns an EOFError into Abort; only Ctrl-C is an interruption (exit 130)
        if isinstance(exc.__context__, KeyboardInterrupt):
            sys.exit(130)
        typer.secho(f"error: unexpected end of input ({exc.__context__!r})", err=True, fg=typer.colors.RED)
        sys.exit(1)
    except typer.TyperException as exc:  # typer's own click: usage errors, bad values, unopenable files
        sys.exit(_usage_error(exc))
    # outside standalone mode a `typer.Exit(n)` comes back as n (commands themselves return None)
    sys.exit(code if isinstance(code, int) else 0)


def _usage_error(exc: typer.TyperException) -> int:
    """Print a usage mistake as one line plus a hint; returns the exit code (2)."""
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "orchestrion"
    if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group: typer has printed its help already
        return 2
    message = " ".join(exc.format_message().split())  # one line, whatever the exception wrapped
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    typer.echo(f"hint: run '{command} --help' for its usage", err=True)
    return 2
