"""A refused order says so (issue 16, point 5): status ``not_done`` with its plain reason, shown as
"Not ordered: <reason>" in the CLI, the web card, the outbox files and the API — never ``delivered``.

Real parts: the shipped Online Retail sample (a real day's customers), the ``orchestrion deliver``
command and ``orchestrion serve`` as child processes, a person signing in to the web page with
their key, and the real delivery (policy, ledger, effector) for the approval case.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from launcher import cli, serve
from orchestrion.access.keys import create_key
from orchestrion.config import load_settings
from orchestrion.datasets import load_dataset
from orchestrion.delivery.deliverables import decide, get_deliverable
from orchestrion.delivery.rendering import status_text
from orchestrion.delivery.stage import execute
from orchestrion.runs.demo import sample_path
from orchestrion.store import Store, utcnow
from orchestrion.tools.policies import Policy, UserOverrides
from orchestrion.web.controls import waiting_actions
from test_trust_guards import DAY as SMALL_DAY
from test_trust_guards import NOW as SMALL_NOW
from test_trust_guards import cart, plant, settings_for

pytestmark = pytest.mark.processes

DAY = date(2011, 11, 1)
# No quiet hours: the CLI runs at the wall clock, and an order on ``auto`` waits during quiet hours
# (22:00-07:00 by default), which is not what these tests are about.
AUTO = 'quiet_start = "00:00"\nquiet_end = "00:00"\n[tiers]\norder = "auto"\noutbox = "auto"\nwebhook = "auto"\n'


def _home(home: Path, *, policy: str = AUTO, toml: str = "") -> Path:
    """A home with the shipped Online Retail sample loaded, orders and publishing on ``auto``."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "policy.toml").write_text(policy)
    (home / "orchestrion.toml").write_text('scheduler = false\noutbox_formats = ["md", "json", "html"]\n' + toml)
    settings = load_settings({"ORCHESTRION_HOME": str(home)})
    with Store.open(settings.database_path) as store:
        load_dataset(store, "online-retail", sample_path(settings), now=datetime(2011, 11, 1, 9))
    return settings.database_path


def _orders(database: Path) -> dict[str, list[list[Any]]]:
    """Completed orders by user: their lines."""
    with Store.open(database) as store:
        rows = store.con.execute(
            "SELECT user_id, effect FROM side_effects WHERE action = 'place_order' AND status = 'completed'"
        ).fetchall()
    return {str(u): json.loads(e)["lines"] for u, e in rows}


def test_orders_refused_by_the_monthly_cap_and_the_duplicate_guard_say_not_ordered_everywhere(
    tmp_path: Path,
) -> None:
    # The sample's day, once as it goes with no refusal: who orders what (the planner is
    # deterministic, so the real run below builds the same carts).
    first = _home(tmp_path / "first")
    free = cli(tmp_path / "first", "deliver", "--date", DAY.isoformat(), "--json")
    assert free.returncode == 0, free.stderr[-2000:]
    placed = _orders(first)
    capped, doubled = sorted(placed)[:2]  # the first users: in the CLI table's first 20 rows

    home = tmp_path / "home"
    database = _home(home)
    with Store.open(database) as store:
        now = utcnow()
        store.con.execute(  # a person's own monthly limit, lower than any cart
            "INSERT INTO user_policies (user_id, overrides, paused, updated_at) VALUES (?, ?, false, ?)",
            [capped, UserOverrides(max_monthly_spend=10.0).model_dump_json(), now],
        )
        earlier = now - timedelta(days=2)  # the same cart ordered two days ago
        lines = placed[doubled]
        store.con.execute(
            "INSERT INTO side_effects VALUES ('k_earlier', ?, 'd_earlier', 'place_order', ?, 'completed', '{}', 1, "
            "?, ?)",
            [doubled, json.dumps({"lines": lines, "total": sum(q * p for _, q, p in lines)}), earlier, earlier],
        )
        admin = create_key(store.con, "admin").key

    run = cli(home, "deliver", "--date", DAY.isoformat(), env={"COLUMNS": "400"})
    assert run.returncode == 0, run.stderr[-2000:]
    said = {
        user: next(line for line in run.stdout.splitlines() if user in line) for user in (capped, doubled)
    }
    assert "Not ordered: this month's spending limit is reached" in said[capped], run.stdout
    day_shown = f"{earlier.day} {earlier:%b}"
    assert f"Not ordered: the same items were ordered on {day_shown}" in said[doubled], run.stdout
    assert not any(word in row for row in said.values() for word in ("not_done", "delivered")), said

    with Store.open(database) as store:
        rows = store.con.execute(
            "SELECT user_id, deliverable_id, status, error, json_extract_string(effects, '$.publish.path') "
            "FROM deliverables WHERE date = ? AND user_id IN (?, ?)",
            [DAY, capped, doubled],
        ).fetchall()
        assert sorted((str(u), s) for u, _, s, _, _ in rows) == [(capped, "not_done"), (doubled, "not_done")]
        mine = {str(u): (str(d), str(e), Path(p)) for u, d, _, e, p in rows}
        refused = dict(store.con.execute(
            "SELECT user_id, rule FROM policy_decisions WHERE user_id IN (?, ?)", [capped, doubled]
        ).fetchall())
        assert refused == {capped: "money_per_month", doubled: "duplicate"}
        ordered = store.con.execute(
            "SELECT count(*) FROM side_effects WHERE action = 'place_order' AND deliverable_id IN (?, ?)",
            [mine[capped][0], mine[doubled][0]],
        ).fetchall()[0][0]
        assert ordered == 0, "nothing was ordered for either"
        others = dict(store.con.execute(
            "SELECT status, count(*) FROM deliverables WHERE date = ? AND user_id NOT IN (?, ?) GROUP BY 1",
            [DAY, capped, doubled],
        ).fetchall())
        assert others == {"delivered": len(placed) - 2}, "everyone else ordered as before"

    for user, (_, error, path) in mine.items():
        expected = status_text("not_done", error, "place_order")
        assert expected.startswith("Not ordered: ")
        assert f"*Status:* {expected}" in path.with_suffix(".md").read_text()
        page = path.with_suffix(".html").read_text()
        assert re.search(r'<span class="status" style="[^"]*">Not ordered: [^<]+</span>', page), user

    with serve(home) as server:
        for user, (d_id, error, _) in mine.items():
            api = httpx.get(f"{server.url}/v1/deliverables/{d_id}", headers={"Authorization": f"Bearer {admin}"})
            assert api.status_code == 200, api.text
            record = api.json()
            assert record["status"] == "not_done" and record["status_text"].startswith("Not ordered: ")
            assert record["status_text"] == status_text("not_done", error, "place_order")
            made = httpx.post(f"{server.url}/v1/keys", json={"role": "user", "user_id": user},
                              headers={"Authorization": f"Bearer {admin}"})
            assert made.status_code == 201, made.text
            with httpx.Client(base_url=server.url, follow_redirects=False, timeout=30) as browser:
                page = browser.get("/signin")
                token = re.search(r'name="signin_token" value="([^"]+)"', page.text)
                assert token is not None
                signed = browser.post("/signin", data={"signin_token": token[1], "credential": made.json()["key"]})
                assert signed.status_code == 303, signed.text
                feed = browser.get("/", params={"date": DAY.isoformat()})
                assert feed.status_code == 200
                card = feed.text[feed.text.index(f'id="{d_id}"'):]
                card = card[: card.index("</article>")]
                assert "Not ordered: " in card and ">delivered<" not in card, card


