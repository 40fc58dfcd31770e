"""Broken bulk files and unwritable folders through the real CLI (a subprocess): one line naming
the file, where and what to do; exit code 1; and nothing of a broken file stored."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from launcher import CLI, cli
from orchestrion.store import Store

HEADER = "event_id,user_id,type,item_id,ts,value"
SMALL_CHUNKS = {"ORCHESTRION_BULK_CHUNK_ROWS": "1000"}


def csv_rows(n: int, start: int = 0) -> list[str]:
    return [f"e{i},u{i % 7},play,t{i},2024-05-01T10:00:00Z,{i}" for i in range(start, start + n)]


def csv_text(rows: list[str]) -> str:
    return HEADER + "\n" + "\n".join(rows) + "\n"


def ndjson(n: int) -> bytes:
    return b"".join(
        json.dumps({"event_id": f"n{i}", "user_id": f"u{i % 5}", "type": "play"}).encode() + b"\n" for i in range(n)
    )


def stored_events(home: Path, where: str = "true") -> int:
    database = home / "data" / "orchestrion.duckdb"
    if not database.exists():
        return 0
    with Store.open(database) as store:
        return int(str(store.scalar(f"SELECT count(*) FROM events WHERE {where}")))


def latin1(path: Path) -> None:
    rows = csv_rows(3000)
    rows[1500] = "e9,José,play,t,2024-05-01T10:00:00Z,1"
    path.write_bytes(csv_text(rows).encode("latin-1"))


def latin1_header(path: Path) -> None:
    path.write_bytes(("event_id,usér_id,type\n" + "e1,u1,play\n").encode("latin-1"))


def utf16(path: Path) -> None:
    path.write_bytes(csv_text(csv_rows(3000)).encode("utf-16"))


def ragged(path: Path) -> None:
    rows = csv_rows(3000)
    rows[1500] += ",extra"
    path.write_text(csv_text(rows))


def truncated_csv_gz(path: Path) -> None:
    whole = gzip.compress(csv_text(csv_rows(3000)).encode())
    path.write_bytes(whole[: len(whole) // 2])


def truncated_ndjson_gz(path: Path) -> None:
    whole = gzip.compress(ndjson(3000))
    path.write_bytes(whole[: len(whole) * 3 // 4])


def not_gzip(path: Path) -> None:
    path.write_text(csv_text(csv_rows(10)))


def parquet_of(path: Path, rows: int = 3000) -> None:
    frame = pl.DataFrame({"event_id": [f"p{i}" for i in range(rows)], "user_id": ["u1"] * rows,
                          "type": ["play"] * rows})
    frame.write_parquet(path, row_group_size=1000)


def truncated_parquet(path: Path) -> None:
    parquet_of(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def not_parquet(path: Path) -> None:
    path.write_text("event_id,user_id\n")


def corrupt_parquet(path: Path) -> None:
    parquet_of(path)
    data = bytearray(path.read_bytes())
    data[200:400] = b"\x00" * 200
    path.write_bytes(bytes(data))


BROKEN: dict[str, tuple[Callable[[Path], None], str]] = {
    "latin1.csv": (latin1, "line 1,502 (byte"),
    "latin1-header.csv": (latin1_header, "not UTF-8: line 1"),
    "utf16.csv": (utf16, "UTF-16"),
    "ragged.csv": (ragged, "line 1,502 has 7 fields where the header has 6"),
    "truncated.csv.gz": (truncated_csv_gz, "truncated"),
    "truncated.ndjson.gz": (truncated_ndjson_gz, "truncated"),
    "plain.csv.gz": (not_gzip, "not gzip-compressed"),
    "plain.ndjson.gz": (not_gzip, "not gzip-compressed"),
    "truncated.parquet": (truncated_parquet, "not a readable Parquet file"),
    "text.parquet": (not_parquet, "not a readable Parquet file"),
    "corrupt.parquet": (corrupt_parquet, "cannot be read"),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_a_broken_file_is_one_line_exit_1_and_nothing_stored(tmp_path: Path, name: str) -> None:
    make, where = BROKEN[name]
    path = tmp_path / name
    make(path)
    home = tmp_path / "home"
    good = tmp_path / "good.csv"
    good.write_text(csv_text(csv_rows(5, start=90_000)))
    # the good file first: a broken second file must not leave the first half-known either
    run = cli(home, "ingest", "events", str(good), str(path), env=SMALL_CHUNKS)
    assert run.returncode == 1, (run.returncode, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert str(path) in lines[0] and where in lines[0], lines[0]
    assert "nothing" in lines[0] and "stored" in lines[0], lines[0]
    assert stored_events(home, "event_id NOT LIKE 'e9000_'") == 0  # the good file may be stored
    items = cli(home, "ingest", "items", str(path), env=SMALL_CHUNKS)
    assert items.returncode == 1 and len(items.stderr.strip().splitlines()) == 1, items.stderr


def test_a_file_breaking_after_committed_chunks_says_which_rows_were_stored(tmp_path: Path) -> None:
    path = tmp_path / "late.parquet"
    parquet_of(path)
    last = pq.ParquetFile(path).metadata.row_group(2).column(0)
    data = bytearray(path.read_bytes())
    start = last.data_page_offset
    data[start:start + 64] = b"\xff" * 64  # the last row group's first page header
    path.write_bytes(bytes(data))
    run = cli(tmp_path / "home", "ingest", "events", str(path), env=SMALL_CHUNKS)
    assert run.returncode == 1 and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "its first 2,000 rows were stored" in run.stderr and "run the same command again" in run.stderr
    assert stored_events(tmp_path / "home") == 2000


def test_a_truncated_gzip_never_exits_130_and_whole_files_still_load(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson.gz"
    truncated_ndjson_gz(path)
    run = cli(tmp_path / "home", "ingest", "events", str(path), env=SMALL_CHUNKS)
    assert run.returncode == 1 and "truncated" in run.stderr
    assert stored_events(tmp_path / "home") == 0
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + csv_text(csv_rows(1500)).encode())
    two_members = tmp_path / "two.ndjson.gz"
    two_members.write_bytes(gzip.compress(ndjson(1200)) + gzip.compress(b""))
    run = cli(tmp_path / "home", "ingest", "events", str(bom), str(two_members), env=SMALL_CHUNKS)
    assert run.returncode == 0, run.stderr
    assert stored_events(tmp_path / "home") == 2700


def in_namespace(script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (sh) as root of a new user and mount namespace, where tmpfs can be mounted."""
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ})


