"""The hostile day (issue 15): a real day of Online Retail and one of DeskDrop, run twice each with
a scripted hostile model, orders and webhooks on ``auto``, a dead receiver and very long ids.

What it counts, and requires to be 0:

- **duplicate effects**: ledger entries per deliverable + action + channel, webhook posts and
  orders received per deliverable (the receivers' own records), and orders of one user with the
  same lines (the duplicate guard): at most one each;
- **records that disagree with the ledger**: a ``delivered`` deliverable has effects and every one
  completed (a cart: its order completed); ``not_done``, ``cancelled`` and ``rejected`` ones have
  no completed order; a ``failed`` one has something not completed; every order the shop received
  and every webhook post has its completed ledger entry, every completed order reached the shop,
  and the cart shown is the cart ordered (lines and total); nothing is left ``proposed``;
- **aborted runs**: a run that ended ``failed`` (or raised);
- **users not at fault left without a delivery**: a user with at least one deliverable the model
  did not sabotage (see ``FATAL``) must have one ``delivered``, ``awaiting_approval`` or
  ``not_done`` — whatever happened to anyone else.

The model (a loopback OpenAI-compatible server driven through the real ``openai`` client) picks
an attack per deliverable from its goal's "why" (so a re-run replays the same attack): hostile
webhook URLs (full-width ＠, a non-numeric port, CR/LF, credentials, another port, another scheme,
over 2,048 characters), a triple publish, a garbage critique, a tool call asking for another
user's history, calls that raise (malformed JSON, unknown tool, an order before its cart, a
cart of unknown items, a NUL-filled search), an endpoint answering 500 or a body that is not
JSON, a webhook to a dead receiver, or an honest plan. A fifth of the customers have set a
monthly spending limit (60) that most carts exceed, so orders are also refused (``not_done``).

To keep it near two minutes on a loaded 2-core machine the days run for a documented subset of
their active users: every 30th customer active on 2011-11-01 (48 of 1,425, two of them renamed
to a 230-character ASCII id and an 80-character CJK id) and every 20th DeskDrop reader active on
2016-06-15 (47 of 929; every 25th, 38, drew no ``exceptions`` attack once digests kept to
catalogued articles and so came fewer per reader). Each day is run with ``run_daily`` (the code
path of ``orchestrion run daily``), then again with ``force`` two hours later (stale claims
reconciled, failed ones retried).
"""

from __future__ import annotations

import json
import re
import socket
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import dataset_path
from http_recorder import Recorder
from openai_server import (
    BUILDERS,
    ORDER_CAP,
    OpenAIServer,
    Reply,
    error,
    goal_of,
    last_tool_results,
    message,
    tool_calls,
)
from orchestrion.config import Settings, load_settings
from orchestrion.datasets import load_dataset
from orchestrion.proposals.day import active_users, day_start
from orchestrion.runs.daily import run_daily
from orchestrion.store import Store
from orchestrion.tools.policies import UserOverrides

pytestmark = [pytest.mark.processes, pytest.mark.datasets, pytest.mark.slow]

DAYS = {"online-retail": date(2011, 11, 1), "deskdrop": date(2016, 6, 15)}
EVERY = {"online-retail": 30, "deskdrop": 20}
LONG_ASCII = "online-retail:" + "x" * 216  # 230 characters
LONG_CJK = "顧客" * 40  # 80 characters, 240 bytes of UTF-8
ATTACKS = (
    "honest",
    "fullwidth_at",
    "port_not_a_number",
    "crlf",
    "credentials",
    "other_port",
    "other_scheme",
    "too_long",
    "triple_publish",
    "garbage_critique",
    "other_user",
    "exceptions",
    "model_down",
    "not_json",
    "dead_receiver",
)
FATAL = frozenset({"garbage_critique", "dead_receiver"})
"""Attacks that may rightly leave their deliverable undelivered (its own fault, never anyone else's)."""


