"""The deliverable record: one typed model for what crosses rooms (the API, the web page, the CLI,
the channels and the renderers).

:func:`orchestrion.delivery.deliverables.get_deliverable`, ``feed`` and ``decide`` return it;
:meth:`Deliverable.as_dict` is its JSON form, the record the API answers with (the same keys, in
the same order, as before it was typed) and the renderers and channels take.

>>> from datetime import datetime
>>> at = datetime(2024, 1, 2, 6, 0)
>>> d = Deliverable("d_1", "g_1", "u1", "2024-01-02", "reorder", "Reorder", None, ["i1"], "delivered",
...                 None, None, None, "offline", None, 0, 0.0, None, 1, None, at, at, "you buy these", "Delivered")
>>> d.as_dict()["status"], list(d.as_dict())[-2:]
('delivered', ['status_text', 'actions'])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

__all__ = ["Deliverable", "Status"]

Status = Literal[
    "proposed", "planned", "awaiting_approval", "delivered", "not_done", "cancelled", "rejected", "failed"
]
"""A deliverable's lifecycle: ``proposed → planned → awaiting_approval → delivered | not_done |
cancelled | rejected | failed`` (see :mod:`orchestrion.delivery.deliverables`)."""


@dataclass(frozen=True)
class Deliverable:
    """A deliverable as stored, with its goal's "why this", its status in words and the actions
    waiting for (or decided by) a person. JSON columns come decoded (``content`` holds the results
    of its effects under ``effects``); ``date`` is the ISO day."""

    deliverable_id: str
    goal_id: str
    user_id: str
    date: str
    template: str
    title: str
    summary: str | None
    items: list[str] | None
    status: Status
    content: dict[str, Any] | None
    plan: dict[str, Any] | None
    trace: list[dict[str, Any]] | None
    planner: str | None
    fallback: str | None
    tokens: int | None
    cost: float | None
    review: dict[str, Any] | None
    attempts: int | None
    error: str | None
    created_at: datetime
    updated_at: datetime | None
    why: str | None
    status_text: str
    actions: tuple[dict[str, Any], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data (``actions`` a list), in field order: what the API answers."""
        record = asdict(self)
        record["actions"] = list(record["actions"])
        return record
