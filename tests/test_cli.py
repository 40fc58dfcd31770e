from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import polars as pl
import typer
from typer.testing import CliRunner

from orchestrion.cli import app

runner = CliRunner()


def walk(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():
        found += walk(sub, (*path, name))
    return found


def words(text: str) -> str:
    """Text as words, without the boxes and line breaks of rich's help layout."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def test_every_command_has_help() -> None:
    commands = walk(typer.main.get_command(app))
    assert len(commands) > 5
    for path, command in commands:
        assert (command.help or "").strip(), f"orchestrion {' '.join(path)} has no help text"
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        shown = words(result.output)
        assert f"Usage: orchestrion {' '.join(path)}".strip() in shown, (path, shown)
        summary = " ".join(words(command.help).split()[:6])
        assert summary in shown, (path, summary, shown)
        for param in command.params:  # every option and argument is listed with its own help
            if param.name != "help" and getattr(param, "help", None):
                assert words(param.help).split()[0] in shown, (path, param.name)


def test_ingest_then_stats_json(tmp_path: Path) -> None:
    events = tmp_path / "events.csv"
    pl.DataFrame(
        {"user_id": ["u1", "u2", "u2"], "type": ["play", "play", "skip"], "item_id": ["a", "b", "a"],
         "domain": ["music"] * 3, "ts": ["2024-05-01T00:00:00Z"] * 3}
    ).write_csv(events)
    env = {"ORCHESTRION_HOME": str(tmp_path)}
    loaded = runner.invoke(app, ["ingest", "events", str(events), "--json"], env=env)
    assert loaded.exit_code == 0, loaded.output
    summary = json.loads(loaded.output.strip().splitlines()[-1])
    assert (summary["rows"], summary["accepted"]) == (3, 3)
    again = runner.invoke(app, ["ingest", "events", str(events), "--json"], env=env)
    assert json.loads(again.output.strip().splitlines()[-1])["duplicates"] == 3
    stats = runner.invoke(app, ["stats", "--json"], env=env)
    figures = json.loads(stats.output)
    assert (figures["events"], figures["users"], figures["failed_events"]) == (3, 2, 0)
    assert figures["events_by_type"] == {"music/play": 2, "music/skip": 1}
    assert (tmp_path / "data" / "orchestrion.duckdb").exists()
