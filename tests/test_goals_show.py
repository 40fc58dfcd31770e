"""`goals show` for people (issue 16, point 7): a user's "why this" and "what was not chosen" through
the API (`GET /v1/users/{id}/goals`), the CLI while `serve` holds the store, and the web page.

A real day of the shipped Online Retail sample is delivered (offline planner, the £150 cap) for a
few customers, one of them under an id with a slash; then a real `orchestrion serve` holds the
database, and the API, `orchestrion goals show` (a real process) and Debian's Chromium read it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from launcher import Server, cli, serve
from orchestrion.access.keys import create_key
from orchestrion.config import load_settings
from orchestrion.datasets import load_dataset
from orchestrion.runs.daily import run_daily
from orchestrion.runs.demo import DEMO_DAY
from orchestrion.store import Store

pytestmark = [pytest.mark.processes]

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "samples" / "online-retail-sample.csv.gz"
SLASHED = "shop/alice"


@pytest.fixture(scope="module")
def day_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str], list[str]]]:
    home = tmp_path_factory.mktemp("goals")
    settings = load_settings({"ORCHESTRION_HOME": str(home)})
    with Store.open(settings.database_path) as store:
        load_dataset(store, "online-retail", SAMPLE, now=datetime(2011, 12, 10))
        busiest = [str(r[0]) for r in store.con.execute(
            "SELECT user_id FROM events WHERE type = 'purchase' AND ts < ? AND ts >= ? GROUP BY 1 "
            "ORDER BY count(DISTINCT item_id) DESC, 1 LIMIT 6",
            [datetime.combine(DEMO_DAY, datetime.min.time()), DEMO_DAY - timedelta(days=30)],
        ).fetchall()]
        # one customer's history again under an id with a slash (ids are whatever ingestion accepts)
        store.con.execute(
            "INSERT INTO events SELECT * REPLACE ('copy:' || event_id AS event_id, ? AS user_id) FROM events "
            "WHERE user_id = ?",
            [SLASHED, busiest[0]],
        )
        users = [*busiest, SLASHED]
        report = run_daily(store, settings, DEMO_DAY, users=users,
                           clock=lambda: datetime.combine(DEMO_DAY, datetime.min.time()) + timedelta(hours=7))
        assert report.run is not None and report.run.status == "succeeded"
        keys = {"admin": create_key(store.con, "admin").key}
        for user in (SLASHED, busiest[1]):
            keys[user] = create_key(store.con, "user", user_id=user).key
    with serve(home) as server:
        yield server, keys, users


def get(server: Server, user: str, key: str) -> httpx.Response:
    return httpx.get(f"{server.url}/v1/users/{quote(user, safe='')}/goals", params={"date": DEMO_DAY.isoformat()},
                     headers={"Authorization": f"Bearer {key}"}, timeout=30)


def test_the_api_gives_why_this_and_what_was_not_chosen(day_served: tuple[Server, dict[str, str], list[str]]) -> None:
    server, keys, users = day_served
    own = get(server, SLASHED, keys[SLASHED])
    assert own.status_code == 200, own.text
    day = own.json()
    assert day["user_id"] == SLASHED and day["date"] == DEMO_DAY.isoformat()
    assert day["chosen"] and day["not_chosen"]
    feed = httpx.get(f"{server.url}/v1/users/{quote(SLASHED, safe='')}/feed", params={"date": DEMO_DAY.isoformat()},
                     headers={"Authorization": f"Bearer {keys[SLASHED]}"}, timeout=30).json()
    delivered = {d["deliverable_id"]: d for d in feed["deliverables"]}
    for goal in day["chosen"]:
        # "why this" as written for what was finally delivered: the feed's, with the final items
        shown = delivered[goal["deliverable_id"]]
        assert (goal["why"], goal["title"], goal["items"]) == (shown["why"], shown["title"], shown["items"])
        assert [i["item_id"] for i in shown["content"]["items"]] == goal["items"]
    for goal in day["not_chosen"]:
        assert goal["reason"] and goal["reason_detail"] and goal["would_have_been"]
    print(f"{SLASHED}: {len(day['chosen'])} chosen, {len(day['not_chosen'])} not chosen; "
          f"e.g. {day['chosen'][0]['why']!r} / {day['not_chosen'][0]['reason_detail']!r}")
    # another user's day answers as a day with nothing would; an admin sees anyone's; no key: 401
    assert get(server, SLASHED, keys[users[1]]).status_code == 404
    assert get(server, users[1], keys["admin"]).status_code == 200
    assert httpx.get(f"{server.url}/v1/users/{quote(SLASHED, safe='')}/goals", timeout=30).status_code == 401
    nothing = get(server, SLASHED, keys["admin"]).json()
    assert nothing == day
    missing = httpx.get(f"{server.url}/v1/users/{quote(SLASHED, safe='')}/goals", params={"date": "2011-10-01"},
                        headers={"Authorization": f"Bearer {keys['admin']}"}, timeout=30)
    assert missing.status_code == 404 and "goals propose" in missing.json()["detail"]


def test_goals_show_asks_the_server_that_holds_the_store(day_served: tuple[Server, dict[str, str], list[str]]) -> None:
    server, keys, _users = day_served
    env = {"ORCHESTRION_API_KEY": keys["admin"]}
    shown = cli(server.home, "goals", "show", SLASHED, "--date", DEMO_DAY.isoformat(), "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == get(server, SLASHED, keys["admin"]).json()
    text = cli(server.home, "goals", "show", SLASHED, "--date", DEMO_DAY.isoformat(), env=env)
    assert text.returncode == 0, text.stderr
    assert "why this: " in text.stdout and "Not chosen today:" in text.stdout
    assert server.proc.poll() is None  # it was asked, not pushed aside


def test_the_web_page_has_why_this_on_each_card_and_what_was_not_chosen(
    day_served: tuple[Server, dict[str, str], list[str]], tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    from test_web import ARGS, CHROMIUM

    server, keys, _users = day_served
    day = get(server, SLASHED, keys["admin"]).json()
    link = cli(server.home, "users", "link", SLASHED, "--base-url", server.url,
               env={"ORCHESTRION_API_KEY": keys["admin"]}).stdout.strip().splitlines()[-1]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page: Any = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
            page.set_default_timeout(15_000)
            page.goto(link)
            page.wait_for_url(lambda u: "/signin" not in u)
            page.goto(f"{server.url}/?date={DEMO_DAY.isoformat()}")
            cards = page.locator("article.card")
            assert cards.count() == len(day["chosen"])
            for number, goal in enumerate(day["chosen"]):
                why = cards.nth(number).locator("details.why")
                assert not why.evaluate("d => d.open")
                why.locator("summary").click()
                assert goal["why"] in why.inner_text()
            declined = page.locator("details.declined")
            # the demo's day is not today: the page says "that day"
            assert f"Not chosen that day ({len(day['not_chosen'])})" in declined.locator("summary").first.inner_text()
            declined.locator("summary").first.click()
            text = declined.inner_text()
            for goal in day["not_chosen"]:
                assert goal["reason_detail"] in text
        finally:
            browser.close()


def test_not_chosen_for_people_leaves_out_what_they_received_and_shows_each_alternative_once() -> None:
    """The web page's "Not chosen today": a cart within the chosen one (its items were received) is
    left out, two templates' carts of the same lines are one alternative; a different one stays."""
    from datetime import date

    from orchestrion.proposals.day import declined_goals

    day, now = date(2011, 11, 1), datetime(2011, 11, 1, 7)
    goals = [  # goal, title, items, status, score
        ("g_a", "Repeat your last order", ["a", "b", "c"], "chosen", 0.9),
        ("g_b", "Reorder: 2 items due", ["a", "b"], "not_chosen", 0.8),
        ("g_c", "Reorder your staples", ["x", "y"], "not_chosen", 0.7),
        ("g_d", "Reorder: 2 items due again", ["y", "x"], "not_chosen", 0.6),
        ("g_e", "Something else", ["z"], "not_chosen", 0.5),
    ]
    with Store.open(":memory:") as store:
        for goal, title, items, status, score in goals:
            store.con.execute(
                "INSERT INTO goals (goal_id, user_id, date, template, variant, kind, params, title, items, details, "
                "features, score, propensity, slot, policy, status, why, cost, risk, created_at) VALUES "
                "(?, 'u', ?, 'reorder', 'due', 'due', '{}', ?, ?, '{}', '{}', ?, 1.0, NULL, 'prior', ?, 'why', 0, "
                "0.1, ?)",
                [goal, day, title, items, score, status, now],
            )
        store.con.execute(
            "INSERT INTO deliverables (deliverable_id, goal_id, user_id, date, template, title, items, status, "
            "created_at) VALUES ('d_a', 'g_a', 'u', ?, 'reorder', 'Repeat your last order', ['a'], 'delivered', ?)",
            [day, now],
        )
        shown = [row[0] for row in declined_goals(store.con, "u", day)]
    assert shown == ["Reorder your staples", "Something else"]
