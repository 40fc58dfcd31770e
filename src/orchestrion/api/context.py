"""What every route needs, handed to the route builders instead of living in module globals."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Final, TypeVar

import duckdb
from pydantic import BeforeValidator, Field, WithJsonSchema

from orchestrion.api.auth import Authenticator
from orchestrion.api.receipts import ApiError
from orchestrion.config import Settings
from orchestrion.errors import NotFoundError, RetryableError, UsageError
from orchestrion.ingest.events import WriteResult
from orchestrion.ingest.writer import EventWrite, Writer
from orchestrion.store import Store, utcnow

__all__ = ["FIRST_DAY", "LAST_DAY", "ApiContext", "IsoDate"]

T = TypeVar("T")


FIRST_DAY: Final = date(1900, 1, 1)
LAST_DAY: Final = date(8999, 12, 31)
"""The days a date parameter may name: a day's windows (30 days of history, a week of recent
orders) must stay inside the calendar, which ends at years 1 and 9999."""


def _strict_day(value: object) -> object:
    """Only ``YYYY-MM-DD`` is a date here: pydantic alone reads ``0`` (or ``"0"``) as 1970-01-01."""
    if isinstance(value, date):
        day = value
    elif isinstance(value, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a date that exists; write it YYYY-MM-DD") from None
    else:
        raise ValueError(f"{str(value)[:40]!r} is not a date written YYYY-MM-DD")
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"{day.isoformat()} is outside {FIRST_DAY.isoformat()} to {LAST_DAY.isoformat()}")
    return day


IsoDate = Annotated[
    date,
    BeforeValidator(_strict_day),
    WithJsonSchema(
        {"type": "string", "format": "date", "pattern": r"^(19[0-9]{2}|[2-8][0-9]{3})-[0-9]{2}-[0-9]{2}$"}
    ),
]
"""A date parameter or field that must be written ``YYYY-MM-DD``."""

PRINTABLE: Final = r"^[^\x00-\x1f\x7f-\x9f]*$"
"""No control character (C0, DEL, C1), as ids are checked on ingestion."""

_ID_TEXT: Final = r"[^\x00-\x1f\x7f-\x9f]*"
USER_ID_PATTERN: Final = rf"^{_ID_TEXT}[^\s\x00-\x1f\x7f-\x9f]{_ID_TEXT}$"
UserId = Annotated[str, Field(min_length=1, max_length=256, pattern=USER_ID_PATTERN)]
"""A user id as events carry it: 1 to 256 characters, not only spaces, no control characters."""


@dataclass
class ApiContext:
    """The store, settings, the one writer and the key checker of one app."""

    store: Store
    settings: Settings
    writer: Writer
    auth: Authenticator
    clock: Callable[[], datetime] = utcnow
    """What "now" is for the pages (today's feed, cancel windows); tests hand in a fixed one."""

    async def write(self, work: Callable[[duckdb.DuckDBPyConnection], T], *, size: int = 1) -> T:
        """Run ``work`` through the group-commit writer; errors become refusals (nothing stored)."""
        return await _refusing(self.writer.run(work, size=size))

    async def write_events(
        self,
        events: EventWrite,
        then: Callable[[duckdb.DuckDBPyConnection], WriteResult] | None = None,
    ) -> WriteResult:
        """One request's events through the writer, merged with the other requests' events."""
        return await _refusing(self.writer.run_events(events, then))


async def _refusing(pending: Awaitable[T]) -> T:
    try:
        return await pending
    except RetryableError as exc:
        raise ApiError(503, str(exc), {"Retry-After": "1"}) from exc
    except NotFoundError as exc:
        raise ApiError(404, str(exc)) from exc
    except UsageError as exc:
        raise ApiError(400, str(exc)) from exc