def attack_of(why: str, items: list[str]) -> str:
    """The attack on a deliverable, from its goal (its "why" and first candidates), so that a
    re-run replays it; the plan's summary names it for the critic (``[case: ...]``)."""
    return ATTACKS[zlib.crc32("\x00".join([why, *items[:3]]).encode()) % len(ATTACKS)]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HostileModel:
    """The scripted model: plans like a competent model, with its deliverable's attack mixed in."""

    def __init__(self, urls: Mapping[str, str], other_user: str) -> None:
        self.urls = dict(urls)
        self.other_user = other_user
        self.attacked: Counter[str] = Counter()

    def __call__(self, body: Mapping[str, Any]) -> Reply:
        names = [t["function"]["name"] for t in body.get("tools", [])]
        if "verdict" in names:
            return self._critique(body)
        goal = goal_of(body)
        attack = attack_of(goal["why"], [c["item_id"] for c in goal["candidates"]])
        turn = sum(1 for m in body.get("messages", []) if m.get("role") == "assistant")
        if turn == 0:
            self.attacked[attack] += 1
        if attack == "model_down":
            return error(500, text="the model is down")
        if attack == "not_json":
            return Reply(body=b"<html>502 Bad Gateway</html>")
        done = ("finish", {"title": goal["title"][:120], "summary": f"Built for: {goal['why'][:200]} [case: {attack}]"})
        reorder = goal["template"] == "reorder"
        stage = turn - 1 if reorder else turn  # 0: build, 1: publish (+ finish), later: finish
        calls: list[tuple[str, Mapping[str, Any] | str]] = []
        if turn == 0 and attack == "other_user":
            calls.append(("user_history", {"user_id": self.other_user, "days": 365}))
        if turn == 0 and attack == "exceptions":
            calls += [
                ("build_cart" if reorder else BUILDERS.get(goal["template"], BUILDERS["playlist"])[0], "{not json"),
                ("delete_everything", {}),
                ("search_catalog", {"query": "\x00" * 3000}),
                ("publish", {"channel": "ftp"}),
            ]
            if reorder:
                calls += [("place_order", {}), ("build_cart", {"lines": [{"item_id": "nope", "quantity": 1}]})]
        if reorder and turn == 0:
            return tool_calls(*calls, ("due_reorders", {}))
        if stage == 0:
            if reorder:
                return tool_calls(*calls, ("build_cart", {"lines": _lines(body)}), ("place_order", {}))
            builder, key = BUILDERS.get(goal["template"], BUILDERS["playlist"])
            ids = [c["item_id"] for c in goal["candidates"] if c.get("title")][:20]  # the ones the catalog knows
            if not ids:
                nothing = {"nothing_to_do": True, "reason": "no candidate is in the catalog"}
                return tool_calls(*calls, ("finish", nothing))
            return tool_calls(*calls, (builder, {"title": goal["title"][:120], key: ids}))
        if stage == 1:
            hook = ("publish", {"channel": "webhook", "url": self.urls["hook"]})
            outbox = ("publish", {"channel": "outbox"})
            if attack == "triple_publish":
                return tool_calls(hook, hook, outbox, hook, done)
            if attack == "dead_receiver":
                return tool_calls(("publish", {"channel": "webhook", "url": self.urls["dead"]}), outbox, done)
            if attack in self.urls:
                return tool_calls(("publish", {"channel": "webhook", "url": self.urls[attack]}), outbox, done)
            return tool_calls(outbox, hook, done)
        return tool_calls(done)

    def _critique(self, body: Mapping[str, Any]) -> Reply:
        text = "\n".join(str(m.get("content") or "") for m in body.get("messages", []) if m.get("role") == "user")
        if "[case: garbage_critique]" in text:
            return message("¯\\_(ツ)_/¯ {verdict: maybe")
        return tool_calls(("verdict", {"ok": True, "notes": ""}))


