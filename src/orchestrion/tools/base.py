"""Tools: typed functions the planners call. The signature is the JSON schema, the docstring the description.

A tool's first parameter is the :class:`ToolContext`, which code fills in: whose goal this is,
the day, the catalog rows of the batch, the user's exclusions, a database cursor for lookups.
The model only ever supplies the remaining, validated arguments — it cannot name a user, a price
or a URL that the context does not allow. Side-effect tools (``action`` set) never act when
called: they record an :class:`IntendedEffect` that the executor runs after review, through the
policy check and the ledger.

>>> @tool()
... def echo(ctx: ToolContext, text: str, times: int = 1) -> dict[str, Any]:
...     '''Repeat ``text``.'''
...     return {"text": text * times}
>>> echo.schema["properties"]["times"]["default"]
1
>>> echo.description
'Repeat ``text``.'
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, get_type_hints

import duckdb
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from orchestrion.errors import ToolError, UsageError
from orchestrion.tools.policies import ActionClass

__all__ = [
    "CatalogItem",
    "GoalRecord",
    "IntendedEffect",
    "Tool",
    "ToolContext",
    "tool",
]


@dataclass(frozen=True)
class GoalRecord:
    """A chosen goal as the planners see it (read from ``goals``)."""

    goal_id: str
    deliverable_id: str
    user_id: str
    date: date
    template: str
    variant: str
    title: str
    items: tuple[str, ...]
    params: Mapping[str, Any]
    details: Mapping[str, Any]
    why: str
    cost: float = 0.0
    note: str | None = None
    """How it was chosen, when that is worth saying (an exploration pick, the person's thumbs)."""


@dataclass(frozen=True)
class CatalogItem:
    """The catalog fields tools use."""

    item_id: str
    domain: str | None
    title: str | None
    creator: str | None
    price: float | None
    currency: str | None
    category: str | None
    text: str | None
    published: str | None = None


@dataclass(frozen=True)
class IntendedEffect:
    """A side effect a tool asked for; run later through policy and ledger.

    ``effect`` is canonical (computed by code from the deliverable, never raw model arguments).
    """

    tool: str
    action: ActionClass
    effect: Mapping[str, Any]
    amount: float | None = None
    origin: str | None = None
    """A webhook's origin, ``scheme://host:port`` (:func:`orchestrion.tools.policies.webhook_origin`)."""


@dataclass
class ToolContext:
    """Everything a tool may use, filled in by code for one goal of one user."""

    goal: GoalRecord
    now: datetime
    catalog: Mapping[str, CatalogItem]
    excluded: frozenset[str]
    connect: Callable[[], duckdb.DuckDBPyConnection]
    webhook_url: str | None = None
    max_order_amount: float | None = None
    locale: str | None = None
    """Where money is written in titles and summaries (``ORCHESTRION_LOCALE``; None = the currency's own)."""
    content: dict[str, Any] = field(default_factory=dict)
    effects: list[IntendedEffect] = field(default_factory=list)
    _cursor: duckdb.DuckDBPyConnection | None = None

    @property
    def user_id(self) -> str:
        return self.goal.user_id

    @property
    def as_of(self) -> datetime:
        """The instant history is read as of: ``now`` while the goal's day is today (or ahead), the
        start of the day once it is past (a backfill sees what the goals saw: events before it).

        >>> g = GoalRecord("g", "d", "u", date(2011, 11, 1), "reorder", "daily", "t", (), {}, {}, "why")
        >>> ToolContext(g, datetime(2026, 1, 1), {}, frozenset(), connect=lambda: None).as_of  # type: ignore
        datetime.datetime(2011, 11, 1, 0, 0)
        """
        start = datetime.combine(self.goal.date, time.min)
        return self.now if self.now < start + timedelta(days=1) else start

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A database cursor for lookups, opened on first use (offline plans rarely need one)."""
        if self._cursor is None:
            self._cursor = self.connect()
        return self._cursor

    def close(self) -> None:
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None

    def item(self, item_id: str) -> CatalogItem:
        """The catalog row of ``item_id`` (batch cache first, then the database); ToolError if unknown."""
        found = self.catalog.get(item_id)
        if found is not None:
            return found
        rows = (
            self.cursor()
            .execute(
                "SELECT item_id, domain, title, creator, price, currency, category, left(text, 2000), "
                "json_extract_string(properties, '$.shared_at') FROM items WHERE item_id = ?",
                [item_id],
            )
            .fetchall()
        )
        if not rows:
            raise ToolError(f"unknown item_id {item_id!r}; use ids returned by the read tools")
        return CatalogItem(*rows[0])


@dataclass(frozen=True)
class Tool:
    """One tool: its name, description (the docstring), argument model and, for side effects, action class."""

    name: str
    description: str
    arguments: type[BaseModel]
    function: Callable[..., Any]
    action: ActionClass | None = None

    @property
    def schema(self) -> dict[str, Any]:
        """The JSON schema of the arguments, as the model sees it."""
        schema = self.arguments.model_json_schema()
        schema.pop("title", None)
        return schema

    def openai_spec(self) -> dict[str, Any]:
        """The tool in OpenAI's function-calling format."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.schema},
        }

    def validate(self, arguments: Mapping[str, Any]) -> BaseModel:
        """Validated arguments; ToolError naming each bad field otherwise."""
        try:
            return self.arguments.model_validate(dict(arguments))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors())
            raise ToolError(f"invalid arguments for {self.name}: {problems}") from exc

    def __call__(self, ctx: ToolContext, arguments: Mapping[str, Any]) -> Any:
        valid = self.validate(arguments)
        return self.function(ctx, **vars(valid))  # the fields, as validated (extra fields are forbidden)


def tool(*, action: ActionClass | None = None) -> Callable[[Callable[..., Any]], Tool]:
    """Turn a typed function ``(ctx: ToolContext, ...)`` into a :class:`Tool`."""

    def wrap(function: Callable[..., Any]) -> Tool:
        doc = inspect.getdoc(function)
        if not doc:
            raise UsageError(f"tool {function.__name__} needs a docstring: it is the model's description of it")
        hints = get_type_hints(function)
        params = list(inspect.signature(function).parameters.values())
        if not params or hints.get(params[0].name) is not ToolContext:
            raise UsageError(f"tool {function.__name__}'s first parameter must be `ctx: ToolContext`")
        fields: dict[str, Any] = {}
        for p in params[1:]:
            if p.name == "user_id":
                raise UsageError(f"tool {function.__name__} must not take a user_id: the context carries the user")
            default = ... if p.default is inspect.Parameter.empty else p.default
            fields[p.name] = (hints[p.name], default)
        model = create_model(f"{function.__name__}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
        return Tool(function.__name__, doc, model, function, action)

    return wrap
