"""The shop replay: Online Retail's real invoices sent by the official Segment SDK as E-commerce
``Order Completed`` / ``Order Refunded`` events (with identifies for the customers) end in the same
canonical events, and the same day, as ``datasets load online-retail``.

The subset (so that the test runs in CI on two cores): every invoice line, before the delivery day
2011-11-01 (UK time), of the customers whose CustomerID is a multiple of 25 — 158 customers, 723
invoices, 11,855 lines. It is written back as an Online Retail CSV for the loader, so both sides
read exactly the same lines.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from segment.analytics import Client as SegmentClient

from conftest import dataset_path
from launcher import cli, serve
from orchestrion.store import Store
from retail_orders import invoice_lines, invoice_orders

DAY = "2011-11-01"
MODULUS = 25
ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "ORCHESTRION_SCHEDULER": "0"}


def subset_lines() -> pl.DataFrame:
    """The raw lines of the subset (text, as in the file) plus the UTC time, in file order."""
    return invoice_lines(dataset_path("online-retail")).filter(
        (pl.col("CustomerID").cast(pl.Float64).cast(pl.Int64) % MODULUS == 0)
        & (pl.col("utc") < datetime(2011, 11, 1, tzinfo=UTC))
    )


def send_invoices(client: SegmentClient, lines: pl.DataFrame) -> int:
    """Each invoice as one Order Completed (a cancellation ``C…`` as Order Refunded), in time order."""
    sent = 0
    for user, event, properties, ts in invoice_orders(lines):
        client.track(user, event, properties, timestamp=ts)
        sent += 1
    return sent


def canonical(store: Store) -> list[tuple[Any, ...]]:
    """Per user, item and type: lines, units, unit prices, currency and the orders' minutes.

    An order has one time in the E-commerce spec; the file gives each line its own, and one
    invoice of the subset (562128) spans two minutes. So the time compared is the order's first.
    """
    return store.con.execute(
        "WITH lines AS (SELECT *, properties->>'order_id' AS order_id, "
        "  date_trunc('minute', min(ts) OVER (PARTITION BY properties->>'order_id')) AS order_ts FROM events) "
        "SELECT user_id, item_id, type, domain, count(*), sum(value), "
        "list(CAST(properties->>'unit_price' AS DOUBLE) "
        "     ORDER BY order_ts, order_id, value, properties->>'unit_price'), "
        "list(DISTINCT properties->>'currency'), list(order_ts ORDER BY order_ts, order_id, value) "
        "FROM lines GROUP BY ALL ORDER BY ALL"
    ).fetchall()


def day_set(home: Path) -> list[tuple[Any, ...]]:
    """The day's goals and deliverables, without run timestamps or the home folder."""
    with Store.open(home / "data" / "orchestrion.duckdb") as store:
        return store.con.execute(
            "SELECT g.goal_id, g.user_id, g.template, g.variant, g.status, g.slot, round(g.score, 9), "
            "d.deliverable_id, d.status, replace(CAST(d.content AS VARCHAR), ?, '') "
            "FROM goals g LEFT JOIN deliverables d USING (goal_id) ORDER BY g.goal_id",
            [str(home)],
        ).fetchall()


