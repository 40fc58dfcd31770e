"""The LLM planner against a real scripted OpenAI-compatible server on loopback, through the real openai client.

A happy path per template; 429 with Retry-After; 500s; timeouts; malformed JSON arguments; an
unknown tool; a tool that is not the template's; too many mistakes; a plan over the deliverable's
and over the run's budget (the offline planner takes over and says so); many goals with bounded
concurrency; the LLM critique.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from openai_server import OpenAIServer, error, message, planning_responder, tool_calls
from orchestrion.config import Settings, load_settings
from orchestrion.planning.critique import critique
from orchestrion.planning.executor import Executor
from orchestrion.planning.llm import FINISH, LLMPlanner, plan_many
from orchestrion.planning.llm_client import ChatClient
from orchestrion.store import Store
from orchestrion.tools import CatalogItem, GoalRecord, ToolContext, allowed_tools

DAY = date(2024, 5, 2)
NOW = datetime(2024, 5, 2, 6, 0)

ITEMS = [
    *[(f"t{i}", "music", f"Track {i}", f"Artist {i % 3}", None, None, None) for i in range(1, 7)],
    ("p1", "retail", "Green tea", "Shop", 2.5, "GBP", None),
    ("p2", "retail", "Oat milk", "Shop", 4.0, "GBP", None),
    *[(f"a{i}", "news", f"Story {i}", "Desk", None, None, f"Lead sentence {i}. More on it.") for i in range(1, 4)],
    *[(f"m{i}", "movies", f"Movie {i}", None, None, None, None) for i in range(1, 4)],
]

GOALS = {
    "playlist": (("t1", "t2", "t3", "t4", "t5"), {}),
    "reorder": (
        ("p1", "p2"),
        {
            "lines": [
                {"item_id": "p1", "quantity": 2, "unit_price": 2.5},
                {"item_id": "p2", "quantity": 1, "unit_price": 4.0},
            ],
            "currency": "GBP",
        },
    ),
    "digest": (("a1", "a2", "a3"), {}),
    "watchlist": (("m1", "m2", "m3"), {}),
}


@pytest.fixture
def world(store: Store) -> Store:
    store.con.executemany(
        "INSERT INTO items (item_id, domain, title, creator, price, currency, text, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, TIMESTAMP '2024-01-01')",
        [list(row) for row in ITEMS],
    )
    store.con.executemany(
        "INSERT INTO events (event_id, user_id, type, item_id, ts, received_at) VALUES (?, ?, ?, ?, ?, ?)",
        [[f"e{i}", "u1", "purchase", item, datetime(2024, 4, 20 + i), NOW] for i, item in enumerate(["p1", "p2"])],
    )
    return store


def goal(template: str, user: str = "u1", n: int = 0) -> GoalRecord:
    items, details = GOALS[template]
    return GoalRecord(
        goal_id=f"g_{template}_{user}_{n}",
        deliverable_id=f"d_{template}_{user}_{n}",
        user_id=user,
        date=DAY,
        template=template,
        variant="daily",
        title=f"Your {template}",
        items=items,
        params={"n": n},
        details=details,
        why=f"because you liked {items[0]}",
    )


def executor(store: Store, g: GoalRecord) -> Executor:
    rows = store.con.execute(
        "SELECT item_id, domain, title, creator, price, currency, category, text FROM items "
        "WHERE item_id IN (SELECT unnest(?))",
        [list(g.items)],
    ).fetchall()
    catalog = {str(r[0]): CatalogItem(*r) for r in rows}  # the batch's catalog, as delivery loads it
    ctx = ToolContext(g, NOW, catalog, frozenset(), connect=store.con.cursor)
    return Executor(ctx, allowed_tools(g.template))


def settings_for(server: OpenAIServer, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "home": tmp_path,
        "llm_base_url": server.base_url,
        "llm_model": "scripted",
        "llm_timeout": 2.0,
        "llm_backoff_s": 0.02,
        "llm_max_retries": 2,
    }
    values.update(overrides)
    return load_settings({}, **values)


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as s:
        yield s


def planner_for(server: OpenAIServer, tmp_path: Path, **overrides: Any) -> LLMPlanner:
    settings = settings_for(server, tmp_path, **overrides)
    return LLMPlanner(ChatClient.from_settings(settings), settings)


HAPPY = {
    "playlist": [
        tool_calls(("recommend_items", {"limit": 5})),
        tool_calls(("create_playlist", {"title": "Friday", "item_ids": ["t1", "t3", "t5"]})),
        tool_calls(("publish", {"channel": "outbox"}), (FINISH, {"title": "Friday", "summary": "Three tracks."})),
    ],
    "reorder": [
        tool_calls(("due_reorders", {})),
        tool_calls(
            ("build_cart", {"lines": [{"item_id": "p1", "quantity": 2}, {"item_id": "p2", "quantity": 1}]}),
            ("place_order", {}),
        ),
        tool_calls(("publish", {}), (FINISH, {"title": "Restock", "summary": "Tea and milk."})),
    ],
    "digest": [
        tool_calls(("compose_digest", {"title": "Morning", "article_ids": ["a2", "a1"]})),
        tool_calls(("publish", {}), (FINISH, {"title": "Morning", "summary": "Two stories."})),
    ],
    "watchlist": [
        tool_calls(("create_watchlist", {"title": "Movie night", "item_ids": ["m3", "m1"]})),
        tool_calls((FINISH, {"title": "Movie night", "summary": "Two films."})),
    ],
}
KINDS = {"playlist": "playlist", "reorder": "cart", "digest": "digest", "watchlist": "watchlist"}


@pytest.mark.parametrize("template", sorted(HAPPY))
def test_happy_path_per_template(world: Store, server: OpenAIServer, tmp_path: Path, template: str) -> None:
    server.push(*HAPPY[template])
    planner = planner_for(server, tmp_path)
    g = goal(template)
    ex = executor(world, g)
    out = planner.plan(g, ex)
    planner.close()
    assert out.fallback is None and out.planner == "llm:scripted"
    assert out.plan.title and out.plan.summary and not out.plan.nothing_to_do
    expected = [name for reply in HAPPY[template] for name in _names(reply) if name != FINISH]
    assert [c.tool for c in out.plan.calls] == expected
    assert ex.ctx.content["kind"] == KINDS[template]
    assert out.tokens == 230 * len(HAPPY[template])
    first = server.requests[0]
    assert first.tool_names == [*allowed_tools(template), FINISH]
    prompt = first.messages[1]["content"]
    assert g.why in prompt and "candidates" in prompt
    if template == "reorder":
        assert ex.ctx.content["total"] == 9.0
        assert [e.tool for e in ex.ctx.effects] == ["place_order", "publish"]
        assert ex.ctx.effects[0].amount == 9.0
    llm_steps = [s for s in ex.trace if s.step == "llm"]
    assert len(llm_steps) == len(HAPPY[template]) and all(s.tokens == 230 for s in llm_steps)


def _names(reply: Any) -> list[str]:
    return [c["function"]["name"] for c in reply.body["choices"][0]["message"].get("tool_calls") or []]


def test_429_with_retry_after_is_waited_out(world: Store, server: OpenAIServer, tmp_path: Path) -> None:
    server.push(error(429, retry_after="1"), *HAPPY["watchlist"])
    planner = planner_for(server, tmp_path)
    g = goal("watchlist")
    ex = executor(world, g)
    out = planner.plan(g, ex)
    planner.close()
    assert out.fallback is None and ex.ctx.content["kind"] == "watchlist"
    assert server.requests[1].at - server.requests[0].at >= 1.0
    assert "after 2 attempts" in ex.trace[0].summary


def test_500s_are_retried(world: Store, server: OpenAIServer, tmp_path: Path) -> None:
    server.push(error(500), error(503), *HAPPY["digest"])
    planner = planner_for(server, tmp_path)
    g = goal("digest")
    out = planner.plan(g, executor(world, g))
    planner.close()
    assert out.fallback is None and len(server.requests) == 4


def test_500s_beyond_retries_fall_back_to_offline(world: Store, server: OpenAIServer, tmp_path: Path) -> None:
    server.push(*[error(500)] * 3)
    planner = planner_for(server, tmp_path)
    g = goal("playlist")
    ex = executor(world, g)
    out = planner.plan(g, ex)
    planner.close()
    assert out.planner == "offline" and out.fallback is not None and "LLMUnavailableError" in out.fallback
    assert ex.ctx.content["kind"] == "playlist" and len(ex.ctx.content["items"]) == 5
    assert [s.step for s in ex.trace if s.step == "fallback"] == ["fallback"]


def test_a_timeout_is_retried(world: Store, server: OpenAIServer, tmp_path: Path) -> None:
    first, *rest = HAPPY["watchlist"]
    server.push(first.after(1.0), first, *rest)
    planner = planner_for(server, tmp_path, llm_timeout=0.3)
    g = goal("watchlist")
    out = planner.plan(g, executor(world, g))
    planner.close()
    assert out.fallback is None and len(server.requests) == 3


def test_malformed_json_arguments_go_back_to_the_model(world: Store, server: OpenAIServer, tmp_path: Path) -> None:
    server.push(tool_calls(("create_watchlist", '{"title": "x", "item_ids": ["m1"')), *HAPPY["watchlist"])
    planner = planner_for(server, tmp_path)
    g = goal("watchlist")
    ex = executor(world, g)
    out = planner.plan(g, ex)
    planner.close()
    assert out.fallback is None and ex.ctx.content["items"][0]["item_id"] == "m3"
    answer = json.loads(server.requests[1].messages[-1]["content"])
    assert answer["ok"] is False and "not valid JSON" in answer["error"]


def test_invalid_arguments_go_back_to_the_model(world: Store, server: OpenAIServer, tmp_path: Path) -> None:
    server.push(tool_calls(("create_watchlist", {"title": "", "item_ids": [], "user_id": "u2"})), *HAPPY["watchlist"])
    planner = planner_for(server, tmp_path)
    g = goal("watchlist")
    out = planner.plan(g, executor(world, g))
    planner.close()
    answer = json.loads(server.requests[1].messages[-1]["content"])
    assert out.fallback is None and "invalid arguments for create_watchlist" in answer["error"]
    assert "user_id" in answer["error"]


def test_an_unknown_tool_goes_back_to_the_model(world: Store, server: OpenAIServer, tmp_path: Path) -> None:
    server.push(tool_calls(("delete_account", {})), tool_calls(("place_order", {})), *HAPPY["watchlist"])
    planner = planner_for(server, tmp_path)
    g = goal("watchlist")
    ex = executor(world, g)
    out = planner.plan(g, ex)
    planner.close()
    assert out.fallback is None and ex.ctx.effects == []
    unknown = json.loads(server.requests[1].messages[-1]["content"])["error"]
    not_allowed = json.loads(server.requests[2].messages[-1]["content"])["error"]
    assert "no tool named 'delete_account'" in unknown and "not allowed for a watchlist goal" in not_allowed


def test_too_many_mistakes_fall_back(world: Store, server: OpenAIServer, tmp_path: Path) -> None:
    server.push(*[tool_calls(("create_playlist", "{oops"))] * 3)
    planner = planner_for(server, tmp_path, llm_max_repairs=2)
    g = goal("playlist")
    ex = executor(world, g)
    out = planner.plan(g, ex)
    planner.close()
    assert out.planner == "offline" and out.fallback is not None and "after 2 corrections" in out.fallback
    assert len(server.requests) == 3 and ex.ctx.content["kind"] == "playlist"


def test_finish_before_building_is_corrected(world: Store, server: OpenAIServer, tmp_path: Path) -> None:
    server.push(tool_calls((FINISH, {"title": "x", "summary": "y"})), *HAPPY["watchlist"])
    planner = planner_for(server, tmp_path)
    g = goal("watchlist")
    out = planner.plan(g, executor(world, g))
    planner.close()
    assert out.fallback is None and "nothing was built yet" in server.requests[1].messages[-1]["content"]


def test_nothing_to_do_is_a_plan(world: Store, server: OpenAIServer, tmp_path: Path) -> None:
    server.push(tool_calls((FINISH, {"nothing_to_do": True, "reason": "you listened to all of it"})))
    planner = planner_for(server, tmp_path)
    g = goal("playlist")
    out = planner.plan(g, executor(world, g))
    planner.close()
    assert out.plan.nothing_to_do and out.plan.reason == "you listened to all of it" and out.fallback is None


def test_a_plain_answer_after_building_is_the_summary(world: Store, server: OpenAIServer, tmp_path: Path) -> None:
    server.push(HAPPY["watchlist"][0], message("Two films for tonight."))
    planner = planner_for(server, tmp_path)
    g = goal("watchlist")
    out = planner.plan(g, executor(world, g))
    planner.close()
    assert out.plan.summary == "Two films for tonight." and out.plan.title == g.title


def test_over_the_deliverable_budget_falls_back(world: Store, server: OpenAIServer, tmp_path: Path) -> None:
    server.push(tool_calls(("recommend_items", {}), prompt_tokens=6000, completion_tokens=100), *HAPPY["playlist"])
    planner = planner_for(server, tmp_path, llm_max_tokens=5000)
    g = goal("playlist")
    ex = executor(world, g)
    out = planner.plan(g, ex)
    planner.close()
    assert out.planner == "offline" and out.fallback is not None
    assert "deliverable's LLM budget is spent" in out.fallback and "6100 of 5000 tokens" in out.fallback
    assert len(server.requests) == 1 and out.tokens == 6100
    assert ex.ctx.content["kind"] == "playlist" and out.plan.calls[0].tool == "create_playlist"


def test_over_the_step_cap_falls_back(world: Store, server: OpenAIServer, tmp_path: Path) -> None:
    server.push(*[tool_calls(("recommend_items", {}))] * 10)
    planner = planner_for(server, tmp_path, llm_max_steps=4)
    g = goal("playlist")
    out = planner.plan(g, executor(world, g))
    planner.close()
    assert len(server.requests) == 4 and out.fallback is not None and "4 of 4 steps" in out.fallback


def test_over_the_cost_cap_falls_back(world: Store, server: OpenAIServer, tmp_path: Path) -> None:
    server.push(*[tool_calls(("recommend_items", {}), prompt_tokens=1000, completion_tokens=0)] * 5)
    planner = planner_for(server, tmp_path, llm_price_prompt_1k=0.01, llm_max_cost=0.02)
    g = goal("playlist")
    out = planner.plan(g, executor(world, g))
    planner.close()
    assert len(server.requests) == 2 and out.fallback is not None and "cost 0.0200 of 0.0200" in out.fallback
    assert out.cost == pytest.approx(0.02)


def test_over_the_run_budget_later_goals_go_offline_at_once(
    world: Store, server: OpenAIServer, tmp_path: Path
) -> None:
    server.responder = planning_responder()
    planner = planner_for(server, tmp_path, llm_run_max_steps=5)
    outcomes = [planner.plan(g, executor(world, g)) for g in (goal("watchlist", n=i) for i in range(4))]
    planner.close()
    assert [o.planner for o in outcomes[:2]] == ["llm:scripted"] * 2  # two turns each
    assert outcomes[2].fallback is not None and "run's LLM budget is spent" in outcomes[2].fallback
    assert outcomes[3].fallback is not None and len(server.requests) == 5
    assert planner.run_budget.steps == 5


def test_plan_many_runs_goals_concurrently(world: Store, server: OpenAIServer, tmp_path: Path) -> None:
    server.responder = planning_responder(latency=0.2)
    planner = planner_for(server, tmp_path)
    goals = [goal(t, n=i) for i in range(4) for t in ("playlist", "reorder", "digest", "watchlist")]
    jobs = [(g, executor(world, g)) for g in goals]
    outcomes = plan_many(planner, jobs, concurrency=8)
    planner.close()
    assert all(o.fallback is None and not o.plan.nothing_to_do for o in outcomes), [o.fallback for o in outcomes]
    assert [ex.ctx.content["kind"] for _, ex in jobs] == [KINDS[g.template] for g in goals]
    turns = len(server.requests)  # 2 turns for lists and digests, 3 for reorders: 36 turns of 0.2 s
    assert turns == 36
    # concurrent, and never more than asked: counted by the server, not timed (a shared machine is slow)
    assert 1 < server.max_in_flight <= 8, server.max_in_flight


def test_critique_reads_the_verdict(server: OpenAIServer, tmp_path: Path) -> None:
    server.push(
        tool_calls(("verdict", {"ok": False, "notes": "the title promises jazz, the tracks are metal"})),
        message('{"ok": true, "notes": "fine"}'),
        *[error(500)] * 3,
    )
    client = ChatClient.from_settings(settings_for(server, tmp_path))
    deliverable = {"title": "Jazz", "summary": "s", "content": {"kind": "playlist", "items": []}, "why": "w"}
    assert critique(client, deliverable) == (False, "the title promises jazz, the tracks are metal")
    assert critique(client, deliverable) == (True, "fine")
    ok, notes = critique(client, deliverable)  # an unavailable critic does not fail a deliverable
    client.close()
    assert ok and notes.startswith("critique unavailable")
    assert "verdict" in server.requests[0].tool_names
