"""What every command needs: the settings (read once) and an open store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from orchestrion.config import Settings, load_settings
from orchestrion.store import Store

__all__ = ["open_store", "settings"]


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
