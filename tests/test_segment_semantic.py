"""Real event streams: the official Segment and RudderStack SDKs against a real server, sources with
a domain, the published specs mapped to canonical events, custom mappings and unmapped events."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from rudderstack.analytics import Client as RudderClient
from segment.analytics import Client as SegmentClient

from launcher import Server, cli, serve, start_server

MAPPINGS = """
[[mappings]]
event = "Song Played"
type = "play"
item = "properties.track.id"
value = "properties.plays"
domain = "music"
"""
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def created_key(home: Path, *args: str) -> str:
    done = cli(home, "keys", "create", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def segment(server: Server, key: str, errors: list[Any]) -> SegmentClient:
    """The Segment SDK as an app runs it: its own queue, background thread and batching."""
    return SegmentClient(key, host=server.url, on_error=lambda e, batch: errors.append(e), max_retries=0)


def stats(server: Server, admin: str) -> dict[str, Any]:
    response = httpx.get(server.url + "/v1/stats", headers={"Authorization": f"Bearer {admin}"}, timeout=30)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_segment_sdk_ecommerce_events_become_canonical_events_of_the_source(tmp_path: Path) -> None:
    (tmp_path / "orchestrion.toml").write_text(MAPPINGS)
    admin = created_key(tmp_path, "--role", "admin")
    shop = created_key(tmp_path, "--role", "write", "--source", "shop", "--domain", "retail")
    plain = created_key(tmp_path, "--role", "write")
    listed = cli(tmp_path, "keys", "list").stdout
    assert "source=shop domain=retail" in listed
    order = {"order_id": "o1", "currency": "GBP", "total": 13.0, "products": [
        {"product_id": "p1", "quantity": 2, "price": 2.5, "name": "Green Tea", "category": "Drinks"},
        {"sku": "s2", "quantity": 1, "price": 4.0, "name": "Teapot"},
        {"product_id": "p1", "quantity": 1, "price": 2.5},  # the same product on a second line
    ]}
    errors: list[Any] = []
    with serve(tmp_path) as server:
        client = segment(server, shop, errors)
        client.identify("u1", {"timezone": "Europe/London", "name": "Ann"}, timestamp=T0)
        client.track("u1", "Product Viewed", {"product_id": "p1", "name": "Tea", "price": 2.4,
                                              "image_url": "https://shop.example/tea.png",
                                              "url": "https://shop.example/p1"}, timestamp=T0)
        client.track("u1", "Product Added", {"product_id": "p1", "quantity": 2}, timestamp=T0)
        client.track("u1", "Product Removed", {"product_id": "p1", "quantity": 1}, timestamp=T0)
        client.track("u1", "Order Completed", order, timestamp=T0)
        client.track("u1", "Order Refunded", {"order_id": "o1", "products": [{"sku": "s2", "quantity": 1}]},
                     timestamp=T0)
        client.page("u1", name="Tea", properties={"item_id": "p1"}, timestamp=T0)
        client.track("u1", "Song Played", {"track": {"id": "t9"}, "plays": 3}, timestamp=T0)
        client.track("u1", "Wishlist Shared", {"product_id": "p1"}, timestamp=T0)
        client.track("u1", "Order Completed", {"order_id": "o2", "products": [{"name": "no id"}]}, timestamp=T0)
        client.shutdown()
        resend = segment(server, shop, errors)
        resend.track("u1", "Order Completed", order, timestamp=T0)  # a new messageId, the same order
        resend.shutdown()
        native = [{"user_id": "u2", "type": "view", "item_id": "p1"},
                  {"user_id": "u2", "type": "view", "item_id": "a1", "domain": "news"}]
        for key in (shop, plain):
            sent = httpx.post(server.url + "/v1/events", json=native, timeout=30,
                              headers={"Authorization": f"Bearer {key}"})
            assert sent.json()["accepted"] == 2
        figures = stats(server, admin)
    assert errors == []
    assert figures["unmapped"] == 1 and figures["unmapped_by_type"] == {"retail/Wishlist Shared": 1}
    with server.open_store() as store:
        events = store.con.execute(
            "SELECT event_id, type, item_id, domain, value, source, properties->>'unit_price', "
            "properties->>'order_id', properties->>'currency' FROM events WHERE user_id = 'u1' AND type IN "
            "('purchase', 'return') ORDER BY event_id"
        ).fetchall()
        assert events == [
            ("shop:order:o1:p1:1", "purchase", "p1", "retail", 2.0, "shop", "2.5", "o1", "GBP"),
            ("shop:order:o1:p1:2", "purchase", "p1", "retail", 1.0, "shop", "2.5", "o1", "GBP"),
            ("shop:order:o1:s2:1", "purchase", "s2", "retail", 1.0, "shop", "4.0", "o1", "GBP"),
            ("shop:refund:o1:s2:1", "return", "s2", "retail", 1.0, "shop", None, "o1", None),
        ]
        others = store.con.execute(
            "SELECT type, item_id, domain, value FROM events WHERE user_id = 'u1' AND type NOT IN "
            "('purchase', 'return') ORDER BY type"
        ).fetchall()
        assert others == [
            ("Wishlist Shared", "p1", "retail", None),  # unmapped: stored as it came
            ("add_to_cart", "p1", "retail", 2.0),
            ("play", "t9", "music", 3.0),  # the [[mappings]] table, whose domain wins
            ("remove_from_cart", "p1", "retail", 1.0),
            ("view", "p1", "retail", None),  # Product Viewed
            ("view", "p1", "retail", None),  # the page call naming an item
        ]
        assert store.con.execute(
            "SELECT source, domain, count(*) FROM events WHERE user_id = 'u2' GROUP BY ALL ORDER BY ALL"
        ).fetchall() == [("http:/v1/events", "news", 1), ("http:/v1/events", None, 1),
                         ("shop", "news", 1), ("shop", "retail", 1)]
        # the catalog from the events' product fields, field by field, the latest message winning
        items = store.con.execute(
            "SELECT item_id, domain, title, price, currency, category, properties->>'image_url', properties->>'url' "
            "FROM items ORDER BY 1"
        ).fetchall()
        assert items == [
            ("p1", "retail", "Green Tea", 2.5, "GBP", "Drinks", "https://shop.example/tea.png", "https://shop.example/p1"),
            ("s2", "retail", "Teapot", 4.0, "GBP", None, None, None),
        ]
        failed = store.con.execute("SELECT source, reason FROM failed_events").fetchall()
        assert failed == [("http:/v1/batch", "properties.products[0] needs a product_id (or sku)")]
        assert store.scalar("SELECT timezone FROM users WHERE user_id = 'u1'") == "Europe/London"


def test_rudderstack_sdk_video_events_are_plays_and_a_key_changes_its_domain(tmp_path: Path) -> None:
    admin = created_key(tmp_path, "--role", "admin")
    tv = created_key(tmp_path, "--role", "write", "--source", "tv", "--domain", "movies")
    key_id = cli(tmp_path, "keys", "list").stdout.split("source=tv")[0].splitlines()[-1].split()[0]
    errors: list[Any] = []
    heat = {"asset_id": "m1", "title": "Heat", "keywords": ["Crime", "Thriller"], "publisher": "Warner"}
    with serve(tmp_path) as server:
        client = RudderClient(tv, host=server.url, on_error=lambda e, batch: errors.append(e), max_retries=0)
        client.identify("v1", {"timezone": "America/New_York"}, timestamp=T0)
        for _ in range(3):  # heartbeats of one playback
            client.track("v1", "Video Content Playing", {**heat, "session_id": "s1", "position": 10}, timestamp=T0)
        client.track("v1", "Video Content Completed", {**heat, "session_id": "s1"}, timestamp=T0)
        client.track("v1", "Video Content Playing", {"asset_id": "m1", "session_id": "s2"}, timestamp=T0)
        client.flush()
        moved = cli(server.home, "keys", "update", key_id, "--domain", "shows",
                    env={"ORCHESTRION_API_KEY": admin})
        assert moved.returncode == 0, moved.stderr
        assert f"{key_id}  source=tv domain=shows" in moved.stdout  # the source is kept
        client.track("v1", "Video Content Completed", {"asset_id": "e7", "session_id": "s3"}, timestamp=T0)
        client.shutdown()
    assert errors == []
    with server.open_store() as store:
        plays = store.con.execute(
            "SELECT event_id, type, item_id, domain, source FROM events ORDER BY event_id"
        ).fetchall()
        assert plays == [
            ("tv:play:s1:m1", "play", "m1", "movies", "tv"),
            ("tv:play:s2:m1", "play", "m1", "movies", "tv"),
            ("tv:play:s3:e7", "play", "e7", "shows", "tv"),
        ]
        assert store.con.execute("SELECT title, creator, tags, domain FROM items WHERE item_id = 'm1'").fetchall() == [
            ("Heat", "Warner", ["Crime", "Thriller"], "movies")
        ]
        # RudderStack sends an identify's traits as context.traits
        assert store.scalar("SELECT timezone FROM users WHERE user_id = 'v1'") == "America/New_York"


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('[[mappings]]\nevent = "Song Played"\ntype = "play"\nitem = "track_id"\n', "table 1, field 'item'"),
        ('[[mappings]]\nevent = "A"\ntype = "play"\n[[mappings]]\nevent = "B"\nvalue = "high"\n',
         "table 2, field 'type'"),
    ],
)
def test_a_bad_mapping_stops_the_start_naming_the_table_and_field(tmp_path: Path, toml: str, named: str) -> None:
    (tmp_path / "orchestrion.toml").write_text(toml)
    with pytest.raises(RuntimeError, match="server exited") as exited:
        start_server(tmp_path)
    assert f"orchestrion.toml [[mappings]] {named}" in str(exited.value)


DOC = Path(__file__).resolve().parents[1] / "docs" / "event-streams.md"


README = DOC.parents[1] / "README.md"


def _snippets(page: Path) -> list[str]:
    section = page.read_text().split("## Connect your app", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def test_the_documented_snippets_run_verbatim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snippets = _snippets(DOC)
    assert len(snippets) == 2
    key = created_key(tmp_path, "--role", "write", "--source", "shop", "--domain", "retail")
    with serve(tmp_path) as server:
        monkeypatch.setenv("ORCHESTRION_WRITE_KEY", key)
        monkeypatch.setenv("ORCHESTRION_URL", server.url)
        for snippet in snippets:
            exec(compile(snippet, str(DOC), "exec"), {})
    with server.open_store() as store:
        assert store.con.execute(
            "SELECT type, item_id, value, domain, source, properties->>'unit_price' FROM events ORDER BY type"
        ).fetchall() == [
            ("purchase", "tea-01", 2.0, "retail", "shop", "2.5"), ("view", "tea-02", None, "retail", "shop", None)
        ]
        assert store.con.execute("SELECT item_id, title, price FROM items ORDER BY 1").fetchall() == [
            ("tea-01", "Green Tea", 2.5), ("tea-02", "Black Tea", 2.2)
        ]


def test_the_readme_snippet_runs_verbatim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's "Connect your app" Segment snippet, as written, stores the order's line as a
    purchase of the key's source and domain, and its product in the catalog."""
    (snippet,) = _snippets(README)
    key = created_key(tmp_path, "--role", "write", "--source", "shop", "--domain", "retail")
    with serve(tmp_path) as server:
        monkeypatch.setenv("ORCHESTRION_WRITE_KEY", key)
        monkeypatch.setenv("ORCHESTRION_URL", server.url)
        exec(compile(snippet, str(README), "exec"), {})
    with server.open_store() as store:
        assert store.con.execute(
            "SELECT type, item_id, value, domain, source, properties->>'order_id' FROM events"
        ).fetchall() == [("purchase", "tea-01", 2.0, "retail", "shop", "o1001")]
        assert store.con.execute("SELECT item_id, title, price FROM items").fetchall() == [("tea-01", "Green Tea", 2.5)]
