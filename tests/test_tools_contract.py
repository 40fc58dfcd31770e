"""Every tool passes the same contract; the executor turns every planner mistake into a message."""

from __future__ import annotations

import json
from datetime import date, datetime

import pytest

from orchestrion.errors import PolicyViolation, ToolError
from orchestrion.planning import OfflinePlanner
from orchestrion.planning.executor import Executor
from orchestrion.store import Store
from orchestrion.tools import TEMPLATE_TOOLS, TOOLS, CatalogItem, GoalRecord, IntendedEffect, Tool, ToolContext

CATALOG = {
    "t1": CatalogItem("t1", "music", "Song One", "Artist A", None, None, None, None),
    "t2": CatalogItem("t2", "music", "Song Two", "Artist B", None, None, None, None),
    "p1": CatalogItem("p1", "retail", "Tea", None, 2.5, "GBP", None, None),
    "p2": CatalogItem("p2", "retail", "Dollar widget", None, 10.0, "USD", None, None),
    "p3": CatalogItem("p3", "retail", "Yen widget", None, 1000.0, "JPY", None, None),
}


def _ctx(
    store: Store, template: str = "playlist", items: tuple[str, ...] = ("t1", "t2"), **goal: object
) -> ToolContext:
    record = GoalRecord(
        "g_1", "d_1", "u1", date(2024, 5, 1), template, "daily", "Mix", items, {}, dict(goal), "because"
    )
    return ToolContext(record, datetime(2024, 5, 1), CATALOG, frozenset({"t9"}), connect=store.cursor)


@pytest.mark.parametrize("tool", TOOLS.values(), ids=lambda t: t.name)
def test_every_tool_is_described_typed_and_user_free(tool: Tool) -> None:
    spec = tool.openai_spec()["function"]
    assert spec["name"] == tool.name and len(spec["description"]) > 20
    assert spec["parameters"]["type"] == "object"
    assert "user_id" not in spec["parameters"].get("properties", {}), "the context carries the user, never the model"
    with pytest.raises(ToolError, match=f"invalid arguments for {tool.name}"):
        tool.validate({"no_such_argument": 1})
    json.dumps(spec)  # the spec is plain JSON


def test_every_template_lists_only_real_tools_and_side_effects_are_marked() -> None:
    for template, names in TEMPLATE_TOOLS.items():
        assert set(names) <= set(TOOLS), template
        assert "publish" in names
    assert {n for n, t in TOOLS.items() if t.action} == {"place_order", "publish"}
    assert "place_order" in TEMPLATE_TOOLS["reorder"]
    assert all("place_order" not in TEMPLATE_TOOLS[t] for t in ("playlist", "digest", "watchlist"))


def test_executor_answers_mistakes_with_messages(store: Store) -> None:
    ex = Executor(_ctx(store), TEMPLATE_TOOLS["playlist"])
    assert "no tool named 'hack'" in str(ex.call("hack", {}).error)
    assert "not allowed for a playlist goal" in str(ex.call("place_order", {}).error)
    assert "not valid JSON" in str(ex.call("create_playlist", '{"title": "x", ').error)
    assert "item_ids" in str(ex.call("create_playlist", {"title": "x"}).error)
    assert "unknown item_id 'zz'" in str(ex.call("create_playlist", {"title": "x", "item_ids": ["zz"]}).error)
    assert "appears twice" in str(ex.call("create_playlist", {"title": "x", "item_ids": ["t1", "t1"]}).error)
    assert "excluded" in str(ex.call("create_playlist", {"title": "x", "item_ids": ["t9"]}).error)
    assert ex.calls == [] and ex.ctx.content == {}
    made = ex.call("create_playlist", '{"title": "Mix", "item_ids": ["t2", "t1"]}')
    assert made.ok and [i["creator"] for i in ex.ctx.content["items"]] == ["Artist B", "Artist A"]
    assert ex.call("publish", {"channel": "outbox"}).ok
    assert [e.action for e in ex.ctx.effects] == ["outbox"]
    assert [c.tool for c in ex.calls] == ["create_playlist", "publish"]
    assert len(ex.trace) == 9 and sum(s.ok for s in ex.trace) == 2