def test_an_approved_cart_over_the_monthly_cap_by_then_is_not_ordered(tmp_path: Path) -> None:
    """Two carts wait for approval; the first approved uses the month's money, the second is then
    refused at approval: ``not_done`` with the plain reason, and no order."""
    store = Store.open(tmp_path / "db.duckdb")
    plant(store, [("g_a", "u1", "reorder", cart(("p3", 2))), ("g_b", "u1", "reorder", cart(("p3", 1), ("p1", 1)))])
    settings = settings_for(tmp_path)
    policy = Policy(max_monthly_spend=80.0)
    execute(store, settings, SMALL_DAY, ["u1"], now=SMALL_NOW, policy=policy)
    later = SMALL_NOW + timedelta(hours=1)
    first = decide(store, settings, "d_a", "approve", by="u1", viewer="u1", now=later, policy=policy)
    assert first.status == "delivered" and first.status_text == "Ordered"
    second = decide(store, settings, "d_b", "approve", by="u1", viewer="u1", now=later, policy=policy)
    assert second.status == "not_done", second
    assert second.status_text.startswith("Not ordered: this month's spending limit is reached"), second
    assert store.scalar(
        "SELECT count(*) FROM side_effects WHERE deliverable_id = 'd_b' AND action = 'place_order'"
    ) == 0
    # The approvals page's "Decided recently" says it in the same words, with the reason.
    outcomes = {a.deliverable_id: a.outcome for a in waiting_actions(store.con, "u1")}
    assert outcomes["d_b"] == second.status_text, outcomes
    assert outcomes["d_a"] is None  # ordered: the page's own word, "Done"
    store.close()


def test_a_cart_whose_every_item_is_over_the_order_limit_says_so_in_plain_words(tmp_path: Path) -> None:
    """Coffee beans at £30.00, bought 2 at a time, with a £50.00 order limit: nothing fits, the
    cart is cancelled and says why in words a person uses (not "nothing worth doing", not "cap")."""
    store = Store.open(tmp_path / "db.duckdb")
    plant(store, [("g_c", "u1", "reorder", cart(("p3", 2)))])
    settings = settings_for(tmp_path)
    execute(store, settings, SMALL_DAY, ["u1"], now=SMALL_NOW, policy=Policy(max_order_amount=50.0))
    record = get_deliverable(store.con, "d_c")
    assert record.status == "cancelled"
    assert record.status_text == (
        "Cancelled: every item costs more than the £50.00 order limit at the quantity you usually buy"
    )
    store.close()
