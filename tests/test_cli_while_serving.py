"""Every CLI command works while ``orchestrion serve`` holds the store: reads and writes go through
its API with the one key variable (ORCHESTRION_API_KEY); the demo, which needs the store to itself,
says in one line what to do instead and exits 2."""

from __future__ import annotations

import json
from pathlib import Path

from launcher import cli, serve
from orchestrion.runs.demo import DEMO_DAY

USER = "online-retail:12362"  # a customer of the shipped sample


def test_commands_go_through_the_running_server(tmp_path: Path) -> None:
    demo = cli(tmp_path, "demo")
    assert demo.returncode == 0, demo.stderr
    admin = cli(tmp_path, "keys", "create", "--role", "admin").stdout.strip().splitlines()[-1]
    env = {"ORCHESTRION_API_KEY": admin}
    day = DEMO_DAY.isoformat()
    with serve(tmp_path):
        def ok(*args: str) -> str:
            done = cli(tmp_path, *args, env=env)
            assert done.returncode == 0, f"{args}: {done.stderr}"
            assert "Traceback" not in done.stderr
            return done.stdout

        figures = json.loads(ok("stats", "--json"))
        assert figures["events"] > 0
        assert "daily" in ok("runs", "list")
        # the demo's day is done: through the server too, the run says so (the README's tour promises it)
        assert "already succeeded; nothing to do" in ok("run", "daily", "--date", day)
        assert "admin" in ok("keys", "list")
        assert ok("users", "token", USER).strip()
        assert "/signin#token=" in ok("users", "link", USER)
        trained = json.loads(ok("train", "ranker", "--json"))
        assert {"promoted", "version", "note"} <= trained.keys()
        delivered = json.loads(ok("deliver", "--date", day, "--json"))
        assert delivered["users"] > 0  # the demo's day again: nothing new, but every user looked at
        assert f"Deliverables of {day}" in ok("deliver", "--date", day, "--user", USER)

        again = cli(tmp_path, "demo", env=env)
        assert again.returncode == 2
        assert again.stderr.count("\n") == 1 and "stop the server" in again.stderr

        refused = cli(tmp_path, "deliver", "--date", day, env={"ORCHESTRION_API_KEY": "nope"})
        assert refused.returncode == 2 and "401" in refused.stderr and "Traceback" not in refused.stderr
