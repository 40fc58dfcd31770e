"""A rich progress bar that fits the library's ``progress(done, total)`` callbacks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["progress_bar"]


@contextmanager
def progress_bar(description: str, unit: str = "rows") -> Iterator[Callable[[int, int | None], None]]:
    """Yield a callback ``update(done, total)`` drawing a bar with throughput; total may be None."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
    )
    # progress goes to stderr, so that stdout carries only the result (`--json` pipes cleanly), and
    # only to a terminal: a log or a script reading stderr gets the result and errors, no bar frames
    console = Console(stderr=True)
    with Progress(*columns, console=console, transient=False, disable=not console.is_terminal) as bar:
        task = bar.add_task(description, total=None, rate="")

        def update(done: int, total: int | None) -> None:
            elapsed = bar.tasks[0].elapsed or 0.0
            rate = f"{done / elapsed:,.0f} {unit}/s" if elapsed > 0 else ""
            bar.update(task, completed=done, total=total, rate=rate)

        yield update