def orchestrion(args: str) -> str:
    return " ".join([*(f"'{part}'" for part in CLI), args])


needs_unshare = pytest.mark.skipif(
    shutil.which("unshare") is None or in_namespace("true").returncode != 0 or sys.platform != "linux",
    reason="needs unprivileged user namespaces (unshare -rm) to mount a read-only or tiny tmpfs",
)


@needs_unshare
def test_a_read_only_folder_is_called_read_only(tmp_path: Path) -> None:
    mount = tmp_path / "ro"
    mount.mkdir()
    events = tmp_path / "events.csv"
    events.write_text(csv_text(csv_rows(10)))
    run = in_namespace(
        f"mount -t tmpfs -o size=1m tmpfs {mount} && mkdir -p {mount}/home/data && mount -o remount,ro {mount} && "
        f"export ORCHESTRION_HOME={mount}/home; {orchestrion('serve --port 0')}; echo serve=$?; "
        f"{orchestrion(f'ingest events {events}')}; echo ingest=$?; "
        f"export ORCHESTRION_HOME={mount}/fresh; {orchestrion('serve --port 0')}; echo fresh=$?"
    )
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 3 and "Traceback" not in run.stderr, run.stdout + run.stderr
    assert all("read-only filesystem" in line and "held" not in line for line in errors), errors
    assert "serve=2" in run.stdout and "ingest=2" in run.stdout and "fresh=2" in run.stdout


@needs_unshare
def test_a_full_disk_is_called_full(tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    events = tmp_path / "events.csv"
    events.write_text(csv_text(csv_rows(3000)))
    run = in_namespace(
        f"mount -t tmpfs -o size=64k tmpfs {mount} && export ORCHESTRION_HOME={mount}/home; "
        f"{orchestrion(f'ingest events {events}')}; echo ingest=$?; "
        f"head -c 1000000 /dev/zero > {mount}/filler 2>/dev/null; "
        f"{orchestrion('serve --port 0')}; echo serve=$?"
    )
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and "Traceback" not in run.stderr, run.stdout + run.stderr
    assert all("is full" in line for line in errors), errors
    assert "ingest=2" in run.stdout and "serve=2" in run.stdout


def test_control_characters_in_bulk_ids_go_to_failed_events(tmp_path: Path) -> None:
    events = tmp_path / "events.csv"
    events.write_text(csv_text(["c1,u\x001,play,t1,2024-05-01,1", "c2,u2,pl\x1by,t2,2024-05-01,1",
                                "c3,u3,play,t\x7f3,2024-05-01,1", "c4,u4,play,t4,2024-05-01,1"]))
    items = tmp_path / "items.ndjson"
    items.write_text(json.dumps({"item_id": "i\x001"}) + "\n" + json.dumps({"item_id": "i2"}) + "\n")
    home = tmp_path / "home"
    assert cli(home, "ingest", "events", str(events)).returncode == 0
    assert cli(home, "ingest", "items", str(items)).returncode == 0
    with Store.open(home / "data" / "orchestrion.duckdb") as store:
        assert store.scalar("SELECT list(event_id) FROM events") == ["c4"]
        assert store.scalar("SELECT list(item_id) FROM items") == ["i2"]
        reasons = store.con.execute("SELECT reason FROM failed_events ORDER BY failed_id").fetchall()
        assert [r[0].split(" ")[0] for r in reasons] == ["user_id", "type", "item_id", "item_id"]
        assert all("control character" in r[0] for r in reasons)


def test_a_dataset_file_that_cannot_be_read_is_one_line(tmp_path: Path) -> None:
    root = os.environ.get("ORCHESTRION_DATASETS")
    source = Path(root) / "ml-100k" if root else None
    if source is None or not (source / "u.data").is_file():
        pytest.skip("the ml-100k dataset is not here (set ORCHESTRION_DATASETS)")
    folder = tmp_path / "ml-100k"
    shutil.copytree(source, folder)
    (folder / "u.data").write_bytes((source / "u.data").read_text()[:100_000].encode("utf-16"))
    run = cli(tmp_path / "home", "datasets", "load", "movielens-100k", "--path", str(folder))
    lines = [line for line in run.stderr.strip().splitlines() if line.strip()]
    assert run.returncode == 1 and len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert "movielens-100k" in lines[0] and str(folder) in lines[0] and "nothing was stored" in lines[0]
    assert stored_events(tmp_path / "home") == 0
