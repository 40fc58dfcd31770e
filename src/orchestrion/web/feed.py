"""What the feed page shows: one user's deliverables of a day as cards, with their items,
the thumbs already given, "why this", what was decided against, and the earlier days.

Read through the query functions of the tables' owners (``delivery.record``, ``proposals.day``,
``delivery.feedback``, ``ingest.catalog``), never with SQL of its own. A deliverable's items come
from its built ``content`` when the executor filled it (tracks, cart lines, articles) and otherwise
from its goal's ``details`` (what the template proposed).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

from orchestrion.delivery.feedback import thumb_rows
from orchestrion.delivery.rendering import main_action, status_text
from orchestrion.errors import NotFoundError
from orchestrion.ingest.catalog import item_entries
from orchestrion.proposals.day import declined_goals
from orchestrion.proposals.record import card_rows, days_with_deliverables, owner_of
from orchestrion.proposals.record import latest_day as stored_latest_day

__all__ = ["Card", "Day", "Declined", "Item", "card", "day_feed", "history", "latest_day", "read_card_user"]


@dataclass
class Item:
    """One track, cart line or article of a card, with the user's thumb on it."""

    item_id: str
    title: str
    detail: str | None = None
    quantity: float | None = None
    unit_price: float | None = None
    line_total: float | None = None
    thumb: str | None = None


@dataclass
class Card:
    """One deliverable as the feed shows it."""

    deliverable_id: str
    user_id: str
    date: dt.date
    template: str
    title: str
    status: str
    status_text: str
    summary: str | None
    why: str | None
    items: list[Item]
    total: float | None = None
    currency: str | None = None
    thumb: str | None = None


@dataclass(frozen=True)
class Declined:
    """A goal considered for the day and not chosen, with the reason in words."""

    title: str
    template: str
    reason: str | None
    reason_detail: str | None
    why: str | None = None


@dataclass
class Day:
    """A user's feed for one day."""

    user_id: str
    date: dt.date
    cards: list[Card]
    declined: list[Declined]
    earlier: list[tuple[dt.date, int]] = field(default_factory=list)


