"""``orchestrion serve``: placeholder, filled in by its owner."""

from __future__ import annotations

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Register the serve command."""
