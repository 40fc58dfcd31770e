"""Segment-spec ingestion against native ingestion of the same canonical events, in one run.

The workload is real: Online Retail's invoices (``$ORCHESTRION_DATASETS/online-retail``), the
first ``--orders`` of them in file order, each as an E-commerce ``Order Completed`` (a
cancellation as ``Order Refunded``) with its lines in ``products``. Invoices too long for one
Segment message (32 KB, roughly 250 lines here; the SDK refuses them) are left out.

0. **The SDK alone**: the SDK sends every order to ``null_receiver.py``, which answers each
   request at once and keeps its body: the most the SDK sends on this machine whatever the server,
   and the ``/v1/batch`` bodies exactly as it batched them (for run 2).
1. **Segment**: a fresh ``orchestrion serve`` on loopback with a write key of source ``shop``,
   domain ``retail``; the official ``segment-analytics-python`` client (its own queue, consumer
   threads and batching into ``/v1/batch``: up to 100 messages or 475 KB per request) sends every
   order. Timed from the first ``track`` to the end of ``shutdown()`` (every batch acknowledged,
   i.e. committed). Counted: the canonical events stored (the order lines expanded).
2. **Segment bodies**: the bodies the SDK sent in run 0, byte for byte, posted by the same
   clients as the native run: the server's Segment path with the SDK's own batching, without the
   SDK's CPU (its queue and per-message JSON encoding run in this process, on the same cores as
   the server).
3. **Native**: a fresh server and key; the same canonical events, as
   :func:`orchestrion.ingest.segment_spec.expand` makes them (ids, types, items, values, properties),
   posted to ``/v1/events`` in bodies of 1,000 by as many keep-alive clients as the SDK has
   consumer threads. Timed from the first request to the last receipt.

The ratios Segment / native are printed for both Segment runs (target ≥ 0.7). Both servers run one after the other on
the same machine, so a busy neighbour shows in both; run it several times when the machine is shared. The
server's own CPU time over the timed part (``/proc/PID/stat``, all its threads; Linux) and this process's
(the SDK's) are printed too: they hardly move with the machine's load, so the CPU ratio tells a change in
the server's work apart from a busy neighbour.

Usage::

    ORCHESTRION_DATASETS=/path/to/datasets .venv/bin/python benchmarks/ingest_segment.py [--orders 8000] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test harness starts servers
from launcher import Server, cli, serve
from orchestrion.ingest.segment_spec import expand
from retail_orders import Order, invoice_lines, invoice_orders


def read_orders(limit: int) -> list[Order]:
    """The first ``limit`` invoices with a customer: (user, event name, properties, UTC time)."""
    root = os.environ.get("ORCHESTRION_DATASETS")
    if not root:
        sys.exit("set ORCHESTRION_DATASETS to the folder holding online-retail/")
    orders: list[Order] = []
    for order in invoice_orders(invoice_lines(Path(root) / "online-retail")):
        if len(json.dumps(order[2])) > 30_000:  # over Segment's 32 KB message limit: the SDK refuses it
            continue
        orders.append(order)
        if len(orders) == limit:
            break
    return orders


def canonical_events(orders: list[Order]) -> list[dict[str, Any]]:
    """The native events the Segment path stores for ``orders`` (source shop, domain retail)."""
    events: list[dict[str, Any]] = []
    for user, name, properties, ts in orders:
        base = {"event_id": None, "user_id": user, "type": name, "item_id": None,
                "ts": ts.isoformat().replace("+00:00", "Z"), "properties": None}
        mapped, _ = expand(name, "track", base, properties, default_domain="retail", source="shop")
        events.extend(mapped)
    return events


def keys(home: Path) -> tuple[str, str]:
    admin = cli(home, "keys", "create", "--role", "admin").stdout.strip().splitlines()[-1]
    write = cli(home, "keys", "create", "--role", "write", "--source", "shop", "--domain", "retail")
    return admin, write.stdout.strip().splitlines()[-1]


def stored(server: Server, admin: str) -> int:
    figures = httpx.get(server.url + "/v1/stats", headers={"Authorization": f"Bearer {admin}"}, timeout=60)
    return int(figures.json()["events"])


def server_cpu(server: Server) -> float:
    """CPU seconds the server process has used so far (user + system, all threads; Linux)."""
    fields = Path(f"/proc/{server.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


Run = tuple[int, float, float, float]  # events stored, seconds, server CPU seconds, sender CPU seconds


def run_segment(orders: list[Order], threads: int) -> Run:
    with tempfile.TemporaryDirectory() as tmp:
        admin, key = keys(Path(tmp))
        with serve(Path(tmp)) as server:
            return _segment(server, admin, key, orders, threads)


def _segment(server: Server, admin: str, key: str, orders: list[Order], threads: int) -> Run:
    cpu, mine = server_cpu(server), time.process_time()
    elapsed = send_with_sdk(server.url, key, orders, threads)
    cpu, mine = server_cpu(server) - cpu, time.process_time() - mine
    return stored(server, admin), elapsed, cpu, mine


def send_with_sdk(url: str, key: str, orders: list[Order], threads: int) -> float:
    """Seconds the official SDK takes to send ``orders`` to ``url``: from the first ``track`` to the
    end of ``shutdown()`` (every batch answered). Exits on any error the SDK reports."""
    from segment.analytics import Client

    errors: list[Any] = []
    client = Client(key, host=url, thread=threads, max_queue_size=len(orders) + 1,
                    on_error=lambda e, batch: errors.append(e), max_retries=0)
    start = time.perf_counter()
    for user, name, properties, ts in orders:
        client.track(user, name, properties, timestamp=ts)
    client.shutdown()
    elapsed = time.perf_counter() - start
    if errors:
        sys.exit(f"the SDK reported errors sending to {url}: {errors[:3]}")
    return elapsed


def run_sdk_alone(orders: list[Order], threads: int) -> tuple[float, list[bytes]]:
    """The SDK sending ``orders`` to a receiver that does nothing (null_receiver.py): the seconds it
    takes (its own ceiling on this machine: its CPU and the round trips, no server behind them) and
    the ``/v1/batch`` bodies it sent, as it batched them."""
    with tempfile.TemporaryDirectory() as folder:
        receiver = subprocess.Popen([sys.executable, str(Path(__file__).with_name("null_receiver.py")), folder],
                                    stdout=subprocess.PIPE, text=True)
        try:
            assert receiver.stdout is not None
            url = f"http://127.0.0.1:{receiver.stdout.readline().strip()}"  # printed once it listens
            elapsed = send_with_sdk(url, "key", orders, threads)
        finally:
            receiver.kill()
            receiver.wait()
        return elapsed, [path.read_bytes() for path in sorted(Path(folder).glob("*.body"))]


def run_bodies(path: str, bodies: list[bytes], threads: int) -> Run:
    with tempfile.TemporaryDirectory() as tmp:
        admin, key = keys(Path(tmp))
        with serve(Path(tmp)) as server:
            return _post(server, admin, key, path, bodies, threads)


def _post(server: Server, admin: str, key: str, path: str, bodies: list[bytes], threads: int) -> Run:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    pending = list(reversed(bodies))
    lock = threading.Lock()
    failures: list[str] = []

    def worker() -> None:
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
            while True:
                with lock:
                    if not pending:
                        return
                    body = pending.pop()
                answer = http.post(path, content=body)
                if answer.status_code != 200 or answer.json()["rejected"]:
                    failures.append(answer.text[:300])

    cpu, mine = server_cpu(server), time.process_time()
    start = time.perf_counter()
    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    cpu, mine = server_cpu(server) - cpu, time.process_time() - mine
    if failures:
        sys.exit(f"{path} requests failed: {failures[:3]}")
    return stored(server, admin), elapsed, cpu, mine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=8000, help="Invoices to send (default 8000).")
    parser.add_argument("--threads", type=int, default=2, help="SDK consumer threads = HTTP clients.")
    args = parser.parse_args()
    orders = read_orders(args.orders)
    events = canonical_events(orders)
    native = [json.dumps(events[i:i + 1000]).encode() for i in range(0, len(events), 1000)]
    # The SDK alone first: what it sends to a receiver that does nothing is what run 2 posts again
    alone_seconds, batches = run_sdk_alone(orders, args.threads)
    print(f"{len(orders):,} orders -> {len(events):,} canonical events; {len(batches)} batches from the SDK; "
          f"{args.threads} sender threads")
    runs = {
        "segment SDK -> /v1/batch": run_segment(orders, args.threads),
        "segment bodies -> /v1/batch": run_bodies("/v1/batch", batches, args.threads),
        "native -> /v1/events (1,000/body)": run_bodies("/v1/events", native, args.threads),
    }
    rates, cpus = {}, {}
    for name, (count, seconds, cpu, mine) in runs.items():
        if count != len(events):
            sys.exit(f"{name}: stored {count:,} events, expected {len(events):,}")
        rates[name], cpus[name] = count / seconds, cpu
        print(f"{name:<36} {rates[name]:>10,.0f} events/s  ({seconds:.2f} s; server CPU {cpu:.2f} s, "
              f"sender CPU {mine:.2f} s)")
    alone = len(events) / alone_seconds
    print(f"{'segment SDK -> null receiver':<36} {alone:>10,.0f} events/s  (the SDK's own ceiling here)")
    native = "native -> /v1/events (1,000/body)"
    sdk, sent = "segment SDK -> /v1/batch", "segment bodies -> /v1/batch"
    print(f"ratio SDK end to end / native:    {rates[sdk] / rates[native]:.2f} (target >= 0.70; "
          f"the SDK alone / native: {alone / rates[native]:.2f})")
    print(f"ratio Segment bodies / native:    {rates[sent] / rates[native]:.2f} (target >= 0.70)")
    print(f"server CPU per event, native / Segment bodies: {cpus[native] / cpus[sent]:.2f}, "
          f"native / SDK: {cpus[native] / cpus[sdk]:.2f}; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
