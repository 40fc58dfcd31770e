"""Usage mistakes on the command line: one line plus a hint on stderr, exit code 2, never a traceback;
and what the output of a few commands looks like (80 columns, JSON only on stdout)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import typer

from orchestrion.cli import app, main
from orchestrion.runs.records import RunKey, claim_run, finish_run
from orchestrion.store import Store


def commands(command: Any = None, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    command = command if command is not None else typer.main.get_command(app)
    found = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():
        found += commands(sub, (*path, name))
    return found


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``orchestrion ARGS`` through the real entry point (``main``), as the console script runs it."""
    with pytest.raises(SystemExit) as exited:
        main(args)
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), out, err


def assert_usage_error(code: int, out: str, err: str, *, mentions: str) -> None:
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith("error: ") and mentions in lines[0], err
    assert lines[1].startswith("hint: run 'orchestrion") and "--help" in lines[1], err


BAD = [
    (["run", "daily"], "Missing option '--date'"),
    (["run", "daily", "--date", "2011-13-01"], "2011-13-01"),
    (["deliver", "--date", "2011-02-30"], "2011-02-30 is not a day of the calendar"),
    (["goals", "show", "u", "--date", "11/01/2011"], "takes YYYY-MM-DD"),
    (["run", "daily", "--date", "2011-11-01", "--users", ""], "one given was empty"),
    (["backfill", "daily", "--from", "2011-11-07", "--to", "2011-11-01"], "before"),
    (["nosuch"], "No such command 'nosuch'"),
    (["run", "daily", "--date", "2011-11-01", "--bogus"], "--bogus"),
    (["serve", "--port", "abc"], "'--port'"),
    (["serve", "--port", "99999"], "65535"),
    (["ingest", "events", "/no/such/file.csv"], "/no/such/file.csv"),
    (["goals", "show"], "Missing argument"),
    (["train", "nosuchkind"], "nosuchkind"),
]


