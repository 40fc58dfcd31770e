"""Examples are tests: every shell example in the README and the docs runs, verbatim, as written.

Each page's ```bash blocks run in order as one bash script (``set -euo pipefail``: any failing
command fails the page) in a fresh folder that is also ``ORCHESTRION_HOME``, with ``data/samples``
and ``.venv`` linked in as in a checkout, the venv's ``bin`` on ``PATH`` (as after ``source
.venv/bin/activate``) and a free ``ORCHESTRION_PORT``, so a page that starts ``orchestrion serve &``
talks to its own real server; whatever a page leaves running in the background is stopped at
its end. A block that cannot run here is preceded by ``<!-- example: skip REASON -->`` and the
reason is required (e.g. ``make demo``, which reinstalls the package, or a benchmark of several
minutes). Synopses (``orchestrion serve [--port N]``) are not examples: they go in ```text blocks.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import dataset_path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
SKIP = re.compile(r"<!--\s*example:\s*skip\b(.*?)-->\s*$", re.DOTALL)
PRELUDE = """set -euo pipefail
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true' EXIT
"""


@dataclass(frozen=True)
class Block:
    line: int
    code: str
    skip: str | None


def blocks(page: Path) -> list[Block]:
    """The page's ```bash blocks, with the skip reason written just above each, if any."""
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        if match.group(1) not in ("bash", "sh", "shell", "console"):
            continue
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = SKIP.search(before)
        found.append(Block(text.count("\n", 0, match.start()) + 1, match.group(2),
                           skip.group(1).strip() if skip else None))
    return found


def free_port(seed: str) -> int:
    """A free port below the kernel's ephemeral range (Linux: 32768 and up), tried from one that
    ``seed`` picks: ``serve`` binds it a moment after this check, and the kernel hands ephemeral
    ports to every ``--port 0`` server and outgoing connection of the parallel tests, so a port
    taken from that range could be given away in between."""
    start = 20000 + zlib.crc32(f"{seed}|{os.getpid()}".encode()) % 12000
    for offset in range(12000):
        port = 20000 + (start - 20000 + offset) % 12000
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-31999")


def script(page: Path) -> str:
    parts = [PRELUDE]
    for block in blocks(page):
        if block.skip is None:
            parts.append(f"echo '>>> {page.name}:{block.line}' >&2\n{block.code}")
    return "\n".join(parts)


def test_shell_blocks_are_bash_and_every_skip_says_why() -> None:
    for page in PAGES:
        text = page.read_text()
        assert "```console" not in text and "```sh\n" not in text, f"{page}: write shell examples as ```bash"
        for block in blocks(page):
            assert block.skip is None or len(block.skip) > 10, f"{page}:{block.line}: say why it is skipped"
        assert not re.search(r"^\s*orchestrion [^\n]*\[--", "\n".join(b.code for b in blocks(page) if not b.skip),
                             re.MULTILINE), f"{page}: a synopsis with [options] belongs in a ```text block"


@pytest.mark.parametrize("page", [p for p in PAGES if any(b.skip is None for b in blocks(p))],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_page_examples_run_verbatim(page: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    (home / "data" / "samples").symlink_to(ROOT / "data" / "samples")
    (home / ".venv").symlink_to(Path(sys.prefix))
    env = {
        **os.environ,
        "ORCHESTRION_HOME": str(home),
        "ORCHESTRION_PORT": str(free_port(page.name)),
        "PATH": f"{Path(sys.prefix) / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("ORCHESTRION_API_KEY", None)
    text = script(page)
    if "ORCHESTRION_DATASETS" in text:
        dataset_path("movielens-100k")  # the page loads real datasets: skip (laptop) or fail (CI) without them
    done = subprocess.run(["bash", "-c", text], cwd=home, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{page.name}: exit {done.returncode}\n--- stdout\n{done.stdout[-6000:]}\n" \
                                 f"--- stderr\n{done.stderr[-6000:]}"
