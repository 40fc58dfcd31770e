"""Counts of what the store holds: the figures behind ``orchestrion stats``."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import duckdb

__all__ = ["store_stats"]


def store_stats(con: duckdb.DuckDBPyConnection, known_types: Collection[str] | None = None) -> dict[str, Any]:
    """Totals and breakdowns by domain and type; with ``known_types`` (see
    :func:`orchestrion.ingest.segment_spec.known_types`), also the events of other types, which no goal
    reads (``unmapped``: a ``[[mappings]]`` table can turn them into canonical events).

    >>> from orchestrion.store import Store
    >>> store_stats(Store.open(":memory:").con)["events"]
    0
    """
    totals = con.execute(
        "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM failed_events), "
        "(SELECT count(DISTINCT user_id) FROM events), (SELECT count(*) FROM items), "
        "(SELECT min(ts) FROM events), (SELECT max(ts) FROM events)"
    ).fetchone()
    assert totals is not None
    by_domain = con.execute(
        "SELECT coalesce(domain, '(none)'), count(*) FROM events GROUP BY ALL ORDER BY 2 DESC"
    ).fetchall()
    by_type = con.execute(
        "SELECT coalesce(domain, '(none)'), type, count(*) FROM events GROUP BY ALL ORDER BY 3 DESC"
    ).fetchall()
    items_by_domain = con.execute(
        "SELECT coalesce(domain, '(none)'), count(*) FROM items GROUP BY ALL ORDER BY 2 DESC"
    ).fetchall()
    failed_by_source = con.execute(
        "SELECT source, count(*) FROM failed_events GROUP BY ALL ORDER BY 2 DESC"
    ).fetchall()
    unmapped = {} if known_types is None else {
        key: n for key, n in ((f"{domain}/{kind}", n) for domain, kind, n in by_type if kind not in known_types)
    }
    return {
        "events": totals[0],
        "failed_events": totals[1],
        "users": totals[2],
        "items": totals[3],
        "first_event": None if totals[4] is None else totals[4].isoformat(),
        "last_event": None if totals[5] is None else totals[5].isoformat(),
        "events_by_domain": dict(by_domain),
        "events_by_type": {f"{domain}/{kind}": n for domain, kind, n in by_type},
        "items_by_domain": dict(items_by_domain),
        "failed_by_source": dict(failed_by_source),
        **({} if known_types is None else {"unmapped": sum(unmapped.values()), "unmapped_by_type": unmapped}),
    }
