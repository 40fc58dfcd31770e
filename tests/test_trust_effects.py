"""Every side effect once per deliverable and action; every fault kept to its own deliverable.

Real parts throughout: a DuckDB file, the real Online Retail dataset for whole days, the
``orchestrion`` CLI and ``serve`` as child processes, loopback order providers and webhook
receivers (:mod:`http_recorder`), a scripted OpenAI-compatible model (:mod:`openai_server`) driven
through the real ``openai`` client. The clock is injected; nothing sleeps.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import threading
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import dataset_path
from http_recorder import Recorder, Request
from launcher import CLI, serve
from openai_server import OpenAIServer, Reply, goal_of, last_tool_results, tool_calls
from orchestrion.config import Settings, load_settings
from orchestrion.datasets import load_dataset
from orchestrion.delivery.channels import Effector
from orchestrion.delivery.deliverables import decide, get_deliverable, sweep_claims
from orchestrion.delivery.rendering import with_status_text
from orchestrion.delivery.stage import deliver
from orchestrion.errors import AlreadyDecidedError, RetryableError
from orchestrion.planning.executor import Executor
from orchestrion.planning.llm import FINISH, LLMPlanner
from orchestrion.planning.llm_client import ChatClient
from orchestrion.proposals.day import active_users, day_goals, day_start, propose
from orchestrion.runs.daily import run_daily, runs_to_retry, settle_recovered
from orchestrion.runs.demo import sample_path
from orchestrion.store import Store
from orchestrion.tools import TEMPLATE_TOOLS, CatalogItem, GoalRecord, ToolContext
from orchestrion.tools.policies import Policy, webhook_origin
from orchestrion.web.controls import waiting_actions

DAY = date(2011, 11, 1)
NOW = datetime(2011, 11, 1, 9)
LONG_ASCII = "online-retail:" + "x" * 216  # 230 characters
LONG_CJK = "顧客" * 40  # 80 characters, 240 bytes of UTF-8
LATER = datetime(2100, 1, 1)


@pytest.fixture(scope="module")
def retail(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real Online Retail dataset loaded once into a DuckDB file; each test copies it."""
    folder = tmp_path_factory.mktemp("retail")
    settings = load_settings({"ORCHESTRION_HOME": str(folder)})
    with Store.open(settings.database_path) as store:
        load_dataset(store, "online-retail", dataset_path("online-retail"), now=datetime(2012, 1, 1))
    return settings.database_path


def home_from(retail: Path, home: Path, policy: str | None = None) -> Settings:
    target = home / "data" / "orchestrion.duckdb"
    target.parent.mkdir(parents=True)
    shutil.copy(retail, target)
    if policy is not None:
        (home / "policy.toml").write_text(policy)
    return load_settings({"ORCHESTRION_HOME": str(home)})


