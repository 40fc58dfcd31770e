"""A day's delivery end to end on the shipped Online Retail sample: real DuckDB file, real outbox,
a real order provider on loopback; approvals, crashes, policies and re-runs."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from orchestrion.app import create_app
from orchestrion.config import Settings, load_settings
from orchestrion.datasets import load_dataset
from orchestrion.delivery.deliverables import decide, feed, get_deliverable, run_due_actions
from orchestrion.delivery.stage import deliver
from orchestrion.errors import ConfigError, PermissionDeniedError, UsageError
from orchestrion.runs.demo import sample_path
from orchestrion.store import Store
from orchestrion.tools.policies import Policy
from orchestrion.web.feed import card

DAY = date(2011, 11, 1)
NOW = datetime(2011, 11, 1, 9)


class OrderProvider:
    """A loopback order API that honours Idempotency-Key and answers lookups by key."""

    def __init__(self) -> None:
        self.posts: list[str] = []
        self.orders: dict[str, dict[str, Any]] = {}
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                key = self.headers["Idempotency-Key"]
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                provider.posts.append(key)
                provider.orders.setdefault(key, {"order_id": f"o{len(provider.orders) + 1}", "total": body["total"]})
                self._json(201, provider.orders[key])

            def do_GET(self) -> None:
                key = parse_qs(urlsplit(self.path).query)["idempotency_key"][0]
                self._json(200, provider.orders[key]) if key in provider.orders else self._json(404, {})

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/orders"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def provider() -> Iterator[OrderProvider]:
    p = OrderProvider()
    yield p
    p.close()


@pytest.fixture
def home(tmp_path: Path, provider: OrderProvider) -> Iterator[tuple[Store, Settings]]:
    settings = load_settings({"ORCHESTRION_HOME": str(tmp_path), "ORCHESTRION_ORDER_URL": provider.url})
    with Store.open(settings.database_path) as store:
        load_dataset(store, "online-retail", sample_path(settings), now=NOW)
        yield store, settings


def test_a_day_is_delivered_reviewed_and_idempotent(home: tuple[Store, Settings], provider: OrderProvider) -> None:
    store, settings = home
    result = deliver(store, settings, DAY, now=NOW)
    active = store.con.execute(
        "SELECT count(DISTINCT user_id) FROM events WHERE ts < ? AND ts >= ?", [DAY, DAY - timedelta(days=30)]
    ).fetchall()[0][0]
    assert result.users == active > 10
    rows = store.con.execute("SELECT user_id, status, review, content, trace FROM deliverables").fetchall()
    assert {r[1] for r in rows} <= {"delivered", "awaiting_approval", "not_done", "cancelled", "failed"}
    assert "proposed" not in {r[1] for r in rows}
    done = [r for r in rows if r[1] in ("delivered", "awaiting_approval")]
    assert len({r[0] for r in done}) == len({r[0] for r in rows}), "every user with goals got a deliverable"
    for _, _, review, content, trace in done:
        assert json.loads(review)["ok"] is True
        cart = json.loads(content)
        assert cart["total"] <= Policy().max_order_amount
        assert round(sum(line["line_total"] for line in cart["items"]), 2) == cart["total"]
        assert [s["step"] for s in json.loads(trace)][:2] == ["due_reorders", "build_cart"]
    assert len(list(settings.outbox_path.rglob("*.html"))) == len(done)
    assert provider.posts == [], "orders wait for approval by default"
    waiting = store.con.execute("SELECT count(*) FROM pending_actions WHERE status = 'waiting'").fetchall()[0][0]
    assert waiting == result.pending > 0

    again = deliver(store, settings, DAY, now=NOW + timedelta(hours=1))
    assert again.deliverables == 0 and again.effects == 0
    assert store.con.execute("SELECT count(*) FROM side_effects WHERE attempts > 1").fetchall()[0][0] == 0


def test_approve_orders_once_even_after_a_crash(home: tuple[Store, Settings], provider: OrderProvider) -> None:
    store, settings = home
    deliver(store, settings, DAY, now=NOW)
    d_id, user = store.con.execute(
        "SELECT deliverable_id, user_id FROM pending_actions WHERE status = 'waiting' ORDER BY 1 LIMIT 1"
    ).fetchall()[0]
    with pytest.raises(PermissionDeniedError):
        decide(store, settings, d_id, "approve", by="someone", viewer="online-retail:nobody", now=NOW)
    approved = decide(store, settings, d_id, "approve", by="test", viewer=user, now=NOW)
    assert approved.status == "delivered" and len(provider.posts) == 1
    assert [a["status"] for a in approved.actions] == ["executed"]
    with pytest.raises(UsageError, match="no action waiting"):
        decide(store, settings, d_id, "approve", by="test", viewer=user, now=NOW)

    # A crash after the provider accepted the order and before our commit: the claim is still
    # open and the action still waiting. Approving again reconciles with the provider instead.
    store.con.execute("UPDATE side_effects SET status = 'claimed', result = NULL WHERE action = 'place_order'")
    store.con.execute("UPDATE pending_actions SET status = 'waiting' WHERE deliverable_id = ?", [d_id])
    again = decide(store, settings, d_id, "approve", by="test", viewer=user, now=NOW)
    assert again.actions[0]["status"] == "executed"
    assert len(provider.posts) == 1 and len(provider.orders) == 1, "no second order"
    result = store.con.execute("SELECT result FROM side_effects WHERE action = 'place_order'").fetchall()[0][0]
    assert json.loads(result)["reconciled"] is True


def test_policies_apply_to_the_next_run(home: tuple[Store, Settings], provider: OrderProvider) -> None:
    store, settings = home
    users = [
        r[0]
        for r in store.con.execute(
            "SELECT user_id FROM events WHERE ts < ? AND ts >= ? AND type = 'purchase' GROUP BY 1 "
            "HAVING count(DISTINCT item_id) > 5 ORDER BY 1",
            [DAY, DAY - timedelta(days=30)],
        ).fetchall()
    ]
    store.con.execute(
        "INSERT INTO user_policies VALUES (?, '{}', true, ?), (?, ?, false, ?)",
        [users[0], NOW, users[1], json.dumps({"tiers": {"order": "suggest"}}), NOW],
    )
    notify = Policy(tiers={"order": "notify"}, notify_window_minutes=30, max_monthly_spend=10_000)
    deliver(store, settings, DAY, now=NOW, policy=notify)
    statuses = dict(
        store.con.execute(
            "SELECT user_id, list(DISTINCT status) FROM deliverables WHERE user_id IN (?, ?) GROUP BY 1", users[:2]
        ).fetchall()
    )
    assert statuses[users[0]] == ["cancelled"], "a paused user gets nothing done"
    tiers = store.con.execute("SELECT DISTINCT tier FROM pending_actions WHERE user_id = ?", [users[1]]).fetchall()
    assert tiers == [("suggest",)], "a user's own setting may only make the policy stricter"
    assert run_due_actions(store, settings, NOW + timedelta(minutes=29), policy=notify) == 0
    assert provider.posts == []
    # an order that places itself says when, not "Waiting for your approval" (it needs none)
    waiting = store.con.execute(
        "SELECT DISTINCT deliverable_id FROM pending_actions WHERE tier = 'notify' AND status = 'waiting'"
    ).fetchall()
    assert waiting
    due = NOW + timedelta(minutes=30)
    for (deliverable_id,) in waiting:
        shown = get_deliverable(store.con, deliverable_id)
        assert shown.status == "awaiting_approval"
        assert shown.status_text == f"Will be ordered at {due:%H:%M} UTC on {due.day} {due:%B %Y} unless you cancel it"
        page = card(store.con, deliverable_id)
        assert page.status_text == shown.status_text
    ran = run_due_actions(store, settings, NOW + timedelta(minutes=31), policy=notify)
    assert ran > 0 and len(provider.posts) == len(set(provider.posts)) == ran


def test_refused_webhook_and_feed_views(home: tuple[Store, Settings]) -> None:
    store, settings = home
    deliver(store, settings, DAY, now=NOW, policy=Policy(tiers={"outbox": "auto", "order": "approve"}))
    user = store.con.execute("SELECT user_id FROM deliverables WHERE status = 'awaiting_approval' LIMIT 1").fetchall()
    items = feed(store.con, user[0][0], DAY)
    assert items and all(i.why and i.content and i.content["kind"] == "cart" for i in items)
    one = get_deliverable(store.con, items[0].deliverable_id, viewer=user[0][0])
    assert one.actions[0]["tier"] == "approve"


def test_a_torn_outbox_file_is_written_again_after_a_crash(home: tuple[Store, Settings]) -> None:
    """Killed while writing the HTML (its ledger claim open, the deliverable still proposed): the
    next run finds the file incomplete and writes it again, once; a whole file is left alone."""
    store, settings = home
    deliver(store, settings, DAY, now=NOW)
    rows = store.con.execute(
        "SELECT s.idempotency_key, s.deliverable_id, json_extract_string(s.result, '$.path') FROM side_effects s "
        "WHERE s.action = 'publish' AND s.status = 'completed' ORDER BY 1 LIMIT 2"
    ).fetchall()
    (torn_key, torn_id, torn_path), (whole_key, whole_id, whole_path) = rows
    full = Path(torn_path).read_bytes()
    Path(torn_path).write_bytes(full[: len(full) // 2])
    untouched = Path(whole_path).stat().st_mtime_ns
    store.con.execute(
        "UPDATE side_effects SET status = 'claimed', result = NULL WHERE idempotency_key IN (?, ?)",
        [torn_key, whole_key],
    )
    store.con.execute(
        "UPDATE deliverables SET status = 'proposed' WHERE deliverable_id IN (?, ?)", [torn_id, whole_id]
    )
    deliver(store, settings, DAY, now=NOW + timedelta(hours=1))
    assert Path(torn_path).read_bytes() == full
    assert Path(torn_path).read_bytes().endswith(b"</html>")
    assert Path(whole_path).stat().st_mtime_ns == untouched, "a whole file was written twice"
    states = dict(
        store.con.execute(
            "SELECT idempotency_key, status || ':' || attempts || ':' || coalesce(json_extract_string(result, "
            "'$.reconciled'), 'performed') FROM side_effects WHERE idempotency_key IN (?, ?)",
            [torn_key, whole_key],
        ).fetchall()
    )
    assert states == {torn_key: "completed:2:performed", whole_key: "completed:2:true"}


def test_outbox_formats_go_to_one_folder_per_day_and_the_html_carries_the_record(tmp_path: Path) -> None:
    """Default: one HTML file per published deliverable under ``outbox/<date>/``, its JSON record
    inside; ``OUTBOX_FORMATS=html,json,md`` adds the two other files; the API renders every
    format for one deliverable, and refuses an unknown one naming the parameter."""
    env = {"ORCHESTRION_HOME": str(tmp_path)}
    with Store.open(tmp_path / "d.duckdb") as store:
        settings = load_settings(env)
        load_dataset(store, "online-retail", sample_path(settings), now=NOW)
        deliver(store, settings, DAY, now=NOW)
        published = store.con.execute(
            "SELECT deliverable_id, user_id, json_extract_string(result, '$.path') FROM side_effects "
            "WHERE action = 'publish' AND status = 'completed' ORDER BY 1"
        ).fetchall()
        assert len(published) > 10
        files = sorted(p for p in settings.outbox_path.rglob("*") if p.is_file())
        assert [p.suffix for p in files] == [".html"] * len(published)
        assert {p.parent.name for p in files} == {DAY.isoformat()}
        d_id, user_id, path = published[0]
        page = Path(path).read_text()
        assert Path(path).name == f"{user_id.replace(':', '_')}--{d_id}.html" and page.endswith("</html>")
        embedded = re.search(r'<script type="application/json" id="orchestrion-deliverable">(.*?)</script>', page)
        assert embedded is not None
        record = json.loads(embedded.group(1))
        assert (record["deliverable_id"], record["user_id"]) == (d_id, user_id)
        stored = get_deliverable(store.con, d_id)
        assert stored.content is not None
        assert record["content"]["items"] == stored.content["items"] and "trace" not in record

        with TestClient(create_app(store, settings)) as client:
            url = f"/v1/deliverables/{d_id}"
            as_md = client.get(url, params={"format": "md"})
            assert as_md.status_code == 200 and as_md.headers["content-type"].startswith("text/markdown")
            assert as_md.text.startswith(f"# {record['title']}")
            as_html = client.get(url, params={"format": "html"})
            assert as_html.headers["content-type"].startswith("text/html") and as_html.text.endswith("</html>")
            assert client.get(url).json()["deliverable_id"] == d_id
            wrong = client.get(url, params={"format": "pdf"})
            assert wrong.status_code == 422 and "format" in wrong.text

    every = load_settings({"ORCHESTRION_OUTBOX_FORMATS": "html,json,md", "ORCHESTRION_HOME": str(tmp_path / "all")})
    with Store.open(tmp_path / "all.duckdb") as store:
        load_dataset(store, "online-retail", sample_path(every), now=NOW)
        deliver(store, every, DAY, now=NOW)
        htmls = sorted(every.outbox_path.glob(f"{DAY}/*.html"))
        assert htmls
        for page in htmls:
            assert json.loads(page.with_suffix(".json").read_text())["deliverable_id"] == page.stem.split("--")[1]
            assert page.with_suffix(".md").read_text().startswith("# ")
    with pytest.raises(ConfigError, match=r"OUTBOX_FORMATS: .*must include html"):
        load_settings({**env, "ORCHESTRION_OUTBOX_FORMATS": "json,md"})
