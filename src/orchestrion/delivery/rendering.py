"""A deliverable rendered for people: Markdown and HTML (JSON is the record itself).

The HTML page is the web card's design made to travel: one self-contained document with its
styles inline (``style`` attributes, one ``<style>`` in the head for phones), no external asset
and no executable script, so it reads the same opened from the outbox folder or sent as an email.
It says for whom and for which day it was made, what state it is in (:func:`status_text`), the
items and total, "why this", and links to the web page to approve or reject it and to give it a
thumb (absolute, from ``ORCHESTRION_PUBLIC_URL``; see :attr:`Settings.web_url`). Money is written
by :func:`orchestrion.money.format_money`; every text from the data is HTML-escaped.

The HTML carries the published part of the record too (:data:`PUBLISHED`: no plan, trace or
review), as JSON in ``<script type="application/json" id="orchestrion-deliverable">`` — a data
block that browsers and mail readers never run — so one outbox file serves a person and a program.

>>> d = {"deliverable_id": "d_1", "user_id": "u1", "date": "2024-05-02", "title": "Reorder", "summary": "2 items",
...      "why": "you buy these", "status": "awaiting_approval", "content": {"kind": "cart", "items": [
...      {"title": "Tea", "quantity": 2, "unit_price": 1.5, "line_total": 3.0}], "total": 3.0, "currency": "GBP"}}
>>> print(render_markdown(d).splitlines()[0])
# Reorder
>>> page = render_html(d, base_url="https://o.example")
>>> ">Tea</td>" in page, "£3.00" in page, 'href="https://o.example/approvals"' in page
(True, True, True)
>>> render(d, "json")[1]
'application/json'
>>> "</script><b>" in render_html({**d, "title": "</script><b>"})  # no way out of the page's JSON
False
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from html import escape
from typing import Any, Final
from urllib.parse import quote

from orchestrion.config import Format
from orchestrion.encoding import to_json, to_json_bytes
from orchestrion.money import format_money

__all__ = [
    "MEDIA_TYPES", "PUBLISHED", "main_action", "published", "render", "render_html", "render_markdown", "status_text",
    "with_status_text",
]

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


_KINDS: Final = {"reorder": "Reorder cart", "watchlist": "Movie list", "digest": "Reading digest", "playlist": "Mix"}


def kind_words(template: object) -> str:
    """What a goal's template is called where people read it (its registry name is not a word
    people use): the web card, the outbox page.

    >>> kind_words("watchlist"), kind_words("wine_club")
    ('Movie list', 'Wine club')
    """
    return _KINDS.get(str(template), str(template).replace("_", " ").capitalize())


NOTHING_TO_DO: Final = "nothing worth doing: "
"""How a cancelled deliverable's stored reason starts when its plan found nothing to do (the
operator's record); people are told the reason itself."""
_DONE: Final = {"place_order": "Ordered", "publish": "Sent"}
_NOT: Final = {"place_order": "Not ordered", "publish": "Not sent"}


def status_text(
    status: str, reason: str | None, action: str | None, *, confirming: bool = False,
    runs_at: dt.datetime | None = None,
) -> str:
    """A deliverable's status in plain words for the person it is for (the one place that says it).

    ``reason`` is the deliverable's stored reason (why it was not done, cancelled or failed);
    ``action`` what it is about (:func:`main_action`): ``place_order`` or ``publish``.

    >>> status_text("not_done", "this month's spending limit is reached", "place_order")
    "Not ordered: this month's spending limit is reached"
    >>> status_text("delivered", None, "place_order"), status_text("awaiting_approval", None, "place_order")
    ('Ordered', 'Waiting for your approval')
    >>> status_text("failed", "webhook http://10.0.0.5/hook answered 500 (attempt 3 of 3)", "publish")
    'Not finished: something went wrong on our side while making or sending it'
    >>> status_text("awaiting_approval", None, "place_order", confirming=True)
    'Approved: waiting for the shop to confirm the order'
    >>> status_text("cancelled", "nothing worth doing: nothing is due", "place_order")
    'Cancelled: nothing is due'
    >>> status_text("awaiting_approval", None, "place_order", runs_at=dt.datetime(2011, 11, 16, 14, 37))
    'Will be ordered at 14:37 UTC on 16 November 2011 unless you cancel it'

    ``runs_at``: when a ``notify`` action runs on its own unless cancelled (it needs no approval).
    """
    why = " ".join(str(reason).split()) if reason else ""
    done = _DONE.get(action or "", "Delivered")
    if status == "delivered":
        return done
    if status == "not_done":
        return f"{_NOT.get(action or '', 'Not done')}: {why}" if why else _NOT.get(action or "", "Not done")
    if status == "awaiting_approval":
        if runs_at is not None and not confirming:
            when = f"{runs_at:%H:%M} UTC on {runs_at.day} {runs_at:%B %Y}"
            return f"Will be {done.lower()} at {when} unless you cancel it"
        if confirming:
            return ("Approved: waiting for the shop to confirm the order" if action == "place_order"
                    else "Approved: being carried out")
        return "Waiting for your approval"
    if status in ("proposed", "planned"):
        return "Being prepared"
    if status == "rejected":
        return "Rejected: nothing was done" if action != "place_order" else "Rejected: nothing was ordered"
    if status == "cancelled":  # the planner's "nothing worth doing: <reason>" is said as its reason
        why = why.removeprefix(NOTHING_TO_DO)
        return f"Cancelled: {why}" if why else "Cancelled"
    if status == "failed":  # part of it may have happened (an order placed, then a webhook down)
        # The stored reason is for the operator (addresses, attempts, the ledger's words): a person
        # is told what it means for them, and the operator's record keeps the rest.
        return "Not finished: something went wrong on our side while making or sending it"
    return status.replace("_", " ").capitalize()


