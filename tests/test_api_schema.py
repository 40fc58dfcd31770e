"""schemathesis against the live server's OpenAPI schema: no 5xx, and every answer as documented.

The CLI runs in its own process (its hypothesis database and reports go to tmp_path), against a
server that requires keys, with an admin key so that every route is reached.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from launcher import cli, serve

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def test_openapi_schema_holds_under_generated_requests(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    created = cli(home, "keys", "create", "--role", "admin")
    key = created.stdout.strip().splitlines()[-1]
    with serve(home) as server:
        run = subprocess.run(
            [str(Path(sys.executable).with_name("schemathesis")), "run", f"{server.url}/openapi.json",
             "--header", f"Authorization: Bearer {key}", "--checks", CHECKS,
             "--max-examples", "15", "--seed", "1", "--request-timeout", "20", "--no-color"],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
        assert "passed" in run.stdout
        assert httpx.get(server.url + "/v1/health", timeout=10).status_code == 200
        assert server.proc.poll() is None
    assert "Traceback" not in server.log, server.log[-4000:]