def run_daily(home: Path) -> dict[str, Any]:
    done = cli(home, "run", "daily", "--date", DAY, "--json", env=ENV)
    assert done.returncode == 0, done.stderr
    outcome: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return outcome


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, dict[str, int]]]:
    lines = subset_lines()
    loaded = tmp_path_factory.mktemp("loaded")
    csv = loaded / "subset.csv"
    lines.drop("utc").write_csv(csv)
    done = cli(loaded, "datasets", "load", "online-retail", "--path", str(csv), env=ENV)
    assert done.returncode == 0, done.stderr

    streamed = tmp_path_factory.mktemp("streamed")
    admin = cli(streamed, "keys", "create", "--role", "admin").stdout.strip().splitlines()[-1]
    key = cli(streamed, "keys", "create", "--role", "write", "--source", "shop", "--domain", "retail")
    write_key = key.stdout.strip().splitlines()[-1]
    errors: list[Any] = []
    counts: dict[str, int] = {}
    with serve(streamed) as server:
        client = SegmentClient(write_key, host=server.url, on_error=lambda e, b: errors.append(e), max_retries=0)
        countries = lines.group_by("CustomerID", maintain_order=True).agg(pl.col("Country").last())
        for customer, country in countries.iter_rows():
            client.identify(f"online-retail:{customer}", {"country": country, "timezone": "Europe/London"})
        counts["orders"] = send_invoices(client, lines)
        client.shutdown()

        def stored() -> int:
            figures = httpx.get(server.url + "/v1/stats", headers={"Authorization": f"Bearer {admin}"}, timeout=30)
            return int(figures.json()["events"])

        counts["events"] = stored()
        again = SegmentClient(write_key, host=server.url, on_error=lambda e, b: errors.append(e), max_retries=0)
        send_invoices(again, lines)  # every order again: new messageIds, the same orders
        again.shutdown()
        counts["events_after_resend"] = stored()
    assert errors == []
    yield loaded, streamed, counts


def test_the_streamed_invoices_are_the_loaders_canonical_events(homes: tuple[Path, Path, dict[str, int]]) -> None:
    loaded, streamed, counts = homes
    assert counts["orders"] == 723
    assert counts["events"] == counts["events_after_resend"] == 11_855  # resending stored nothing new
    with Store.open(loaded / "data" / "orchestrion.duckdb") as store:
        expected = canonical(store)
        users = store.con.execute("SELECT user_id, timezone FROM users ORDER BY 1").fetchall()
        items = store.con.execute(
            "SELECT item_id, domain, title, price, currency, category FROM items ORDER BY 1"
        ).fetchall()
    with Store.open(streamed / "data" / "orchestrion.duckdb") as store:
        assert canonical(store) == expected
        assert store.con.execute("SELECT user_id, timezone FROM users ORDER BY 1").fetchall() == users
        assert store.con.execute(
            "SELECT item_id, domain, title, price, currency, category FROM items ORDER BY 1"
        ).fetchall() == items
        assert store.con.execute("SELECT DISTINCT source FROM events").fetchall() == [("shop",)]
    assert sum(row[4] for row in expected) == 11_855
    assert {row[2] for row in expected} == {"purchase", "return"}


def test_the_day_from_the_stream_is_the_day_from_the_loader(homes: tuple[Path, Path, dict[str, int]]) -> None:
    loaded, streamed, _ = homes
    from_loader, from_stream = run_daily(loaded), run_daily(streamed)
    assert from_loader["run"]["status"] == from_stream["run"]["status"] == "succeeded"
    assert from_loader["run"]["counts"] == from_stream["run"]["counts"]
    assert from_loader["run"]["counts"]["deliverables"] > 0
    expected, got = day_set(loaded), day_set(streamed)
    assert len(got) == len(expected) == 109  # no cart holds an item over the £150 order limit
    # The customer of invoice 562128, whose lines span two minutes in the file but whose order has
    # one time in the stream, gets the same goals and deliverables; their scores differ in the
    # 6th digit and the cart lists the same lines in another order. Everyone else: identical.
    spans = subset_lines().group_by("InvoiceNo").agg(pl.col("utc").n_unique(), pl.col("CustomerID").first())
    moved = {f"online-retail:{c}" for c in spans.filter(pl.col("utc") > 1).get_column("CustomerID")}
    assert moved == {"online-retail:16150"}
    for want, have in zip(expected, got, strict=True):
        if want[1] in moved:
            assert have[:6] + have[7:9] == want[:6] + want[7:9] and have[6] == pytest.approx(want[6], abs=1e-5)
            if want[9] is None:  # a goal not chosen has no deliverable, from either source
                assert have[9] is None
            else:
                assert sorted(json.loads(have[9])["items"], key=str) == sorted(json.loads(want[9])["items"], key=str)
        else:
            assert have == want
