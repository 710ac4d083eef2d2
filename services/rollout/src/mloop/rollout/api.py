"""HTTP: rollouts with their history and gate evidence, operator actions, plan defaults per model.

Every write runs in one transaction with the events it publishes (through
:class:`~mloop.rollout.service.RolloutService`). Domain errors become problem
documents: an unknown model or rollout is a 404, an action the rollout's
phase does not allow a 409 naming the phase, an invalid plan a 422 naming
the field.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from mloop.contracts.payloads import GateResult, ModelName, Route, VersionId
from mloop.rollout import store
from mloop.rollout.domain.machine import ACTIONS, Action, IllegalTransition, Phase, Rollout, routes_for
from mloop.rollout.domain.plan import RolloutPlan, Strategy
from mloop.rollout.service import OpenRolloutExists, RolloutNotFound, RolloutRefused, RolloutService
from mloop.runtime.deps import ModelNames, ModelPath, Operator, Pool, SettingReason, Viewer
from mloop.runtime.history import SettingChangeOut
from mloop.runtime.pagination import Page, fetch_page, keyset_after, keyset_token
from mloop.runtime.problems import Conflict, Forbidden, NotFound

__all__ = ["router"]

router = APIRouter()
RolloutId = Annotated[str, Path(min_length=1, max_length=64)]


def get_service(request: Request) -> RolloutService:
    service: RolloutService = request.app.state.rollouts
    return service


Service = Annotated[RolloutService, Depends(get_service)]


@contextlib.contextmanager
def _as_problems() -> Iterator[None]:
    try:
        yield
    except RolloutNotFound as exc:
        raise NotFound(str(exc)) from exc
    except IllegalTransition as exc:
        raise Conflict(str(exc), phase=exc.phase, action=exc.action) from exc
    except OpenRolloutExists as exc:
        raise Conflict(str(exc), model=exc.model) from exc
    except RolloutRefused as exc:
        problem = Conflict if exc.status == 409 else Forbidden
        raise problem(str(exc), promotion_id=exc.promotion_id) from exc


# --------------------------------------------------------------------------- representations


class RolloutOut(BaseModel):
    id: str
    model: str
    candidate: str
    baseline: str | None
    strategy: Strategy
    phase: Phase
    paused_from: Phase | None
    step_index: int
    steps: list[float] = Field(description="Candidate weights of the traffic steps; full traffic follows them")
    weight: float = Field(description="The candidate's serving weight now")
    routes: list[Route] = Field(description="The routing table this rollout's phase implies")
    attempt: int
    failed_checks: int
    failure_threshold: int
    reason: str
    actor: str
    skipped_steps: list[float]
    gates: list[GateResult] = Field(description="Gate results of the latest analysis")
    created_at: datetime
    phase_started_at: datetime | None
    last_analysis_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, r: Rollout) -> RolloutOut:
        return cls(
            id=r.id,
            model=r.model,
            candidate=r.candidate,
            baseline=r.baseline,
            strategy=r.plan.strategy,
            phase=r.phase,
            paused_from=r.paused_from,
            step_index=r.step_index,
            steps=[s.weight for s in r.plan.traffic_steps],
            weight=r.weight,
            routes=routes_for(r),
            attempt=r.attempt,
            failed_checks=r.failed_checks,
            failure_threshold=r.plan.failure_threshold,
            reason=r.reason,
            actor=r.actor,
            skipped_steps=r.skipped_steps,
            gates=r.last_gates,
            created_at=r.created_at,
            phase_started_at=r.phase_started_at,
            last_analysis_at=r.last_analysis_at,
            finished_at=r.finished_at,
        )


class HistoryEntry(BaseModel):
    at: datetime
    kind: str = Field(description="The topic of a published event, or 'analysis'", examples=["rollout-advanced"])
    actor: str | None
    data: dict[str, Any]


class RolloutDetail(RolloutOut):
    plan: RolloutPlan
    history: list[HistoryEntry] = Field(description="Published events and traffic splits, oldest first")
    analyses: list[HistoryEntry] = Field(description="The latest analyses with their gate evidence, oldest first")


class CreateRollout(BaseModel):
    model: ModelName
    candidate: VersionId
    promotion_id: str = Field(
        min_length=1, max_length=128,
        description="The approved promotion request (as consumed from model-promoted) this rollout carries out; "
        "it must name this model and candidate and have no running or completed rollout",
        examples=["0193a5c4-7e1f-7a2b-9c3d-4e5f6a7b8c9d"])
    baseline: VersionId | None = Field(
        default=None, description="The version to compare with; defaults to (and must be) the promotion's "
        "previous champion")
    plan: RolloutPlan | None = Field(default=None, description="Defaults to the model's plan")
    start: bool = True
    reason: str = Field(default="", max_length=500)


class ActionRequest(BaseModel):
    reason: str = Field(default="", max_length=500)


class PlanOut(BaseModel):
    model: str
    source: Literal["model", "built-in"]
    plan: RolloutPlan
    updated_by: str | None = None
    updated_at: datetime | None = None


class TrafficOut(BaseModel):
    model: str
    seq: int
    rollout_id: str | None
    routes: list[Route]
    updated_at: datetime


# --------------------------------------------------------------------------- rollouts


@router.get("/rollouts", tags=["rollouts"], summary="Rollouts, newest first")
async def list_rollouts(
    _: Viewer,
    pool: Pool,
    model: ModelNames = None,
    phase: Phase | None = None,
    latest_per_model: Annotated[bool, Query(description="Only each model's newest rollout (whether one runs)")] = False,
    page_token: str | None = None,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Page[RolloutOut]:
    before = keyset_after(page_token)  # newest first: the page after a row holds the rows before it
    async with pool.acquire() as conn:
        rows, token = await fetch_page(
            lambda limit: store.list_rollouts(conn, model=model, phase=phase, before=before, limit=limit,
                                              latest_per_model=latest_per_model),
            page_size, lambda last: keyset_token(last.created_at, last.id))
    return Page[RolloutOut](items=[RolloutOut.of(r) for r in rows], next_page_token=token)


@router.post(
    "/rollouts",
    tags=["rollouts"],
    status_code=201,
    summary="Start a rollout again for an approved promotion (model-promoted starts the first one by itself)",
    responses={403: {"description": "No approved promotion for this model and candidate"},
               409: {"description": "The promotion is already used, or the model has an open rollout"}},
)
async def create_rollout(body: CreateRollout, who: Operator, pool: Pool, service: Service) -> RolloutOut:
    """Only for a promotion approved by a second person; nothing is published when refused."""
    with _as_problems():
        async with pool.acquire() as conn, conn.transaction():
            r = await service.create_for_promotion(
                conn,
                promotion_id=body.promotion_id,
                model=body.model,
                candidate=body.candidate,
                baseline=body.baseline,
                plan=body.plan,
                actor=who.actor,
                reason=body.reason,
                begin=body.start,
            )
    return RolloutOut.of(r)


@router.get("/rollouts/{rollout_id}", tags=["rollouts"], summary="A rollout with its history and gate evidence")
async def get_rollout(
    rollout_id: RolloutId,
    _: Viewer,
    pool: Pool,
    analyses: Annotated[int, Query(ge=0, le=500, description="How many of the latest analyses")] = 20,
) -> RolloutDetail:
    async with pool.acquire() as conn:
        r = await store.get_rollout(conn, rollout_id)
        if r is None:
            raise NotFound(f"no rollout {rollout_id}")
        events = await store.history(conn, rollout_id, kinds=_PUBLISHED, limit=1000)
        checks = await store.history(conn, rollout_id, kinds=["analysis"], limit=analyses) if analyses else []
    return RolloutDetail(
        **RolloutOut.of(r).model_dump(),
        plan=r.plan,
        history=[HistoryEntry(**h) for h in events],
        analyses=[HistoryEntry(**h) for h in checks],
    )


_PUBLISHED = [
    "traffic-split-changed",
    "rollout-started",
    "rollout-advanced",
    "rollout-paused",
    "rollout-resumed",
    "rollout-completed",
    "rollout-rolled-back",
]


@router.post(
    "/rollouts/{rollout_id}/{action}",
    tags=["rollouts"],
    summary="An operator action: start, pause, resume, abort, promote-step, promote-full or retry",
    responses={404: {"description": "No such rollout"}, 409: {"description": "Not allowed in the current phase"}},
)
async def rollout_action(
    rollout_id: RolloutId,
    action: Action,
    who: Operator,
    pool: Pool,
    service: Service,
    body: Annotated[ActionRequest | None, Body()] = None,
) -> RolloutOut:
    assert action in ACTIONS
    with _as_problems():
        async with pool.acquire() as conn, conn.transaction():
            r = await service.act(conn, rollout_id, action, actor=who.actor, reason=body.reason if body else "")
    return RolloutOut.of(r)


# --------------------------------------------------------------------------- models: plans and traffic


async def _require_known(conn: Any, model: str) -> None:
    if not await store.model_known(conn, model):
        raise NotFound(f"no model {model} is known to the rollout service")


@router.get("/models/{model}/plan", tags=["plans"], summary="The model's rollout plan (its own or the built-in)")
async def get_plan(model: ModelPath, _: Viewer, pool: Pool) -> PlanOut:
    async with pool.acquire() as conn:
        stored = await store.get_plan(conn, model)
        if stored is None:
            await _require_known(conn, model)
            return PlanOut(model=model, source="built-in", plan=RolloutPlan())
    return PlanOut(
        model=model, source="model", plan=stored.plan, updated_by=stored.updated_by, updated_at=stored.updated_at
    )


@router.put("/models/{model}/plan", tags=["plans"], summary="Set the model's default rollout plan")
async def put_plan(
    model: ModelPath, plan: RolloutPlan, who: Operator, pool: Pool, service: Service, reason: SettingReason = None
) -> PlanOut:
    """Every change is kept (``/models/{model}/plan/history``) and published as ``rollout-plan-changed``."""
    async with pool.acquire() as conn, conn.transaction():
        stored, _ = await service.put_plan(conn, model, plan, actor=who.actor, reason=reason)
    return PlanOut(
        model=model, source="model", plan=stored.plan, updated_by=stored.updated_by, updated_at=stored.updated_at
    )


class PlanChangeOut(SettingChangeOut):
    value_field: ClassVar[str] = "plan"
    plan: dict[str, Any] = Field(description="The plan set")


@router.get("/models/{model}/plan/history", tags=["plans"], summary="Every change of the model's plan, oldest first")
async def plan_history(
    model: ModelPath,
    _: Viewer,
    pool: Pool,
    page_token: Annotated[str | None, Query(max_length=512)] = None,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Page[PlanChangeOut]:
    async with pool.acquire() as conn:
        changes, token = await store.PLAN_HISTORY.page(conn, model, page_token, page_size)
        if not changes and page_token is None:
            await _require_known(conn, model)
    return Page[PlanChangeOut](items=[PlanChangeOut.of(c) for c in changes], next_page_token=token)


@router.get("/default-plan", tags=["plans"], summary="The built-in plan of a strategy")
async def default_plan(_: Viewer, strategy: Strategy = "canary") -> RolloutPlan:
    return RolloutPlan(strategy=strategy, shadow_duration_s=600.0 if strategy == "shadow" else 0.0)


@router.get("/models/{model}/traffic", tags=["traffic"], summary="The routing table in force for the model")
async def get_traffic(model: ModelPath, _: Viewer, pool: Pool) -> TrafficOut:
    async with pool.acquire() as conn:
        row = await store.traffic_split(conn, model)
    if row is None:
        raise NotFound(f"no traffic split is known for model {model}")
    return TrafficOut(
        model=row.model, seq=row.seq, rollout_id=row.rollout_id, routes=row.routes, updated_at=row.updated_at
    )
