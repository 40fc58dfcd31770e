""""Why this" and titles written for what is finally delivered.

A goal's words are written by its template for the candidate's items. Between the proposal and the
delivery the items may change — the order cap cuts a cart, an item thumbed down or out of stock is
left out, a re-plan (or an LLM planner) keeps only some — and a sentence such as "these are the 8
items you buy most often" would no longer hold. So each template keeps, in the goal's ``details``,
what its sentence is written from (a cart's per-line facts; a list's sentence with the marks of
:data:`orchestrion.goals.base.MARKS`), and :func:`final_words` writes the title and "why this" again
for the final content. A chosen goal's note (an exploration pick, the person's own thumbs; see
:func:`orchestrion.ranking.scoring.with_notes`) leads the sentence.

>>> content = {"kind": "watchlist", "items": [{"item_id": "m2", "title": "Brazil"}]}
>>> details = {"words": "these {count} are the closest, starting with {first_two}"}
>>> note = "A new suggestion we're trying for you"
>>> final_words("watchlist", "for_you", "Movie night", "why", details, content, note=note)
('Movie night', "A new suggestion we're trying for you. This 1 is the closest, starting with Brazil")
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from orchestrion.goals.base import list_words
from orchestrion.goals.reorder import cart_words

__all__ = ["final_words", "full_stop", "with_note"]


def full_stop(text: str) -> str:
    """``text`` as a sentence: a full stop, unless it already ends one ("… SKULL." stays one stop).

    >>> full_stop("Tea"), full_stop("LUNCH BAG BLACK SKULL."), full_stop("Why?")
    ('Tea.', 'LUNCH BAG BLACK SKULL.', 'Why?')
    """
    text = text.rstrip()
    return text if text.endswith((".", "!", "?", "…")) else text + "."


def with_note(note: str | None, why: str) -> str:
    """``why`` led by ``note`` when there is one.

    >>> with_note("Because you liked 2 of the 3 digests you rated", "you read 40 articles")
    'Because you liked 2 of the 3 digests you rated. You read 40 articles'
    """
    if not note:
        return why
    return f"{note}. {why[:1].upper()}{why[1:]}"


def final_words(
    template: str,
    variant: str,
    title: str,
    why: str,
    details: Mapping[str, Any],
    content: Mapping[str, Any] | None,
    *,
    note: str | None = None,
) -> tuple[str, str]:
    """The title and "why this" for ``content`` as delivered (module docstring).

    ``why`` is the goal's own (with its note, if any); it stands when the template keeps nothing to
    write it again from (a plugin) or nothing was built.
    """
    items = list((content or {}).get("items") or [])
    if not items:
        return title, why
    if (content or {}).get("kind") == "cart" and "lines" in details:
        facts = {str(line["item_id"]): line for line in details.get("lines") or []}
        lines = [{**{k: v for k, v in facts.get(str(i["item_id"]), {}).items() if k in _FACTS}, **i} for i in items]
        as_of = details.get("as_of")
        when = datetime.fromisoformat(as_of) if isinstance(as_of, str) else datetime.min
        user_since = details.get("user_since")
        title, body = cart_words(variant, lines, float(user_since) if user_since is not None else None, when)
        return title, with_note(note, body)
    words = details.get("words")
    if isinstance(words, str):
        return title, with_note(note, list_words(words, items, details.get("known") or ()))
    return title, why


_FACTS = ("n", "gap", "since", "first")
