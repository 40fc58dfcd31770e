"""What the API answers: a receipt for every body it read, a refusal for every body it did not.

* **200 + Receipt**: the body was read; every event in it is accounted for, by index, as accepted
  (stored now), a duplicate (its ``event_id`` was stored before, ever) or rejected (kept in
  ``failed_events`` with the reason). A receipt is sent only after the commit.
* **4xx/5xx + Refusal**: nothing from the body was stored (``stored`` is always false), so the
  client may fix the request (4xx) or simply send it again (503).

The pydantic models document the shapes in the OpenAPI schema; the hot path serialises plain
dicts with orjson instead of validating its own output.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

import orjson
from pydantic import BaseModel, Field
from starlette.responses import Response

from orchestrion.ingest.events import Rejection, WriteResult

__all__ = [
    "ApiError",
    "Receipt",
    "ReceiptError",
    "Refusal",
    "receipt_response",
    "refusal_response",
]

JSON: Final = "application/json"


class ReceiptError(BaseModel):
    """One event that was not stored in ``events``."""

    index: int = Field(description="Position of the event in the body (0-based).")
    event_id: str | None = Field(description="Its event_id (or messageId) when one could be read.")
    reason: str = Field(description="Why it was rejected and how to fix it.")


class Receipt(BaseModel):
    """The account of a body that was read, sent after the transaction holding it committed."""

    accepted: int = Field(description="Stored now.")
    duplicates: int = Field(description="Already stored earlier (same event_id); not stored again.")
    rejected: int = Field(description="Invalid; kept in failed_events with the reason, see errors.")
    errors: list[ReceiptError] = Field(description="One entry per rejected event.")


class Refusal(BaseModel):
    """A request that stored nothing: fix it (4xx) or resend it unchanged (503)."""

    detail: str = Field(description="What was wrong and how to fix it.")
    stored: Literal[False] = Field(False, description="Always false: nothing from this body was stored.")
    accepted: Literal[0] = 0
    duplicates: Literal[0] = 0
    rejected: Literal[0] = 0
    errors: list[ReceiptError] = Field(default_factory=list)


class ApiError(Exception):
    """Raised inside a route to answer with a :class:`Refusal` (see ``api.create_api``)."""

    def __init__(self, status: int, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})


def receipt_response(result: WriteResult, rejections: Iterable[Rejection]) -> Response:
    """A 200 with the receipt of ``result``; ``rejections`` fill ``errors`` in body order."""
    errors = sorted(rejections, key=lambda r: r.index)
    body = {
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "rejected": result.rejected,
        "errors": [{"index": r.index, "event_id": r.event_id, "reason": r.reason} for r in errors],
    }
    return Response(orjson.dumps(body), status_code=200, media_type=JSON)


def refusal_response(status: int, detail: str, headers: Mapping[str, str] | None = None) -> Response:
    """A non-200 answer saying nothing was stored."""
    body: dict[str, Any] = {
        "detail": detail, "stored": False, "accepted": 0, "duplicates": 0, "rejected": 0, "errors": [],
    }
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=dict(headers or {}))
