"""``orchestrion datasets``: placeholder, filled in by its owner."""

from __future__ import annotations

import typer

__all__ = ["app"]

app = typer.Typer(help="datasets commands.", no_args_is_help=True)