def test_cart_prices_come_from_code_and_the_guard_refuses(store: Store) -> None:
    def guard(effect: IntendedEffect) -> None:
        if effect.amount and effect.amount > 10:
            raise PolicyViolation("money_per_order", f"{effect.amount} over 10")

    ex = Executor(_ctx(store, "reorder", ("p1",)), TEMPLATE_TOOLS["reorder"], guard=guard)
    assert ex.call("build_cart", {"lines": [{"item_id": "p1", "quantity": 3}]}).ok
    assert ex.ctx.content["total"] == 7.5
    assert ex.call("place_order", {}).ok and ex.ctx.effects[0].amount == 7.5
    assert ex.call("place_order", {}).ok and len(ex.ctx.effects) == 1  # ordering again: still one order
    rebuilt = ex.call("build_cart", {"lines": [{"item_id": "p1", "quantity": 99}]})
    assert rebuilt.ok and "dropped" in rebuilt.result["note"] and ex.ctx.effects == []  # an order is for its cart
    refused = ex.call("place_order", {})
    assert not refused.ok and "money_per_order" in str(refused.error)
    assert ex.ctx.effects == [] and ex.refusals[0].rule == "money_per_order"
    assert "at most 99 units in a line" in str(
        ex.call("build_cart", {"lines": [{"item_id": "p1", "quantity": 500}]}).error
    )


def test_a_line_holds_what_the_person_usually_buys_even_past_99(store: Store) -> None:
    """A wholesaler who buys 144 at a time gets 144 (it was cut to 99, and nothing said so); past the
    usual quantity the order tool's limit of 99 still holds, and the model cannot go beyond either."""
    lines = [{"item_id": "p1", "quantity": 144, "unit_price": 0.1}, {"item_id": "p2", "quantity": 2, "unit_price": 0.1}]
    ex = Executor(_ctx(store, "reorder", ("p1", "p2"), lines=lines), TEMPLATE_TOOLS["reorder"])
    assert ex.call("build_cart", {"lines": [{"item_id": "p1", "quantity": 144}]}).ok
    assert ex.ctx.content["items"][0]["quantity"] == 144
    assert "at most 144 units" in str(ex.call("build_cart", {"lines": [{"item_id": "p1", "quantity": 145}]}).error)
    assert ex.call("build_cart", {"lines": [{"item_id": "p2", "quantity": 99}]}).ok
    assert "at most 99 units" in str(ex.call("build_cart", {"lines": [{"item_id": "p2", "quantity": 100}]}).error)
    offline = Executor(_ctx(store, "reorder", ("p1", "p2"), lines=lines), TEMPLATE_TOOLS["reorder"])
    assert not OfflinePlanner().plan(offline.ctx.goal, offline).plan.nothing_to_do
    assert [i["quantity"] for i in offline.ctx.content["items"]] == [144]  # p2 is priced in USD: left out


def test_a_cart_holds_one_currency(store: Store) -> None:
    """A line priced in another currency than the cart's is refused by build_cart, and the offline
    planner leaves it out (it is never added up as if it were the cart's currency)."""
    lines = [{"item_id": i, "quantity": 1, "unit_price": p} for i, p in (("p1", 2.5), ("p2", 10.0), ("p3", 1000.0))]
    ex = Executor(_ctx(store, "reorder", ("p1", "p2", "p3"), currency="GBP", lines=lines), TEMPLATE_TOOLS["reorder"])
    mixed = ex.call("build_cart", {"lines": [{"item_id": "p1", "quantity": 1}, {"item_id": "p2", "quantity": 1}]})
    assert not mixed.ok and "priced in USD and this cart in GBP" in str(mixed.error) and ex.ctx.content == {}
    due = ex.call("due_reorders", {})
    assert [(d["item_id"], d["currency"]) for d in due.result] == [("p1", "GBP"), ("p2", "USD"), ("p3", "JPY")]
    from orchestrion.planning.offline import _reorder

    assert _reorder(ex.ctx.goal, ex) is None
    assert [line["item_id"] for line in ex.ctx.content["items"]] == ["p1"]
    assert (ex.ctx.content["total"], ex.ctx.content["currency"]) == (2.5, "GBP")


def test_webhook_publish_names_its_host(store: Store) -> None:
    ex = Executor(_ctx(store), TEMPLATE_TOOLS["playlist"])
    ex.call("create_playlist", {"title": "Mix", "item_ids": ["t1"]})
    assert "no webhook is configured" in str(ex.call("publish", {"channel": "webhook"}).error)
    assert ex.call("publish", {"channel": "webhook", "url": "https://evil.example/x"}).ok
    assert ex.ctx.effects[-1].origin == "https://evil.example:443"  # the policy decides on the origin later
