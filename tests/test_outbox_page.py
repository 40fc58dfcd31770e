"""What arrives: the outbox page and Markdown file a person opens, and that they follow the
deliverable's status (approve, reject through the real server → the files say so)."""

from __future__ import annotations

import datetime as dt
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from launcher import cli, serve
from orchestrion.delivery.rendering import render_html, render_markdown
from orchestrion.store import Store

BASE = "https://orchestrion.example"
HOSTILE = '<img src=x onerror=alert(1)>"&'


def cart(**changes: Any) -> dict[str, Any]:
    record = {
        "deliverable_id": "d_1", "goal_id": "g_1", "user_id": "online-retail:12362", "date": "2011-11-01",
        "template": "reorder", "title": "Reorder: 2 items (£1,234.50)", "summary": "2 items in total.",
        "why": "these are the 2 items you buy most often", "status": "awaiting_approval",
        "content": {"kind": "cart", "currency": "GBP", "total": 1234.5, "items": [
            {"item_id": "p1", "title": "WHITE HANGING HEART T-LIGHT HOLDER", "quantity": 6, "unit_price": 2.55,
             "line_total": 15.3},
            {"item_id": "p2", "title": "JUMBO BAG", "quantity": 10, "unit_price": 121.92, "line_total": 1219.2},
        ]},
    }
    return {**record, **changes}


class Page(HTMLParser):
    """Every tag with its attributes, and the page's text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        if not self.tags or self.tags[-1][0] != "script":  # the JSON record is for programs
            self.text.append(data)

    def words(self) -> str:
        return " ".join(" ".join(self.text).split())


def test_the_outbox_page_says_for_whom_when_what_state_and_links_to_act() -> None:
    html = render_html(cart(), base_url=BASE)
    page = Page(html)
    words = page.words()
    for expected in ("Reorder cart", "For online-retail:12362", "Tuesday 1 November 2011", "Waiting for your approval",
                     "WHITE HANGING HEART T-LIGHT HOLDER", "£2.55", "£15.30", "£1,219.20", "Total £1,234.50",
                     "Why this", "these are the 2 items you buy most often", "I like this", "Not for me",
                     "Approve or reject"):
        assert expected in words, expected
    links = {a.get("href") for tag, a in page.tags if tag == "a"}
    assert links == {f"{BASE}/approvals", f"{BASE}/deliverables/d_1#thumbs-d_1", f"{BASE}/deliverables/d_1",
                     f"{BASE}/?date=2011-11-01"}, "the day's page is where what was not chosen is shown"
    assert "👍" in html and "👎" in html


def test_the_outbox_page_is_self_contained_and_email_safe() -> None:
    html = render_html(cart(), base_url=BASE)
    page = Page(html)
    tags = [tag for tag, _ in page.tags]
    assert "link" not in tags and "img" not in tags and "iframe" not in tags
    assert tags.count("style") == 1, "one <style> in the head, the rest inline"
    scripts = [a for tag, a in page.tags if tag == "script"]
    assert scripts == [{"type": "application/json", "id": "orchestrion-deliverable"}], "only the inert JSON record"
    assert not any(name == "src" or name.startswith("on") for _, a in page.tags for name in a)
    assert "url(" not in html and "@import" not in html
    styled = [tag for tag, a in page.tags if a.get("style")]
    assert {"body", "table", "td", "div", "h1", "a"} <= set(styled)
    # every inline style is one attribute value (a quote inside one would end it early and leave
    # its rest as attributes of their own)
    names = {name for _, a in page.tags for name in a}
    assert names <= {"style", "href", "role", "width", "cellpadding", "cellspacing", "class", "colspan", "lang",
                     "charset", "name", "content", "type", "id", "aria-hidden"}, names
    assert re.search(r'<body style="[^"]*font-family:[^"]*sans-serif', html)


def test_every_text_from_the_data_is_escaped() -> None:
    record = cart(title=HOSTILE, summary=HOSTILE, why=HOSTILE, user_id=HOSTILE, deliverable_id='d"1<x>')
    record["content"]["items"][0]["title"] = HOSTILE
    html = render_html(record, base_url=BASE)
    page = Page(html)
    assert not any(tag == "img" for tag, _ in page.tags), "a title became markup"
    assert page.words().count(HOSTILE) >= 5  # title (twice: <title> and h1), meta line, summary, item, why
    assert f"{BASE}/deliverables/d%221%3Cx%3E" in {a.get("href") for tag, a in page.tags if tag == "a"}
    embedded = re.search(r'id="orchestrion-deliverable">(.*?)</script>', html)
    assert embedded is not None and json.loads(embedded.group(1))["title"] == HOSTILE
    text = render_markdown(record, base_url=BASE)
    assert "<img" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text


def test_the_markdown_file_says_the_same() -> None:
    text = render_markdown(cart(), base_url=BASE)
    lines = text.splitlines()
    assert lines[0] == "# Reorder: 2 items (£1,234.50)"
    assert "For online-retail:12362 · Tuesday 1 November 2011" in lines
    assert "*Status:* Waiting for your approval" in lines
    assert "2. 10 × JUMBO BAG — £1,219.20" in lines and "**Total: £1,234.50**" in lines
    assert f"[Approve or reject]({BASE}/approvals)" in lines
    delivered = render_markdown(cart(status="delivered"), base_url=BASE)
    assert "*Status:* Ordered" in delivered and "/approvals" not in delivered
    assert "I like this" in delivered


def test_money_follows_the_locale() -> None:
    html = render_html(cart(), locale="de_DE", base_url=BASE)
    assert "1.234,50\xa0£" in html
    assert "Total 1.234,50 £" in Page(html).words() and "£1,219.20" not in html  # the title is stored text


def _awaiting(home: Path) -> list[tuple[str, str, Path]]:
    with Store.open(home / "data" / "orchestrion.duckdb", read_only=True) as store:
        rows = store.con.execute(
            "SELECT d.deliverable_id, d.user_id, json_extract_string(s.result, '$.path') FROM deliverables d "
            "JOIN side_effects s USING (deliverable_id) WHERE d.status = 'awaiting_approval' "
            "AND s.action = 'publish' AND s.status = 'completed' ORDER BY 1 LIMIT 2"
        ).fetchall()
    return [(str(d), str(u), Path(p)) for d, u, p in rows]


def _shown(path: Path) -> tuple[str, str]:
    """The page's words and the status in its embedded record."""
    html = path.read_text()
    embedded = re.search(r'id="orchestrion-deliverable">(.*?)</script>', html)
    assert embedded is not None
    return Page(html).words(), json.loads(embedded.group(1))["status"]


