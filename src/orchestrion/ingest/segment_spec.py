"""Segment's published specs mapped to canonical events, so an instrumented app feeds the goals.

The goal templates read canonical types (``purchase``, ``return``, ``play``, ``view``, ``rate``, …)
with an item, a value and a domain. An app that follows Segment's E-commerce v2 or Video spec
sends other names and shapes; this module turns each message into the canonical events it means
(docs/event-streams.md has the table):

============================  ============================================================
Segment event                 canonical events
============================  ============================================================
Order Completed               one ``purchase`` per ``products`` line: item = product_id (else
                              sku), value = quantity (1 if absent), properties ``order_id``,
                              ``unit_price`` (= price) and ``currency``
Order Refunded                one ``return`` per ``products`` line, likewise; without
                              ``products``, one ``return`` of the whole order (no item)
Product Viewed / Clicked      ``view`` / ``click`` of product_id (else sku)
Product Added / Removed       ``add_to_cart`` / ``remove_from_cart``, value = quantity
Video Content Playing /       ``play`` of asset_id, one per playback (``session_id``): the
Completed                     heartbeats of one playback are duplicates of its first
page / screen calls           ``view`` of ``properties.item_id`` (else product_id) when one is
                              named, else ``page`` / ``screen``
any other name                stored as sent (type = the name) unless a ``[[mappings]]`` table
                              maps it (:mod:`orchestrion.ingest.mappings`, which wins over the spec)
============================  ============================================================

Order lines get deterministic ids, ``[SOURCE:]order:ORDER_ID:PRODUCT:N`` (N counts the repeats of
one product in the order, in order), so an order sent again stores nothing new. The product
fields of these events (name, category, price, brand, image_url; a video's title, genre,
keywords, publisher) upsert the catalog, field by field, the latest message winning.

>>> events, items = expand(
...     "Order Completed", "track", {"event_id": "m1", "user_id": "u1", "ts": "2024-05-01T10:00:00Z"},
...     {"order_id": "o7", "currency": "EUR", "products": [{"product_id": "p1", "price": 2.5, "quantity": 3}]},
... )
>>> [(e["event_id"], e["type"], e["item_id"], e["value"]) for e in events]
[('order:o7:p1:1', 'purchase', 'p1', 3.0)]
>>> events[0]["properties"]
{'order_id': 'o7', 'unit_price': 2.5, 'currency': 'EUR'}
>>> [(row["item_id"], row["price"], row["currency"]) for row in catalog_rows(items)]
[('p1', 2.5, 'EUR')]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal, overload

import msgspec

from orchestrion.config import MappingRule
from orchestrion.ingest.events import EventColumns
from orchestrion.ingest.mappings import lookup

__all__ = ["CANONICAL_TYPES", "SPEC_EVENTS", "Catalog", "catalog_rows", "expand", "known_types"]

_PRODUCT_EVENTS: Final = {
    "Product Viewed": "view",
    "Product Clicked": "click",
    "Product Added": "add_to_cart",
    "Product Removed": "remove_from_cart",
}
_ORDER_EVENTS: Final = {"Order Completed": ("purchase", "order"), "Order Refunded": ("return", "refund")}
_VIDEO_EVENTS: Final = frozenset({"Video Content Playing", "Video Content Completed"})
SPEC_EVENTS: Final = frozenset({*_PRODUCT_EVENTS, *_ORDER_EVENTS, *_VIDEO_EVENTS})
"""The Segment event names this module maps (a ``[[mappings]]`` table for one of them wins)."""

CANONICAL_TYPES: Final = frozenset(
    {
        "purchase", "return", "view", "click", "add_to_cart", "remove_from_cart", "play", "skip",
        "rate", "like", "dislike", "bookmark", "comment", "follow", "tag", "page", "screen",
    }
)  # fmt: skip
"""The event types the loaders and the spec mappings produce and the goals and pipelines read."""

# Line fields that go to the catalog, not into every line event's properties.
_CATALOG_FIELDS: Final = frozenset({"name", "category", "brand", "image_url", "url", "price", "quantity"})


def known_types(rules: Iterable[MappingRule] = (), extra: Iterable[str] = ()) -> frozenset[str]:
    """The event types something reads: the canonical ones, the mappings' and ``extra`` (the
    triggers' types); ``orchestrion stats`` reports events of any other type as unmapped.

    >>> sorted(known_types([], ["stock_low"]) - CANONICAL_TYPES)
    ['stock_low']
    """
    return CANONICAL_TYPES | {rule.type for rule in rules} | frozenset(extra)


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where} is {value!r}, not a number")
    return float(value)


def _id(value: Any, where: str) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if not isinstance(value, str | int | float):
        raise ValueError(f"{where} is {type(value).__name__}, not an id (text or number)")
    text = str(value).strip()
    return text or None


def _product_id(product: Mapping[str, Any], where: str) -> str | None:
    return _id(product.get("product_id"), f"{where}.product_id") or _id(product.get("sku"), f"{where}.sku")


def _catalog_row(item_id: str, fields: Mapping[str, Any], currency: Any, domain: str | None) -> dict[str, Any] | None:
    """A catalog row from a product's (or a video's) fields, or None when it names nothing new."""
    get = fields.get
    price = get("price")
    if isinstance(price, int | float) and not isinstance(price, bool) and price > 0:
        price = float(price)
        currency = currency if isinstance(currency, str) else None
    else:
        price = currency = None
    keywords = get("keywords")
    genre = get("genre")
    if isinstance(keywords, list) and all(isinstance(k, str) for k in keywords):
        tags: list[str] | None = keywords
    elif isinstance(genre, str):
        tags = [genre]
    else:
        tags = None
    # _text_field inlined: one call less per field, and this runs once per product per request
    title = get("name") or get("title")
    title = (title.strip() or None) if isinstance(title, str) else None
    creator = get("brand") or get("publisher")
    creator = (creator.strip() or None) if isinstance(creator, str) else None
    category = get("category") or genre
    category = (category.strip() or None) if isinstance(category, str) else None
    image_url = get("image_url")
    image_url = (image_url.strip() or None) if isinstance(image_url, str) else None
    url = get("url")
    url = (url.strip() or None) if isinstance(url, str) else None
    if title is None and creator is None and price is None and category is None and tags is None \
            and image_url is None and url is None:
        return None
    return {"item_id": item_id, "domain": domain, "title": title, "creator": creator, "price": price,
            "currency": currency, "category": category, "tags": tags, "image_url": image_url, "url": url}


def _line_number(value: Any, where: str) -> float | None:
    return float(value) if type(value) is float or type(value) is int else _number(value, where)


_LINE_KEYS: Final = frozenset({"product_id", "sku", *_CATALOG_FIELDS})
_encode: Final = msgspec.json.encode
Catalog = list[tuple[str, Mapping[str, Any], Any, "str | None"]]
"""What events say about items: (item_id, the product's or video's fields, currency, domain)."""


def _order_lines(
    name: str, base: dict[str, Any], properties: Mapping[str, Any], domain: str | None, namespace: str,
    columns: bool = False,
) -> tuple[list[dict[str, Any] | EventColumns], Catalog]:
    kind, prefix = _ORDER_EVENTS[name]
    order_id = _id(properties.get("order_id"), "properties.order_id")
    currency = properties.get("currency")
    products = properties.get("products")
    if products is None and kind == "return":
        if order_id is None:
            raise ValueError("an Order Refunded without products needs properties.order_id")
        whole = {"order_id": order_id, "total": properties.get("total"), "currency": currency}
        return [{**base, "event_id": f"{namespace}{prefix}:{order_id}", "type": kind, "item_id": None,
                 "domain": domain, "value": None, "properties": whole}], []
    if not isinstance(products, list) or not products:
        raise ValueError(f"{name} needs properties.products, a non-empty list of the order's lines")
    event_ids: list[str | None] = []
    item_ids: list[str] = []
    values: list[float] = []
    prices: list[float | None] = []
    extras: list[dict[str, Any] | None] = []
    catalog: Catalog = []
    seen: dict[str, int] = {}
    user_id, ts, message_id = base["user_id"], base["ts"], base.get("event_id")
    id_prefix = f"{namespace}{prefix}:{order_id}:"
    # The usual order: every line's properties are exactly order_id, unit_price and currency.
    usual = order_id is not None and currency is not None
    for line, product in enumerate(products):
        if type(product) is not dict:
            raise ValueError(f"properties.products[{line}] is not an object")
        item_id = product.get("product_id")
        quantity = product.get("quantity")
        price = product.get("price")
        if not (type(item_id) is str and item_id and not item_id[0].isspace() and not item_id[-1].isspace()):
            where = f"properties.products[{line}]"
            item_id = _id(item_id, where + ".product_id") or _id(product.get("sku"), where + ".sku")
            if item_id is None:
                raise ValueError(f"{where} needs a product_id (or sku)")
        if type(quantity) is not float:
            quantity = _line_number(quantity, f"properties.products[{line}].quantity")
        if type(price) is not float:
            price = _line_number(price, f"properties.products[{line}].price")
            if price is None:
                usual = False
        seen[item_id] = n = seen.get(item_id, 0) + 1
        if order_id is not None:
            event_ids.append(f"{id_prefix}{item_id}:{n}")
        elif message_id is not None:
            event_ids.append(f"{message_id}:{line}")
        else:
            event_ids.append(None)  # the content hash: the same line sent again is still a duplicate
        if product.keys() <= _LINE_KEYS:
            extras.append(None)
        else:
            extras.append({k: v for k, v in product.items() if k not in _LINE_KEYS})
            usual = False
        item_ids.append(item_id)
        values.append(1.0 if quantity is None else abs(quantity))
        prices.append(price)
        catalog.append((item_id, product, currency, domain))
    if usual and columns:
        # The properties' JSON as msgspec encodes the dict {order_id, unit_price, currency}: the
        # prices encoded as one list (a number's JSON holds no comma), the rest once per order.
        head = f'{{"order_id":{_encode(order_id).decode()},"unit_price":'
        tail = f',"currency":{_encode(currency).decode()}}}'
        texts = [head + price + tail for price in _encode(prices).decode()[1:-1].split(",")]
        return [EventColumns(user_id, kind, ts, domain, event_ids, item_ids, values, texts)], catalog
    events: list[dict[str, Any] | EventColumns] = []
    for event_id, item_id, value, price, extra in zip(event_ids, item_ids, values, prices, extras, strict=True):
        props: dict[str, Any] = {"order_id": order_id, "unit_price": price, "currency": currency}
        if extra is not None:
            props.update(extra)
        if order_id is None or currency is None or price is None or len(props) > 3:
            props = {k: v for k, v in props.items() if v is not None}
        events.append({"event_id": event_id, "user_id": user_id, "type": kind, "item_id": item_id,
                       "domain": domain, "ts": ts, "value": value, "properties": props})
    return events, catalog


def catalog_rows(catalog: Catalog) -> list[dict[str, Any]]:
    """One catalog row per item from what the events said, in order: the latest says it last.

    A field the latest message leaves out keeps an earlier message's value (and, in the store,
    the stored one: see :func:`orchestrion.ingest.catalog.merge_items`).
    """
    merged: dict[str, tuple[Mapping[str, Any], Any, str | None]] = {}
    copied: set[str] = set()  # the items whose fields are a copy of their first message's, merged
    for said in catalog:
        item_id = said[0]
        known = merged.get(item_id)
        if known is None:
            merged[item_id] = said[1:]
            continue
        _, fields, currency, domain = said
        if item_id in copied:
            together = known[0]
        else:
            together = dict(known[0])
            copied.add(item_id)
        assert isinstance(together, dict)
        together.update(fields)
        merged[item_id] = (together, currency if currency is not None else known[1], domain or known[2])
    rows = [_catalog_row(item_id, *known) for item_id, known in merged.items()]
    return [row for row in rows if row is not None]


def _custom(rule: MappingRule, base: dict[str, Any], message: Mapping[str, Any], domain: str | None) -> dict[str, Any]:
    where = f"the [[mappings]] table for {rule.event!r}"
    item = _id(lookup(message, rule.item), f"{rule.item} ({where})") if rule.item else base.get("item_id")
    value = rule.value if not isinstance(rule.value, str) else lookup(message, rule.value)
    return {**base, "type": rule.type, "item_id": item, "domain": rule.domain or domain,
            "value": _number(value, f"{rule.value} ({where})")}


@overload
def expand(
    name: str,
    kind: str,
    base: dict[str, Any],
    properties: Mapping[str, Any],
    context: Mapping[str, Any] | None = None,
    *,
    rules: Mapping[str, MappingRule] | None = None,
    default_domain: str | None = None,
    source: str | None = None,
    columns: Literal[False] = False,
) -> tuple[list[dict[str, Any]], Catalog]: ...


@overload
def expand(
    name: str,
    kind: str,
    base: dict[str, Any],
    properties: Mapping[str, Any],
    context: Mapping[str, Any] | None = None,
    *,
    rules: Mapping[str, MappingRule] | None = None,
    default_domain: str | None = None,
    source: str | None = None,
    columns: bool,
) -> tuple[list[dict[str, Any] | EventColumns], Catalog]: ...


def expand(
    name: str,
    kind: str,
    base: dict[str, Any],
    properties: Mapping[str, Any],
    context: Mapping[str, Any] | None = None,
    *,
    rules: Mapping[str, MappingRule] | None = None,
    default_domain: str | None = None,
    source: str | None = None,
    columns: bool = False,
) -> tuple[list[dict[str, Any]], Catalog] | tuple[list[dict[str, Any] | EventColumns], Catalog]:
    """The canonical events (native event dicts) and what they say about items (see
    :func:`catalog_rows`) one message stands for.

    ``name`` is the track's event name (or ``page``/``screen`` for those calls); ``base`` holds
    the native fields already read (``event_id``, ``user_id``, ``ts``, ``properties``, …).
    With ``columns`` the usual order's lines come as one :class:`~orchestrion.ingest.events.EventColumns`
    (the same events, for :func:`~orchestrion.ingest.events.validate_events`).
    Raises ValueError, naming the field, for a message the spec cannot read.
    """
    declared = properties.get("domain")
    domain = declared if isinstance(declared, str) and declared.strip() else default_domain
    namespace = f"{source}:" if source else ""
    rule = (rules or {}).get(name)
    catalog: Catalog = []
    if name in _PRODUCT_EVENTS or name in _VIDEO_EVENTS:
        video = name in _VIDEO_EVENTS
        item_id = _id(properties.get("asset_id"), "properties.asset_id") if video else \
            _product_id(properties, "properties")
        catalog = [] if item_id is None else [(item_id, properties, properties.get("currency"), domain)]
        if rule is None:
            if item_id is None:
                field = "properties.asset_id" if video else "properties.product_id (or sku)"
                raise ValueError(f"{name} needs {field}, the item it is about")
            event = {**base, "item_id": item_id, "domain": domain}
            if video:
                session = _id(properties.get("session_id"), "properties.session_id")
                if session is not None:
                    event["event_id"] = f"{namespace}play:{session}:{item_id}"
                return [{**event, "type": "play", "value": None}], catalog
            quantity = _number(properties.get("quantity"), "properties.quantity")
            value = quantity if name in ("Product Added", "Product Removed") else None
            return [{**event, "type": _PRODUCT_EVENTS[name], "value": value}], catalog
    elif name in _ORDER_EVENTS and rule is None:
        return _order_lines(name, base, properties, domain, namespace, columns)
    if rule is not None:
        mapped = [(item_id, fields, currency, rule.domain or at) for item_id, fields, currency, at in catalog]
        return [_custom(rule, base, {"properties": properties, "context": context}, domain)], mapped
    if kind in ("page", "screen"):
        item_id = _id(properties.get("item_id", properties.get("product_id")), "properties.item_id")
        return [{**base, "type": "view" if item_id else kind, "item_id": item_id, "domain": domain}], []
    return [{**base, "domain": domain}], []
