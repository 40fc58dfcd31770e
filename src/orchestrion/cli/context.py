"""What every command needs: the settings (read once) and an open store."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

from orchestrion.config import Settings, load_settings
from orchestrion.store import Store

__all__ = ["open_store", "parse_day", "settings"]


def settings() -> Settings:
    return load_settings()


@contextmanager
def open_store(config: Settings | None = None, *, read_only: bool = False) -> Iterator[Store]:
    config = config or settings()
    store = Store.open(
        config.database_path,
        read_only=read_only and config.database_path.exists(),
        memory_limit=config.duckdb_memory_limit,
    )
    try:
        yield store
    finally:
        store.close()


def parse_day(text: str, option: str = "--date") -> date:
    """``text`` as a day, or a usage error saying what is wrong with it.

    >>> parse_day("2011-11-01")
    datetime.date(2011, 11, 1)
    """
    import typer

    try:
        return date.fromisoformat(text)
    except ValueError:
        shaped = re.fullmatch(r"\d{4}-\d{2}-\d{2}", text)
        why = f"{text} is not a day of the calendar (check the month's days)" if shaped else None
        raise typer.BadParameter(f"{option}: {why}" if why else f"{option} takes YYYY-MM-DD, got {text!r}") from None