DEMO_OUTPUT: list[str] = []


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home after `orchestrion demo` (what `make demo` runs), its links under BASE."""
    home = tmp_path_factory.mktemp("demo")
    (home / "orchestrion.toml").write_text(f'scheduler = false\noutbox_formats = "html,md"\npublic_url = "{BASE}"\n')
    done = cli(home, "demo")
    assert done.returncode == 0, done.stderr
    DEMO_OUTPUT.append(done.stdout)
    return home


MONEY = re.compile(r"£\d{1,3}(?:,\d{3})*\.\d\d(?!\d)")
"""An amount as en_GB writes pounds: £1,234.50."""
MONEY_OTHERWISE = re.compile(
    r"\bGBP\b|£\d[\d,]*(?!\d|,\d|\.\d\d)|\d\.\d\d ?(?:GBP|EUR|USD)|(?<![£\d.,])\d[\d.,]*[.,]\d\d\s?£"
)
"""Money written any other way: "143.10 GBP", "£145.2", "£34", "3.50£"."""
INTERNAL = re.compile(
    r"fatigue|\bgoals?\b|\bslots?\b|ε|awaiting_approval|place[_ ]order|'(?:staples|due|last_order)'|\bscore|"
    r"exploration|\bthis (?:person|user)\b|\bthe user\b"
)
"""Words of the code that must not reach a person."""


def _people_texts(home: Path) -> list[str]:
    """Everything of the demo's day a person reads: titles, summaries, reasons, why texts, the
    not-chosen reasons, the outbox pages and files, and the demo's own output."""
    with Store.open(home / "data" / "orchestrion.duckdb", read_only=True) as store:
        rows = store.con.execute(
            "SELECT title, summary, error FROM deliverables WHERE status <> 'proposed' UNION ALL "
            "SELECT title, why, reason_detail FROM goals"
        ).fetchall()
    texts = [str(v) for row in rows for v in row if v]
    for path in (home / "data" / "outbox").rglob("*"):
        if path.suffix == ".html":
            texts.append(Page(path.read_text()).words())
        elif path.suffix == ".md":
            texts.append(path.read_text())
    return texts + [re.sub(r"`[^`]*`", "", out) for out in DEMO_OUTPUT]  # commands in `` are the operator's


def test_what_people_read_writes_money_one_way_and_no_internal_names(demo: Path) -> None:
    """On the demo's day (50 users): every amount in every text a person reads is written £1,234.50,
    and no text carries a word of the code."""
    texts = _people_texts(demo)
    amounts = sum(len(MONEY.findall(t)) for t in texts)
    otherwise = sorted({m.group(0) for t in texts for m in MONEY_OTHERWISE.finditer(t)})
    internal = sorted({m.group(0) for t in texts for m in INTERNAL.finditer(t)})
    assert amounts > 500, amounts  # the day's carts: titles, totals, lines
    assert otherwise == [], otherwise[:20]
    assert internal == [], internal[:20]