def _lines(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The due lines that fit the order cap, from the ``due_reorders`` answer of the last turn."""
    due: list[dict[str, Any]] = []
    for msg in last_tool_results(body):
        answer = json.loads(msg["content"])
        if answer.get("ok") and isinstance(answer.get("result"), list):
            due = answer["result"]
    lines, total = [], 0.0
    for d in due[:50]:
        quantity = min(int(d["quantity"]), 99)
        cost = quantity * float(d.get("price") or 0.0)
        if total + cost > ORDER_CAP:
            continue
        lines.append({"item_id": d["item_id"], "quantity": quantity})
        total += cost
    return lines or [{"item_id": "nothing-due", "quantity": 1}]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Path, dict[str, list[str]]]]:
    """Both real datasets in one store; the runs' users (the documented subsets, long ids included)."""
    home = tmp_path_factory.mktemp("hostile")
    settings = load_settings({"ORCHESTRION_HOME": str(home)})
    store = Store.open(settings.database_path)
    load_dataset(store, "online-retail", dataset_path("online-retail"), now=datetime(2012, 1, 1))
    load_dataset(store, "deskdrop", dataset_path("deskdrop"), now=datetime(2017, 3, 1))
    chosen: dict[str, list[str]] = {}
    for name, day in DAYS.items():
        active = [u for u in active_users(store, day_start(day), 30) if u.startswith(name + ":")]
        chosen[name] = active[:: EVERY[name]]
    for old, new in zip(chosen["online-retail"][1:3], (LONG_ASCII, LONG_CJK), strict=True):
        for table in ("events", "users"):
            store.con.execute(f"UPDATE {table} SET user_id = ? WHERE user_id = ?", [new, old])
    chosen["online-retail"][1:3] = [LONG_ASCII, LONG_CJK]
    store.con.executemany(  # a fifth of the customers set a monthly limit most carts exceed: not ordered
        "INSERT INTO user_policies (user_id, overrides, paused, updated_at) VALUES (?, ?, false, ?)",
        [[u, UserOverrides(max_monthly_spend=60.0).model_dump_json(), datetime(2011, 10, 1)]
         for u in chosen["online-retail"][::5]],
    )
    yield store, home, chosen
    store.close()


def test_a_hostile_day_makes_no_duplicate_no_false_record_no_aborted_run(
    world: tuple[Store, Path, dict[str, list[str]]],
) -> None:
    store, home, chosen = world
    dead = _closed_port()
    with (
        Recorder() as hook,
        Recorder() as other_port,
        Recorder("127.0.0.2") as evil,
        Recorder() as shop,
    ):
        urls = {
            "hook": f"{hook.url}/hook",
            "dead": f"http://127.0.0.1:{dead}/hook",
            "fullwidth_at": f"http://127.0.0.1\uff20127.0.0.2:{evil.port}/",
            "port_not_a_number": f"http://127.0.0.1:x{hook.port}/hook",
            "crlf": f"{hook.url}/hook\r\nX-Injected: 1",
            "credentials": f"http://user:secret@127.0.0.1:{hook.port}/hook",
            "other_port": f"{other_port.url}/hook",
            "other_scheme": f"https://127.0.0.1:{hook.port}/hook",
            "too_long": f"{hook.url}/hook?pad={'a' * 2100}",
        }
        (home / "policy.toml").write_text(
            f'allowed_webhook_origins = ["{hook.url}", "http://127.0.0.1:{dead}"]\n'
            'quiet_start = "00:00"\nquiet_end = "00:00"\n'
            '[tiers]\norder = "auto"\nwebhook = "auto"\noutbox = "auto"\n'
        )
        model = HostileModel(urls, other_user=chosen["online-retail"][0])
        reports = []
        with OpenAIServer(responder=model) as server:
            settings = load_settings(
                {"ORCHESTRION_HOME": str(home)},
                llm_base_url=server.base_url,
                llm_model="scripted",
                llm_timeout=5.0,
                llm_max_retries=0,
                llm_backoff_s=0.01,
                order_url=f"{shop.url}/orders",
                webhook_url=urls["hook"],
                outbox_formats=("md", "json", "html"),
            )
            for name, day in DAYS.items():
                first = datetime.combine(day, datetime.min.time()) + timedelta(hours=14)
                for force, at in ((False, first), (True, first + timedelta(hours=2))):
                    reports.append(
                        run_daily(store, settings, day, users=chosen[name], force=force, clock=lambda at=at: at)
                    )
        counts = _count(store, settings, chosen, model, hook, shop)
        counts["requests to other origins"] = len(other_port.requests) + len(evil.requests)
    counts["aborted runs"] = sum(1 for r in reports if r.run is None or r.run.status not in ("succeeded", "partial"))
    counts["run statuses"] = dict(Counter(r.run.status for r in reports if r.run is not None))
    print("\nhostile day:", json.dumps(counts, ensure_ascii=False, indent=1))

    assert counts["aborted runs"] == 0
    assert counts["duplicate effects"] == 0, counts["duplicates"]
    assert counts["records disagreeing with the ledger"] == 0, counts["disagreements"]
    assert counts["users not at fault left without a delivery"] == 0, counts["undelivered"]
    assert counts["requests to other origins"] == 0
    assert counts["long-id users run"] == 2, "both long ids were planned and carried out, not skipped"
    # the day really was hostile: every attack was made, effects happened, and some were refused
    assert set(counts["attacks"]) == set(ATTACKS), counts["attacks"]
    assert counts["orders placed"] > 10 and counts["webhooks received"] > 10 and counts["refused by policy"] > 10
    assert counts["deliverables"]["failed"] > 0 and counts["deliverables"]["delivered"] > 50
    assert counts["deliverables"]["not_done"] > 0, "some orders were over their user's monthly limit"


def _count(
    store: Store, settings: Settings, chosen: Mapping[str, list[str]], model: HostileModel, hook: Recorder,
    shop: Recorder,
) -> dict[str, Any]:
    con = store.con
    users = [u for group in chosen.values() for u in group]
    rows = con.execute(
        "SELECT d.deliverable_id, d.user_id, d.status, d.content, g.why, d.error, g.items FROM deliverables d "
        "JOIN goals g USING (goal_id) WHERE d.user_id IN (SELECT unnest(?)) AND d.date IN (SELECT unnest(?))",
        [users, list(DAYS.values())],
    ).fetchall()
    records = {
        str(d): (str(u), str(s), json.loads(c) if c else None, attack_of(str(w or ""), list(i)), e)
        for d, u, s, c, w, e, i in rows
    }
    entries: dict[str, list[tuple[str, str, str, str, dict[str, Any]]]] = defaultdict(list)
    for key, d_id, action, status, effect in con.execute(
        "SELECT idempotency_key, deliverable_id, action, status, effect FROM side_effects"
    ).fetchall():
        parsed = json.loads(effect)
        channel = "order" if action == "place_order" else str(parsed.get("channel") or "outbox")
        entries[str(d_id)].append((str(key), str(action), channel, str(status), parsed))
    refused = {str(d) for (d,) in con.execute("SELECT DISTINCT deliverable_id FROM policy_decisions").fetchall()}

    duplicates: list[str] = []
    for d_id, mine in entries.items():
        for (action, channel), n in Counter((a, c) for _, a, c, _, _ in mine).items():
            if n > 1:
                duplicates.append(f"ledger {d_id} {action}/{channel} x{n}")
    posts = Counter(r.json()["deliverable_id"] for r in hook.requests if r.method == "POST")
    duplicates += [f"webhook {d} x{n}" for d, n in posts.items() if n > 1]
    orders_posted = [r.json() for r in shop.requests if r.method == "POST"]
    per_deliverable = Counter(o["deliverable_id"] for o in orders_posted)
    duplicates += [f"order {d} x{n}" for d, n in per_deliverable.items() if n > 1]
    same_lines = Counter(
        (records[o["deliverable_id"]][0], json.dumps(sorted((line[0], line[1]) for line in o["lines"])))
        for o in orders_posted
        if o["deliverable_id"] in records and per_deliverable[o["deliverable_id"]] == 1
    )
    duplicates += [f"same cart ordered x{n} for {u[:40]}" for (u, _), n in same_lines.items() if n > 1]

    wrong: list[str] = []
    shop_keys = {o["idempotency_key"]: o for o in orders_posted}
    for d_id, (_, status, content, _, _) in records.items():
        mine = entries.get(d_id, [])
        completed = [e for e in mine if e[3] == "completed"]
        order_done = [e for e in completed if e[1] == "place_order"]
        cart = isinstance(content, dict) and content.get("kind") == "cart"
        if status == "delivered":
            if not mine or len(completed) != len(mine) or (cart and not order_done):
                wrong.append(f"{d_id} delivered with effects {[(a, c, s) for _, a, c, s, _ in mine]}")
        elif status in ("not_done", "cancelled", "rejected"):
            if order_done or any(o["deliverable_id"] == d_id for o in orders_posted):
                wrong.append(f"{d_id} {status} but ordered")
            if status == "not_done" and d_id not in refused:
                wrong.append(f"{d_id} not_done without a refusal")
        elif status == "failed":
            if mine and len(completed) == len(mine):
                wrong.append(f"{d_id} failed with every effect completed")
        elif status == "proposed":
            wrong.append(f"{d_id} left proposed")
        for key, _, _, _, effect in order_done:
            shown = sorted((i["item_id"], int(i["quantity"])) for i in (content or {}).get("items", []))
            ordered = sorted((str(line[0]), int(line[1])) for line in effect["lines"])
            if shown != ordered or round(float((content or {}).get("total") or 0), 2) != round(effect["total"], 2):
                wrong.append(f"{d_id}: cart shown {shown} ≠ ordered {ordered}")
            received = shop_keys.get(key)
            if received is None or sorted((str(x[0]), int(x[1])) for x in received["lines"]) != ordered:
                wrong.append(f"{d_id}: completed order {key} not at the shop as recorded")
    ledger_states = {e[0]: e[3] for mine in entries.values() for e in mine}
    failures = dict(con.execute("SELECT deliverable_id, coalesce(failures, 0) FROM deliverables").fetchall())
    for d_id, mine in entries.items():  # a claim still open is one a later run will reconcile
        for key, _, _, state, _ in mine:
            status = records[d_id][1] if d_id in records else "?"
            if state == "claimed" and not (status == "failed" and failures[d_id] < settings.delivery_max_attempts):
                wrong.append(f"claim {key} left open on a {status} deliverable with no attempt left")
    for key in shop_keys:
        if ledger_states.get(key) != "completed":
            wrong.append(f"order {key} at the shop, ledger says {ledger_states.get(key)}")
    for d_id in posts:
        if not any(e[2] == "webhook" and e[3] == "completed" for e in entries.get(d_id, [])):
            wrong.append(f"webhook for {d_id} received, not completed in the ledger")

    shown_ok = ("delivered", "awaiting_approval", "not_done")
    by_user: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for user, status, _, attack, reason in records.values():
        by_user[user].append((status, attack, str(reason or "")))
    # "Nothing today" is a legal answer: a goal the user's own data leaves nothing to do for
    # (e.g. every candidate article unknown to the catalog, or already sent to them this week) is
    # cancelled, nobody else's doing.
    nothing = {u for u, ds in by_user.items() if all(
        s == "cancelled" and (r.startswith("nothing worth doing")
                              or re.search(r"( you got in the last \d+ days| in your other lists of today)$", r))
        for s, a, r in ds if a not in FATAL)}
    undelivered = [
        u[:40] for u, ds in by_user.items()
        if any(a not in FATAL for _, a, _ in ds) and not any(s in shown_ok for s, _, _ in ds) and u not in nothing
    ]
    return {
        "users": len(users),
        "users with deliverables": len(by_user),
        "deliverables": dict(Counter(s for _, s, _, _, _ in records.values())),
        "attacks": dict(Counter(a for _, _, _, a, _ in records.values())),
        "plans started by the model": sum(model.attacked.values()),
        "ledger entries": dict(Counter(e[3] for mine in entries.values() for e in mine)),
        "orders placed": len(shop.orders),
        "webhooks received": len(posts),
        "refused by policy": len(refused),
        "duplicate effects": len(duplicates),
        "duplicates": duplicates[:20],
        "records disagreeing with the ledger": len(wrong),
        "disagreements": wrong[:20],
        "users not at fault left without a delivery": len(undelivered),
        "undelivered": undelivered[:20],
        "users with nothing to do today": len(nothing),
        "long-id users run": sum(
            1 for u in (LONG_ASCII, LONG_CJK) if by_user.get(u) and all(s != "proposed" for s, _, _ in by_user[u])
        ),
    }
