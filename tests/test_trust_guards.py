"""Guardrails that fail closed, and the LLM on every run path (issue 15, points 3 and 4).

Real parts throughout: a DuckDB store, the real delivery (executor, review, policy, ledger,
effector), the real ``openai`` client against the scripted loopback server, and loopback HTTP
receivers that record every request (an allowed webhook, another port on the same host, an
attacker's address, a receiver that answers with a redirect, an order provider).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from http_recorder import Recorder
from openai_server import OpenAIServer, Reply, goal_of, last_tool_results, message, planning_reply, tool_calls
from orchestrion.config import Settings, load_settings
from orchestrion.datasets import load_dataset
from orchestrion.delivery.channels import Effector
from orchestrion.delivery.rendering import render_markdown
from orchestrion.delivery.rules import load_user_rules
from orchestrion.delivery.stage import execute
from orchestrion.errors import TerminalError
from orchestrion.planning.critique import critique
from orchestrion.planning.executor import Executor
from orchestrion.planning.llm import LLMPlanner, planning_for
from orchestrion.planning.llm_client import ChatClient
from orchestrion.proposals.day import active_users, day_start
from orchestrion.runs.daily import run_daily
from orchestrion.runs.scheduler import RunRequest, RunService
from orchestrion.store import Store
from orchestrion.tools import GoalRecord, ToolContext, allowed_tools
from orchestrion.tools.policies import Policy, check

DAY = date(2024, 5, 2)
NOW = datetime(2024, 5, 2, 9, 0)
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "samples" / "online-retail-sample.csv.gz"


# ---------------------------------------------------------------- a small hand-made world


def plant(store: Store, goals: Sequence[tuple[str, str, str, Mapping[str, Any]]], *, day: date = DAY) -> None:
    """Items, a purchase history and ``goals`` ``(goal_id, user, template, details)`` with their
    ``proposed`` deliverables (``d`` + the goal id without its ``g``); params carry the goal id."""
    con = store.con
    if not con.execute("SELECT count(*) FROM items").fetchall()[0][0]:
        con.executemany(
            "INSERT INTO items (item_id, domain, title, creator, price, currency, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, TIMESTAMP '2024-01-01')",
            [
                *[[f"t{i}", "music", f"Track {i}", f"Artist {i}", None, None] for i in range(1, 4)],
                ["p1", "retail", "Green tea", "Shop", 2.5, "GBP"],
                ["p2", "retail", "Oat milk", "Shop", 4.0, "GBP"],
                ["p3", "retail", "Coffee beans", "Shop", 30.0, "GBP"],
            ],
        )
    at = datetime.combine(day, datetime.min.time()) - timedelta(days=2)
    con.executemany(
        "INSERT INTO events (event_id, user_id, type, item_id, ts, received_at) VALUES (?, ?, 'purchase', 'p1', ?, ?) "
        "ON CONFLICT DO NOTHING",
        [[f"{user}-{day}-p1", user, at, at] for _, user, _, _ in goals],
    )
    items = {"playlist": ["t1", "t2", "t3"], "reorder": ["p1", "p2", "p3"]}
    con.executemany(
        "INSERT INTO goals (goal_id, user_id, date, template, variant, kind, params, title, items, details, features, "
        "score, propensity, slot, policy, status, why, cost, risk, created_at) VALUES (?, ?, ?, ?, 'daily', 'daily', "
        "?, 'Your daily pick', ?, ?, '{}', 0.5, 1.0, ?, 'prior', 'chosen', 'because of last week', 0, 0.1, ?)",
        [
            [g, u, day, t, json.dumps({"goal": g}), items[t], json.dumps(d), n + 1, NOW]
            for n, (g, u, t, d) in enumerate(goals)
        ],
    )
    con.execute(
        "INSERT INTO deliverables (deliverable_id, goal_id, user_id, date, template, title, items, status, created_at) "
        "SELECT 'd' || substr(goal_id, 2), goal_id, user_id, date, template, title, items, 'proposed', created_at "
        "FROM goals WHERE date = ? AND goal_id NOT IN (SELECT goal_id FROM deliverables)",
        [day],
    )


def cart(*lines: tuple[str, int]) -> dict[str, Any]:
    prices = {"p1": 2.5, "p2": 4.0, "p3": 30.0}
    return {"lines": [{"item_id": i, "quantity": q, "unit_price": prices[i]} for i, q in lines], "currency": "GBP"}


def settings_for(tmp_path: Path, server: OpenAIServer | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"home": tmp_path, "llm_timeout": 2.0, "llm_backoff_s": 0.01, "llm_max_retries": 1}
    if server is not None:
        values |= {"llm_base_url": server.base_url, "llm_model": "scripted"}
    return load_settings({}, **(values | overrides))


def statuses(store: Store) -> dict[str, tuple[str, str | None]]:
    rows = store.con.execute("SELECT deliverable_id, status, error FROM deliverables").fetchall()
    return {str(d): (str(s), e) for d, s, e in rows}


def refusals(store: Store) -> dict[str, list[str]]:
    rows = store.con.execute(
        "SELECT deliverable_id, list(rule ORDER BY rule) FROM policy_decisions GROUP BY 1"
    ).fetchall()
    return {str(d): list(r) for d, r in rows}


# ---------------------------------------------------------------- hostile URLs from a scripted model


@pytest.fixture
def receivers() -> Iterator[dict[str, Recorder]]:
    with (
        Recorder() as hook,
        Recorder() as other_port,
        Recorder("127.0.0.2") as evil,
        Recorder(post_status=302) as redirect,
    ):
        redirect.location = evil.url + "/caught"
        yield {"hook": hook, "other_port": other_port, "evil": evil, "redirect": redirect}


def hostile_urls(r: Mapping[str, Recorder]) -> dict[str, str]:
    hook, evil = r["hook"], r["evil"]
    return {
        "fullwidth_at": f"http://127.0.0.1\uff20127.0.0.2:{evil.port}/",
        "port_not_a_number": f"http://127.0.0.1:x{hook.port}/hook",
        "crlf": f"{hook.url}/hook\r\nX-Injected: 1",
        "crlf_in_host": f"http://127.0.0.1\r\n:{hook.port}/hook",
        "nul": f"{hook.url}/hook\x00",
        "credentials": f"http://user:secret@127.0.0.1:{hook.port}/hook",
        "other_port": f"{r['other_port'].url}/hook",
        "other_scheme": f"https://127.0.0.1:{hook.port}/hook",
        "file_scheme": "file:///etc/passwd",
        "too_long": f"{hook.url}/hook?pad={'a' * 2100}",
        "redirect": f"{r['redirect'].url}/hook",
        "honest": f"{hook.url}/hook",
    }


def webhook_model(urls: Mapping[str, str]) -> Any:
    """Builds the playlist, publishes to the URL of its case, then to the outbox, and finishes."""

    def respond(body: Mapping[str, Any]) -> Reply:
        goal = goal_of(body)
        case = goal["params"]["goal"][2:]
        turn = sum(1 for m in body.get("messages", []) if m.get("role") == "assistant")
        if turn == 0:
            ids = [c["item_id"] for c in goal["candidates"]]
            return tool_calls(("create_playlist", {"title": "Mix <script>alert(1)</script>", "item_ids": ids}))
        if turn == 1:
            return tool_calls(("publish", {"channel": "webhook", "url": urls[case]}))
        return tool_calls(("publish", {"channel": "outbox"}), ("finish", {"title": "Mix", "summary": "Tracks."}))

    return respond


def test_hostile_webhook_urls_are_refused_at_the_tool_and_fail_only_their_deliverable(
    tmp_path: Path, receivers: dict[str, Recorder]
) -> None:
    urls = hostile_urls(receivers)
    store = Store.open(tmp_path / "db.duckdb")
    plant(store, [(f"g_{case}", f"u-{case}", "playlist", {}) for case in urls])
    policy = Policy(
        tiers={"order": "auto", "webhook": "auto", "outbox": "auto"},
        allowed_webhook_origins=(receivers["hook"].url, receivers["redirect"].url),
    )
    with OpenAIServer(responder=webhook_model(urls)) as model:
        settings = settings_for(tmp_path, model)
        planner = LLMPlanner(ChatClient.from_settings(settings), settings)
        with httpx.Client(timeout=5.0) as http:
            result = execute(
                store, settings, DAY, [f"u-{c}" for c in urls], now=NOW, planner=planner, policy=policy,
                effector=Effector(settings, http=http), concurrency=4,
            )
        planner.close()
        told = [
            json.loads(m["content"]) for r in model.requests for m in last_tool_results(r.body)
            if "webhook" in m["content"] and "refused" in m["content"]
        ]

    assert result.deliverables == len(urls), "the run completes for everyone"
    done = statuses(store)
    refused = refusals(store)
    for case in urls:
        d_id = f"d_{case}"
        if case == "honest":
            assert done[d_id][0] == "delivered"
        elif case == "redirect":
            assert done[d_id][0] == "failed" and "302" in str(done[d_id][1]), done[d_id]
        else:
            assert done[d_id][0] == "delivered", (case, done[d_id])  # the outbox copy still went out
            rule = "webhook_host" if case in ("other_port", "other_scheme") else "webhook_url"
            assert refused[d_id] == [rule], (case, refused.get(d_id))
    assert len(told) >= len(urls) - 2, "each refusal went back to the model as the tool's answer"

    assert receivers["evil"].requests == [] and receivers["other_port"].requests == []
    assert [r.path for r in receivers["hook"].requests] == ["/hook"], "only the honest post reached the receiver"
    assert len(receivers["redirect"].requests) == 1
    ledger = dict(store.con.execute("SELECT status, count(*) FROM side_effects GROUP BY 1").fetchall())
    assert "claimed" not in ledger
    assert store.scalar(
        "SELECT status FROM side_effects WHERE deliverable_id = 'd_redirect' AND action = 'publish' "
        "AND json_extract_string(effect, '$.channel') = 'webhook'"
    ) == "failed"

    posted = receivers["hook"].requests[0].json()
    assert set(posted) <= {
        "deliverable_id", "user_id", "date", "template", "title", "summary", "items", "links", "status",
        "total", "currency",
    }
    assert posted["deliverable_id"] == "d_honest" and len(posted["items"]) == 3 and posted["links"]
    text = receivers["hook"].requests[0].body.decode()
    for secret in ("plan", "trace", "review", "tokens", "cost", "because of last week", "purchase"):
        assert f'"{secret}"' not in text and secret not in text.replace("Mix", ""), secret
    store.close()


def test_webhook_allowlists_hold_origins_and_old_host_lists_fail_closed(store: Store) -> None:
    policy = Policy(allowed_webhook_origins=("http://127.0.0.1:8080", "https://hooks.example"))
    assert policy.allowed_webhook_origins == ("http://127.0.0.1:8080", "https://hooks.example:443")
    with pytest.raises(ValueError, match="allowed_webhook_origins"):
        Policy.model_validate({"allowed_webhook_hosts": ["127.0.0.1"]})
    with pytest.raises(ValueError, match="not an origin"):
        Policy(allowed_webhook_origins=("http://127.0.0.1:8080/hook",))
    # A person's settings saved before origins: null still loads; a host list narrows to nothing.
    store.con.executemany(
        "INSERT INTO user_policies VALUES (?, ?, false, ?)",
        [["u1", '{"allowed_webhook_hosts": null, "tiers": {}}', NOW], ["u2", '{"allowed_webhook_hosts": ["x"]}', NOW]],
    )
    rules = load_user_rules(store.con, policy, ["u1", "u2"], NOW)
    assert rules["u1"].policy.allowed_webhook_origins == policy.allowed_webhook_origins
    assert rules["u2"].policy.allowed_webhook_origins == ()


def test_the_sender_raises_only_our_errors_and_treats_only_2xx_as_success(
    tmp_path: Path, receivers: dict[str, Recorder]
) -> None:
    settings = settings_for(tmp_path)
    record = {"deliverable_id": "d_1", "user_id": "u", "date": "2024-05-02", "title": "t", "plan": {"calls": []}}
    urls = hostile_urls(receivers)
    with httpx.Client(timeout=5.0) as http:
        effector = Effector(settings, http=http)
        for case in ("port_not_a_number", "crlf", "fullwidth_at", "credentials", "file_scheme", "too_long"):
            with pytest.raises(TerminalError):
                effector.perform("publish", {"channel": "webhook", "url": urls[case]}, "k", record)
        with pytest.raises(TerminalError, match="redirect"):
            effector.perform("publish", {"channel": "webhook", "url": urls["redirect"]}, "k", record)
        done = effector.perform("publish", {"channel": "webhook", "url": urls["honest"]}, "k", record)
    assert done == {"status": 200}
    assert receivers["evil"].requests == [], "the redirect was not followed"
    assert "plan" not in receivers["hook"].requests[0].json()


# ---------------------------------------------------------------- money


def test_identical_carts_of_one_user_are_ordered_once(tmp_path: Path) -> None:
    """Orders on ``auto``: two goals of one user on one day with the same lines → one order, the
    other refused ``duplicate``; the next day (within ``duplicate_order_days``) the same cart is
    refused again, a different cart is ordered."""
    store = Store.open(tmp_path / "db.duckdb")
    same = cart(("p1", 2), ("p2", 1))
    plant(store, [("g_a", "u1", "reorder", same), ("g_b", "u1", "reorder", cart(("p2", 1), ("p1", 2)))])
    policy = Policy(tiers={"order": "auto", "webhook": "approve", "outbox": "auto"})
    with Recorder() as shop, httpx.Client(timeout=5.0) as http:
        settings = settings_for(tmp_path, order_url=shop.url + "/orders")
        effector = Effector(settings, http=http)
        execute(store, settings, DAY, ["u1"], now=NOW, policy=policy, effector=effector)
        assert len(shop.orders) == 1
        assert refusals(store) == {"d_b": ["duplicate"]}

        nxt = DAY + timedelta(days=1)
        plant(store, [("g_c", "u1", "reorder", same), ("g_d", "u1", "reorder", cart(("p3", 1)))], day=nxt)
        execute(store, settings, nxt, ["u1"], now=NOW + timedelta(days=1), policy=policy, effector=effector)
        assert len(shop.orders) == 2
        assert refusals(store) == {"d_b": ["duplicate"], "d_c": ["duplicate"]}
    store.close()


def test_a_cart_awaiting_approval_also_blocks_the_same_cart(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "db.duckdb")
    same = cart(("p1", 2), ("p2", 1))
    plant(store, [("g_a", "u1", "reorder", same), ("g_b", "u1", "reorder", same)])
    settings = settings_for(tmp_path)
    execute(store, settings, DAY, ["u1"], now=NOW, policy=Policy())  # orders wait for approval
    waiting = store.con.execute("SELECT deliverable_id FROM pending_actions WHERE action = 'place_order'").fetchall()
    assert waiting == [("d_a",)]
    assert refusals(store) == {"d_b": ["duplicate"]}
    store.close()


def test_monthly_spend_counts_completed_and_in_flight_orders_only(store: Store, tmp_path: Path) -> None:
    now = datetime(2024, 5, 20, 9)
    effects = [
        ("k_done", "completed", now - timedelta(days=3), 100.0),
        ("k_flight", "claimed", now - timedelta(minutes=5), 100.0),
        ("k_stale", "claimed", now - timedelta(days=2), 100.0),  # left claimed: reconciled, not counted
        ("k_april", "completed", datetime(2024, 4, 28), 300.0),
        ("k_failed", "failed", now - timedelta(days=1), 100.0),
    ]
    store.con.executemany(
        "INSERT INTO side_effects VALUES (?, 'u1', ?, 'place_order', ?, ?, NULL, 1, ?, NULL)",
        [[k, f"d_{k}", json.dumps({"lines": [[k, 1, t]], "total": t}), s, at, ] for k, s, at, t in effects],
    )
    store.con.execute(  # a cart awaiting approval is not spent
        "INSERT INTO pending_actions VALUES ('k_wait', 'd_wait', 'u1', 'place_order', ?, 'approve', 'waiting', "
        "NULL, ?, NULL, NULL, NULL)",
        [json.dumps({"lines": [["x", 1, 120.0]], "total": 120.0}), now],
    )
    policy = Policy(max_monthly_spend=400.0)
    rules = load_user_rules(store.con, policy, ["u1"], now)["u1"]
    assert rules.spent_this_month == 200.0
    # The in-flight order itself, checked again (a re-claim, an approval after a crash): counted once.
    assert rules.spent_without("k_flight") == 100.0
    verdict = check(policy, "order", amount=150.0, spent_this_month=rules.spent_this_month, local_time=now.time())
    assert verdict.allowed, verdict.detail


def test_carts_awaiting_approval_do_not_use_up_the_monthly_cap_in_a_run(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "db.duckdb")
    plant(store, [("g_a", "u1", "reorder", cart(("p3", 2))), ("g_b", "u1", "reorder", cart(("p3", 1), ("p1", 1)))])
    execute(store, settings_for(tmp_path), DAY, ["u1"], now=NOW, policy=Policy(max_monthly_spend=80.0))
    assert refusals(store) == {}
    waiting = store.con.execute("SELECT count(*) FROM pending_actions WHERE status = 'waiting'").fetchall()[0][0]
    assert waiting == 2, "each cart waits for its own approval; the cap is checked again when approved"
    store.close()


# ---------------------------------------------------------------- review


def critic_answers(garbage: str) -> Any:
    def respond(body: Mapping[str, Any]) -> Reply:
        if any(t["function"]["name"] == "verdict" for t in body.get("tools", [])):
            return message(garbage)
        return planning_reply(body)

    return respond


def test_a_garbled_critique_fails_the_review(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "db.duckdb")
    plant(store, [("g_a", "u1", "playlist", {})])
    with OpenAIServer(responder=critic_answers("~~ sure thing, looks great!! ~~")) as model:
        planning = planning_for(settings_for(tmp_path, model), "deliver")
        execute(
            store, settings_for(tmp_path, model), DAY, ["u1"], now=NOW, planner=planning.planner,
            critic=planning.critic,
        )
        planning.close()
        client = ChatClient.from_settings(settings_for(tmp_path, model))
        ok, notes = critique(client, {"title": "t", "content": {}})
        client.close()
    assert not ok and "could not be read" in notes
    status, error = statuses(store)["d_a"]
    assert status == "failed" and "critic" in str(error), (status, error)
    assert store.scalar("SELECT count(*) FROM side_effects") == 0, "nothing was published"
    store.close()


def test_markdown_output_escapes_html(tmp_path: Path) -> None:
    record = {
        "deliverable_id": "d_1", "user_id": "u1", "date": "2024-05-02", "title": "<script>alert(1)</script>",
        "summary": "<img src=x onerror=alert(1)>", "why": "a\n# fake heading",
        "content": {"kind": "playlist", "items": [{"item_id": "t1", "title": "<b>Track</b>", "creator": "<i>"}]},
    }
    text = render_markdown(record)
    assert "<script>" not in text and "<img" not in text and "<b>" not in text and "<i>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "\n# fake" not in text
    settings = settings_for(tmp_path, outbox_formats="html,md")
    Effector(settings).perform("publish", {"channel": "outbox"}, "k", record)
    written = next(settings.outbox_path.rglob("*.md")).read_text()
    assert "<script>" not in written


# ---------------------------------------------------------------- the LLM on every run path


@pytest.fixture
def retail(tmp_path: Path) -> Iterator[tuple[Store, list[str]]]:
    with Store.open(":memory:") as store:
        load_dataset(store, "online-retail", SAMPLE, now=datetime(2011, 11, 1, 7))
        yield store, active_users(store, day_start(date(2011, 11, 1)), 30)[:3]


def test_run_daily_plans_with_the_configured_llm_and_a_setting_keeps_a_path_offline(
    tmp_path: Path, retail: tuple[Store, list[str]]
) -> None:
    store, users = retail
    day = date(2011, 11, 1)
    with OpenAIServer(responder=planning_reply) as model:
        settings = settings_for(tmp_path, model)
        report = run_daily(store, settings, day, users=users, clock=lambda: datetime(2011, 11, 1, 7))
        assert report.run is not None and report.run.status == "succeeded"
        asked = len(model.requests)
        planners = {r[0] for r in store.con.execute("SELECT DISTINCT planner FROM deliverables").fetchall()}
        assert asked > 0, "run daily planned with the endpoint"
        assert planners == {"llm:scripted"}, planners
        assert any(t == "verdict" for r in model.requests for t in r.tool_names), "and reviewed with its critic"

        # The scheduler's path, kept offline by a setting; the daily path still uses the model.
        offline = settings_for(tmp_path, model, llm_offline_paths="schedule,backfill")
        assert planning_for(offline, "daily").planner is not None
        service = RunService(store, offline, clock=lambda: datetime(2011, 11, 2, 7))
        service.submit(RunRequest("daily", date(2011, 11, 2), users=users, trigger="schedule"), wait=True)
        assert len(model.requests) == asked, "the schedule path planned offline"
        later = store.con.execute(
            "SELECT DISTINCT planner FROM deliverables WHERE date = '2011-11-02' AND planner IS NOT NULL"
        ).fetchall()
        assert later == [("offline",)] or later == [], later

        # And the scheduler's path with the endpoint: planned by the model (for other people: the
        # first three still have their 1 November carts waiting, which hold back new ones).
        fresh = [u for u in active_users(store, day_start(date(2011, 11, 3)), 30) if u not in users][:3]
        service = RunService(store, settings, clock=lambda: datetime(2011, 11, 3, 7))
        service.submit(RunRequest("daily", date(2011, 11, 3), users=fresh, trigger="schedule"), wait=True)
        assert len(model.requests) > asked
        planned = store.con.execute(
            "SELECT DISTINCT planner FROM deliverables WHERE date = '2011-11-03' AND planner IS NOT NULL"
        ).fetchall()
        assert planned == [("llm:scripted",)], planned


def test_the_run_daily_command_plans_with_the_configured_endpoint(tmp_path: Path) -> None:
    """``orchestrion run daily`` in a real process, the endpoint given by the environment."""
    from launcher import cli

    env = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "ORCHESTRION_SCHEDULER": "0"}
    assert cli(tmp_path, "datasets", "load", "online-retail", "--path", str(SAMPLE), env=env).returncode == 0
    with Store.open(tmp_path / "data" / "orchestrion.duckdb") as store:
        user = active_users(store, day_start(date(2011, 11, 1)), 30)[0]
    with OpenAIServer(responder=planning_reply) as model:
        llm = {**env, "ORCHESTRION_LLM_BASE_URL": model.base_url, "ORCHESTRION_LLM_MODEL": "scripted"}
        done = cli(tmp_path, "run", "daily", "--date", "2011-11-01", "--users", user, "--json", env=llm)
        assert done.returncode == 0, done.stderr
        assert model.requests, "run daily asked the configured endpoint"
        asked = len(model.requests)
        offline = {**llm, "ORCHESTRION_LLM_OFFLINE_PATHS": "daily"}
        again = cli(tmp_path, "run", "daily", "--date", "2011-11-02", "--users", user, "--json", env=offline)
        assert again.returncode == 0, again.stderr
        assert len(model.requests) == asked, "the daily path was kept offline"
    with Store.open(tmp_path / "data" / "orchestrion.duckdb") as store:
        planners = dict(
            store.con.execute(
                "SELECT CAST(date AS VARCHAR), list(DISTINCT planner) FROM deliverables "
                "WHERE planner IS NOT NULL GROUP BY 1"
            ).fetchall()
        )
    assert planners["2011-11-01"] == ["llm:scripted"]
    assert planners.get("2011-11-02", ["offline"]) == ["offline"]


def test_a_trigger_plans_with_the_configured_llm(tmp_path: Path, retail: tuple[Store, list[str]]) -> None:
    from orchestrion.config import TriggerRule
    from orchestrion.runs.triggers import fire

    store = retail[0]
    user, item = store.con.execute(
        "SELECT user_id, item_id FROM events WHERE type = 'purchase' GROUP BY 1, 2 ORDER BY count(*) DESC, 1, 2 LIMIT 1"
    ).fetchall()[0]
    rule = TriggerRule(name="stock-low-reorder", event_type="stock_low", template="reorder")
    now = datetime(2011, 11, 1, 10)
    with OpenAIServer(responder=planning_reply) as model:
        fired = fire(store, settings_for(tmp_path, model), rule, [("low-1", user, item)], now=now)
        assert fired.goals == 1
        assert model.requests, "the trigger's goal was planned by the model"
    planner = store.con.execute(
        "SELECT d.planner FROM deliverables d JOIN goals g USING (goal_id) WHERE g.policy = 'trigger:stock-low-reorder'"
    ).fetchall()
    assert planner == [("llm:scripted",)]


# ---------------------------------------------------------------- history as of the day


def test_user_history_reads_as_of_the_goals_day(store: Store) -> None:
    day = date(2011, 11, 1)
    store.con.executemany(
        "INSERT INTO events (event_id, user_id, type, item_id, ts, received_at) VALUES (?, 'u1', 'purchase', ?, ?, ?)",
        [
            ["e1", "p1", datetime(2011, 10, 20), datetime(2011, 10, 20)],
            ["e2", "p2", datetime(2011, 10, 31, 18), datetime(2011, 10, 31, 18)],
            ["e3", "p3", datetime(2011, 11, 5), datetime(2011, 11, 5)],  # after the day: not yet happened
        ],
    )
    goal = GoalRecord("g", "d", "u1", day, "reorder", "daily", "t", ("p1",), {}, {}, "why")
    wall_clock = datetime(2026, 12, 2, 12)
    ctx = ToolContext(goal, wall_clock, {}, frozenset(), connect=store.con.cursor)
    seen = Executor(ctx, allowed_tools("reorder")).call("user_history", {"days": 30})
    ctx.close()
    assert seen.ok and [e["item_id"] for e in seen.result] == ["p2", "p1"]