def with_status_text(day: dict[str, Any]) -> dict[str, Any]:
    """A person's day of goals (``proposals.day_goals``) with each chosen goal's deliverable status in
    words (``status_text``: "Not ordered: …", never a bare internal status).

    >>> with_status_text({"chosen": [{"status": "not_done", "status_reason": "over the limit",
    ...     "template": "reorder"}]})["chosen"][0]["status_text"]
    'Not ordered: over the limit'
    """
    for goal in day.get("chosen", []):
        status = goal.get("status")
        goal["status_text"] = (
            None if status is None else status_text(
                str(status), goal.get("status_reason"), main_action(goal), confirming=bool(goal.get("confirming")),
                runs_at=goal.get("runs_at"),
            )
        )
    return day


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


def render(
    d: dict[str, Any], fmt: Format, *, locale: str | None = None, base_url: str | None = None
) -> tuple[bytes, str]:
    """The deliverable in ``fmt`` (``json`` indented for people), with its media type; money as
    ``locale`` writes it, links to the web page under ``base_url``."""
    if fmt == "json":
        body = to_json_bytes(d, indent=True)
    elif fmt == "html":
        body = render_html(d, locale=locale, base_url=base_url).encode()
    else:
        body = render_markdown(d, locale=locale, base_url=base_url).encode()
    return body, MEDIA_TYPES[fmt]


def _day(value: Any) -> str:
    """``2011-11-01`` as ``Tuesday 1 November 2011`` (as it came when it is not a date)."""
    try:
        day = value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
    except ValueError:
        return str(value or "")
    return f"{day:%A} {day.day} {day:%B %Y}"


def _status(d: Mapping[str, Any]) -> str:
    said = d.get("status_text")  # as the record was read (it knows an approval still being confirmed)
    return str(said) if said else status_text(str(d["status"]), d.get("error"), main_action(d))


def _links(d: Mapping[str, Any], base_url: str | None) -> dict[str, str]:
    """Where a person acts on the deliverable: the web page (thumbs) and, while an action waits, approvals."""
    if not base_url:
        return {}
    base = base_url.rstrip("/")
    page = f"{base}/deliverables/{quote(str(d.get('deliverable_id') or ''), safe='')}"
    links = {
        "page": page,
        "thumbs": f"{page}#thumbs-{quote(str(d.get('deliverable_id') or ''), safe='')}",
        "day": f"{base}/?date={quote(str(d.get('date') or ''), safe='')}",
    }
    if d.get("status") == "awaiting_approval":
        links["approve"] = f"{base}/approvals"
    return links


def _line(kind: str | None, item: dict[str, Any], text: Callable[[Any], str], currency: str | None,
          locale: str | None) -> str:
    title = text(item.get("title") or item.get("item_id"))
    if kind == "cart":
        return f"{item['quantity']} × {title} — {format_money(item['line_total'], currency, locale)}"
    if kind == "digest":
        return f"**{title}** — {text(item.get('summary') or '')}".rstrip(" —")
    creator = item.get("creator")
    return f"{title} ({text(creator)})" if creator else str(title)


def _md(value: Any) -> str:
    """Text for Markdown: HTML escaped (a Markdown viewer renders raw HTML), on one line (a newline
    in a title must not start a heading or a list of its own)."""
    return escape(" ".join(str(value).split()), quote=False)


