"""The web page in a real browser: Debian's Chromium driven by Playwright against a real server
on loopback (uvicorn in a thread, the app over a DuckDB file).

Each test signs in the way a person does (a `users link` URL, or an admin key typed into the
sign-in form), clicks, and then checks the database, not only the page. Screenshots of every
page go to a temporary folder, or to ``$ORCHESTRION_SCREENSHOTS`` when set
(``ORCHESTRION_SCREENSHOTS=docs/img`` refreshes the documentation's web-*.png): a test run
leaves the checkout as it found it.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrion.access.keys import create_key
from orchestrion.config import Settings, load_settings
from orchestrion.delivery.stage import deliver
from orchestrion.runs.records import RunKey, claim_run, finish_run
from orchestrion.store import Store, utcnow
from orchestrion.training.versions import save_version

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SHOTS = Path(os.environ.get("ORCHESTRION_SCREENSHOTS") or tempfile.mkdtemp(prefix="orchestrion-shots-"))



@dataclass
class Site:
    url: str
    store: Store
    settings: Settings
    admin_key: str
    today: date
    now: datetime

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        cursor = self.store.cursor()
        try:
            return cursor.execute(sql, params or []).fetchall()
        finally:
            cursor.close()


def _seed(store: Store, now: datetime) -> None:
    """Two users; alice has a playlist, a cart and a digest today and a playlist yesterday; bob one digest."""
    today = now.date()
    items = [
        ("t1", "music", "Blue in Green", "Miles Davis", None, None, None),
        ("t2", "music", "So What", "Miles Davis", None, None, None),
        ("t3", "music", "Naima", "John Coltrane", None, None, None),
        ("p1", "retail", "NATURAL SLATE HEART CHALKBOARD", None, 2.55, "GBP", None),
        ("p2", "retail", "JUMBO BAG RED RETROSPOT", None, 1.95, "GBP", None),
        ("a1", "news", "Rivers rise after a week of rain", None, None, None,
         "Rivers across the region rose sharply after seven days of rain; two towns opened flood shelters."),
        ("a2", "news", "City opens a new library", None, None, None,
         "The new central library opened on Monday with 300,000 books and a rooftop reading room."),
        ("b1", "news", "Markets calm before the rate decision", None, None, None, "Traders waited on the bank."),
    ]
    store.con.executemany(
        "INSERT INTO items (item_id, domain, title, creator, price, currency, text, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [[*row, now] for row in items],
    )
    lines = [
        {"item_id": "p1", "title": "NATURAL SLATE HEART CHALKBOARD", "quantity": 6, "unit_price": 2.55,
         "line_total": 15.3},
        {"item_id": "p2", "title": "JUMBO BAG RED RETROSPOT", "quantity": 10, "unit_price": 1.95, "line_total": 19.5},
    ]
    goals = [
        # goal hash, user, day, template, title, items, details, status, slot, reason_detail, why
        ("alice01", "alice", today, "playlist", "Your late-night jazz mix", ["t1", "t2", "t3"],
         {"artists": ["Blue in Green", "So What", "Naima"]}, "chosen", 1, None,
         "you played 41 jazz tracks in the last 14 days, most of them after 22:00"),
        ("alice02", "alice", today, "reorder", "Reorder your staples: 2 items (£34.80)", ["p1", "p2"],
         {"currency": "GBP", "lines": lines, "total": 34.8}, "chosen", 2, None,
         "you buy these 2 items every ~3 weeks; the last time was 24 days ago"),
        ("alice03", "alice", today, "digest", "This week in your topics: rivers, libraries", ["a1", "a2"],
         {"titles": ["Rivers rise after a week of rain", "City opens a new library"]}, "chosen", 3, None,
         "you read 12 articles on these topics this week"),
        ("alice04", "alice", today, "watchlist", "Movies for a rainy Sunday", ["m1"], {}, "not_chosen", None,
         "over today's budget of 3 deliverables (score 0.31 below the third choice's 0.52)", "you rated 4 dramas"),
        ("alice05", "alice", today - timedelta(days=1), "playlist", "Morning focus", ["t3"], {"artists": ["Naima"]},
         "chosen", 1, None, "you play quiet tracks on weekday mornings"),
        ("bob0001", "bob", today, "digest", "Bob's markets digest", ["b1"],
         {"titles": ["Markets calm before the rate decision"]}, "chosen", 1, None, "you read markets news daily"),
    ]
    for h, user, day, template, title, goal_items, details, status, slot, reason_detail, why in goals:
        store.con.execute(
            "INSERT INTO goals (goal_id, user_id, date, template, variant, kind, params, title, items, details, "
            "features, score, propensity, slot, policy, status, reason, reason_detail, why, cost, risk, created_at) "
            "VALUES (?, ?, ?, ?, 'v', 'v', '{}', ?, ?, ?, '{}', 0.5, 1.0, ?, 'prior', ?, ?, ?, ?, 0, 0.1, ?)",
            [f"g_{h}", user, day, template, title, goal_items, json.dumps(details), slot, status,
             None if status == "chosen" else "budget", reason_detail, why, now],
        )
    claim = claim_run(store, RunKey("daily", today), now=now - timedelta(minutes=5))
    finish_run(store, claim.run.run_id, "succeeded", now=now - timedelta(minutes=4))
    store.con.execute(
        "INSERT INTO deliverables (deliverable_id, goal_id, user_id, date, template, title, items, status, created_at) "
        "SELECT 'd_' || substr(goal_id, 3), goal_id, user_id, date, template, title, items, 'delivered', created_at "
        "FROM goals WHERE status = 'chosen'"
    )


def _seed_carol(store: Store, settings: Settings, now: datetime) -> None:
    """carol's cart and playlist, today and tomorrow, left ``proposed`` for the delivery run: today's
    run (here) makes the cart wait for her approval; tomorrow's is the "next run" of the policy test."""
    today = now.date()
    lines = [
        {"item_id": "p1", "title": "NATURAL SLATE HEART CHALKBOARD", "quantity": 6, "unit_price": 2.55,
         "line_total": 15.3},
        {"item_id": "p2", "title": "JUMBO BAG RED RETROSPOT", "quantity": 10, "unit_price": 1.95, "line_total": 19.5},
    ]
    for day, tag in ((today, "c"), (today + timedelta(days=1), "n")):
        for slot, template, title, goal_items, details in (
            (1, "reorder", "Reorder your staples", ["p1", "p2"], {"currency": "GBP", "lines": lines, "total": 34.8}),
            (2, "playlist", "Carol's jazz", ["t1", "t3"], {"artists": ["Blue in Green", "Naima"]}),
        ):
            goal = f"g_carol{tag}{slot}"
            store.con.execute(
                "INSERT INTO goals (goal_id, user_id, date, template, variant, kind, params, title, items, details, "
                "features, score, propensity, slot, policy, status, why, cost, risk, created_at) VALUES "
                "(?, 'carol', ?, ?, 'due', 'due', '{}', ?, ?, ?, '{}', 0.5, 1.0, ?, 'prior', 'chosen', "
                "'you buy these every 3 weeks', 0, 0.1, ?)",
                [goal, day, template, title, goal_items, json.dumps(details), slot, now],
            )
            store.con.execute(
                "INSERT INTO deliverables (deliverable_id, goal_id, user_id, date, template, title, items, status, "
                "created_at) VALUES (?, ?, 'carol', ?, ?, ?, ?, 'proposed', ?)",
                ["d_" + goal[2:], goal, day, template, title, goal_items, now],
            )
    result = deliver(store, settings, today, ["carol"], now=now)
    assert result.pending == 1, result
    # a `notify` order whose cancel window is still open (as an operator policy with order = notify makes)
    store.con.execute(
        "INSERT INTO deliverables (deliverable_id, goal_id, user_id, date, template, title, items, status, "
        "created_at) VALUES ('d_carolw', 'g_carolw', 'carol', ?, 'reorder', 'Top up tea', ['p1'], "
        "'awaiting_approval', ?)",
        [today, now],
    )
    store.con.execute(
        "INSERT INTO pending_actions (action_id, deliverable_id, user_id, action, arguments, tier, status, due_at, "
        "created_at) VALUES ('fx_notify1', 'd_carolw', 'carol', 'place_order', ?, 'notify', 'waiting', ?, ?)",
        [json.dumps({"deliverable_id": "d_carolw", "lines": [["p1", 2, 2.55]], "total": 5.1}),
         now + timedelta(minutes=45), now],
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    import uvicorn

    from orchestrion.app import create_app

    home = tmp_path_factory.mktemp("web")
    settings = load_settings({"ORCHESTRION_HOME": str(home)})
    store = Store.open(settings.database_path)
    admin = create_key(store.con, "admin").key
    # The pages' clock is fixed at noon UTC of the day the module starts (the same date in every
    # user's zone): a run across midnight sees the same "today" as the seeded data.
    now = utcnow().replace(hour=12, minute=0, second=0, microsecond=0)
    today = now.date()
    _seed(store, now)
    _seed_carol(store, settings, now)
    save_version(settings.models_path, "ranker", lambda folder: None,
                 {"metrics": {"snips": {"candidate": 0.41, "current": 0.37}, "auc": 0.712}}, now=now,
                 auto_promote_first=False)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(store, settings, clock=lambda: now)
    config = uvicorn.Config(app, lifespan="on", log_level="warning", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield Site(f"http://127.0.0.1:{port}", store, settings, admin, today, now)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail("the browser tests need Debian's Chromium: apt-get install -y chromium (.ci/run does it)")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


def _link(site: Site, user: str) -> str:
    """A fresh sign-in link, as `orchestrion users link USER` prints it (run as a real command).

    A link signs in once, so every sign-in gets its own."""
    env = {"ORCHESTRION_HOME": str(site.settings.home), "PATH": "/usr/bin:/bin",
           **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}
    out = subprocess.run(
        [str(Path(sys.executable).with_name("orchestrion")), "users", "link", user, "--base-url", site.url],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )
    link = out.stdout.strip().splitlines()[-1]
    assert link.startswith(site.url + "/signin#token="), link  # the token never travels in a URL's query
    return link


CSP_REFUSALS: list[str] = []
"""What the browser refused under the pages' Content-Security-Policy (inline code, another origin)."""


def _page_for(browser: Any, url: str, viewport: tuple[int, int] = (1200, 900)) -> Any:
    """A new browser context at ``url``; a sign-in link is followed until its script has signed in."""
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.on("console", lambda m: CSP_REFUSALS.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(url)
    if "#token=" in url:
        page.wait_for_url(lambda u: "/signin" not in u)
    return page


_UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button, a')]
    .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
    .map(e => e.outerHTML)"""


def _shot(page: Any, name: str) -> None:
    """Save a screenshot of the page, after checking every control and link has a name."""
    assert page.evaluate(_UNLABELLED) == [], f"controls without a label on {name}"
    assert page.locator("main h1").count() == 1
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"web-{name}.png"), full_page=True)


def test_sign_in_with_a_link_shows_todays_deliverables(site: Site, browser: Any) -> None:
    page = _page_for(browser, site.url + "/")
    assert page.url.endswith("/signin")
    _shot(page, "signin")
    page.goto(_link(site, "alice"))
    page.wait_for_url(site.url + "/")
    cards = page.locator("article.card")
    assert cards.count() == 3
    assert "late-night jazz mix" in cards.nth(0).inner_text()
    cart = page.locator("article.reorder table.cart")
    assert "JUMBO BAG RED RETROSPOT" in cart.inner_text()
    assert cart.locator("td.total").inner_text() == "£34.80"
    assert "10" in cart.locator("tr[data-item='p2']").inner_text()
    digest = page.locator("article.digest")
    assert "two towns opened flood shelters" in digest.inner_text()
    # "why this" and "not chosen today" open from the keyboard
    why = page.locator("article.playlist details.why")
    assert not why.evaluate("d => d.open")
    why.locator("summary").focus()
    page.keyboard.press("Enter")
    assert why.evaluate("d => d.open")
    assert "41 jazz tracks" in why.inner_text()
    declined = page.locator("details.declined")
    declined.locator("summary").first.click()
    assert "over today's budget" in declined.inner_text()
    _shot(page, "feed")
    # history: yesterday's playlist
    page.get_by_role("link", name=(site.today - timedelta(days=1)).strftime("%a %-d %b %Y")).click()
    assert page.locator("article.card").count() == 1
    assert "Morning focus" in page.locator("article.card").inner_text()
    page.context.close()


def test_thumbs_on_a_card_and_an_item_are_stored(site: Site, browser: Any) -> None:
    page = _page_for(browser, _link(site, "alice"))
    playlist = page.locator("article.playlist")
    with page.expect_response(lambda r: "/thumbs" in r.url):
        playlist.get_by_role("button", name="I like this: Your late-night jazz mix").click()
    expect_pressed(playlist.get_by_role("button", name="I like this: Your late-night jazz mix"))
    # from the keyboard: focus the item's thumb down and press Enter
    playlist.get_by_role("button", name="Not for me: So What (we will not suggest it again)").focus()
    with page.expect_response(lambda r: "/thumbs" in r.url):
        page.keyboard.press("Enter")
    expect_pressed(playlist.get_by_role("button", name="Not for me: So What (we will not suggest it again)"))
    rows = site.query(
        "SELECT thumb, items, source FROM feedback WHERE deliverable_id = 'd_alice01' ORDER BY feedback_id"
    )
    assert [(r[0], r[2]) for r in rows] == [("up", "web"), (None, "web")]
    assert json.loads(rows[1][1]) == [{"item_id": "t2", "thumb": "down"}]
    assert site.query("SELECT item_id FROM item_exclusions WHERE user_id = 'alice'") == [("t2",)]
    # the state survives a reload (read back from the database)
    page.reload()
    expect_pressed(page.get_by_role("button", name="I like this: Your late-night jazz mix"))
    page.context.close()
    # htmx and the sign-in script ran under `default-src 'self'` without a refusal
    assert CSP_REFUSALS == []


def test_a_list_cancelled_before_it_was_sent_has_no_card(site: Site, browser: Any) -> None:
    """A list the delivery cancelled before anything of it was made (its place, its reasons) was never
    sent: the person's page shows the lists they got, not it."""
    con = site.store.cursor()
    try:
        con.execute(
            "INSERT INTO goals (goal_id, user_id, date, template, variant, kind, params, title, items, details, "
            "features, score, propensity, slot, policy, status, why, cost, risk, created_at) VALUES "
            "('g_unsent', 'bob', ?, 'watchlist', 'mood', 'mood', '{}', 'Movie night: never sent', ['m1', 'm2'], "
            "'{}', '{}', 0.4, 1.0, 2, 'prior', 'chosen', 'because', 0, 0.05, ?)",
            [site.today, site.now],
        )
        con.execute(
            "INSERT INTO deliverables (deliverable_id, goal_id, user_id, date, template, title, items, status, "
            "error, created_at) VALUES ('d_unsent', 'g_unsent', 'bob', ?, 'watchlist', 'Movie night: never sent', "
            "['m1', 'm2'], 'cancelled', 'a list of a single movie is not worth sending', ?)",
            [site.today, site.now],
        )
    finally:
        con.close()
    page = _page_for(browser, _link(site, "bob"))
    assert page.locator("article.card").count() == 1
    assert "never sent" not in page.content()
    page.context.close()


def test_an_item_thumbed_down_leaves_the_waiting_cart_on_the_page(site: Site, browser: Any) -> None:
    """Thumbing down a line of a cart waiting for approval takes it out of the cart: the card on the
    page shows the cart as it now is (one line, the new total) at once, not the old cart with the
    row's buttons replaced by the card's."""
    lines = [
        {"item_id": "p1", "title": "NATURAL SLATE HEART CHALKBOARD", "quantity": 6, "unit_price": 2.55,
         "line_total": 15.3},
        {"item_id": "p2", "title": "JUMBO BAG RED RETROSPOT", "quantity": 10, "unit_price": 1.95, "line_total": 19.5},
    ]
    con = site.store.cursor()
    try:
        con.execute(
            "INSERT INTO goals (goal_id, user_id, date, template, variant, kind, params, title, items, details, "
            "features, score, propensity, slot, policy, status, why, cost, risk, created_at) VALUES "
            "('g_dana1', 'dana', ?, 'reorder', 'due', 'due', '{}', 'Reorder your staples', ['p1', 'p2'], ?, '{}', "
            "0.5, 1.0, 1, 'prior', 'chosen', 'you buy these every 3 weeks', 0, 0.1, ?)",
            [site.today, json.dumps({"currency": "GBP", "lines": lines, "total": 34.8}), site.now],
        )
        con.execute(
            "INSERT INTO deliverables (deliverable_id, goal_id, user_id, date, template, title, items, status, "
            "created_at) VALUES ('d_dana1', 'g_dana1', 'dana', ?, 'reorder', 'Reorder your staples', ['p1', 'p2'], "
            "'proposed', ?)",
            [site.today, site.now],
        )
    finally:
        con.close()
    assert deliver(site.store, site.settings, site.today, ["dana"], now=site.now).pending == 1
    page = _page_for(browser, _link(site, "dana"))
    cart = page.locator("#d_dana1")
    assert cart.locator("tbody tr").count() == 2 and "£34.80" in cart.inner_text()
    with page.expect_response(lambda r: "/thumbs" in r.url):
        cart.get_by_role("button", name="Not for me: JUMBO BAG RED RETROSPOT (we will not suggest it again)").click()
    from playwright.sync_api import expect

    expect(cart.locator("tbody tr")).to_have_count(1)
    assert "JUMBO BAG" not in cart.inner_text() and "£15.30" in cart.inner_text()
    assert cart.locator("tbody").get_by_role("button", name="I like this: Reorder your staples").count() == 0
    assert page.locator("article.card#d_dana1").count() == 1  # swapped in place, not nested
    queued = site.query("SELECT arguments FROM pending_actions WHERE deliverable_id = 'd_dana1'")
    assert json.loads(queued[0][0])["lines"] == [["p1", 6, 2.55]]
    # "Not for me" on the whole waiting cart rejects it: the card says so at once, without a reload,
    # and no longer offers to approve it
    assert "Waiting for your approval" in cart.inner_text()
    with page.expect_response(lambda r: "/thumbs" in r.url):
        page.locator("#thumbs-d_dana1 button[value=down]").click()
    expect(page.locator("#d_dana1")).to_contain_text("Rejected")
    assert "Waiting for your approval" not in page.locator("#d_dana1").inner_text()
    assert page.locator("#d_dana1").get_by_role("link", name="Approve or reject it").count() == 0
    assert page.locator("article.card#d_dana1").count() == 1
    page.context.close()


def expect_pressed(button: Any) -> None:
    from playwright.sync_api import expect

    expect(button).to_have_attribute("aria-pressed", "true")


def test_thumbs_work_without_javascript(site: Site, browser: Any) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    # without JavaScript the token of the link is pasted into the sign-in form
    page.goto(site.url + "/signin")
    page.get_by_label("Your sign-in token or API key").fill(_link(site, "alice").partition("#token=")[2])
    page.get_by_role("button", name="Sign in").click()
    assert page.url == site.url + "/"
    page.get_by_role("button", name="Not for me: This week in your topics: rivers, libraries").click()
    assert page.url.startswith(site.url + "/")
    assert page.get_by_role("button", name="Not for me: This week in your topics: rivers, libraries").get_attribute(
        "aria-pressed"
    ) == "true"
    assert site.query("SELECT thumb FROM feedback WHERE deliverable_id = 'd_alice03'") == [("down",)]
    context.close()


def test_one_user_cannot_open_anothers_deliverable(site: Site, browser: Any) -> None:
    page = _page_for(browser, _link(site, "bob"))
    assert page.locator("article.card").count() == 1
    response = page.goto(site.url + "/deliverables/d_alice02")
    assert response is not None and response.status == 404
    assert "JUMBO BAG" not in page.content()
    # another user's feed is not reachable by naming them either
    page.goto(site.url + "/?user=alice")
    assert "late-night jazz" not in page.content()
    # nor can a form post reach alice's deliverable
    token = page.locator("input[name=form_token]").first.get_attribute("value")
    answer = page.request.post(site.url + "/deliverables/d_alice02/thumbs", form={"form_token": token, "thumb": "down"})
    assert answer.status == 404
    assert site.query("SELECT count(*) FROM feedback WHERE deliverable_id = 'd_alice02'") == [(0,)]
    # and the admin page is closed to a user
    assert page.goto(site.url + "/admin").status == 403  # type: ignore[union-attr]
    page.goto(site.url + "/deliverables/d_bob0001")
    _shot(page, "deliverable")
    page.context.close()


def test_a_forged_or_foreign_form_is_refused(site: Site, browser: Any) -> None:
    from playwright.sync_api import expect

    page = _page_for(browser, _link(site, "bob"))
    answer = page.request.post(site.url + "/deliverables/d_bob0001/thumbs", form={"form_token": "x", "thumb": "up"})
    assert answer.status == 403
    page.context.close()
    bad = _page_for(browser, site.url + "/signin?token=not-a-token")
    assert "never taken from the address" in bad.content()
    bad.context.close()
    # a used link does not sign in again
    link = _link(site, "bob")
    _page_for(browser, link).context.close()
    again = browser.new_context().new_page()
    again.goto(link)
    expect(again.get_by_role("alert")).to_contain_text("already used or revoked")
    assert again.url == site.url + "/signin"
    again.context.close()


def test_admin_signs_in_with_a_key_and_sees_runs_models_and_rates(site: Site, browser: Any) -> None:
    page = _page_for(browser, site.url + "/signin")
    page.get_by_label("Your sign-in token or API key").fill(site.admin_key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(site.url + "/admin")  # the click returns before the next page has loaded
    assert page.locator("figure.chart svg polyline").count() == 2
    assert page.get_by_role("heading", name="Runs").is_visible()
    run_row = page.locator("table.runs tbody tr").first
    assert f"daily-{site.today.isoformat()}-a1" in run_row.inner_text() and "succeeded" in run_row.inner_text()
    assert page.get_by_role("heading", name="Model versions").is_visible()
    models = page.locator("section[aria-labelledby=models-h] tbody tr").first.inner_text()
    assert "ranker" in models and "v0001" in models and "auc 0.712" in models and "snips.candidate 0.41" in models
    _shot(page, "admin")
    page.get_by_role("link", name="alice").click()
    from playwright.sync_api import expect

    expect(page.locator("article.card")).to_have_count(3)  # waits for alice's page, as a person would
    page.context.close()


def test_approve_a_waiting_order_and_it_runs_once(site: Site, browser: Any) -> None:
    page = _page_for(browser, _link(site, "carol"))
    feed = page.locator("#d_carolc1")
    assert "Waiting for your approval" in feed.inner_text() and "£34.80" in feed.inner_text()
    outbox = next(site.settings.outbox_path.glob("*/carol--d_carolc1.html"))
    assert "Waiting for your approval" in outbox.read_text()
    feed.get_by_role("link", name="Approve or reject it").click()
    waiting = page.locator("article.action")
    assert waiting.count() == 2
    notify = page.locator("article.action", has_text="Top up tea")
    assert "min" in notify.locator(".countdown").inner_text()
    assert notify.get_by_role("button", name="Approve the order").count() == 0
    _shot(page, "approvals")
    order = page.locator("article.action:has(a[href='/deliverables/d_carolc1'])")
    token = page.locator("input[name=form_token]").first.get_attribute("value")
    order.get_by_role("button", name="Approve the order").click()
    said = page.get_by_role("status").inner_text()
    assert said.startswith("“") and said.endswith("”: Ordered."), said
    assert page.locator("article.action").count() == 1
    action = site.query("SELECT action_id, status, decided_by FROM pending_actions WHERE deliverable_id = 'd_carolc1'")
    assert [(a[1], a[2]) for a in action] == [("executed", "web:carol")]
    key = action[0][0]
    effects = site.query("SELECT status FROM side_effects WHERE idempotency_key = ?", [key])
    assert effects == [("completed",)]
    orders = site.settings.outbox_path / "orders"
    assert [p.name for p in orders.iterdir()] == [f"{key}.json"]
    assert site.query("SELECT status FROM deliverables WHERE deliverable_id = 'd_carolc1'") == [("delivered",)]
    # the outbox page she was sent says so now
    assert "Ordered" in outbox.read_text() and "Waiting for your approval" not in outbox.read_text()
    # approving again (a double click, a replayed form) orders nothing more
    again = page.request.post(site.url + "/approvals/d_carolc1", form={"form_token": token, "decision": "approve"})
    assert "no action waiting" in again.text()
    assert again.status == 409  # a conflict with what was decided, as the API answers; not a bad form (400)
    placed = "SELECT count(*) FROM side_effects WHERE deliverable_id = 'd_carolc1' AND action = 'place_order'"
    assert site.query(placed) == [(1,)]
    assert len(list(orders.iterdir())) == 1
    # cancel the notify order inside its window: it never runs
    page.locator("article.action", has_text="Top up tea").get_by_role("button", name="Cancel the order").click()
    assert page.get_by_role("status").inner_text() == "“Top up tea”: Cancelled."
    assert site.query("SELECT status FROM pending_actions WHERE action_id = 'fx_notify1'") == [("cancelled",)]
    assert site.query("SELECT count(*) FROM side_effects WHERE deliverable_id = 'd_carolw'") == [(0,)]
    page.context.close()


def test_a_policy_change_applies_to_the_next_run(site: Site, browser: Any) -> None:
    page = _page_for(browser, _link(site, "carol"))
    page.get_by_role("link", name="Control panel").click()
    page.get_by_label("The most one order may cost").fill("20")
    page.get_by_label("Don't send: Mix").check()
    page.get_by_label("My time zone").fill("Europe/Paris")
    # only the operator's tier or stricter is offered
    assert page.get_by_label("Placing orders (spends money)").locator("option").all_inner_texts() == [
        "approve — wait for my approval", "suggest — only show it to me"]
    page.get_by_role("button", name="Save settings").click()
    assert "Saved" in page.get_by_role("status").inner_text()
    assert page.get_by_label("The most one order may cost").input_value() == "20.00"
    _shot(page, "control-panel")
    stored = site.query("SELECT overrides, paused FROM user_policies WHERE user_id = 'carol'")
    overrides = json.loads(stored[0][0])
    assert overrides["max_order_amount"] == 20.0 and overrides["excluded_templates"] == ["playlist"]
    assert site.query("SELECT timezone FROM users WHERE user_id = 'carol'") == [("Europe/Paris",)]
    # the next run (tomorrow's delivery) follows it: the £34.80 cart is refused, the playlist skipped
    tomorrow = site.today + timedelta(days=1)
    deliver(site.store, site.settings, tomorrow, ["carol"], now=site.now)
    # the next run (tomorrow's delivery) follows it: the £34.80 cart of today's run is cut to fit
    # the £20 cap before it is queued for approval, and the playlist is not made at all
    tomorrow = site.today + timedelta(days=1)
    deliver(site.store, site.settings, tomorrow, ["carol"], now=site.now)
    cart = site.query("SELECT status, content FROM deliverables WHERE deliverable_id = 'd_caroln1'")
    assert cart[0][0] == "awaiting_approval" and 0 < json.loads(cart[0][1])["total"] <= 20.0
    queued = site.query("SELECT arguments FROM pending_actions WHERE deliverable_id = 'd_caroln1'")
    assert len(queued) == 1 and json.loads(queued[0][0])["total"] <= 20.0
    playlist = site.query("SELECT status, error FROM deliverables WHERE deliverable_id = 'd_caroln2'")
    assert playlist[0][0] == "cancelled" and "turned off playlist" in playlist[0][1]
    assert site.query("SELECT count(*) FROM side_effects WHERE deliverable_id = 'd_caroln2'") == [(0,)]
    # an invalid value is refused with the reason, nothing stored
    page.get_by_label("My time zone").fill("Mars/Olympus")
    page.get_by_role("button", name="Save settings").click()
    assert "Mars/Olympus" in page.get_by_role("alert").inner_text()
    assert site.query("SELECT timezone FROM users WHERE user_id = 'carol'") == [("Europe/Paris",)]
    # a cap lowered under a waiting cart: approving it says what happened — not ordered, and why —
    # never a green "Approved."
    page.get_by_label("My time zone").fill("Europe/Paris")
    page.get_by_label("The most one order may cost").fill("1")
    page.get_by_role("button", name="Save settings").click()
    assert "Saved" in page.get_by_role("status").inner_text()
    page.goto(site.url + "/approvals")
    order = page.locator("article.action:has(a[href='/deliverables/d_caroln1'])")
    order.get_by_role("button", name="Approve the order").click()
    page.wait_for_url("**/approvals?done=approve*")
    said = page.get_by_role("alert").inner_text()
    assert "Not ordered: the order is over the limit of £1.00 per order" in said, said
    assert page.get_by_role("status").count() == 0
    assert site.query("SELECT status FROM deliverables WHERE deliverable_id = 'd_caroln1'") == [("not_done",)]
    page.context.close()


PHONE = (390, 844)
LONG_USER = "online-retail:" + "customer" * 12
LONG_TITLE = "REORDER-" + "LUNCHBOX" * 16


def _seed_long(site: Site) -> str:
    """A user with a 110-character id and a waiting cart whose titles have no place to break."""
    from orchestrion.delivery.channels import Effector

    con = site.store.cursor()
    try:
        con.execute(
            "INSERT INTO items (item_id, domain, title, price, currency, updated_at) VALUES (?, 'retail', ?, 2.5, "
            "'GBP', ?) ON CONFLICT DO NOTHING", ["p_long", LONG_TITLE, site.now],
        )
        line = {"item_id": "p_long", "title": LONG_TITLE, "quantity": 12, "unit_price": 2.5, "line_total": 30.0}
        content = {"kind": "cart", "items": [line], "total": 30.0, "currency": "GBP"}
        con.execute(
            "INSERT INTO goals (goal_id, user_id, date, template, variant, kind, params, title, items, details, "
            "features, score, propensity, slot, policy, status, why, cost, risk, created_at) VALUES (?, ?, ?, "
            "'reorder', 'due', 'due', '{}', ?, ['p_long'], ?, '{}', 0.5, 1.0, 1, 'prior', 'chosen', ?, 0, 0.1, ?)",
            ["g_long", LONG_USER, site.today, LONG_TITLE, json.dumps(content), "you buy " + LONG_TITLE, site.now],
        )
        con.execute(
            "INSERT INTO deliverables (deliverable_id, goal_id, user_id, date, template, title, items, status, "
            "summary, content, created_at) VALUES ('d_long', 'g_long', ?, ?, 'reorder', ?, ['p_long'], "
            "'awaiting_approval', ?, ?, ?)",
            [LONG_USER, site.today, LONG_TITLE, LONG_TITLE, json.dumps(content), site.now],
        )
        con.execute(
            "INSERT INTO pending_actions (action_id, deliverable_id, user_id, action, arguments, tier, status, "
            "created_at) VALUES ('fx_long', 'd_long', ?, 'place_order', ?, 'approve', 'waiting', ?)",
            [LONG_USER, json.dumps({"deliverable_id": "d_long", "lines": [["p_long", 12, 2.5]], "total": 30.0}),
             site.now],
        )
    finally:
        con.close()
    record = {"deliverable_id": "d_long", "user_id": LONG_USER, "date": site.today.isoformat(),
              "template": "reorder", "title": LONG_TITLE, "summary": LONG_TITLE, "why": "you buy " + LONG_TITLE,
              "content": content, "status": "awaiting_approval"}
    return Effector(site.settings).perform("publish", {"channel": "outbox"}, "k_long", record)["path"]


_BROKEN_WORDS = """() => {
  const broken = [];
  for (const cell of document.querySelectorAll('table.cart td:first-child')) {
    const style = getComputedStyle(cell);
    const room = cell.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    for (const word of cell.innerText.split(/\\s+/)) {
      if (!word || word.length > 12) continue;  // a longer word may wrap
      const probe = document.createElement('span');
      probe.style.cssText = 'white-space:nowrap;position:absolute;visibility:hidden;font:' + style.font;
      probe.textContent = word;
      document.body.appendChild(probe);
      if (probe.getBoundingClientRect().width > room + 0.5) broken.push(word);
      probe.remove();
    }
  }
  return broken;
}"""


def _width(page: Any) -> int:
    page.wait_for_load_state()  # after a click that navigates, the new document may not be there yet
    return int(page.evaluate("document.scrollingElement.scrollWidth"))


def test_no_page_is_wider_than_a_phone(site: Site, browser: Any) -> None:
    """At 390 x 844 (a phone) the feed, a deliverable, approvals, the admin page and an outbox page
    never scroll sideways, with a 110-character user id and titles that have no place to break."""
    outbox_page = _seed_long(site)
    widths = {}
    page = _page_for(browser, _link(site, LONG_USER), viewport=PHONE)
    assert page.locator("article.card").count() == 1
    widths["feed"] = _width(page)
    page.screenshot(path=str(SHOTS / "web-phone-feed.png"), full_page=True)
    page.goto(site.url + "/deliverables/d_long")
    widths["deliverable"] = _width(page)
    page.goto(site.url + "/approvals")
    assert page.locator("article.action").count() == 1
    widths["approvals"] = _width(page)
    page.screenshot(path=str(SHOTS / "web-phone-approvals.png"), full_page=True)
    page.goto(site.url + "/settings")
    widths["settings"] = _width(page)
    page.context.close()
    carol = _page_for(browser, _link(site, "carol"), viewport=PHONE)
    widths["feed (carol)"] = _width(carol)
    # a cart line's words stay whole on a phone ("RETROSPOT", not "RETROSPO" and "T"), and every
    # line's thumbs are on the screen
    broken = carol.evaluate(_BROKEN_WORDS)
    assert broken == [], broken
    for thumb in carol.locator("table.cart .thumbs.small button").all():
        box = thumb.bounding_box()
        assert box is not None and box["x"] + box["width"] <= PHONE[0], box
    # nor cut off by the card: a cart fits its box without scrolling sideways (its 👎 were past the edge)
    inner = carol.evaluate("[...document.querySelectorAll('.scroll')].map(b => b.scrollWidth - b.clientWidth)")
    assert inner and max(inner) <= 1, inner
    carol.screenshot(path=str(SHOTS / "web-phone-cart.png"), full_page=True)
    carol.goto(site.url + "/approvals")
    widths["approvals (carol)"] = _width(carol)
    carol.context.close()
    admin = _page_for(browser, site.url + "/signin", viewport=PHONE)
    admin.get_by_label("Your sign-in token or API key").fill(site.admin_key)
    admin.get_by_role("button", name="Sign in").click()
    assert admin.url == site.url + "/admin"
    widths["admin"] = _width(admin)
    admin.goto(site.url + "/?user=" + LONG_USER)
    widths["feed (as admin)"] = _width(admin)
    admin.context.close()
    for viewport, name in ((PHONE, "web-phone-outbox.png"), ((1200, 900), "web-outbox.png")):
        outbox = _page_for(browser, Path(outbox_page).as_uri(), viewport=viewport)
        assert "Waiting for your approval" in outbox.inner_text("body")
        if viewport == PHONE:
            widths["outbox"] = _width(outbox)
        outbox.screenshot(path=str(SHOTS / name), full_page=True)
        outbox.context.close()
    assert widths and all(w <= PHONE[0] for w in widths.values()), widths


def test_an_address_that_is_no_page_gets_the_web_page_not_found_and_the_api_keeps_json(site: Site) -> None:
    html = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    for path in ("/nothing/here", "/deliverables/..%2F..%2Fetc%2Fpasswd/x", "/%E2%98%83" * 3):
        page = httpx.get(site.url + path, headers=html, timeout=10)
        assert page.status_code == 404 and page.headers["content-type"].startswith("text/html"), (path, page.text)
        assert "Not found" in page.text and "There is no page at this address" in page.text
        assert '"stored"' not in page.text and "Content-Security-Policy" in page.headers
    wrong = httpx.get(site.url + "/approvals/d_x", headers=html, timeout=10)  # a form's address, opened
    assert wrong.status_code == 405 and "POST" in wrong.headers["allow"]
    assert "text/html" in wrong.headers["content-type"]
    for path, headers in (("/nothing/here", {"Accept": "application/json"}), ("/v1/nothing", html)):
        answer = httpx.get(site.url + path, headers=headers, timeout=10)
        assert answer.status_code == 404 and answer.json()["stored"] is False, (path, answer.text)
