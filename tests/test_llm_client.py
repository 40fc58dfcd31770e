"""The retrying LLM client against a real scripted OpenAI-compatible server, through the real openai client."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator

import pytest

from openai_server import OpenAIServer, Reply, error, message, tool_calls
from orchestrion.config import Settings, load_settings
from orchestrion.errors import LLMBudgetError, LLMRequestError, LLMUnavailableError
from orchestrion.planning.budget import Budget, Caps, Prices, Usage
from orchestrion.planning.llm_client import ChatClient

ASK = [{"role": "user", "content": "plan"}]


def settings_for(base_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "llm_base_url": base_url,
        "llm_model": "scripted",
        "llm_api_key": "test",
        "llm_timeout": 2.0,
        "llm_backoff_s": 0.05,
        "llm_backoff_max_s": 3.0,
        "llm_max_retries": 3,
        "llm_price_prompt_1k": 1.0,
        "llm_price_completion_1k": 2.0,
    }
    values.update(overrides)
    return load_settings({}, **values)


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as s:
        yield s


def client_for(server: OpenAIServer, **overrides: object) -> ChatClient:
    return ChatClient.from_settings(settings_for(server.base_url, **overrides), rng=random.Random(7))


def test_answer_usage_and_cost_are_reported_and_charged(server: OpenAIServer) -> None:
    server.push(tool_calls(("recommend_items", {"n": 5}), prompt_tokens=1000, completion_tokens=500))
    client = client_for(server)
    budget = Budget(Caps(steps=5, tokens=10_000, cost=10.0), client.prices)
    done = client.complete(ASK, tools=[_spec("recommend_items")], budget=budget)
    client.close()
    call = done.message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "recommend_items"  # type: ignore[union-attr]
    assert (done.usage.prompt_tokens, done.usage.completion_tokens, done.attempts) == (1000, 500, 1)
    assert done.cost == pytest.approx(1.0 + 1.0)
    assert (budget.steps, budget.tokens, budget.cost) == (1, 1500, pytest.approx(2.0))
    sent = server.requests[0]
    assert sent.body["model"] == "scripted" and sent.tool_names == ["recommend_items"]
    assert sent.headers["authorization"] == "Bearer test"


def test_429_waits_what_retry_after_asks(server: OpenAIServer) -> None:
    server.push(error(429, retry_after="1"), message("ok"))
    client = client_for(server)
    done = client.complete(ASK)
    client.close()
    assert done.attempts == 2 and len(server.requests) == 2
    assert 1.0 <= done.waits[0] <= 1.1
    gap = server.requests[1].at - server.requests[0].at
    assert gap >= 1.0, f"the retry came {gap:.3f} s after the 429 that asked for 1 s"


def test_429_asking_longer_than_the_cap_gives_up_at_once(server: OpenAIServer) -> None:
    server.push(error(429, retry_after="120"), message("never sent"))
    client = client_for(server)
    with pytest.raises(LLMUnavailableError, match="Retry-After"):
        client.complete(ASK)
    client.close()
    assert len(server.requests) == 1


def test_429_without_retry_after_backs_off(server: OpenAIServer) -> None:
    server.push(error(429), message("ok"))
    client = client_for(server)
    done = client.complete(ASK)
    client.close()
    assert done.attempts == 2 and 0.0 <= done.waits[0] <= 0.05


def test_500s_are_retried_with_growing_jittered_backoff(server: OpenAIServer) -> None:
    server.push(error(500), error(502), error(503), message("ok"))
    client = client_for(server)
    done = client.complete(ASK)
    client.close()
    assert done.attempts == 4 and done.message.content == "ok"
    for retry, wait in enumerate(done.waits):
        assert 0.0 <= wait <= 0.05 * 2**retry
    assert len(set(done.waits)) == 3, "full jitter draws a different wait each time"


def test_500s_beyond_the_retries_raise_unavailable(server: OpenAIServer) -> None:
    server.push(*[error(500)] * 10)
    client = client_for(server, llm_max_retries=2)
    with pytest.raises(LLMUnavailableError, match="3 times"):
        client.complete(ASK)
    client.close()
    assert len(server.requests) == 3


def test_a_timeout_is_retried(server: OpenAIServer) -> None:
    server.push(message("too late").after(1.0), message("in time"))
    client = client_for(server, llm_timeout=0.3)
    done = client.complete(ASK)
    client.close()
    assert done.message.content == "in time" and done.attempts == 2


def test_timeouts_beyond_the_retries_raise_unavailable(server: OpenAIServer) -> None:
    server.push(*[message("too late").after(0.6)] * 3)
    client = client_for(server, llm_timeout=0.2, llm_max_retries=1)
    with pytest.raises(LLMUnavailableError, match="APITimeoutError"):
        client.complete(ASK)
    client.close()


def test_a_refused_connection_is_retried_then_given_up() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = ChatClient.from_settings(settings_for(f"http://127.0.0.1:{port}/v1", llm_max_retries=2))
    with pytest.raises(LLMUnavailableError, match="APIConnectionError"):
        client.complete(ASK)
    client.close()


def test_a_rejected_request_is_not_retried(server: OpenAIServer) -> None:
    server.push(error(401, text="bad key"), message("never"))
    client = client_for(server)
    with pytest.raises(LLMRequestError, match="401"):
        client.complete(ASK)
    client.close()
    assert len(server.requests) == 1


def test_a_body_that_is_not_json_is_retried(server: OpenAIServer) -> None:
    server.push(Reply(body=b"{not json"), message("ok"))
    client = client_for(server)
    done = client.complete(ASK)
    client.close()
    assert done.attempts == 2


def test_a_spent_budget_sends_nothing(server: OpenAIServer) -> None:
    server.push(message("a", prompt_tokens=900, completion_tokens=200), message("b"))
    client = client_for(server)
    run = Budget(Caps(steps=100, tokens=1000, cost=100.0), Prices())
    one = run.child(Caps(steps=10, tokens=10_000, cost=100.0))
    client.complete(ASK, budget=one)
    with pytest.raises(LLMBudgetError, match="run's LLM budget is spent"):
        client.complete(ASK, budget=one)
    client.close()
    assert len(server.requests) == 1


def test_cost_cap_applies_only_with_prices() -> None:
    free = Budget(Caps(steps=10, tokens=10**6, cost=0.0), Prices())
    free.charge(Usage(5000, 5000))
    free.check()
    priced = Budget(Caps(steps=10, tokens=10**6, cost=0.01), Prices(prompt_1k=0.001, completion_1k=0.002))
    priced.charge(Usage(5000, 5000))
    with pytest.raises(LLMBudgetError, match=r"cost 0\.0150 of 0\.0100"):
        priced.check()


def _spec(name: str) -> dict[str, object]:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {}}}}