def render_markdown(d: dict[str, Any], *, locale: str | None = None, base_url: str | None = None) -> str:
    """The deliverable as Markdown: title, for whom and when, status, summary, the items, total,
    why, and the links to act on it (every text HTML-escaped).

    >>> render_markdown({"title": "<script>x</script>"}).splitlines()[0]
    '# &lt;script&gt;x&lt;/script&gt;'
    """
    content = d.get("content") or {}
    kind = content.get("kind")
    currency = content.get("currency")
    lines = [f"# {_md(d.get('title', ''))}", ""]
    if d.get("user_id") or d.get("date"):
        lines += [f"For {_md(d.get('user_id') or 'you')} · {_md(_day(d.get('date')))}", ""]
    if d.get("status"):
        lines += [f"*Status:* {_md(_status(d))}", ""]
    lines += [_md(d.get("summary") or ""), ""]
    for number, item in enumerate(content.get("items", []), 1):
        lines.append(f"{number}. {_line(kind, item, _md, currency, locale)}")
    if kind == "cart":
        lines += ["", f"**Total: {_md(format_money(content['total'], currency, locale))}**"]
    lines += ["", f"*Why this:* {_md(d.get('why', ''))}"]
    links = _links(d, base_url)
    if links:
        lines.append("")
        if "approve" in links:
            lines.append(f"[Approve or reject]({links['approve']})")
        lines.append(f"[👍 I like this · 👎 Not for me]({links['thumbs']}) — [open it on the web page]"
                     f"({links['page']})")
    return "\n".join(lines).strip() + "\n"


# The web card's palette (src/orchestrion/web/static/style.css), WCAG AA contrast.
_INK, _MUTED, _PAPER, _WASH, _LINE, _ACCENT = "#1b1f24", "#4a5260", "#ffffff", "#f3f5f8", "#c9d0da", "#0b5cad"
_BADGES: Final = {  # status → (background, ink)
    "awaiting_approval": ("#fff4d6", "#6b4e00"),
    "delivered": ("#dff3e4", "#1d6b35"),
    "failed": ("#fbe3e4", "#a3222a"),
    "not_done": ("#fbe3e4", "#a3222a"),
}
_FONT = "system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif"
_WRAP = "overflow-wrap:anywhere;word-break:break-word"
_TH = f"text-align:left;padding:6px 8px;border-bottom:1px solid {_LINE};font-weight:600"
_TD = f"text-align:left;padding:6px 8px;border-bottom:1px solid {_LINE};vertical-align:top;{_WRAP}"
_NUM = "text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums"
_BUTTON = ("display:inline-block;padding:8px 14px;border-radius:6px;text-decoration:none;font-weight:600;"
           "margin:0 8px 8px 0;border:1px solid " + _ACCENT)
# Phones: a little less padding (the styles above are inline; this is all the head carries).
_HEAD_STYLE = "@media (max-width:480px){.o-outer{padding:8px!important}.o-card{padding:12px!important}}"


def _cart(items: list[dict[str, Any]], content: Mapping[str, Any], locale: str | None) -> str:
    currency = content.get("currency")
    rows = "".join(
        f'<tr><td style="{_TD}">{escape(str(i.get("title") or i.get("item_id")))}</td>'
        f'<td style="{_TD};{_NUM}">{escape(str(i.get("quantity")))}</td>'
        f'<td style="{_TD};{_NUM}">{escape(format_money(i.get("unit_price"), currency, locale))}</td>'
        f'<td style="{_TD};{_NUM}">{escape(format_money(i.get("line_total"), currency, locale))}</td></tr>'
        for i in items
    )
    return (
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" '
        'style="border-collapse:collapse;width:100%;margin:8px 0;font-size:15px">'
        f'<thead><tr><th style="{_TH}">Item</th><th style="{_TH};{_NUM}">Qty</th>'
        f'<th style="{_TH};{_NUM}">Price</th><th style="{_TH};{_NUM}">Amount</th></tr></thead>'
        f"<tbody>{rows}</tbody><tfoot><tr><td colspan=\"3\" style=\"{_TD};font-weight:700\">Total</td>"
        f'<td style="{_TD};{_NUM};font-weight:700">{escape(format_money(content.get("total"), currency, locale))}'
        "</td></tr></tfoot></table>"
    )