@pytest.mark.parametrize(("args", "mentions"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_a_usage_mistake_is_one_line_a_hint_and_exit_2(
    args: list[str], mentions: str, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORCHESTRION_HOME", str(tmp_path))
    assert_usage_error(*run(args, capsys), mentions=mentions)


def test_every_command_refuses_an_unknown_option_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    found = commands()
    assert len(found) > 20
    for path, _ in found:
        code, out, err = run([*path, "--no-such-option"], capsys)
        assert_usage_error(code, out, err, mentions="--no-such-option")


def test_a_bare_group_prints_its_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    for args in ([], ["runs"], ["keys"]):
        code, out, err = run(args, capsys)
        assert code == 2 and "Traceback" not in out + err
        assert "Usage: orchestrion" in out + err and (out + err).count("Usage: orchestrion") == 1


def test_users_link_refuses_a_user_the_store_has_never_seen(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRION_HOME", str(tmp_path))
    events = tmp_path / "events.ndjson"
    events.write_text(json.dumps({"user_id": "alice", "type": "play", "item_id": "t1"}) + "\n")
    assert run(["ingest", "events", str(events)], capsys)[0] == 0
    code, out, err = run(["users", "link", "nosuchuser"], capsys)
    assert code == 2 and out == "" and "nosuchuser" in err and "Traceback" not in err
    code, out, _ = run(["users", "link", "alice"], capsys)
    assert code == 0 and "/signin#token=" in out


def test_runs_list_fits_80_columns(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRION_HOME", str(tmp_path))
    now = datetime(2011, 11, 2, 7, tzinfo=UTC).replace(tzinfo=None)
    with Store.open(tmp_path / "data" / "orchestrion.duckdb") as store:
        for day in (1, 2):
            claim = claim_run(store, RunKey("daily", date(2011, 11, day)), now=now)
            finish_run(store, claim.run.run_id, "succeeded", now=now, seconds=1234.5,
                       counts={"goals": 123456, "deliverables": 98765, "effects": 5, "refused": 1})
        claim = claim_run(store, RunKey("retrain", date(2011, 11, 2)), now=now)
        finish_run(store, claim.run.run_id, "failed", now=now, error="the store failed: " + "x" * 200)
    code, out, err = run(["runs", "list"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) >= 5 and max(len(line) for line in lines) <= 80, out
    assert "daily-2011-11-01-a1" in out and "failed" in out and "123456" in out
    # a status no run has is not "no runs yet"; one that does not exist is refused, naming those that do
    code, out, err = run(["runs", "list", "--status", "partial"], capsys)
    assert code == 0 and "no run matches" in out, (out, err)
    code, out, err = run(["runs", "list", "--status", "bogus"], capsys)
    assert code == 2 and "succeeded, partial, failed" in err, (out, err)


def test_json_output_is_json_only(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Progress goes to stderr, so stdout parses as one JSON document."""
    monkeypatch.setenv("ORCHESTRION_HOME", str(tmp_path))
    events = tmp_path / "events.ndjson"
    events.write_text(json.dumps({"user_id": "alice", "type": "play", "item_id": "t1"}) + "\n")
    code, out, _ = run(["ingest", "events", str(events), "--json"], capsys)
    assert code == 0 and json.loads(out)["accepted"] == 1
    code, out, _ = run(["run", "daily", "--date", "2011-11-01", "--json"], capsys)
    assert code == 0 and json.loads(out)["run"]["status"] == "succeeded"
    code, out, _ = run(["backfill", "daily", "--from", "2011-11-01", "--to", "2011-11-02", "--json"], capsys)
    assert code == 0 and [r["status"] for r in json.loads(out)] == ["succeeded"] * 2


def test_version_and_a_dry_run_read_as_sentences_and_json_on_request(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from importlib.metadata import version

    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.strip() == f"orchestrion {version('orchestrion')}"
    monkeypatch.setenv("ORCHESTRION_HOME", str(tmp_path))
    events = tmp_path / "events.ndjson"
    events.write_text(json.dumps({"user_id": "alice", "type": "play", "item_id": "t1", "ts": "2011-10-30T10:00:00"}))
    assert run(["ingest", "events", str(events)], capsys)[0] == 0
    code, out, _ = run(["run", "daily", "--date", "2011-11-01", "--dry-run"], capsys)
    assert code == 0 and out.strip() == (
        "daily 2011-11-01: would start a new attempt, 1 active user in 1 batch of up to 2,000. Nothing was changed."
    ), out
    code, out, _ = run(["run", "daily", "--date", "2011-11-01", "--dry-run", "--json"], capsys)
    assert code == 0 and json.loads(out)["would"] == "start a new attempt" and json.loads(out)["users"] == 1


def test_a_server_error_without_json_is_one_line_not_a_traceback() -> None:
    """A 500 whose body is plain text (a crash the server logged, a proxy's page): the CLI says
    which server answered what, and to try again — never a JSONDecodeError traceback."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from orchestrion.cli.keys import _call
    from orchestrion.errors import RetryableError, UsageError

    class Plain(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            code = 500 if self.path == "/v1/runs" else 400
            body = b"Internal Server Error" if code == 500 else b"<html>bad gateway page</html>"
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Plain)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(RetryableError) as crashed:
            _call(url, "POST", "/v1/runs", None, {"pipeline": "daily"})
        assert "answered 500 (Internal Server Error)" in str(crashed.value) and "Try again" in str(crashed.value)
        with pytest.raises(UsageError) as refused:
            _call(url, "POST", "/v1/keys", None, {})
        assert "answered 400: <html>bad gateway page</html>" in str(refused.value)
    finally:
        server.shutdown()
        server.server_close()


def test_a_run_for_a_day_still_to_come_is_refused_and_counts_as_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo of the date (2026-12-20 for 2026-11-20): a run made now, from what is known now,
    would be recorded as that day's and skipped when the day comes. It is refused, saying why;
    tomorrow is allowed (a time zone ahead of UTC is already there)."""
    from datetime import timedelta

    from orchestrion.errors import UsageError

    now = datetime(2026, 12, 3, 9, 0)
    with Store.open(tmp_path / "runs.duckdb") as store:
        with pytest.raises(UsageError, match=r"date 2026-12-20 is in the future \(it is 2026-12-03 UTC\)"):
            claim_run(store, RunKey("daily", date(2026, 12, 20)), now=now)
        assert store.scalar("SELECT count(*) FROM runs") == 0
        tomorrow = claim_run(store, RunKey("daily", now.date() + timedelta(days=1)), now=now)
        assert tomorrow.state == "new"
    monkeypatch.setenv("ORCHESTRION_HOME", str(tmp_path / "home"))
    far = (datetime.now(UTC).date() + timedelta(days=30)).isoformat()
    for args in (["run", "daily", "--date", far], ["goals", "propose", "--date", far]):
        code, out, err = run(args, capsys)
        assert code != 0 and "Traceback" not in out + err
        assert f"date {far} is in the future" in err, (args, err)
