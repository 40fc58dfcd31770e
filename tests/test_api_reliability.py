"""Nothing acknowledged is lost, nothing is stored twice: resends, concurrency and ``kill -9``.

Every check reads the DuckDB file after the server process has ended, as a later process would.
"""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from launcher import serve, start_server


def events(client: int, batch: int, size: int) -> list[dict[str, Any]]:
    return [
        {"event_id": f"c{client}-b{batch}-{i}", "user_id": f"u{(client * 31 + i) % 97}", "type": "play",
         "item_id": f"t{i % 50}", "ts": 1714557600 + i, "properties": {"client": client}}
        for i in range(size)
    ]


def test_same_batch_twice_and_resends_across_concurrent_clients(tmp_path: Path) -> None:
    clients, batches, size = 8, 12, 200
    own = {(c, b): events(c, b, size) for c in range(clients) for b in range(batches)}
    receipts: list[dict[str, Any]] = []
    sent_ids: list[str] = []
    lock = threading.Lock()

    def client(url: str, c: int) -> None:
        rng = random.Random(c)
        with httpx.Client(base_url=url, timeout=60) as http:
            for b in range(batches):
                body = list(own[(c, b)])
                # 30% resends: events another client (or this one) has sent or is sending now
                for _ in range(int(size * 0.3)):
                    body.append(rng.choice(own[(rng.randrange(clients), rng.randrange(b + 1))]))
                response = http.post("/v1/events", content=json.dumps(body))
                assert response.status_code == 200, response.text
                with lock:
                    receipts.append(response.json())
                    sent_ids.extend(e["event_id"] for e in body)

    with serve(tmp_path) as server:
        first = events(99, 0, 50)
        once = httpx.post(server.url + "/v1/events", content=json.dumps(first), timeout=30).json()
        twice = httpx.post(server.url + "/v1/events", content=json.dumps(first), timeout=30).json()
        assert (once["accepted"], twice["accepted"], twice["duplicates"]) == (50, 0, 50)
        with ThreadPoolExecutor(clients) as pool:
            for future in [pool.submit(client, server.url, c) for c in range(clients)]:
                future.result()
        health = httpx.get(server.url + "/v1/health", timeout=5).json()
        assert health["jobs"] >= health["commits"]

    distinct = set(sent_ids)
    assert sum(r["accepted"] for r in receipts) == len(distinct)
    assert sum(r["accepted"] + r["duplicates"] for r in receipts) == len(sent_ids)
    assert all(r["rejected"] == 0 for r in receipts)
    with server.open_store() as store:
        assert store.scalar("SELECT count(*) FROM events") == len(distinct) + 50
        assert store.scalar("SELECT count(DISTINCT event_id) FROM events") == len(distinct) + 50


def test_kill_9_loses_no_acknowledged_event_and_resending_stores_none_twice(tmp_path: Path) -> None:
    clients, batches, size = 8, 40, 250
    plan = {(c, b): events(c, b, size) for c in range(clients) for b in range(batches)}
    acknowledged: set[tuple[int, int]] = set()
    lock = threading.Lock()

    def client(url: str, c: int, todo: list[int]) -> None:
        """Send batches until the server goes away; remember what was acknowledged."""
        with httpx.Client(base_url=url, timeout=30) as http:
            for b in todo:
                try:
                    response = http.post("/v1/events", content=json.dumps(plan[(c, b)]))
                except httpx.TransportError:
                    return  # the server died mid-request: not acknowledged
                if response.status_code != 200:
                    return
                with lock:
                    acknowledged.add((c, b))

    server = start_server(tmp_path)
    try:
        with ThreadPoolExecutor(clients) as pool:
            futures = [pool.submit(client, server.url, c, list(range(batches))) for c in range(clients)]
            deadline = time.monotonic() + 60
            while len(acknowledged) < clients * batches // 4 and time.monotonic() < deadline:
                time.sleep(0.01)
            server.kill()  # SIGKILL while the clients are still sending
            for future in futures:
                future.result()
    finally:
        server.kill()
    acked_before = set(acknowledged)
    assert 0 < len(acked_before) < clients * batches, "the kill must land mid-stream"

    # The crash left the announcement behind; the next server must start anyway.
    resent: list[dict[str, Any]] = []
    with serve(tmp_path) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        for key in sorted(set(plan) - acked_before):
            response = http.post("/v1/events", content=json.dumps(plan[key]))
            assert response.status_code == 200, response.text
            resent.append(response.json())
        # an acknowledged batch sent again is all duplicates
        repeat = http.post("/v1/events", content=json.dumps(plan[min(acked_before)])).json()
        assert (repeat["accepted"], repeat["duplicates"]) == (0, size)
    assert server.proc.returncode == 0

    with server.open_store() as store:
        stored = {row[0] for row in store.con.execute("SELECT event_id FROM events").fetchall()}
        total = store.scalar("SELECT count(*) FROM events")
    acked_ids = {e["event_id"] for key in acked_before for e in plan[key]}
    assert acked_ids <= stored, f"{len(acked_ids - stored)} acknowledged events were lost"
    assert total == len(stored) == clients * batches * size
    # Batches committed but not acknowledged before the kill come back as duplicates, not twice.
    assert sum(r["accepted"] for r in resent) + len(acked_ids) <= total
    assert sum(r["accepted"] + r["duplicates"] for r in resent) == len(resent) * size


def test_sigterm_under_load_finishes_in_flight_requests_and_closes_cleanly(tmp_path: Path) -> None:
    clients, batches, size = 4, 200, 200
    plan = {(c, b): events(c, b, size) for c in range(clients) for b in range(batches)}
    acknowledged: set[tuple[int, int]] = set()
    lock = threading.Lock()

    def client(url: str, c: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            for b in range(batches):
                try:
                    response = http.post("/v1/events", content=json.dumps(plan[(c, b)]))
                except httpx.TransportError:
                    return
                if response.status_code != 200:
                    assert response.status_code == 503, response.text  # refused while stopping
                    return
                with lock:
                    acknowledged.add((c, b))

    with serve(tmp_path) as server, ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(client, server.url, c) for c in range(clients)]
        deadline = time.monotonic() + 60
        while len(acknowledged) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.stop() == 0  # SIGTERM: graceful
        for future in futures:
            future.result()
    assert "orchestrion stopped; database closed" in server.log
    assert not (tmp_path / "data" / "orchestrion.duckdb.server.json").exists()
    with server.open_store() as store:
        stored = {row[0] for row in store.con.execute("SELECT event_id FROM events").fetchall()}
    assert {e["event_id"] for key in acknowledged for e in plan[key]} <= stored
