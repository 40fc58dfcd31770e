"""A deliverable rendered for people: Markdown and HTML (JSON is the record itself).

The HTML carries the published part of the record too (:data:`PUBLISHED`: no plan, trace or
review), as JSON in ``<script type="application/json" id="orchestrion-deliverable">``, so one
outbox file serves a person and a program.

>>> d = {"deliverable_id": "d_1", "title": "Reorder", "summary": "2 items", "why": "you buy these",
...      "content": {"kind": "cart", "items": [{"title": "Tea", "quantity": 2, "unit_price": 1.5,
...      "line_total": 3.0}], "total": 3.0, "currency": "GBP"}}
>>> print(render_markdown(d).splitlines()[0])
# Reorder
>>> "<td>Tea</td>" in render_html(d)
True
>>> render(d, "json")[1]
'application/json'
>>> "</script><b>" in render_html({**d, "title": "</script><b>"})  # no way out of the page's JSON
False
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from html import escape
from typing import Any, Final, Literal
from urllib.parse import quote

from orchestrion.encoding import to_json, to_json_bytes

__all__ = [
    "MEDIA_TYPES",
    "PUBLISHED",
    "Format",
    "main_action",
    "published",
    "render",
    "render_html",
    "render_markdown",
    "status_text",
]

Format = Literal["html", "json", "md"]

MEDIA_TYPES: Final[dict[str, str]] = {
    "html": "text/html; charset=utf-8",
    "json": "application/json",
    "md": "text/markdown; charset=utf-8",
}


PUBLISHED: Final = (
    "deliverable_id", "goal_id", "user_id", "date", "template", "title", "summary", "why", "content", "status",
    "effects", "actions",
)
"""The fields of a deliverable that its HTML page carries as JSON (what it is, not how it was made)."""


def main_action(d: Mapping[str, Any]) -> str:
    """The action a deliverable is about: ``place_order`` for a cart, else ``publish``.

    >>> main_action({"template": "reorder"}), main_action({"template": "playlist"})
    ('place_order', 'publish')
    """
    content = d.get("content")
    cart = isinstance(content, Mapping) and content.get("kind") == "cart"
    return "place_order" if cart or d.get("template") == "reorder" else "publish"


_DONE: Final = {"place_order": "Ordered", "publish": "Sent"}
_NOT: Final = {"place_order": "Not ordered", "publish": "Not sent"}


def status_text(status: str, reason: str | None, action: str | None) -> str:
    """A deliverable's status in plain words for the person it is for (the one place that says it).

    ``reason`` is the deliverable's stored reason (why it was not done, cancelled or failed);
    ``action`` what it is about (:func:`main_action`): ``place_order`` or ``publish``.

    >>> status_text("not_done", "this month's spending limit is reached", "place_order")
    "Not ordered: this month's spending limit is reached"
    >>> status_text("delivered", None, "place_order"), status_text("awaiting_approval", None, "place_order")
    ('Ordered', 'Waiting for your approval')
    """
    why = " ".join(str(reason).split()) if reason else ""
    done = _DONE.get(action or "", "Delivered")
    if status == "delivered":
        return done
    if status == "not_done":
        return f"{_NOT.get(action or '', 'Not done')}: {why}" if why else _NOT.get(action or "", "Not done")
    if status == "awaiting_approval":
        return "Waiting for your approval"
    if status in ("proposed", "planned"):
        return "Being prepared"
    if status == "rejected":
        return "Rejected: nothing was done" if action != "place_order" else "Rejected: nothing was ordered"
    if status == "cancelled":
        return f"Cancelled: {why}" if why else "Cancelled"
    if status == "failed":  # part of it may have happened (an order placed, then a webhook down)
        return f"Not finished: {why}" if why else "Not finished"
    return status.replace("_", " ").capitalize()


def published(d: Mapping[str, Any]) -> dict[str, Any]:
    """What leaves the system about a deliverable (a webhook's body): what it is, never how it was
    made — no plan, trace, review, history, tokens or cost.

    >>> sorted(published({"deliverable_id": "d_1", "plan": {}, "trace": [], "cost": 1.0}))
    ['date', 'deliverable_id', 'items', 'links', 'status', 'summary', 'template', 'title', 'user_id']
    """
    content = d.get("content") or {}
    out: dict[str, Any] = {key: d.get(key) for key in ("deliverable_id", "user_id", "date", "template", "title")}
    out["summary"] = d.get("summary")
    out["items"] = list(content.get("items") or [])
    if content.get("kind") == "cart":
        out["total"], out["currency"] = content.get("total"), content.get("currency")
    path = f"/v1/deliverables/{quote(str(d.get('deliverable_id') or ''), safe='')}"
    out["links"] = {"deliverable": path, "html": path + "?format=html"}
    out["status"] = d.get("status")
    return out


def render(d: dict[str, Any], fmt: Format) -> tuple[bytes, str]:
    """The deliverable in ``fmt`` (``json`` indented for people), with its media type."""
    if fmt == "json":
        body = to_json_bytes(d, indent=True)
    else:
        body = (render_html(d) if fmt == "html" else render_markdown(d)).encode()
    return body, MEDIA_TYPES[fmt]


def _line(kind: str | None, item: dict[str, Any], text: Callable[[Any], str] = str) -> str:
    title = text(item.get("title") or item.get("item_id"))
    if kind == "cart":
        return f"{item['quantity']} × {title} — {item['line_total']:.2f}"
    if kind == "digest":
        return f"**{title}** — {text(item.get('summary') or '')}".rstrip(" —")
    creator = item.get("creator")
    return f"{title} ({text(creator)})" if creator else str(title)


def _md(value: Any) -> str:
    """Text for Markdown: HTML escaped (a Markdown viewer renders raw HTML), on one line (a newline
    in a title must not start a heading or a list of its own)."""
    return escape(" ".join(str(value).split()), quote=False)


def render_markdown(d: dict[str, Any]) -> str:
    """The deliverable as Markdown: title, summary, the items, why, and its status (every text
    HTML-escaped).

    >>> render_markdown({"title": "<script>x</script>"}).splitlines()[0]
    '# &lt;script&gt;x&lt;/script&gt;'
    """
    content = d.get("content") or {}
    kind = content.get("kind")
    lines = [f"# {_md(d.get('title', ''))}", "", _md(d.get("summary") or ""), ""]
    for number, item in enumerate(content.get("items", []), 1):
        lines.append(f"{number}. {_line(kind, item, _md)}")
    if kind == "cart":
        lines += ["", f"**Total: {content['total']:.2f} {_md(content.get('currency', ''))}**"]
    lines += ["", f"*Why this:* {_md(d.get('why', ''))}"]
    if d.get("status"):
        lines.append(f"*Status:* {_md(_status_of(d))}")
    return "\n".join(lines).strip() + "\n"


def _status_of(d: Mapping[str, Any]) -> str:
    return status_text(str(d["status"]), d.get("error"), main_action(d))


def render_html(d: dict[str, Any]) -> str:
    """The deliverable as a small standalone HTML document (every value escaped)."""
    content = d.get("content") or {}
    kind = content.get("kind")
    items = content.get("items", [])
    if kind == "cart":
        rows = "".join(
            f"<tr><td>{escape(str(i.get('title')))}</td><td>{i['quantity']}</td><td>{i['unit_price']:.2f}</td>"
            f"<td>{i['line_total']:.2f}</td></tr>"
            for i in items
        )
        body = (
            "<table><thead><tr><th>Item</th><th>Qty</th><th>Unit</th><th>Line</th></tr></thead>"
            f"<tbody>{rows}</tbody><tfoot><tr><td colspan=3>Total</td>"
            f"<td>{content['total']:.2f} {escape(str(content.get('currency', '')))}</td></tr></tfoot></table>"
        )
    elif kind == "digest":
        body = (
            "<ol>"
            + "".join(
                f"<li><strong>{escape(str(i.get('title')))}</strong><p>{escape(str(i.get('summary') or ''))}</p></li>"
                for i in items
            )
            + "</ol>"
        )
    else:
        body = "<ol>" + "".join(f"<li>{escape(_line(kind, i))}</li>" for i in items) + "</ol>"
    title = escape(str(d.get("title", "")))
    status = f'<p class="status"><strong>{escape(_status_of(d))}</strong></p>' if d.get("status") else ""
    # '<', '>' and '&' only occur inside JSON strings, where their \u escapes mean the same.
    record = to_json({k: d[k] for k in PUBLISHED if k in d})
    record = record.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title></head><body>'
        f"<h1>{title}</h1>{status}<p>{escape(str(d.get('summary') or ''))}</p>{body}"
        f"<p><em>Why this:</em> {escape(str(d.get('why', '')))}</p>"
        f'<script type="application/json" id="orchestrion-deliverable">{record}</script></body></html>'
    )
