"""HTTP: policies, jobs, the training pipelines' callback and cycle-time statistics.

Every write runs in one transaction with the events it publishes (through
:class:`~mloop.retrain_scheduler.service.Scheduler`). Domain errors become
problem documents: an unknown job is a 404, an illegal transition a 409
naming the job's state, an invalid policy a 422 naming the field.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

import asyncpg
import pydantic
from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field

from mloop.contracts.payloads import DataWindow, ModelName
from mloop.retrain_scheduler import store
from mloop.retrain_scheduler.domain import (
    CycleTime,
    IllegalTransition,
    Job,
    JobLimitReached,
    JobNotFound,
    JobState,
    RetrainPolicy,
    effective_policy,
    summarise_cycles,
)
from mloop.retrain_scheduler.service import Scheduler
from mloop.runtime.auth import Principal, require_roles
from mloop.runtime.deps import ModelNames, ModelPath, Operator, Pool, SettingReason, Viewer
from mloop.runtime.history import SettingChangeOut
from mloop.runtime.pagination import Page, keyset_after, keyset_token
from mloop.runtime.problems import Conflict, NotFound, UnprocessableEntity

__all__ = ["router"]

router = APIRouter()
Confirmer = Annotated[Principal, Depends(require_roles("reviewer", "operator"))]
Pipeline = Annotated[Principal, Depends(require_roles("service"))]
JobId = Annotated[str, Path(min_length=1, max_length=64)]


def get_scheduler(request: Request) -> Scheduler:
    scheduler: Scheduler = request.app.state.scheduler
    return scheduler


Sched = Annotated[Scheduler, Depends(get_scheduler)]


@contextlib.contextmanager
def _as_problems() -> Iterator[None]:
    try:
        yield
    except JobNotFound as exc:
        raise NotFound(str(exc)) from exc
    except IllegalTransition as exc:
        raise Conflict(str(exc), state=exc.current, requested=exc.target) from exc
    except JobLimitReached as exc:
        raise Conflict(f"the model already has its maximum of active jobs: {exc}") from exc


def _invalid_policy(exc: pydantic.ValidationError, prefix: str = "body") -> UnprocessableEntity:
    errors = [
        {
            "field": ".".join([prefix, *(str(p) for p in e["loc"])]),
            "message": e["msg"],
            "type": e["type"],
        }
        for e in exc.errors()
    ]
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return UnprocessableEntity(f"{first['field']}: {first['message']}{more}", errors=errors)


def _check_secret(request: Request, policy: RetrainPolicy) -> None:
    ref = policy.webhook.secret_ref if policy.webhook else None
    if ref is not None and ref not in request.app.state.settings.webhook_secrets:
        field = "body.webhook.secret_ref"
        raise UnprocessableEntity(
            f"{field}: no signing secret named {ref!r} is configured",
            errors=[{"field": field, "message": "unknown secret", "type": "value_error"}],
        )


# --------------------------------------------------------------------------- policies

Reason = SettingReason
PageToken = Annotated[str | None, Query(max_length=512)]
PageSize = Annotated[int, Query(ge=1, le=500)]


class PolicyOverride(BaseModel):
    model: str
    override: dict[str, Any]
    effective: RetrainPolicy
    updated_by: str | None = None
    updated_at: datetime | None = None


class PolicyList(BaseModel):
    default: RetrainPolicy
    overrides: list[PolicyOverride]


@router.get("/policies", tags=["policies"], summary="The default policy and every override")
async def list_policies(_: Viewer, pool: Pool) -> PolicyList:
    async with pool.acquire() as conn:
        default = await store.load_default_policy(conn)
        rows = await store.list_overrides(conn)
    overrides = []
    for r in rows:
        try:
            effective = effective_policy(default, r["body"])
        except pydantic.ValidationError:
            effective = default
        overrides.append(
            PolicyOverride(
                model=r["model"],
                override=r["body"],
                effective=effective,
                updated_by=r["updated_by"],
                updated_at=r["updated_at"],
            )
        )
    return PolicyList(default=default, overrides=overrides)


@router.get("/default-policy", tags=["policies"], summary="The policy of models without an override")
async def get_default_policy(_: Viewer, pool: Pool) -> RetrainPolicy:
    async with pool.acquire() as conn:
        return await store.load_default_policy(conn)


@router.put("/default-policy", tags=["policies"], summary="Replace the default policy")
async def put_default_policy(
    request: Request,
    principal: Operator,
    pool: Pool,
    sched: Sched,
    body: Annotated[dict[str, Any], Body()],
    reason: Reason = None,
) -> RetrainPolicy:
    """Every change is kept (``/default-policy/history``) and published as ``retrain-policy-changed``."""
    try:
        policy = RetrainPolicy.model_validate(body)
    except pydantic.ValidationError as exc:
        raise _invalid_policy(exc) from exc
    _check_secret(request, policy)
    async with pool.acquire() as conn, conn.transaction():
        for r in await store.list_overrides(conn):
            try:
                effective_policy(policy, r["body"])
            except pydantic.ValidationError as exc:
                raise _invalid_policy(exc, prefix=f"override of {r['model']}") from exc
        await sched.change_policy(conn, None, policy.snapshot(), actor=principal.actor, reason=reason)
    return policy


@router.get("/models/{model}/policy", tags=["policies"], summary="A model's override and effective policy")
async def get_model_policy(model: ModelPath, _: Viewer, pool: Pool) -> PolicyOverride:
    async with pool.acquire() as conn:
        default = await store.load_default_policy(conn)
        override = await store.load_override(conn, model)
    return PolicyOverride(model=model, override=override or {}, effective=effective_policy(default, override))


@router.put(
    "/models/{model}/policy",
    tags=["policies"],
    summary="Set a model's override: any subset of the policy's fields, merged over the default",
)
async def put_model_policy(
    request: Request,
    model: ModelPath,
    principal: Operator,
    pool: Pool,
    sched: Sched,
    body: Annotated[dict[str, Any], Body(examples=[{"cooldown": "PT2H", "consecutive_signals": 2}])],
    reason: Reason = None,
) -> PolicyOverride:
    """Every change is kept (``/models/{model}/policy/history``) and published as ``retrain-policy-changed``."""
    async with pool.acquire() as conn, conn.transaction():
        default = await store.load_default_policy(conn)
        try:
            effective = effective_policy(default, body)
        except pydantic.ValidationError as exc:
            raise _invalid_policy(exc) from exc
        _check_secret(request, effective)
        now = sched.clock()
        await sched.change_policy(conn, model, body, actor=principal.actor, reason=reason)
    return PolicyOverride(model=model, override=body, effective=effective, updated_by=principal.actor, updated_at=now)


@router.delete(
    "/models/{model}/policy",
    tags=["policies"],
    status_code=204,
    summary="Remove a model's override; the default applies again",
)
async def delete_model_policy(
    model: ModelPath, principal: Operator, pool: Pool, sched: Sched, reason: Reason = None
) -> Response:
    async with pool.acquire() as conn, conn.transaction():
        if await sched.change_policy(conn, model, None, actor=principal.actor, reason=reason) is None:
            raise NotFound(f"model {model!r} has no policy override")
    return Response(status_code=204)


class PolicyChangeOut(SettingChangeOut):
    value_field: ClassVar[str] = "policy"
    policy: dict[str, Any] | None = Field(description="The stored policy after; null when it was removed")


async def _history(pool: asyncpg.Pool, key: str, page_token: str | None, page_size: int) -> Page[PolicyChangeOut]:
    changes, token = await store.POLICY_HISTORY.page(pool, key, page_token, page_size)
    return Page[PolicyChangeOut](items=[PolicyChangeOut.of(c) for c in changes], next_page_token=token)


@router.get("/default-policy/history", tags=["policies"], summary="Every change of the default policy, oldest first")
async def default_policy_history(
    _: Viewer, pool: Pool, page_token: PageToken = None, page_size: PageSize = 50
) -> Page[PolicyChangeOut]:
    return await _history(pool, store.DEFAULT_POLICY_KEY, page_token, page_size)


@router.get("/models/{model}/policy/history", tags=["policies"],
            summary="Every change of a model's override, oldest first")
async def model_policy_history(
    model: ModelPath, _: Viewer, pool: Pool, page_token: PageToken = None, page_size: PageSize = 50
) -> Page[PolicyChangeOut]:
    return await _history(pool, model, page_token, page_size)


# --------------------------------------------------------------------------- jobs


class TransitionView(BaseModel):
    seq: int
    state: str
    previous_state: str | None
    at: datetime
    actor: str
    detail: str


# The ignore is for type checks that cannot resolve the package's own modules.
class JobDetail(Job):  # type: ignore[misc,unused-ignore]
    transitions: list[TransitionView] = Field(default_factory=list)
    cycle_time: CycleTime | None = None


class TriggerRequest(BaseModel):
    model: ModelName
    reason: str = Field(default="", max_length=1000)
    data_window: DataWindow | None = Field(default=None, description="Defaults to the policy's window up to now")


class CancelRequest(BaseModel):
    reason: str = Field(default="", max_length=1000)


class StatusReport(BaseModel):
    """What a training pipeline reports about a job it runs."""

    state: Literal["running", "completed", "failed"]
    version: str | None = Field(default=None, max_length=64, description="The version it registered")
    reason: str = Field(default="", max_length=2000)
    metrics: dict[str, float] = Field(default_factory=dict)


async def _detail(conn: asyncpg.Connection, job_id: str) -> JobDetail:
    job = await store.get_job(conn, job_id)
    transitions = await store.transitions(conn, job_id)
    return JobDetail(
        **job.model_dump(),
        transitions=[TransitionView.model_validate(t, from_attributes=True) for t in transitions],
        cycle_time=await store.cycle_of(conn, job_id),
    )


@router.get("/jobs", tags=["jobs"], summary="Jobs, newest first")
async def list_jobs(
    _: Viewer,
    pool: Pool,
    model: ModelNames = None,
    latest_per_model: Annotated[bool, Query(description="Only each model's newest job (a page of models' last "
                                                        "retrain)")] = False,
    state: Annotated[list[JobState] | None, Query()] = None,
    trigger: str | None = None,
    requested_after: datetime | None = None,
    requested_before: datetime | None = None,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
    page_token: str | None = None,
) -> Page[Job]:
    after = keyset_after(page_token)
    flt = store.JobFilter(
        models=tuple(model or ()),
        latest_per_model=latest_per_model,
        states=tuple(s.value for s in state or ()),
        trigger=trigger,
        requested_after=requested_after,
        requested_before=requested_before,
    )
    async with pool.acquire() as conn:
        jobs = await store.list_jobs(conn, flt, after=after, limit=page_size + 1)
    next_token = None
    if len(jobs) > page_size:
        jobs = jobs[:page_size]
        last = jobs[-1]
        next_token = keyset_token(last.requested_at, last.id)
    return Page[Job](items=jobs, next_page_token=next_token)


@router.post("/jobs", tags=["jobs"], status_code=201, summary="Ask for a retraining now (manual trigger)")
async def trigger_job(body: TriggerRequest, principal: Operator, pool: Pool, sched: Sched) -> Job:
    with _as_problems():
        async with pool.acquire() as conn, conn.transaction():
            return await sched.trigger(
                conn, body.model, principal.actor, data_window=body.data_window, reason=body.reason
            )


@router.get("/jobs/{job_id}", tags=["jobs"], summary="A job with its transitions and cycle time")
async def get_job(job_id: JobId, _: Viewer, pool: Pool) -> JobDetail:
    with _as_problems():
        async with pool.acquire() as conn:
            return await _detail(conn, job_id)


@router.post("/jobs/{job_id}/confirm", tags=["jobs"], summary="Confirm a job that awaits confirmation")
async def confirm_job(job_id: JobId, principal: Confirmer, pool: Pool, sched: Sched) -> Job:
    with _as_problems():
        async with pool.acquire() as conn, conn.transaction():
            return await sched.confirm(conn, job_id, principal.actor)


@router.post("/jobs/{job_id}/cancel", tags=["jobs"], summary="Cancel a job that has not ended")
async def cancel_job(
    job_id: JobId,
    principal: Operator,
    pool: Pool,
    sched: Sched,
    body: Annotated[CancelRequest | None, Body()] = None,
) -> Job:
    with _as_problems():
        async with pool.acquire() as conn, conn.transaction():
            return await sched.cancel(conn, job_id, principal.actor, body.reason if body else "")


@router.post(
    "/jobs/{job_id}/status",
    tags=["jobs"],
    summary="Callback for training pipelines: the job is running, completed or failed",
)
async def report_status(job_id: JobId, body: StatusReport, principal: Pipeline, pool: Pool, sched: Sched) -> Job:
    with _as_problems():
        async with pool.acquire() as conn, conn.transaction():
            return await sched.report(
                conn,
                job_id,
                JobState(body.state),
                principal.actor,
                version=body.version,
                reason=body.reason,
                metrics=body.metrics,
            )


class SignalView(BaseModel):
    event_id: str
    model: str
    kind: str
    severity: str
    at: datetime
    received_at: datetime
    decision: str = Field(description="created, deferred, counted, joined (a job in flight) or ignored")
    reason: str
    pending: bool = Field(description="Counts toward the current streak")
    job_id: str | None
    version: str | None = Field(default=None, description="The version the signal is about")
    subjects: list[str] = Field(
        default_factory=list, description="What it is about: drifted features, metric, violation kinds"
    )


@router.get("/signals", tags=["jobs"], summary="Monitoring signals and what the policy made of them")
async def list_signals(
    _: Viewer,
    pool: Pool,
    model: str | None = None,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
    page_token: str | None = None,
) -> Page[SignalView]:
    after = keyset_after(page_token)
    async with pool.acquire() as conn:
        rows = await store.list_signals(conn, model, after=after, limit=page_size + 1)
    next_token = None
    if len(rows) > page_size:
        rows = rows[:page_size]
        last = rows[-1]
        next_token = keyset_token(last["received_at"], last["event_id"])
    return Page[SignalView](items=[SignalView(**dict(r)) for r in rows], next_page_token=next_token)


# --------------------------------------------------------------------------- cycle time


class CycleStatsView(BaseModel):
    model: str
    cycles: int = Field(description="Recorded cycles, whatever their outcome")
    p50_seconds: float | None = Field(description="Median over cycles that reached production")
    p90_seconds: float | None
    mean_shares: dict[str, float] = Field(description="Average share of each step of the cycle")
    sla_breaches: int
    cycles_by_outcome: dict[str, int]
    jobs_by_state: dict[str, int]


@router.get("/cycle-times", tags=["cycle time"], summary="Recorded cycle times, newest first")
async def list_cycle_times(
    _: Viewer,
    pool: Pool,
    model: str | None = None,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
    page_token: str | None = None,
) -> Page[CycleTime]:
    after = keyset_after(page_token)
    async with pool.acquire() as conn:
        found = await store.cycles(conn, model, after=after, limit=page_size + 1)
    next_token = None
    if len(found) > page_size:
        found = found[:page_size]
        next_token = keyset_token(found[-1].finished_at, found[-1].job_id)
    return Page[CycleTime](items=found, next_page_token=next_token)


async def _stats(conn: asyncpg.Connection, model: str, since: datetime | None) -> CycleStatsView:
    recorded = await store.cycles(conn, model, since=since)
    stats = summarise_cycles(model, recorded, await store.jobs_by_state(conn, model))
    return CycleStatsView.model_validate(stats, from_attributes=True)


@router.get(
    "/models/{model}/cycle-time",
    tags=["cycle time"],
    summary="p50/p90 cycle time, step shares, SLA breaches and jobs by outcome of a model",
)
async def model_cycle_stats(model: ModelPath, _: Viewer, pool: Pool, since: datetime | None = None) -> CycleStatsView:
    async with pool.acquire() as conn:
        return await _stats(conn, model, since)


@router.get("/cycle-time", tags=["cycle time"], summary="Cycle-time statistics of every model")
async def all_cycle_stats(_: Viewer, pool: Pool, since: datetime | None = None) -> list[CycleStatsView]:
    async with pool.acquire() as conn:
        return [await _stats(conn, m, since) for m in await store.cycle_models(conn)]
