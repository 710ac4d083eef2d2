"""The job state machine.

::

      requested ──────────────┐
        │                     ▼
        │            awaiting-confirmation
        ▼                     │
      dispatched ◀────────────┘
        │
        ▼
      running ──▶ completed | failed | timed-out | cancelled

(the terminal states are reachable from every earlier active state where it
makes sense; see :data:`TRANSITIONS`). An illegal move raises
:class:`IllegalTransition`, which names the current state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mloop.contracts.payloads import (
    DataWindow,
)
from mloop.retrain_scheduler.domain.errors import IllegalTransition
from mloop.retrain_scheduler.domain.instants import as_utc
from mloop.retrain_scheduler.domain.policy import DataWait, RetrainPolicy

__all__ = [
    "ACTIVE_STATES",
    "INITIAL_STATES",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "DeliveryState",
    "Job",
    "JobPlan",
    "JobState",
    "check_transition",
    "in_flight",
    "is_timed_out",
    "new_job",
]


# --------------------------------------------------------------------------- jobs


class JobState(StrEnum):
    REQUESTED = "requested"
    AWAITING_CONFIRMATION = "awaiting-confirmation"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed-out"
    CANCELLED = "cancelled"


S = JobState
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    # A confirmed job waiting out quiet hours goes back to `requested`.
    S.REQUESTED: frozenset({S.DISPATCHED, S.FAILED, S.CANCELLED}),
    S.AWAITING_CONFIRMATION: frozenset({S.REQUESTED, S.DISPATCHED, S.CANCELLED}),
    # A pipeline may report completion without ever reporting `running`.
    S.DISPATCHED: frozenset({S.RUNNING, S.COMPLETED, S.FAILED, S.TIMED_OUT, S.CANCELLED}),
    S.RUNNING: frozenset({S.COMPLETED, S.FAILED, S.TIMED_OUT, S.CANCELLED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.TIMED_OUT: frozenset(),
    S.CANCELLED: frozenset(),
}
TERMINAL_STATES: frozenset[JobState] = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
ACTIVE_STATES: frozenset[JobState] = frozenset(TRANSITIONS) - TERMINAL_STATES
INITIAL_STATES: frozenset[JobState] = frozenset({S.REQUESTED, S.AWAITING_CONFIRMATION})

DeliveryState = Literal["none", "pending", "delivered", "gave-up"]


@dataclass(frozen=True)
class JobPlan:
    """A job to create."""

    model: str
    trigger: str
    trigger_event_ids: tuple[str, ...]
    first_signal_at: datetime
    data_window: DataWindow
    initial_state: JobState
    dispatch_not_before: datetime | None = None
    base_version: str | None = None
    subjects: frozenset[str] = frozenset()
    data_wait: DataWait | None = None



def check_transition(job_id: str, current: JobState, target: JobState) -> None:
    """Raise :class:`IllegalTransition` unless ``current`` → ``target`` is allowed."""
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(job_id, current.value, target.value)


class Job(BaseModel):
    """A retraining job and everything that happened to it."""

    model_config = ConfigDict(frozen=True)

    id: str
    model: str
    state: JobState
    seq: int = 0
    trigger: str
    trigger_event_ids: list[str] = Field(default_factory=list)
    first_signal_at: datetime
    data_window: DataWindow
    policy: dict[str, Any] = Field(default_factory=dict)
    base_version: str | None = None
    requested_by: str
    requested_at: datetime
    updated_at: datetime
    dispatch_not_before: datetime | None = None
    confirmed_by: str | None = None
    confirmed_at: datetime | None = None
    dispatched_at: datetime | None = None
    running_at: datetime | None = None
    finished_at: datetime | None = None
    produced_version: str | None = None
    registered_at: datetime | None = None
    detail: str = ""
    delivery: DeliveryState = "none"
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    subjects: list[str] = Field(default_factory=list)
    data_wait: DataWait | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def transition(self, target: JobState, at: datetime, detail: str = "") -> Job:
        """This job moved to ``target`` at ``at``: ``seq`` and the matching timestamp advance.

        Raises :class:`IllegalTransition` naming the current state.
        """
        check_transition(self.id, self.state, target)
        at = as_utc(at)
        update: dict[str, Any] = {
            "state": target,
            "seq": self.seq + 1,
            "updated_at": at,
            "detail": detail,
        }
        if target is S.DISPATCHED:
            update["dispatched_at"] = at
        elif target is S.RUNNING:
            update["running_at"] = at
        elif target in TERMINAL_STATES:
            update["finished_at"] = at
        if self.delivery == "pending" and (target is S.RUNNING or target in TERMINAL_STATES):
            # A pipeline that reports on the job evidently has it; a job that
            # ended otherwise has nothing left to deliver.
            reached = target in (S.RUNNING, S.COMPLETED)
            update["delivery"] = "delivered" if reached else "gave-up"
            update["next_attempt_at"] = None
        return self.model_copy(update=update)


def new_job(job_id: str, plan: JobPlan, policy: RetrainPolicy, *, requested_by: str, at: datetime) -> Job:
    """The job a :class:`CreateJob` or :class:`DeferJob` plan describes, at ``seq`` 0."""
    at = as_utc(at)
    return Job(
        id=job_id,
        model=plan.model,
        state=plan.initial_state,
        trigger=plan.trigger,
        trigger_event_ids=list(plan.trigger_event_ids),
        first_signal_at=plan.first_signal_at,
        data_window=plan.data_window,
        policy=policy.snapshot(),
        requested_by=requested_by,
        requested_at=at,
        updated_at=at,
        dispatch_not_before=plan.dispatch_not_before,
        base_version=plan.base_version,
        subjects=sorted(plan.subjects),
        data_wait=plan.data_wait,
    )


def in_flight(
    job: Job,
    policy: RetrainPolicy,
    rollout_finished: bool,
    now: datetime,
) -> bool:
    """Whether ``job`` is still under way for the storm guard: active, or it
    completed with a version that has not finished its rollout, for at most
    ``storm_guard.in_flight_max`` after it ended (a version nobody promotes
    must not block retraining forever)."""
    if job.active:
        return True
    if job.state is not S.COMPLETED or job.produced_version is None:
        return False
    if not policy.storm_guard.until_rollout or rollout_finished:
        return False
    ended = job.finished_at or job.updated_at
    return as_utc(now) < as_utc(ended) + policy.storm_guard.in_flight_max


def is_timed_out(job: Job, timeout: timedelta, now: datetime) -> bool:
    """Whether a dispatched or running job has exceeded ``timeout`` since dispatch."""
    if job.state not in (S.DISPATCHED, S.RUNNING) or job.dispatched_at is None:
        return False
    return as_utc(now) >= as_utc(job.dispatched_at) + timeout