def test_outbox_files_follow_approve_and_reject_through_the_real_server(demo: Path) -> None:
    """After `make demo`'s day, approving one cart and rejecting another through the API of a real
    `orchestrion serve` rewrites their outbox page and Markdown file: neither says it is waiting."""
    tmp_path = demo
    (approved, approver, approved_page), (rejected, rejecter, rejected_page) = _awaiting(tmp_path)
    for page in (approved_page, rejected_page):
        words, status = _shown(page)
        assert status == "awaiting_approval" and "Waiting for your approval" in words
        assert "Waiting for your approval" in page.with_suffix(".md").read_text()
    key = cli(tmp_path, "keys", "create", "--role", "admin").stdout.strip().splitlines()[-1]
    auth = {"Authorization": f"Bearer {key}"}
    with serve(tmp_path) as server:
        ok = httpx.post(f"{server.url}/v1/deliverables/{approved}/approve", headers=auth, timeout=60)
        assert ok.status_code == 200 and ok.json()["status"] == "delivered", ok.text
        no = httpx.post(f"{server.url}/v1/deliverables/{rejected}/reject", headers=auth, timeout=60)
        assert no.status_code == 200 and no.json()["status"] == "rejected", no.text
        feeds = {
            user: httpx.get(f"{server.url}/v1/users/{user}/feed", params={"date": "2011-11-01"}, headers=auth,
                            timeout=60).json()["deliverables"]
            for user in (approver, rejecter)
        }
        as_html = httpx.get(f"{server.url}/v1/deliverables/{rejected}", params={"format": "html"}, headers=auth,
                            timeout=60).text
    assert {d["deliverable_id"]: d["status"] for d in feeds[approver]}[approved] == "delivered"
    assert {d["deliverable_id"]: d["status"] for d in feeds[rejecter]}[rejected] == "rejected"
    words, status = _shown(approved_page)
    assert status == "delivered" and "Ordered" in words and "Waiting for your approval" not in words
    assert "Approve or reject" not in words and f"{BASE}/deliverables/{approved}" in approved_page.read_text()
    assert "*Status:* Ordered" in approved_page.with_suffix(".md").read_text()
    words, status = _shown(rejected_page)
    assert status == "rejected" and "Rejected: nothing was ordered" in words
    assert "Waiting for your approval" not in words
    assert "*Status:* Rejected: nothing was ordered" in rejected_page.with_suffix(".md").read_text()
    assert "Rejected: nothing was ordered" in Page(as_html).words()
    assert not list(approved_page.parent.glob("*.tmp")), "refreshes leave no temporary files"


def _signed_in(url: str, credential: str) -> httpx.Client:
    """A client signed in through the sign-in form, as a browser does (pre-session cookie, form token)."""
    client = httpx.Client(base_url=url, timeout=60)
    form = client.get("/signin")
    token = re.search(r'name="signin_token" value="([^"]+)"', form.text)
    assert token is not None, form.text
    done = client.post("/signin", data={"signin_token": token.group(1), "credential": credential})
    assert done.status_code == 303, done.text
    return client


def test_after_the_demo_the_web_page_opens_on_the_demos_day(demo: Path) -> None:
    """The demo's day (2011-11-01) is in the sample's past: a person's page opens on it rather
    than on an empty today, and says so; asking for today still shows today."""
    with Store.open(demo / "data" / "orchestrion.duckdb", read_only=True) as store:
        user, count = store.con.execute(
            "SELECT user_id, count(*) FROM deliverables WHERE date = '2011-11-01' AND status <> 'proposed' "
            "GROUP BY 1 ORDER BY 1 LIMIT 1"
        ).fetchall()[0]
    key = cli(demo, "keys", "create", "--role", "user", "--user-id", user)
    assert key.returncode == 0, key.stderr
    with serve(demo) as server:
        client = _signed_in(server.url, key.stdout.strip().splitlines()[-1])
        try:
            page = client.get("/")
            today = client.get("/", params={"date": dt.datetime.now(dt.UTC).date().isoformat()})
        finally:
            client.close()
    assert page.status_code == 200
    words = Page(page.text).words()
    assert "Tuesday 1 November 2011" in words and "Nothing yet today" in words, words[:300]
    assert f"{count} deliverable{'s' if count != 1 else ''} on 2011-11-01" in words
    assert page.text.count('<article class="card') == count
    assert today.status_code == 200 and '<article class="card' not in today.text


def test_locale_and_public_url_are_checked_settings(tmp_path: Path) -> None:
    from orchestrion.config import load_settings
    from orchestrion.errors import ConfigError

    home = {"ORCHESTRION_HOME": str(tmp_path)}
    default = load_settings(home)
    assert default.locale is None and default.web_url == "http://127.0.0.1:8000"
    chosen = load_settings({**home, "ORCHESTRION_LOCALE": "de-DE", "ORCHESTRION_PUBLIC_URL": BASE + "/"})
    assert chosen.locale == "de_DE" and chosen.web_url == BASE
    with pytest.raises(ConfigError, match=r"ORCHESTRION_LOCALE.*write it like en_GB"):
        load_settings({**home, "ORCHESTRION_LOCALE": "xx_YY_nonsense"})
    with pytest.raises(ConfigError, match="ORCHESTRION_PUBLIC_URL"):
        load_settings({**home, "ORCHESTRION_PUBLIC_URL": "javascript:alert(1)"})