def run_cli(home: Path, *args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``orchestrion ARGS`` in a child process, as an operator runs it (a whole day takes a while)."""
    full = {**os.environ, "ORCHESTRION_HOME": str(home), **(env or {})}
    return subprocess.run([*CLI, *args], env=full, capture_output=True, text=True, timeout=600)


def rename_user(store: Store, old: str, new: str) -> None:
    for table in ("events", "users"):
        store.con.execute(f"UPDATE {table} SET user_id = ? WHERE user_id = ?", [new, old])


def statuses(store: Store) -> Counter[str]:
    rows = store.con.execute("SELECT status FROM deliverables WHERE date = ?", [DAY]).fetchall()
    return Counter(str(r[0]) for r in rows)


# ------------------------------------------------------------------ fault isolation


def test_long_user_ids_do_not_stop_a_real_day(retail: Path, tmp_path: Path) -> None:
    """Ids of 230 ASCII and 80 CJK characters (the API takes 256): `run daily` over the whole real
    day delivers every user, them included, with short safe outbox names. Before: 0 users done."""
    settings = home_from(retail, tmp_path)
    with Store.open(settings.database_path) as store:
        active = active_users(store, day_start(DAY), 30)
        rename_user(store, active[3], LONG_ASCII)
        rename_user(store, active[7], LONG_CJK)
    done = run_cli(tmp_path, "run", "daily", "--date", DAY.isoformat(), "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    run = json.loads(done.stdout.strip().splitlines()[-1])["run"]
    assert run["status"] == "succeeded" and run["users_done"] == run["users_total"] == len(active) > 1000
    with Store.open(settings.database_path) as store:
        counts = statuses(store)
        assert counts["proposed"] == counts["failed"] == 0, counts
        assert store.scalar("SELECT count(*) FROM side_effects WHERE status = 'claimed'") == 0
        for user in (LONG_ASCII, LONG_CJK):
            rows = store.con.execute(
                "SELECT status, json_extract_string(effects, '$.publish.path') FROM deliverables "
                "WHERE user_id = ? AND status IN ('delivered', 'awaiting_approval')",
                [user],
            ).fetchall()
            assert rows, f"{user[:20]}... got nothing"
            for _, path in rows:
                name = Path(path).name
                assert Path(path).is_file() and len(name.encode()) <= 160 and name.isascii()
                assert not name.startswith(".")
    names = [p.name for p in settings.outbox_path.rglob("*") if p.is_file()]
    assert len(names) == len(set(names)) and all(len(n.encode()) <= 255 for n in names)


def test_an_outbox_failing_for_some_users_fails_only_theirs_and_retries_them_a_bounded_number_of_times(
    retail: Path, tmp_path: Path
) -> None:
    """A folder in the way of three users' outbox files (as a full disk or a bad file would be):
    the day finishes `partial`, everyone else is delivered, and running the day again retries the
    three — the one whose obstacle is gone is delivered, the others stop after 3 attempts and
    their ledger claims are settled by the sweep, never left open. Before: the whole day failed."""
    settings = home_from(retail, tmp_path)
    effector = Effector(settings)
    with Store.open(settings.database_path) as store:
        users = active_users(store, day_start(DAY), 30)
        propose(store, settings.models_path, DAY, users, now=NOW)
        victims = store.con.execute(
            "SELECT deliverable_id, user_id, date FROM deliverables WHERE date = ? AND template = 'reorder' "
            "ORDER BY deliverable_id LIMIT 3",
            [DAY],
        ).fetchall()
    obstacles = []
    for d_id, user, day in victims:
        html = effector.outbox_paths({"deliverable_id": d_id, "user_id": user, "date": day.isoformat()})["html"]
        html.mkdir(parents=True)  # a directory where the file goes: IsADirectoryError for this one only
        obstacles.append(html)
    victim_ids = [v[0] for v in victims]

    first = run_cli(tmp_path, "run", "daily", "--date", DAY.isoformat(), "--json")
    assert first.returncode == 0, first.stderr[-2000:]
    run = json.loads(first.stdout.strip().splitlines()[-1])["run"]
    assert run["status"] == "partial" and run["users_done"] == run["users_total"]
    assert run["counts"]["failed_deliverables"] == 3 and "3 deliverable(s) failed" in run["error"]
    table = run_cli(tmp_path, "runs", "list")
    assert "partial" in table.stdout, table.stdout

    with Store.open(settings.database_path) as store:
        rows = store.con.execute(
            "SELECT deliverable_id, status, failures, error FROM deliverables WHERE date = ? AND status = 'failed'",
            [DAY],
        ).fetchall()
        assert sorted(r[0] for r in rows) == sorted(victim_ids)
        assert all(r[2] == 1 and "IsADirectoryError" in r[3] and "attempt 1 of 3" in r[3] for r in rows)
        assert statuses(store)["proposed"] == 0
        delivered = store.scalar(
            "SELECT count(*) FROM deliverables WHERE date = ? AND status IN ('delivered', 'awaiting_approval')", [DAY]
        )
        assert isinstance(delivered, int) and delivered > 1000

        # The server's sweep resumes such a run by itself (here the day is run again by hand).
        assert [r.run_id for r in runs_to_retry(store, settings, NOW + timedelta(hours=1))] == [run["run_id"]]
        obstacles[0].rmdir()  # this one's trouble is over
        clock = iter(NOW + timedelta(hours=h) for h in range(1, 100))
        reports = [run_daily(store, settings, DAY, clock=lambda: next(clock)) for _ in range(3)]
        assert [r.state for r in reports] == ["resumed"] * 3
        assert [r.run.counts["failed_deliverables"] for r in reports if r.run] == [2, 2, 2]
        final = dict(
            (str(d), (str(s), int(f)))
            for d, s, f in store.con.execute(
                "SELECT deliverable_id, status, failures FROM deliverables WHERE deliverable_id IN (SELECT unnest(?))",
                [victim_ids],
            ).fetchall()
        )
        assert final[victim_ids[0]] == ("awaiting_approval", 1), "published; its order waits for approval"
        assert obstacles[0].is_file()
        assert final[victim_ids[1]] == final[victim_ids[2]] == ("failed", 3), "bounded: 3 attempts, then left"
        assert reports[-1].run is not None and "0 tried again" in (reports[-1].run.error or "")
        assert runs_to_retry(store, settings, NOW + timedelta(hours=5)) == [], "nothing left to try"
        # The two given up hold claims whose outcome the run could not know: the sweep settles them.
        assert store.scalar("SELECT count(*) FROM side_effects WHERE status = 'claimed'") == 2
        swept = sweep_claims(store, settings, LATER)  # the CLI claimed on the wall clock
        assert swept == {"completed": 0, "failed": 2, "open": 0}
        assert store.scalar("SELECT count(*) FROM side_effects WHERE status = 'claimed'") == 0


def test_any_exception_a_tool_raises_is_a_tool_error_for_the_planner(store: Store) -> None:
    """A URL whose netloc changes under NFKC makes ``urlsplit`` raise ``ValueError`` inside the
    tool: the planner hears it as an error, the queued effects stay as they were. Before: the
    exception ended the whole `deliver` run."""
    goal = GoalRecord("g_1", "d_1", "u1", DAY, "playlist", "daily", "Mix", ("t1",), {}, {}, "because")
    catalog = {"t1": CatalogItem("t1", "music", "Song One", "Artist A", None, None, None, None)}
    ex = Executor(ToolContext(goal, NOW, catalog, frozenset(), connect=store.cursor), TEMPLATE_TOOLS["playlist"])
    assert ex.call("create_playlist", {"title": "Mix", "item_ids": ["t1"]}).ok
    assert ex.call("publish", {"channel": "outbox"}).ok
    hostile = ex.call("publish", {"channel": "webhook", "url": "http://127.0.0.1\uff20127.0.0.2:34097/"})
    assert not hostile.ok and "webhook" in str(hostile.error)
    assert [e.action for e in ex.ctx.effects] == ["outbox"]
    ex.ctx.close()


# ------------------------------------------------------------------ one effect per deliverable and action


def _cart_model(publishes: int, *, bump: int = 0) -> Any:
    """A model that builds the due cart (each quantity + ``bump``), orders it and publishes to the
    webhook ``publishes`` times; other goals are finished with nothing to do."""

    def respond(body: Mapping[str, Any]) -> Reply:
        goal = goal_of(body)
        turn = sum(1 for m in body.get("messages", []) if m.get("role") == "assistant")
        if goal["template"] != "reorder":
            return tool_calls((FINISH, {"nothing_to_do": True, "reason": "not today"}))
        if turn == 0:
            return tool_calls(("due_reorders", {}))
        if turn == 1:
            due = json.loads(next(iter(last_tool_results(body)))["content"])["result"]
            # Small carts, well inside the order cap: every cart is ordered.
            lines = [{"item_id": d["item_id"], "quantity": 1 + bump} for d in due][:3]
            return tool_calls(("build_cart", {"lines": lines}), ("place_order", {}))
        hooks = [("publish", {"channel": "webhook"})] * publishes
        return tool_calls(*hooks, (FINISH, {"title": "Your reorder", "summary": "Ordered and sent."}))

    return respond


def _sample_home(tmp_path: Path, **extra: Any) -> tuple[Store, Settings]:
    settings = load_settings({"ORCHESTRION_HOME": str(tmp_path)}, **extra)
    store = Store.open(settings.database_path)
    load_dataset(store, "online-retail", sample_path(settings), now=NOW)
    return store, settings


def _policy(settings: Settings) -> Policy:
    """Orders and publishing on auto; the one webhook receiver of ``settings`` allowed (its origin)."""
    origins = (webhook_origin(settings.webhook_url),) if settings.webhook_url else ()
    return Policy(tiers={"order": "auto", "webhook": "auto", "outbox": "auto"}, allowed_webhook_origins=origins)


def _deliver_with(store: Store, settings: Settings, model: Any, now: datetime) -> None:
    with OpenAIServer(responder=model) as server:
        llm = settings.model_copy(update={"llm_base_url": server.base_url, "llm_model": "scripted"})
        planner = LLMPlanner(ChatClient.from_settings(llm), llm)
        with httpx.Client(timeout=5.0) as http:
            deliver(store, llm, DAY, now=now, planner=planner, policy=_policy(llm), effector=Effector(llm, http=http))
        planner.close()


def _posts(recorder: Recorder, path: str) -> list[Request]:
    return [r for r in recorder.requests if r.method == "POST" and r.path.startswith(path)]


def test_a_plan_publishing_to_the_webhook_three_times_posts_once(tmp_path: Path) -> None:
    """Three identical `publish(channel=webhook)` calls are one effect: one POST per deliverable.
    Before: three POSTs with one ledger key."""
    with Recorder() as shop, Recorder() as hook:
        store, settings = _sample_home(tmp_path, order_url=shop.url + "/orders", webhook_url=hook.url + "/hook")
        with store:
            _deliver_with(store, settings, _cart_model(3), NOW)
            ordered = store.con.execute(
                "SELECT deliverable_id FROM deliverables WHERE date = ? AND status = 'delivered' "
                "AND template = 'reorder'",
                [DAY],
            ).fetchall()
            assert len(ordered) > 5
            keys = Counter(r.headers["idempotency-key"] for r in _posts(hook, "/hook"))
            assert len(keys) == len(ordered) and set(keys.values()) == {1}, keys
            # a cart with the same lines as another of the user's is refused as a duplicate: one order each
            placed = store.scalar("SELECT count(*) FROM side_effects WHERE action = 'place_order'")
            assert 5 < len(_posts(shop, "/orders")) == placed <= len(ordered)
            assert store.scalar("SELECT count(*) FROM side_effects WHERE action = 'publish'") == len(ordered)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Receiver:
    """A webhook receiver on a given port (the dead one, brought back)."""

    def __init__(self, port: int) -> None:
        self.keys: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                owner.keys.append(self.headers["Idempotency-Key"])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_dead_receiver_then_a_re_run_makes_exactly_one_order_per_deliverable(tmp_path: Path) -> None:
    """The webhook's port is closed: orders go out, the webhooks fail, the deliverables fail and
    say so. The next run — whose model would build a different cart — re-plans nothing: the
    deliverables keep the carts that were ordered, no second order goes out; once the receiver is
    back each webhook is posted once. Before: a second order per deliverable."""
    port = _closed_port()
    with Recorder() as shop:
        store, settings = _sample_home(
            tmp_path, order_url=shop.url + "/orders", webhook_url=f"http://127.0.0.1:{port}/hook"
        )
        with store:
            _deliver_with(store, settings, _cart_model(1), NOW)
            failed = store.con.execute(
                "SELECT deliverable_id, error FROM deliverables WHERE date = ? AND status = 'failed'", [DAY]
            ).fetchall()
            assert len(failed) > 5 and all("unreachable" in e and "attempt 1 of 3" in e for _, e in failed)
            orders = len(_posts(shop, "/orders"))
            assert 5 < orders <= len(failed)  # duplicate carts of one user are refused, not ordered
            assert orders == store.scalar(
                "SELECT count(*) FROM side_effects WHERE action = 'place_order' AND status = 'completed'"
            )

            _deliver_with(store, settings, _cart_model(1, bump=2), NOW + timedelta(hours=1))
            assert len(_posts(shop, "/orders")) == orders, "no second order"
            with _Receiver(port) as receiver:
                _deliver_with(store, settings, _cart_model(1, bump=5), NOW + timedelta(hours=2))
            rows = store.con.execute(
                "SELECT d.deliverable_id, d.status, json_extract(d.content, '$.total'), s.effect FROM deliverables d "
                "JOIN side_effects s ON s.deliverable_id = d.deliverable_id AND s.action = 'place_order' "
                "WHERE d.deliverable_id IN (SELECT unnest(?))",
                [[d for d, _ in failed]],
            ).fetchall()
            assert len(rows) == orders  # the join keeps the deliverables that ordered
            for _, status, total, effect in rows:
                assert status == "delivered"
                assert float(total) == json.loads(effect)["total"], "the record shows the cart that was ordered"
            assert len(_posts(shop, "/orders")) == len(shop.orders) == orders
            assert len(receiver.keys) == len(set(receiver.keys)) == len(failed)


def test_eight_clients_approving_and_rejecting_forty_deliverables_get_no_5xx_and_no_contradiction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """8 concurrent clients send approve or reject for each of 40 deliverables twice (640 requests)
    to a real server: exactly one decision per deliverable wins (200), the rest get 409 with the
    current state; afterwards every `delivered` deliverable has one completed order at the provider
    and every `rejected` one none. Before: 220 × 500 and 2 `rejected` with an order placed."""
    with Recorder() as shop:
        settings = load_settings({"ORCHESTRION_HOME": str(tmp_path)}, order_url=shop.url + "/orders")
        with Store.open(settings.database_path) as store:
            load_dataset(store, "online-retail", sample_path(settings), now=NOW)
            deliver(store, settings, DAY, now=NOW)
            waiting = [
                str(r[0])
                for r in store.con.execute(
                    "SELECT DISTINCT deliverable_id FROM pending_actions WHERE status = 'waiting' ORDER BY 1"
                ).fetchall()
            ][:40]
        assert len(waiting) == 40
        answers: list[tuple[str, str, int, dict[str, Any]]] = []
        lock = threading.Lock()

        def client(url: str, n: int) -> None:
            rng = random.Random(n)
            work = [(d, rng.choice(("approve", "reject"))) for d in waiting for _ in range(2)]
            rng.shuffle(work)
            with httpx.Client(base_url=url, timeout=60) as http:
                for d_id, decision in work:
                    response = http.post(f"/v1/deliverables/{d_id}/{decision}")
                    json_body = response.headers.get("content-type", "").startswith("application/json")
                    with lock:
                        answers.append((d_id, decision, response.status_code, response.json() if json_body else {}))

        monkeypatch.setenv("ORCHESTRION_ORDER_URL", shop.url + "/orders")  # the server's order provider
        with serve(tmp_path) as server, ThreadPoolExecutor(8) as pool:
            for future in [pool.submit(client, server.url, n) for n in range(8)]:
                future.result()

    codes = Counter(code for _, _, code, _ in answers)
    assert len(answers) == 640 and set(codes) <= {200, 409}, codes
    winners = {d: decision for d, decision, code, _ in answers if code == 200}
    assert len(winners) == 40 and codes[200] == 40
    assert all(body["status"] in ("delivered", "rejected") for _, _, code, body in answers if code == 409)
    with Store.open(settings.database_path) as store:
        rows = store.con.execute(
            "SELECT d.deliverable_id, d.status, s.status, s.idempotency_key FROM deliverables d "
            "LEFT JOIN side_effects s ON s.deliverable_id = d.deliverable_id AND s.action = 'place_order' "
            "WHERE d.deliverable_id IN (SELECT unnest(?))",
            [waiting],
        ).fetchall()
    contradictions = 0
    for d_id, status, ledger_status, key in rows:
        expected = {"approve": "delivered", "reject": "rejected"}[winners[d_id]]
        placed = ledger_status == "completed" and key in shop.orders
        contradictions += status != expected or placed != (status == "delivered") or (
            ledger_status not in (None, "completed")
        )
    assert contradictions == 0
    assert len(shop.orders) == sum(1 for w in winners.values() if w == "approve") == len(_posts(shop, "/orders"))


def test_stale_claims_are_reconciled_by_the_sweep_and_the_next_run(tmp_path: Path) -> None:
    """An order the provider took but whose answer was lost, and one it never received: the
    approval answers "unknown" (503), a reject is refused (409, the order may exist), and the
    sweep asks the provider by idempotency key — the first becomes executed and delivered, the
    second failed, then approving it again orders once. A run's claim left open is reconciled by
    the next run. Before: the claims stayed `claimed` forever."""
    lost: set[str] = set()

    def drop_answer(request: Request) -> None:
        if not lost:  # the first order's answer only
            lost.add(request.headers.get("idempotency-key", ""))
            raise ConnectionAbortedError("the answer is lost")

    with Recorder(before_reply=drop_answer) as shop, httpx.Client(timeout=5.0) as http:
        store, settings = _sample_home(tmp_path, order_url=shop.url + "/orders")
        dead = settings.model_copy(update={"order_url": f"http://127.0.0.1:{_closed_port()}/orders"})
        live, down = Effector(settings, http=http), Effector(dead, http=http)
        with store:
            deliver(store, settings, DAY, now=NOW)
            first, second = [
                str(r[0])
                for r in store.con.execute(
                    "SELECT DISTINCT deliverable_id FROM pending_actions WHERE status = 'waiting' ORDER BY 1 LIMIT 2"
                ).fetchall()
            ]
            with pytest.raises(RetryableError):
                decide(store, settings, first, "approve", by="t", viewer=None, now=NOW, effector=live)
            # what the person sees while the shop's answer is unknown: approved, being confirmed
            in_flight = get_deliverable(store.con, first)
            assert in_flight.status == "awaiting_approval"
            assert in_flight.status_text == "Approved: waiting for the shop to confirm the order"
            page = next(settings.outbox_path.glob(f"*/*--{first}.html")).read_text()
            assert "Approved: waiting for the shop to confirm the order" in page
            assert "Waiting for your approval" not in page
            # ... and so say the person's day of goals and the approvals page (no Reject offered)
            day = with_status_text(day_goals(store, in_flight.user_id, DAY))
            said = {g["deliverable_id"]: g["status_text"] for g in day["chosen"]}
            assert said[first] == "Approved: waiting for the shop to confirm the order", said
            shown = [a for a in waiting_actions(store.con, in_flight.user_id) if a.deliverable_id == first]
            assert shown and all(a.confirming for a in shown if a.action == "place_order")
            with pytest.raises(AlreadyDecidedError, match="approve again"):
                decide(store, settings, first, "reject", by="t", viewer=None, now=NOW, effector=live)
            with pytest.raises(RetryableError):
                decide(store, dead, second, "approve", by="t", viewer=None, now=NOW, effector=down)
            assert store.scalar("SELECT count(*) FROM side_effects WHERE status = 'claimed'") == 2

            early = sweep_claims(store, settings, NOW + timedelta(minutes=5), effector=live)
            assert early == {"completed": 0, "failed": 0, "open": 0}, "claims younger than 15 minutes are left alone"
            swept = sweep_claims(store, settings, NOW + timedelta(hours=1), effector=live)
            assert swept == {"completed": 1, "failed": 1, "open": 0}
            later = NOW + timedelta(hours=1)
            one = decide(store, settings, second, "approve", by="t", viewer=None, now=later, effector=live)
            assert one.status == "delivered"
            rows = dict(
                store.con.execute(
                    "SELECT deliverable_id, status FROM deliverables WHERE deliverable_id IN (?, ?)", [first, second]
                ).fetchall()
            )
            assert rows == {first: "delivered", second: "delivered"}
            assert get_deliverable(store.con, first).status_text == "Ordered"
            assert len(shop.orders) == 2
            assert store.scalar("SELECT count(*) FROM side_effects WHERE status = 'claimed'") == 0

    # A run's own claim left open (killed after claiming): the next run reconciles it, once.
    with Recorder() as shop, Recorder() as hook:
        home = tmp_path / "run"
        store, settings = _sample_home(home, order_url=shop.url + "/orders", webhook_url=hook.url + "/hook")
        with store:
            _deliver_with(store, settings, _cart_model(1), NOW)
            key, d_id = store.con.execute(
                "SELECT idempotency_key, deliverable_id FROM side_effects WHERE action = 'place_order' LIMIT 1"
            ).fetchall()[0]
            store.con.execute(
                "UPDATE side_effects SET status = 'claimed', result = NULL WHERE deliverable_id = ?", [d_id]
            )
            store.con.execute("UPDATE deliverables SET status = 'proposed' WHERE deliverable_id = ?", [d_id])
            before = len(_posts(shop, "/orders"))
            _deliver_with(store, settings, _cart_model(1, bump=3), NOW + timedelta(hours=1))
            result = store.scalar("SELECT result FROM side_effects WHERE idempotency_key = ?", [key])
            assert isinstance(result, str) and json.loads(result)["reconciled"] is True
            assert len(_posts(shop, "/orders")) == before and store.scalar(
                "SELECT status FROM deliverables WHERE deliverable_id = ?", [d_id]
            ) == "delivered"



def test_a_cart_approved_while_its_webhook_is_still_being_sent_is_not_finished_until_it_is(tmp_path: Path) -> None:
    """Orders wait for approval; the webhook answers 500, so the deliverable is ``failed`` with its
    order waiting. Approving orders it once, and the deliverable stays "not finished" (not
    "Ordered" with an effect still open) until the sweep has sent the webhook: then "Ordered",
    with no stale error. Before: "delivered" at once, and the webhook's error kept for ever."""
    with Recorder() as shop, Recorder(post_status=500) as hook, httpx.Client(timeout=5.0) as http:
        store, settings = _sample_home(tmp_path, order_url=shop.url + "/orders", webhook_url=hook.url + "/hook")
        policy = Policy(tiers={"order": "approve", "webhook": "auto", "outbox": "auto"},
                        allowed_webhook_origins=_policy(settings).allowed_webhook_origins)
        with store:
            with OpenAIServer(responder=_cart_model(1)) as server:
                llm = settings.model_copy(update={"llm_base_url": server.base_url, "llm_model": "scripted"})
                planner = LLMPlanner(ChatClient.from_settings(llm), llm)
                deliver(store, llm, DAY, now=NOW, planner=planner, policy=policy, effector=Effector(llm, http=http))
                planner.close()
            found = store.con.execute(
                "SELECT DISTINCT d.deliverable_id FROM deliverables d JOIN pending_actions a USING (deliverable_id) "
                "WHERE d.status = 'failed' AND a.status = 'waiting' AND a.action = 'place_order' ORDER BY 1 LIMIT 1"
            ).fetchall()
            assert found, "a cart whose webhook failed, its order waiting"
            d_id = str(found[0][0])
            live = Effector(settings, http=http)
            approved = decide(store, settings, d_id, "approve", by="t", viewer=None, now=NOW + timedelta(hours=1),
                              effector=live, policy=policy)
            assert approved.status == "failed", approved.status
            assert approved.status_text.startswith("Not finished")
            assert len(shop.orders) == 1
            hook.post_status = 200
            sweep_claims(store, settings, NOW + timedelta(hours=2), effector=live)
            done = get_deliverable(store.con, d_id)
            assert (done.status, done.status_text, done.error) == ("delivered", "Ordered", None)
            assert len(shop.orders) == 1


def test_a_run_whose_failed_deliverables_the_sweep_recovered_is_settled(tmp_path: Path) -> None:
    """A daily run whose webhooks answered 500 ends ``partial``; once the sweep has sent them and
    every deliverable is delivered, the run ledger says ``succeeded`` (failed_deliverables 0), and
    no retry of the day is asked for. Before: ``partial``, "7 deliverable(s) failed", for ever."""
    with Recorder() as shop, Recorder(post_status=500) as hook, OpenAIServer(responder=_cart_model(1)) as model:
        store, settings = _sample_home(
            tmp_path, order_url=shop.url + "/orders", webhook_url=hook.url + "/hook",
            llm_base_url=model.base_url, llm_model="scripted", policy_file=tmp_path / "policy.toml",
        )
        origin = webhook_origin(settings.webhook_url or "")
        (tmp_path / "policy.toml").write_text(
            '[policy]\ntiers = {order = "auto", webhook = "auto", outbox = "auto"}\n'
            f'allowed_webhook_origins = ["{origin}"]\n'
        )
        with store:
            report = run_daily(store, settings, DAY, clock=lambda: NOW)
            assert report.run is not None and report.run.status == "partial", report.run
            failed = int(report.run.counts["failed_deliverables"])
            assert failed > 0
            assert settle_recovered(store, settings, NOW) == []  # still failed: nothing to settle
            hook.post_status = 200
            later = NOW + timedelta(hours=1)
            with httpx.Client(timeout=5.0) as http:
                swept = sweep_claims(store, settings, later, effector=Effector(settings, http=http))
            assert swept["completed"] == failed
            settled = settle_recovered(store, settings, later)
            assert [r.run_id for r in settled] == [report.run.run_id]
            assert settled[0].status == "succeeded" and settled[0].counts["failed_deliverables"] == 0
            assert settled[0].error is None
            assert runs_to_retry(store, settings, later) == []
            assert settle_recovered(store, settings, later) == []


def test_a_webhook_that_answered_500_and_was_sent_again_by_the_sweep_is_delivered(tmp_path: Path) -> None:
    """The receiver answers 500: the orders go out, the webhooks' outcome is open, the deliverables
    say they are not finished. Once it answers 200, the sweep sends each webhook again (same key)
    and each deliverable says what happened: delivered ("Ordered"). Before: `failed` forever."""
    with Recorder() as shop, Recorder(post_status=500) as hook:
        store, settings = _sample_home(tmp_path, order_url=shop.url + "/orders", webhook_url=hook.url + "/hook")
        with store:
            _deliver_with(store, settings, _cart_model(1), NOW)
            failed = [str(r[0]) for r in store.con.execute(
                "SELECT deliverable_id FROM deliverables WHERE status = 'failed' ORDER BY 1").fetchall()]
            assert failed and store.scalar("SELECT count(*) FROM side_effects WHERE status = 'claimed'") == len(failed)
            hook.post_status = 200
            before = len(_posts(hook, "/hook"))
            with httpx.Client(timeout=5.0) as http:
                swept = sweep_claims(store, settings, NOW + timedelta(hours=1), effector=Effector(settings, http=http))
            assert swept == {"completed": len(failed), "failed": 0, "open": 0}
            now = dict(store.con.execute(
                "SELECT deliverable_id, status FROM deliverables WHERE deliverable_id IN "
                "(SELECT unnest(?::VARCHAR[]))", [failed]).fetchall())
            assert set(now.values()) == {"delivered"}, now
            assert store.scalar(
                "SELECT count(*) FROM deliverables WHERE deliverable_id IN (SELECT unnest(?::VARCHAR[])) "
                "AND error IS NOT NULL", [failed]) == 0
            from orchestrion.delivery.deliverables import get_deliverable

            assert {get_deliverable(store.con, d).as_dict()["status_text"] for d in failed} == {"Ordered"}
            # what the receiver was sent again says what it now is, not "failed"
            again = [json.loads(r.body) for r in _posts(hook, "/hook")[before:]]
            assert len(again) == len(failed) and {body["status"] for body in again} == {"delivered"}, again[:1]