def _list(kind: str | None, items: list[dict[str, Any]]) -> str:
    li = f"padding:6px 0;border-bottom:1px solid {_WASH};{_WRAP}"
    entries = []
    for i in items:
        title = escape(str(i.get("title") or i.get("item_id") or ""))
        detail = i.get("summary") if kind == "digest" else i.get("creator")
        extra = f'<br><span style="color:{_MUTED};font-size:14px">{escape(str(detail))}</span>' if detail else ""
        entries.append(f'<li style="{li}"><strong>{title}</strong>{extra}</li>')
    return f'<ol style="padding-left:24px;margin:8px 0">{"".join(entries)}</ol>'


def _button(href: str, label: str, *, primary: bool) -> str:
    colours = f"background:{_ACCENT};color:#ffffff" if primary else f"background:{_PAPER};color:{_ACCENT}"
    return f'<a href="{escape(href)}" style="{_BUTTON};{colours}">{label}</a>'


def render_html(d: dict[str, Any], *, locale: str | None = None, base_url: str | None = None) -> str:
    """The deliverable as a standalone, email-safe HTML page in the web card's design (every value
    escaped, styles inline, no external asset)."""
    content = d.get("content") or {}
    kind = content.get("kind")
    items = content.get("items", [])
    body = _cart(items, content, locale) if kind == "cart" else _list(kind, items)
    title = escape(str(d.get("title", "")))
    status = str(d.get("status") or "")
    background, ink = _BADGES.get(status, (_WASH, _MUTED))
    badge = (
        f'<span class="status" style="display:inline-block;padding:2px 8px;border-radius:6px;background:{background};'
        f'color:{ink};font-weight:600;text-transform:none;letter-spacing:0">{escape(_status(d))}</span>'
        if status else ""
    )
    template = escape(kind_words(d.get("template") or kind or ""))
    meta = " · ".join(
        escape(part) for part in (f"For {d['user_id']}" if d.get("user_id") else "", _day(d.get("date"))) if part
    )
    links = _links(d, base_url)
    acts = ""
    if "approve" in links:
        acts += _button(links["approve"], "Approve or reject", primary=True)
    if links:
        acts += _button(links["thumbs"], '<span aria-hidden="true">👍</span> I like this', primary=False)
        acts += _button(links["thumbs"], '<span aria-hidden="true">👎</span> Not for me', primary=False)
    actions = f'<p style="margin:16px 0 0">{acts}</p>' if acts else ""
    footer = (
        f'<p style="margin:12px 4px;color:{_MUTED};font-size:13px;{_WRAP}">Open it on '
        f'<a href="{escape(links["page"])}" style="color:{_ACCENT}">the web page</a>; what was decided not '
        f'to do that day is on <a href="{escape(links["day"])}" style="color:{_ACCENT}">your page for the day</a>.</p>'
        if links else ""
    )
    why = escape(str(d.get("why") or ""))
    why_block = (
        f'<h2 style="font-size:15px;margin:16px 0 4px;color:{_INK}">Why this</h2>'
        f'<p style="margin:0;{_WRAP}">{why}</p>' if why else ""
    )
    # '<', '>' and '&' only occur inside JSON strings, where their \u escapes mean the same.
    record = to_json({k: d[k] for k in PUBLISHED if k in d})
    record = record.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{_HEAD_STYLE}</style></head>"
        f'<body style="margin:0;padding:0;background:{_WASH};color:{_INK};font-family:{_FONT};line-height:1.45">'
        f'<table role="presentation" width="100%" cellpadding="0" cellspacing="0" '
        f'style="border-collapse:collapse;width:100%;background:{_WASH}"><tr>'
        f'<td class="o-outer" style="padding:24px 16px">'
        '<div style="max-width:640px;margin:0 auto">'
        f'<p style="margin:0 4px 8px;font-weight:700;color:{_INK}">orchestrion</p>'
        f'<div class="o-card" style="background:{_PAPER};border:1px solid {_LINE};border-radius:10px;'
        'padding:16px 20px">'
        f'<p style="margin:0;color:{_MUTED};font-size:13px;text-transform:uppercase;letter-spacing:.04em">'
        f"{template} · {badge}</p>"
        f'<h1 style="font-size:20px;margin:4px 0 4px;{_WRAP}">{title}</h1>'
        f'<p style="margin:0 0 8px;color:{_MUTED};font-size:14px;{_WRAP}">{meta}</p>'
        f'<p style="margin:4px 0 8px;{_WRAP}">{escape(str(d.get("summary") or ""))}</p>'
        f"{body}{why_block}{actions}</div>{footer}</div></td></tr></table>"
        f'<script type="application/json" id="orchestrion-deliverable">{record}</script></body></html>'
    )
