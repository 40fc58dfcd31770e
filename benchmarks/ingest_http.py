"""HTTP ingestion throughput against its in-process limit and a naive baseline.

Three figures from one run, on the same kind of events (1,000 distinct events per body):

1. **HTTP**: a real ``orchestrion serve`` process on loopback (its own ORCHESTRION_HOME in a temp
   dir); ``--clients`` keep-alive clients in a separate process post bodies back to back for
   ``--seconds``. Each request counts only once its receipt arrived, i.e. after the commit.
2. **In-process limit**: the same events, already decoded, Arrow-appended into the same ``events``
   table (primary key on ``event_id``) with :func:`orchestrion.ingest.events.write_events`, in
   transactions of ``commit_max_events`` rows, with the server's DuckDB settings; measured before
   and after the HTTP run (the mean is the limit), because other work on a shared machine
   varies. Decoding cost is printed beside it.
3. **Naive baseline**: what a simple server would do per request: ``json.loads`` and one
   ``executemany`` of 1,000 rows, one transaction per request.

Usage::

    .venv/bin/python benchmarks/ingest_http.py [--seconds 10] [--clients 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BATCH = 1000
TEMPLATE_ID = b"RRRRRRRRRR"


def make_body(client: int, request: int, batch: int = BATCH) -> bytes:
    """A JSON array of ``batch`` distinct events; ids encode (client, request, position)."""
    return template(client, batch).replace(TEMPLATE_ID, b"%010d" % request)


_templates: dict[tuple[int, int], bytes] = {}


def template(client: int, batch: int) -> bytes:
    """One body per client with a fixed-width slot for the request number (cheap to fill)."""
    key = (client, batch)
    if key not in _templates:
        events = [
            b'{"event_id":"c%02d-RRRRRRRRRR-%04d","user_id":"u%d","type":"play","item_id":"t%d",'
            b'"ts":"2024-05-01T10:%02d:%02dZ","value":1.0,"properties":{"ms":%d}}'
            % (client, i, (client * 7919 + i) % 5000, (i * 31) % 20000, i % 60, (i * 7) % 60, 1000 + i)
            for i in range(batch)
        ]
        _templates[key] = b"[" + b",".join(events) + b"]"
    return _templates[key]


# --------------------------------------------------------------------------- clients (own process)


async def _client(host: str, port: int, client: int, deadline: float, out: dict[str, Any]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    request = 0
    try:
        while time.perf_counter() < deadline:
            body = make_body(client, request)
            head = (
                f"POST /v1/events HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            start = time.perf_counter()
            writer.write(head + body)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            payload = await reader.readexactly(length)
            out["latencies"].append(time.perf_counter() - start)
            if not status_line.startswith(b"HTTP/1.1 200") or b'"accepted":1000' not in payload:
                out["errors"].append((status_line + payload)[:300].decode(errors="replace"))
            else:
                out["events"] += BATCH
            request += 1
    finally:
        writer.close()
        await writer.wait_closed()


async def _clients(url: str, clients: int, seconds: float) -> dict[str, Any]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    for client in range(clients):
        template(client, BATCH)
    out: dict[str, Any] = {"latencies": [], "errors": [], "events": 0}
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(*(_client(host, int(port), c, deadline, out) for c in range(clients)))
    out["elapsed"] = time.perf_counter() - start
    return out


def client_main(url: str, clients: int, seconds: float) -> None:
    """Entry of the client process: prints one JSON line with the raw figures."""
    out = asyncio.run(_clients(url, clients, seconds))
    lat = sorted(out["latencies"])
    print(json.dumps({
        "events": out["events"],
        "elapsed": out["elapsed"],
        "requests": len(lat),
        "p50_ms": 1000 * lat[len(lat) // 2] if lat else None,
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else None,
        "errors": out["errors"][:5],
        "error_count": len(out["errors"]),
    }))


# --------------------------------------------------------------------------- server


def run_http(home: Path, clients: int, seconds: float) -> dict[str, Any]:
    """The real server in one process, the clients in another; counts read from the file after."""
    import httpx

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test harness starts servers
    from launcher import start_server

    server = start_server(home)
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--as-client", server.url, "--clients", str(clients),
             "--seconds", str(seconds)],
            capture_output=True, text=True, check=True,
        )
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        result["server"] = httpx.get(server.url + "/v1/health", timeout=5).json()
    finally:
        server.stop(timeout=60)
    with server.open_store() as store:
        result["stored"] = store.scalar("SELECT count(*) FROM events")
    return result


# --------------------------------------------------------------------------- in-process


def prepare_limit(n_events: int) -> dict[str, Any]:
    """Decode bodies like the server's into Arrow tables, grouped as one transaction each."""
    import pyarrow as pa

    from orchestrion.config import load_settings
    from orchestrion.ingest.events import decode_native, split_body
    from orchestrion.store import utcnow

    bodies = [make_body(c, r) for r in range(n_events // BATCH // 8 + 1) for c in range(8)]
    received = utcnow()
    start = time.perf_counter()
    tables = [
        decode_native(split_body(b, ndjson=False), received_at=received, max_event_bytes=32768).table
        for b in bodies
    ]
    decode_s = time.perf_counter() - start
    per_commit = load_settings({}).commit_max_events // BATCH
    chunks = [pa.concat_tables(tables[i:i + per_commit]) for i in range(0, len(tables), per_commit)]
    total = sum(t.num_rows for t in tables)
    return {"chunks": chunks, "received": received, "events": total, "decode_events_per_s": total / decode_s}


def run_limit(path: Path, prepared: dict[str, Any]) -> float:
    """Events/s of write_events appending the prepared tables into a fresh file, as the server does."""
    from orchestrion.app import WAL_AUTOCHECKPOINT
    from orchestrion.ingest.events import EventBatch, write_events
    from orchestrion.store import Store

    with Store.open(path) as store:
        store.con.execute(f"SET wal_autocheckpoint = '{WAL_AUTOCHECKPOINT}'")  # as the server does
        start = time.perf_counter()
        for chunk in prepared["chunks"]:
            with store.transaction() as con:
                write_events(con, EventBatch(chunk), source="bench", received_at=prepared["received"])
        write_s = time.perf_counter() - start
        assert store.scalar("SELECT count(*) FROM events") == prepared["events"]
    return float(prepared["events"] / write_s)


def run_naive(home: Path, seconds: float) -> dict[str, Any]:
    """json.loads + one executemany per 1,000-event request, one transaction each."""
    from orchestrion.store import Store, utcnow

    sql = ("INSERT INTO events (event_id, user_id, type, item_id, domain, ts, received_at, value, "
           "properties) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")
    events = 0
    from orchestrion.app import WAL_AUTOCHECKPOINT

    with Store.open(home / "naive.duckdb") as store:
        store.con.execute(f"SET wal_autocheckpoint = '{WAL_AUTOCHECKPOINT}'")
        start = time.perf_counter()
        request = 0
        while time.perf_counter() - start < seconds:
            received = utcnow()
            rows = [
                (e["event_id"], e["user_id"], e["type"], e.get("item_id"), e.get("domain"),
                 e["ts"].rstrip("Z"), received, e.get("value"), json.dumps(e.get("properties")))
                for e in json.loads(make_body(request % 8, request))
            ]
            with store.transaction() as con:
                con.executemany(sql, rows)
            events += len(rows)
            request += 1
        elapsed = time.perf_counter() - start
    return {"events": events, "elapsed": elapsed, "events_per_s": events / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="HTTP load duration (default 10)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent keep-alive clients (default 8)")
    parser.add_argument("--naive-seconds", type=float, default=3.0, help="naive baseline duration")
    parser.add_argument("--limit-events", type=int, default=400_000, help="events for the in-process limit")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--as-client", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.as_client:
        client_main(args.as_client, args.clients, args.seconds)
        return

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="orchestrion-bench-") as tmp:
        home = Path(tmp)
        prepared = prepare_limit(args.limit_events)
        # The limit is measured before and after the HTTP run: other work on the machine varies.
        limit_before = run_limit(home / "limit-before.duckdb", prepared)
        http = run_http(home, args.clients, args.seconds)
        limit_after = run_limit(home / "limit-after.duckdb", prepared)
        naive = run_naive(home, args.naive_seconds)
    limit = (limit_before + limit_after) / 2
    http_rate = http["events"] / http["elapsed"]
    figures = {
        "http_events_per_s": http_rate,
        "http_p50_ms": http["p50_ms"],
        "http_p99_ms": http["p99_ms"],
        "http_requests": http["requests"],
        "http_errors": http["error_count"],
        "http_acknowledged": http["events"],
        "http_stored": http["stored"],
        "events_per_commit": http["server"]["events_per_commit"],
        "limit_events_per_s": limit,
        "limit_before_events_per_s": limit_before,
        "limit_after_events_per_s": limit_after,
        "decode_events_per_s": prepared["decode_events_per_s"],
        "naive_events_per_s": naive["events_per_s"],
        "http_over_limit": http_rate / limit,
        "http_over_naive": http_rate / naive["events_per_s"],
        "load_average": [load_before, os.getloadavg()[0]],
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(f"HTTP ({args.clients} clients, {args.seconds:.0f} s, {BATCH}-event bodies, ack after commit)")
    print(f"  {http_rate:12,.0f} events/s   p50 {http['p50_ms']:.1f} ms   p99 {http['p99_ms']:.1f} ms   "
          f"{http['requests']} requests, {http['error_count']} errors")
    print(f"  acknowledged {http['events']:,}, stored {http['stored']:,}, "
          f"{figures['events_per_commit']:,.0f} events per commit")
    print(f"in-process limit (Arrow append, write_events): {limit:12,.0f} events/s "
          f"(before {limit_before:,.0f}, after {limit_after:,.0f}; "
          f"decode alone {prepared['decode_events_per_s']:,.0f} events/s)")
    print(f"naive baseline (executemany per request):    {naive['events_per_s']:12,.0f} events/s")
    print(f"HTTP / limit = {figures['http_over_limit']:.2f}    HTTP / naive = {figures['http_over_naive']:.1f}x"
          f"    (load average {load_before:.1f} -> {figures['load_average'][1]:.1f} on {os.cpu_count()} CPUs)")
    for error in http["errors"]:
        print("  error:", error)
    if http["events"] != http["stored"]:
        print("WARNING: acknowledged and stored counts differ")
        sys.exit(1)


if __name__ == "__main__":
    main()
