"""The operator's page: recent runs with status and timings, model versions with their
evaluation metrics, feedback rates per day as a chart, and a way into each user's feed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import duckdb
from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from orchestrion.delivery.feedback import thumbs_per_day
from orchestrion.proposals.record import busiest_users
from orchestrion.runs.records import Run, list_runs
from orchestrion.training.versions import ModelVersion, list_versions
from orchestrion.web.chart import line_chart
from orchestrion.web.context import WebContext

__all__ = ["FeedbackDay", "build_router", "feedback_rates", "recent_runs"]


@dataclass(frozen=True)
class FeedbackDay:
    """One delivery day: deliverables made, and how many got a thumb up or down (the latest one)."""

    date: date
    delivered: int
    up: int
    down: int

    @property
    def up_rate(self) -> float:
        return self.up / self.delivered if self.delivered else 0.0

    @property
    def down_rate(self) -> float:
        return self.down / self.delivered if self.delivered else 0.0


def feedback_rates(con: duckdb.DuckDBPyConnection, *, days: int = 60) -> list[FeedbackDay]:
    """Per delivery day (the last ``days`` that had deliverables): delivered, thumbed up, thumbed down."""
    return [FeedbackDay(*row) for row in reversed(thumbs_per_day(con, days))]


def recent_runs(con: duckdb.DuckDBPyConnection, *, limit: int = 30) -> list[Run]:
    """The latest runs of the run ledger (by partition, then start time)."""
    return list_runs(con, limit=limit)


def _users(con: duckdb.DuckDBPyConnection) -> list[tuple[str, int]]:
    return busiest_users(con, 50)


def _metrics(version: ModelVersion) -> list[tuple[str, str]]:
    """The headline numbers of a version's metadata, flattened one level and formatted."""
    metrics = version.metadata.get("metrics") or {}
    shown: list[tuple[str, str]] = []
    for name, value in metrics.items() if isinstance(metrics, dict) else []:
        if isinstance(value, dict):
            shown.extend((f"{name}.{k}", _fmt(v)) for k, v in value.items() if isinstance(v, int | float))
        elif isinstance(value, int | float):
            shown.append((name, _fmt(value)))
    return shown[:12]


def _fmt(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def build_router(web: WebContext) -> APIRouter:
    """The admin page of one app."""
    router = APIRouter(include_in_schema=False)

    @router.get("/admin")
    async def admin_page(request: Request) -> Response:
        session = await web.session(request)
        if session is None:
            return web.to_signin(request)
        if not session.is_admin:
            return web.error(request, session, 403, "The admin page needs an admin sign-in (an admin API key).")

        Found = tuple[list[Run], list[FeedbackDay], list[tuple[str, int]]]

        def work(con: duckdb.DuckDBPyConnection) -> Found:
            return recent_runs(con), feedback_rates(con), _users(con)

        runs, rates, users = await web.read(work)
        versions = await run_in_threadpool(list_versions, web.api.settings.models_path)
        chart = (
            line_chart(
                [d.date.strftime("%d %b") for d in rates],
                {"thumbs up / delivered": [d.up_rate for d in rates],
                 "thumbs down / delivered": [d.down_rate for d in rates]},
                title="Feedback rates per delivery day",
            )
            if rates
            else None
        )
        return web.render(
            request, "admin.html", session, runs=runs, rates=rates, chart=chart, users=users,
            versions=[(v, _metrics(v)) for v in reversed(versions)],
        )

    return router
