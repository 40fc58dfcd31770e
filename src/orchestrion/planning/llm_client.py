"""The one door to an OpenAI-compatible endpoint: retries, backoff, usage and budget.

:class:`ChatClient` wraps the ``openai`` client built with ``max_retries=0``, so every retry is
ours and tested: a 429 waits what ``Retry-After`` (or ``retry-after-ms``) asks, if that is no
longer than ``llm_backoff_max_s`` (longer, and the endpoint is given up for this request); 408,
409, 5xx, timeouts, refused connections and unreadable bodies (not JSON, no choice) wait ``llm_backoff_s · 2^attempt``
with full jitter, capped at ``llm_backoff_max_s``; any other 4xx is a configuration mistake and
raises :class:`~orchestrion.errors.LLMRequestError` at once. After ``llm_max_retries`` retries
the request raises :class:`~orchestrion.errors.LLMUnavailableError`.

Every answered request is charged to the given :class:`~orchestrion.planning.budget.Budget`
(one step, the reported tokens, their estimated cost), which is checked before each request.

The clock (``sleep``) and the jitter (``rng``) are parameters, so tests can record the waits.
"""

from __future__ import annotations

import email.utils
import json
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from orchestrion.config import Settings
from orchestrion.errors import ConfigError, LLMRequestError, LLMUnavailableError
from orchestrion.planning.budget import Budget, Prices, Usage

if TYPE_CHECKING:
    import openai
    from openai.types.chat import ChatCompletionMessage

__all__ = ["ChatClient", "Completion", "RetryPolicy", "retry_after_seconds"]

RETRIED_STATUSES = frozenset({408, 409, 429})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait between attempts of one request."""

    max_retries: int = 4
    backoff_s: float = 0.5
    backoff_max_s: float = 20.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(settings.llm_max_retries, settings.llm_backoff_s, settings.llm_backoff_max_s)

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max, base · 2^retry)] (retry counts from 0)."""
        return rng.uniform(0.0, min(self.backoff_max_s, self.backoff_s * (2.0**retry)))


@dataclass(frozen=True)
class Completion:
    """One answered request: the assistant message, the usage reported, the attempts it took."""

    message: ChatCompletionMessage
    usage: Usage
    cost: float
    attempts: int
    waits: tuple[float, ...] = field(default=())


def retry_after_seconds(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` (delta seconds or an HTTP date) or ``retry-after-ms`` header asks for.

    >>> retry_after_seconds({"retry-after": "2"})
    2.0
    >>> retry_after_seconds({"retry-after-ms": "250"})
    0.25
    >>> retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:05 GMT"},
    ...                     now=datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC))
    5.0
    >>> retry_after_seconds({"retry-after": "soon"}) is None
    True
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class ChatClient:
    """Chat completions with our retries, usage accounting and budget checks.

    Thread-safe: one instance serves every planning thread (the ``openai`` client pools connections).
    """

    def __init__(
        self,
        client: openai.OpenAI,
        *,
        model: str,
        retry: RetryPolicy | None = None,
        prices: Prices | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.model = model
        self.retry = retry or RetryPolicy()
        self.prices = prices or Prices()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> ChatClient:
        """The client for ``settings.llm_base_url``; raises ConfigError when no endpoint is configured."""
        import openai

        if settings.llm_base_url is None:
            raise ConfigError("no LLM endpoint configured: set ORCHESTRION_LLM_BASE_URL (and _API_KEY, _MODEL)")
        client = openai.OpenAI(
            base_url=settings.llm_base_url,
            api_key=settings.llm_api_key or "unused",  # local servers (Ollama, llama.cpp) ignore the key
            max_retries=0,
            timeout=settings.llm_timeout,
        )
        return cls(
            client,
            model=settings.llm_model or "default",
            retry=RetryPolicy.from_settings(settings),
            prices=Prices.from_settings(settings),
            **kwargs,
        )

    def close(self) -> None:
        self.client.close()

    def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: Literal["auto", "required", "none"] = "auto",
        budget: Budget | None = None,
    ) -> Completion:
        """One chat completion, retried on passing failures, charged to ``budget``.

        Raises LLMBudgetError (before the request) when ``budget`` is spent, LLMUnavailableError
        when every attempt failed, LLMRequestError when the endpoint rejects the request.
        """
        import openai

        passing = (openai.APIConnectionError, openai.APIResponseValidationError, json.JSONDecodeError, _EmptyAnswer)
        waits: list[float] = []
        attempt = 0
        while True:
            if budget is not None:
                budget.check()
            attempt += 1
            try:
                kwargs: dict[str, Any] = {"model": self.model, "messages": list(messages)}
                if tools:
                    kwargs["tools"] = list(tools)
                    kwargs["tool_choice"] = tool_choice
                response = self.client.chat.completions.create(**kwargs)
                if not response.choices:
                    raise _EmptyAnswer("the endpoint answered without a choice")
            except openai.APIStatusError as exc:
                status = exc.status_code
                if status not in RETRIED_STATUSES and status < 500:
                    raise LLMRequestError(
                        f"the LLM endpoint rejected the request with {status}: {exc.message}; check "
                        "ORCHESTRION_LLM_BASE_URL, _API_KEY and _MODEL"
                    ) from exc
                wait = self._wait(attempt, status, exc.response.headers, waits)
            except passing as exc:
                # APITimeoutError is an APIConnectionError: a timeout, a refused or dropped connection
                wait = self._wait(attempt, type(exc).__name__, {}, waits)
            else:
                usage = _usage(response.usage)
                if budget is not None:
                    budget.charge(usage)
                return Completion(response.choices[0].message, usage, self.prices.cost(usage), attempt, tuple(waits))
            self._sleep(wait)

    def _wait(self, attempt: int, what: int | str, headers: Mapping[str, str], waits: list[float]) -> float:
        """How long to wait before attempt ``attempt + 1``; raises when no retry is left or allowed."""
        if attempt > self.retry.max_retries:
            raise LLMUnavailableError(
                f"the LLM endpoint failed {attempt} times (last: {what}); the offline planner takes over. "
                "Retries: ORCHESTRION_LLM_MAX_RETRIES"
            )
        asked = retry_after_seconds(headers) if what == 429 else None
        if asked is not None:
            if asked > self.retry.backoff_max_s:
                raise LLMUnavailableError(
                    f"the LLM endpoint asked to wait {asked:.1f} s (Retry-After), more than "
                    f"ORCHESTRION_LLM_BACKOFF_MAX_S={self.retry.backoff_max_s}; not waiting that long"
                )
            with self._rng_lock:  # a little jitter on top, so parallel planners do not return together
                wait = asked + self._rng.uniform(0.0, min(0.1 * asked, self.retry.backoff_max_s - asked))
        else:
            with self._rng_lock:
                wait = self.retry.backoff(attempt - 1, self._rng)
        waits.append(wait)
        return wait


class _EmptyAnswer(Exception):
    """A 200 without a choice: treated like a passing failure."""


def _usage(reported: Any) -> Usage:
    if reported is None:
        return Usage()
    return Usage(int(reported.prompt_tokens or 0), int(reported.completion_tokens or 0))
