from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrion.errors import ConfigError, DatabaseLockedError
from orchestrion.store import Store


def test_migrations_create_the_contract_tables(store: Store) -> None:
    tables = {r[0] for r in store.con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert {"events", "failed_events", "items", "users", "api_keys", "schema_migrations"} <= tables
    columns = [
        r[0]
        for r in store.con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'events' "
            "ORDER BY ordinal_position"
        ).fetchall()
    ]
    assert columns == [
        "event_id", "user_id", "type", "item_id", "domain", "ts", "received_at", "value", "properties", "source"
    ]


def test_reopening_applies_no_migration_twice(tmp_path: Path) -> None:
    path = tmp_path / "db.duckdb"
    shipped = len(list((Path(__file__).parents[1] / "src" / "orchestrion" / "migrations").glob("*.sql")))
    with Store.open(path) as first:
        assert first.scalar("SELECT count(*) FROM schema_migrations") == shipped >= 1
    with Store.open(path) as second:
        assert second.migrate() == []


def test_second_writer_is_told_who_holds_the_database(tmp_path: Path) -> None:
    path = tmp_path / "db.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from orchestrion.store import Store; s = Store.open(sys.argv[1]); "
         "s.announce_server('http://127.0.0.1:9'); print('ready', flush=True); time.sleep(30)",
         str(path)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(DatabaseLockedError) as info:
            Store.open(path)
        assert str(holder.pid) in str(info.value) and "http://127.0.0.1:9" in str(info.value)
        # it names fixes that work: stop the server, or the commands that do send their work to it
        assert "stop the server first" in str(info.value) and "`run retrain`" in str(info.value)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()  # type: ignore[union-attr]
    assert os.path.exists(path)


def test_memory_limit_is_applied_and_a_bad_one_is_named(tmp_path: Path) -> None:
    with Store.open(tmp_path / "m.duckdb", memory_limit="300MB") as store:
        assert str(store.scalar("SELECT current_setting('memory_limit')")).startswith("286")
    with pytest.raises(ConfigError, match=r"DUCKDB_MEMORY_LIMIT 'lots'.*1GB"):
        Store.open(tmp_path / "m.duckdb", memory_limit="lots")
    with Store.open(tmp_path / "m.duckdb") as store:  # the refused open left no lock behind
        assert store.scalar("SELECT count(*) FROM events") == 0