def _json(value: object) -> Any:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return None
    return value


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _text(entry: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = entry.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _from_entries(entries: Sequence[Any]) -> list[Item]:
    items = []
    for entry in entries:
        if not isinstance(entry, Mapping) or not entry.get("item_id"):
            continue
        item_id = str(entry["item_id"])
        items.append(
            Item(
                item_id=item_id,
                title=_text(entry, "title", "name") or item_id,
                detail=_text(entry, "summary", "artist", "creator", "text"),
                quantity=_number(entry.get("quantity")),
                unit_price=_number(entry.get("unit_price")),
                line_total=_number(entry.get("line_total", entry.get("total"))),
            )
        )
    return items


def _content_items(content: Any) -> list[Item] | None:
    """Items from the executor's content: a list, or a dict holding one under a known key; None
    when nothing was built (an empty list is an emptied cart: nothing to show, not the goal's lines)."""
    if isinstance(content, list):
        return _from_entries(content) if content else None
    if isinstance(content, Mapping):
        for key in ("tracks", "lines", "articles", "items", "movies"):
            if isinstance(content.get(key), list):
                return _from_entries(content[key])
    return None


def _goal_items(
    item_ids: Sequence[str], details: Mapping[str, Any], catalog: Mapping[str, dict[str, Any]]
) -> list[Item]:
    """Items from the goal's details (cart lines, or names in item order) and the catalog."""
    if isinstance(details.get("lines"), list):
        return _from_entries(details["lines"])
    lists = [details[k] for k in ("titles", "artists", "names") if isinstance(details.get(k), list)]
    names: list[Any] = lists[0] if lists else []
    items = []
    for i, item_id in enumerate(item_ids):
        known = catalog.get(item_id, {})
        title = names[i] if i < len(names) and isinstance(names[i], str) else known.get("title")
        text = known.get("text")
        summary = text[:280] + ("…" if len(text) > 280 else "") if isinstance(text, str) else None
        detail = known.get("creator") or summary
        items.append(Item(item_id=item_id, title=title or item_id, detail=detail))
    return items


def _catalog(con: duckdb.DuckDBPyConnection, item_ids: set[str]) -> dict[str, dict[str, Any]]:
    return item_entries(con, sorted(item_ids))


def _thumbs(con: duckdb.DuckDBPyConnection, ids: Sequence[str]) -> dict[str, tuple[str | None, dict[str, str]]]:
    """Per deliverable: its latest thumb and the latest thumb on each of its items."""
    state: dict[str, tuple[str | None, dict[str, str]]] = {}
    for deliverable_id, given, item_thumbs in thumb_rows(con, list(ids)):
        thumb, items = state.get(deliverable_id, (None, {}))
        thumb = given or thumb
        for entry in _json(item_thumbs) or []:
            if isinstance(entry, Mapping) and "item_id" in entry and "thumb" in entry:
                items[str(entry["item_id"])] = str(entry["thumb"])
        state[deliverable_id] = (thumb, items)
    return state


def _cards(con: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]]) -> list[Card]:
    wanted = {i for r in rows for i in (r["items"] or [])}
    catalog = _catalog(con, wanted)
    thumbs = _thumbs(con, [r["deliverable_id"] for r in rows])
    cards = []
    for row in rows:
        content = _json(row["content"])
        details = _json(row["details"]) or {}
        built = _content_items(content)
        items = built if built is not None else _goal_items(row["items"] or [], details, catalog)
        thumb, item_thumbs = thumbs.get(row["deliverable_id"], (None, {}))
        for item in items:
            item.thumb = item_thumbs.get(item.item_id)
        money = content if isinstance(content, Mapping) and "total" in content else details
        cards.append(
            Card(
                deliverable_id=row["deliverable_id"],
                user_id=row["user_id"],
                date=row["date"],
                template=row["template"],
                title=row["title"],
                status=row["status"],
                status_text=status_text(row["status"], row["error"], main_action(row | {"content": content}),
                                        confirming=bool(row.get("confirming")), runs_at=row.get("runs_at")),
                summary=row["summary"],
                why=row["why"],
                items=items,
                total=_number(money.get("total")),
                currency=money.get("currency") if isinstance(money.get("currency"), str) else None,
                thumb=thumb,
            )
        )
    return cards


def history(
    con: duckdb.DuckDBPyConnection, user_id: str, before: dt.date, *, limit: int = 30
) -> list[tuple[dt.date, int]]:
    """The user's earlier days with deliverables, newest first, and how many each had."""
    return days_with_deliverables(con, user_id, before, limit)


def latest_day(con: duckdb.DuckDBPyConnection, user_id: str, on_or_before: dt.date) -> dt.date | None:
    """The user's latest day with deliverables up to ``on_or_before`` (None when there is none):
    where the page opens when today has nothing yet (before the morning run, or after `make demo`,
    whose day is in the sample's past)."""
    return stored_latest_day(con, user_id, on_or_before)


def day_feed(con: duckdb.DuckDBPyConnection, user_id: str, day: dt.date) -> Day:
    """``user_id``'s deliverables of ``day`` (in the order they were chosen), what was not chosen,
    and the earlier days."""
    rows = card_rows(con, user_id=user_id, day=day)
    declined = [Declined(*goal) for goal in declined_goals(con, user_id, day)]
    return Day(user_id, day, _cards(con, rows), declined, history(con, user_id, day))


def read_card_user(con: duckdb.DuckDBPyConnection, deliverable_id: str) -> str:
    """The owner of a deliverable; NotFoundError when there is none."""
    owner = owner_of(con, deliverable_id)
    if owner is None:
        raise NotFoundError(f"no deliverable {deliverable_id!r}")
    return owner


def card(con: duckdb.DuckDBPyConnection, deliverable_id: str) -> Card:
    """One deliverable as a card; NotFoundError when there is none."""
    found = _cards(con, card_rows(con, deliverable_id=deliverable_id))
    if not found:
        raise NotFoundError(f"no deliverable {deliverable_id!r}")
    return found[0]
