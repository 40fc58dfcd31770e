"""Pipeline runs over HTTP: list and inspect the run ledger, submit a run (admin keys).

``POST /v1/runs`` claims the run before answering (``202`` with the run; ``200`` when the key
is already done; ``409`` when it is running) and does the work in a background thread of the
server, which holds the database; the CLI follows it with ``GET /v1/runs/{run_id}``.

``POST /v1/deliver`` and ``POST /v1/train/ranker`` do what ``orchestrion deliver`` and
``orchestrion train ranker`` do, answering when done: the CLI sends them while the server holds
the database.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Security
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from orchestrion.api.auth import BasicDoc, BearerDoc
from orchestrion.api.context import ApiContext, IsoDate, UserId
from orchestrion.api.receipts import ApiError, Refusal
from orchestrion.delivery.deliverables import first_deliverables
from orchestrion.delivery.stage import deliver
from orchestrion.errors import NotFoundError, RetryableError, RunInProgressError, UsageError
from orchestrion.planning.llm import planning_for
from orchestrion.ranking import RankerConfig
from orchestrion.runs import records as runs
from orchestrion.runs.scheduler import RunRequest, RunService
from orchestrion.store import Store, utcnow
from orchestrion.training.fits import train_ranker as fit

__all__ = ["DeliverBody", "RankerBody", "RunBody", "build_router"]


class RunBody(BaseModel):
    """The run to start."""

    model_config = ConfigDict(extra="forbid")

    pipeline: Literal["daily", "retrain"] = "daily"
    date: IsoDate = Field(
        description="The day, YYYY-MM-DD: today or earlier (at most one day ahead of UTC, for time zones ahead of "
        "it); a later day is refused (400), since its run would use what is known now and then count as done."
    )
    users: list[UserId] | None = Field(
        None, min_length=1, description="daily only: just these users (their own shard of the key)."
    )
    force: bool = Field(False, strict=True, description="Start a new attempt of a key that already succeeded.")

    @model_validator(mode="after")
    def _users_only_daily(self) -> RunBody:
        if self.pipeline != "daily" and self.users is not None:
            raise ValueError("users is for daily runs only (a retrain trains on everyone); leave it out")
        return self


class DeliverBody(BaseModel):
    """The day to deliver (``orchestrion deliver``)."""

    model_config = ConfigDict(extra="forbid")

    date: IsoDate
    users: list[UserId] | None = Field(
        None, min_length=1, description="Only these users (default: every active user)."
    )
    llm: bool = Field(True, strict=True, description="Plan with the configured LLM endpoint when there is one.")


class RankerBody(BaseModel):
    """The goal ranker to fit (``orchestrion train ranker``)."""

    model_config = ConfigDict(extra="forbid")

    model: Literal["logistic", "hgb"] = "logistic"


class RunInfo(BaseModel):
    """One run of the ledger."""

    model_config = ConfigDict(extra="allow")

    run_id: str
    pipeline: str
    partition: str
    shard: str
    attempt: int
    status: str
    users_total: int
    users_done: int
    counts: dict[str, Any]
    error: str | None


def _aware(run: runs.Run) -> dict[str, Any]:
    body = run.as_dict()
    for name in ("started_at", "heartbeat_at", "finished_at"):
        value = getattr(run, name)
        body[name] = None if value is None else value.replace(tzinfo=UTC).isoformat()
    return body


def build_router(ctx: ApiContext, service: RunService) -> APIRouter:
    """The run routes of one app; runs execute in ``service``."""
    documented = [Security(BearerDoc()), Security(BasicDoc())]
    admin = Depends(ctx.auth.require("admin"))
    refusals: dict[int | str, dict[str, Any]] = {
        401: {"model": Refusal, "description": "Missing, unknown or revoked API key."},
        403: {"model": Refusal, "description": "Not an admin key."},
        422: {"model": Refusal, "description": "Invalid query or body fields."},
    }
    router = APIRouter(tags=["runs"])

    def read(work: Any) -> Any:
        cursor = ctx.store.cursor()
        try:
            return work(cursor)
        finally:
            cursor.close()

    @router.get("/v1/runs", response_model=list[RunInfo], dependencies=[*documented, admin], responses=refusals)
    async def list_runs(
        pipeline: str | None = None,
        status: str | None = None,
        since: IsoDate | None = None,
        limit: int = Query(50, ge=1, le=1000),
    ) -> Any:
        """The latest runs first (admin)."""
        found = await run_in_threadpool(
            read, lambda con: runs.list_runs(con, pipeline=pipeline, status=status, since=since, limit=limit)
        )
        return [_aware(r) for r in found]

    @router.get(
        "/v1/runs/{run_id}",
        response_model=RunInfo,
        dependencies=[*documented, admin],
        responses={**refusals, 404: {"model": Refusal, "description": "No such run."}},
    )
    async def get_run(run_id: str) -> Any:
        """One run with its progress, counts and error (admin)."""
        try:
            return _aware(await run_in_threadpool(read, lambda con: runs.get_run(con, run_id)))
        except NotFoundError as exc:
            raise ApiError(404, str(exc)) from exc

    @router.post(
        "/v1/runs",
        response_model=RunInfo,
        status_code=202,
        dependencies=[*documented, admin],
        responses={
            **refusals,
            400: {"model": Refusal, "description": "An unusable run request."},
            200: {"model": RunInfo, "description": "The key is already done."},
            409: {"model": Refusal, "description": "The key is already running."},
            422: {"model": Refusal, "description": "Invalid field values."},
        },
    )
    async def submit(body: RunBody) -> Any:
        """Start (or resume) a run in the background; follow it with ``GET /v1/runs/{run_id}`` (admin)."""
        request = RunRequest(body.pipeline, body.date, users=body.users, force=body.force, trigger="api")
        started = datetime.now(UTC).replace(tzinfo=None)
        try:
            run = await run_in_threadpool(service.submit, request)
        except RunInProgressError as exc:
            raise ApiError(409, str(exc)) from exc
        except UsageError as exc:
            raise ApiError(400, str(exc)) from exc
        fresh = run.status == "running" and run.heartbeat_at >= started
        return JSONResponse(_aware(run), status_code=202 if fresh else 200)

    def own_store(work: Any) -> Any:
        store = Store(ctx.store.cursor(), None)  # path None: closing it leaves the server's store alone
        try:
            return work(store)
        except NotFoundError as exc:
            raise ApiError(404, str(exc)) from exc
        except UsageError as exc:
            raise ApiError(400, str(exc)) from exc
        except RetryableError as exc:
            raise ApiError(503, str(exc), {"Retry-After": "1"}) from exc
        finally:
            store.con.close()

    work_refusals: dict[int | str, dict[str, Any]] = {
        **refusals,
        400: {"model": Refusal, "description": "An unusable request (the message says why)."},
        404: {"model": Refusal, "description": "Something the request names does not exist."},
        503: {"model": Refusal, "description": "Busy or briefly unavailable: send it again."},
    }

    @router.post("/v1/deliver", dependencies=[*documented, admin], responses=work_refusals)
    async def deliver_day(body: DeliverBody) -> Any:
        """Deliver a day, as ``orchestrion deliver`` does; answers with its summary and the first 20
        deliverables of the day once done (admin). Running a day again does nothing new."""
        def work(store: Store) -> dict[str, Any]:
            planning = planning_for(ctx.settings, "deliver", llm=body.llm)
            try:
                result = deliver(store, ctx.settings, body.date, body.users, now=utcnow(), planner=planning.planner,
                                 concurrency=planning.concurrency, critic=planning.critic)
            finally:
                planning.close()
            return {"summary": result.as_dict(), "deliverables": first_deliverables(store.con, body.date, body.users)}

        return json.loads(json.dumps(await run_in_threadpool(own_store, work), default=str))

    @router.post("/v1/train/ranker", dependencies=[*documented, admin], responses=work_refusals)
    async def train_ranker(body: RankerBody) -> Any:
        """Fit a goal ranker on all feedback and promote it only if it beats the current policy
        off-policy, as ``orchestrion train ranker`` does (admin)."""
        def work(store: Store) -> dict[str, Any]:
            config = RankerConfig.model_validate({"model": body.model})
            return fit(store, ctx.settings.models_path, now=utcnow(), config=config).as_dict()

        return json.loads(json.dumps(await run_in_threadpool(own_store, work), default=str))

    return router

