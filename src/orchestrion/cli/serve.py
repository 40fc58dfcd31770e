"""``orchestrion serve``: the HTTP API (see :mod:`orchestrion.app`)."""

from __future__ import annotations

import typer

from orchestrion.cli.context import settings

__all__ = ["register"]


def serve(
    host: str = typer.Option(None, help="Address to listen on; default ORCHESTRION_HOST or 127.0.0.1."),
    port: int = typer.Option(None, min=0, max=65535,
                             help="Port; 0 picks a free one; default ORCHESTRION_PORT or 8000."),
) -> None:
    """Run the HTTP API, holding the database until stopped (SIGTERM or Ctrl-C)."""
    from orchestrion.app import run_server

    config = settings()
    run_server(config, host or config.host, config.port if port is None else port)


def register(app: typer.Typer) -> None:
    """Register the serve command."""
    app.command()(serve)
