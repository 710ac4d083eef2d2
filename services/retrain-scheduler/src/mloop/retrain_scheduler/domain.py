"""Retraining decisions, the job state machine and cycle time — pure, no I/O.

Everything here is a function of data in, data out:

* :class:`RetrainPolicy` — policies as data: a default policy plus per-model
  overrides (:func:`effective_policy` merges them).
* :func:`decide` — what a monitoring signal means for a model right now:
  create a job, defer its dispatch past quiet hours, count the signal toward
  a streak, or ignore it (with the reason).
* :class:`Job` and :data:`TRANSITIONS` — the job lifecycle::

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
* :func:`measure_cycle` and :func:`summarise_cycles` — the loop's yardstick:
  from the first triggering signal to the rollout of the version a job
  produced, split into steps.

Errors::

    RetrainSchedulerError
    ├── IllegalTransition   a job cannot move from its state to the target
    ├── JobLimitReached     a model already has its maximum of active jobs
    └── JobNotFound         no job with that id (raised by the store)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Any, Literal, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator, model_validator

from mloop.contracts.payloads import (
    DataQualityViolated,
    DataWindow,
    DriftDetected,
    PerformanceDegraded,
    QualityViolation,
    Severity,
)

__all__ = [
    "ACTIVE_STATES",
    "INITIAL_STATES",
    "SEVERITY_RANK",
    "SIGNAL_KINDS",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "CountSignal",
    "CreateJob",
    "CycleOutcome",
    "CycleStats",
    "CycleTime",
    "Decision",
    "DeferJob",
    "DispatchPolicy",
    "DriftTrigger",
    "DataWait",
    "DataWaitOutcome",
    "IgnoreSignal",
    "IllegalTransition",
    "InFlight",
    "Job",
    "JobLimitReached",
    "JobNotFound",
    "JobPlan",
    "JobState",
    "JoinJob",
    "ModelState",
    "PendingSignal",
    "PerformanceTrigger",
    "PostSignalData",
    "QualityTrigger",
    "QuietHours",
    "RetrainPolicy",
    "RetrainSchedulerError",
    "RolloutRecord",
    "Signal",
    "StormGuard",
    "Triggers",
    "Webhook",
    "backoff_delay",
    "check_transition",
    "decide",
    "effective_policy",
    "final_window",
    "in_flight",
    "is_timed_out",
    "measure_cycle",
    "new_job",
    "not_serving",
    "percentile",
    "plan_manual",
    "quiet_until",
    "start_data_wait",
    "summarise_cycles",
]

SignalKind = Literal["drift-detected", "performance-degraded", "data-quality-violated"]
SIGNAL_KINDS: tuple[SignalKind, ...] = (
    "drift-detected",
    "performance-degraded",
    "data-quality-violated",
)
SEVERITY_RANK: dict[str, int] = {"low": 0, "medium": 1, "high": 2}
DriftKind = Literal["data", "prediction"]
_ALL_DRIFT_KINDS: tuple[DriftKind, ...] = ("data", "prediction")
QualityKind = Literal[
    "missing-rate",
    "type-error",
    "out-of-range",
    "unseen-category",
    "schema-mismatch",
    "invalid-value",
]
_ALL_QUALITY_KINDS: list[QualityKind] = [
    "missing-rate",
    "type-error",
    "out-of-range",
    "unseen-category",
    "schema-mismatch",
    "invalid-value",
]


# --------------------------------------------------------------------------- errors


class RetrainSchedulerError(Exception):
    """Base of every error this package raises on purpose."""


class IllegalTransition(RetrainSchedulerError):
    """A job cannot move from ``current`` to ``target`` (an HTTP 409)."""

    def __init__(self, job_id: str, current: str, target: str) -> None:
        super().__init__(f"job {job_id} is {current}; it cannot become {target}")
        self.job_id = job_id
        self.current = current
        self.target = target


class JobLimitReached(RetrainSchedulerError):
    """A job was asked for while the model has its maximum of active jobs (an HTTP 409)."""


class JobNotFound(RetrainSchedulerError):
    """No job with this id (an HTTP 404)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no retrain job {job_id!r}")
        self.job_id = job_id


# --------------------------------------------------------------------------- policy


class _PolicyPart(BaseModel):
    # A misspelt field in a policy is an error, not silently ignored.
    model_config = ConfigDict(extra="forbid")


class DriftTrigger(_PolicyPart):
    """Retrain on ``drift-detected`` at or above a severity."""

    enabled: bool = True
    min_severity: Severity = "medium"
    kinds: list[DriftKind] = Field(
        default_factory=lambda: list(_ALL_DRIFT_KINDS),
        description="Which kinds of drift count.",
    )


class PerformanceTrigger(_PolicyPart):
    """Retrain on ``performance-degraded`` at or above a severity."""

    enabled: bool = True
    min_severity: Severity = "low"
    metrics: list[str] | None = Field(default=None, description="Only these metrics count; null means any metric.")


class QualityTrigger(_PolicyPart):
    """Retrain on ``data-quality-violated`` with a violation of one of ``kinds``."""

    enabled: bool = False
    min_severity: Severity = "medium"
    kinds: list[QualityKind] = Field(default_factory=lambda: list(_ALL_QUALITY_KINDS))


class Triggers(_PolicyPart):
    drift_detected: DriftTrigger = Field(default_factory=DriftTrigger)
    performance_degraded: PerformanceTrigger = Field(default_factory=PerformanceTrigger)
    data_quality_violated: QualityTrigger = Field(default_factory=QualityTrigger)


class QuietHours(_PolicyPart):
    """A daily period in a time zone during which nothing is dispatched.

    ``start`` > ``end`` wraps past midnight (22:00-06:00). ``days`` restricts
    the period to the weekdays it *starts* on (0 = Monday); null means daily.
    """

    start: time = Field(examples=["22:00"])
    end: time = Field(examples=["06:00"])
    timezone: str = Field(default="UTC", examples=["Europe/Berlin"])
    days: list[int] | None = Field(default=None, examples=[[5, 6]])

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v

    @field_validator("days")
    @classmethod
    def _weekdays(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and any(d < 0 or d > 6 for d in v):
            raise ValueError("weekdays are 0 (Monday) to 6 (Sunday)")
        return v

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self

    def period_containing(self, now: datetime) -> tuple[datetime, datetime] | None:
        """The (start, end) in UTC of the period ``now`` falls in, or None."""
        zone = ZoneInfo(self.timezone)
        now_utc = _utc(now)
        local_day = now_utc.astimezone(zone).date()
        for offset in (-1, 0):
            day = local_day + timedelta(days=offset)
            if self.days is not None and day.weekday() not in self.days:
                continue
            end_day = day if self.end > self.start else day + timedelta(days=1)
            start = datetime.combine(day, self.start, zone).astimezone(UTC)
            end = datetime.combine(end_day, self.end, zone).astimezone(UTC)
            if start <= now_utc < end:
                return start, end
        return None


class DispatchPolicy(_PolicyPart):
    """How hard to try the training webhook."""

    max_attempts: int = Field(default=5, ge=1, le=50)
    backoff_initial: timedelta = Field(default=timedelta(seconds=2), ge=timedelta(0))
    backoff_max: timedelta = Field(default=timedelta(minutes=5), ge=timedelta(0))
    request_timeout: timedelta = Field(default=timedelta(seconds=10), gt=timedelta(0))


class Webhook(_PolicyPart):
    """The training pipeline's endpoint; the secret is a reference, never the value."""

    url: AnyHttpUrl
    secret_ref: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]{1,128}$",
        description="Name of a signing secret configured in the scheduler's settings.",
    )


class PostSignalData(_PolicyPart):
    """Wait for data from after the signal before asking for a training window.

    A window that ends at the signal holds mostly the world before the change
    the signal is about: a model trained on it is flagged again as soon as it
    serves. The job waits until ``min_rows`` predictions and
    ``min_labelled_rows`` labels of predictions made at or after the first
    signal have arrived (or ``max_wait`` has passed), then asks for a window
    that ends then.
    """

    enabled: bool = True
    triggers: list[SignalKind] = Field(
        default_factory=lambda: list[SignalKind](["drift-detected"]),
        description="Signal kinds whose jobs wait; other jobs are requested at once.",
    )
    min_rows: int = Field(default=5000, ge=0, description="Predictions logged at or after the signal.")
    min_labelled_rows: int = Field(
        default=0, ge=0, description="Of those, how many must have their label (ground truth) too."
    )
    max_wait: timedelta = Field(
        default=timedelta(hours=24),
        gt=timedelta(0),
        description="Ask for the window after this long even with less data.",
    )
    window_start: Literal["data-window", "signal"] = Field(
        default="data-window",
        description="'data-window': the window is `data_window` long up to its end; "
        "'signal': it starts at the first signal (only the new world).",
    )


class StormGuard(_PolicyPart):
    """Keep the platform from retraining because of its own rollouts."""

    ignore_not_serving: bool = Field(
        default=True,
        description="Signals about a version that serves no production traffic (a shadow or canary "
        "candidate, a version not rolled out yet, replaced or rolled back) start no job.",
    )
    join: Literal["overlap", "subset", "off"] = Field(
        default="overlap",
        description="A signal joins the job in flight when its drifted features (metric, violation "
        "kinds) share one with the job's ('overlap') or are all among them ('subset').",
    )
    until_rollout: bool = Field(
        default=True,
        description="A job stays in flight until the version it produced has finished its rollout.",
    )
    in_flight_max: timedelta = Field(
        default=timedelta(days=3),
        gt=timedelta(0),
        description="A finished job whose version never finishes a rollout stops being in flight after this.",
    )


DataWaitOutcome = Literal["enough-data", "max-wait"]


class DataWait(BaseModel):
    """A job's wait for post-signal data, as recorded with the job.

    Rows count when their prediction was made at or after ``since`` (the
    first signal); labelled rows are those of them whose label arrived too.
    """

    model_config = ConfigDict(frozen=True)

    since: datetime
    min_rows: int = Field(ge=0)
    min_labelled_rows: int = Field(ge=0)
    deadline: datetime
    window_start: Literal["data-window", "signal"] = "data-window"
    rows: int = Field(default=0, ge=0)
    labelled_rows: int = Field(default=0, ge=0)
    ended_at: datetime | None = None
    outcome: DataWaitOutcome | None = None

    @property
    def waiting(self) -> bool:
        return self.outcome is None

    @property
    def enough(self) -> bool:
        return self.rows >= self.min_rows and self.labelled_rows >= self.min_labelled_rows

    @property
    def wants_labels(self) -> bool:
        return self.min_labelled_rows > 0

    @property
    def seconds(self) -> float | None:
        """How long the job waited (None while it still does)."""
        if self.ended_at is None:
            return None
        return max((_utc(self.ended_at) - _utc(self.since)).total_seconds(), 0.0)

    def counted(self, rows: int, labelled_rows: int) -> DataWait:
        """With ``rows`` more post-signal predictions and ``labelled_rows`` more of their labels."""
        return self.model_copy(
            update={"rows": self.rows + max(rows, 0), "labelled_rows": self.labelled_rows + max(labelled_rows, 0)}
        )

    def due(self, now: datetime) -> DataWaitOutcome | None:
        """Why the wait ends at ``now``, or None while it goes on."""
        if not self.waiting:
            return None
        if self.enough:
            return "enough-data"
        if _utc(now) >= _utc(self.deadline):
            return "max-wait"
        return None

    def ended(self, at: datetime, outcome: DataWaitOutcome) -> DataWait:
        return self.model_copy(update={"ended_at": _utc(at), "outcome": outcome})


def start_data_wait(policy: RetrainPolicy, trigger: str, since: datetime) -> DataWait | None:
    """The wait a job triggered by ``trigger`` at ``since`` starts with, or None (no wait)."""
    rule = policy.post_signal_data
    if not rule.enabled or trigger not in rule.triggers:
        return None
    if rule.min_rows == 0 and rule.min_labelled_rows == 0:
        return None
    since = _utc(since)
    return DataWait(
        since=since,
        min_rows=max(rule.min_rows, rule.min_labelled_rows),
        min_labelled_rows=rule.min_labelled_rows,
        deadline=since + rule.max_wait,
        window_start=rule.window_start,
    )


def final_window(policy: RetrainPolicy, wait: DataWait, end: datetime) -> DataWindow:
    """The training window of a job whose wait ended at ``end``: it holds every post-signal row counted."""
    end = _utc(end)
    start = end - policy.data_window
    if wait.window_start == "signal":
        start = _utc(wait.since)
    return DataWindow(start=min(start, _utc(wait.since)), end=end)


class RetrainPolicy(_PolicyPart):
    """Everything that decides whether, when and how a model is retrained."""

    triggers: Triggers = Field(default_factory=Triggers)
    consecutive_signals: int = Field(
        default=1, ge=1, le=1000, description="Triggering signals needed before a job is created."
    )
    consecutive_within: timedelta = Field(
        default=timedelta(days=1),
        gt=timedelta(0),
        description="Signals older than this no longer count toward the streak.",
    )
    cooldown: timedelta = Field(
        default=timedelta(hours=6),
        ge=timedelta(0),
        description="No new automatic job this long after the previous one was requested or ended.",
    )
    max_concurrent_jobs: int = Field(default=1, ge=1, le=100)
    data_window: timedelta = Field(
        default=timedelta(days=7),
        gt=timedelta(0),
        description="Training data: this long up to the end of the window.",
    )
    post_signal_data: PostSignalData = Field(default_factory=PostSignalData)
    storm_guard: StormGuard = Field(default_factory=StormGuard)
    quiet_hours: list[QuietHours] = Field(default_factory=list)
    require_confirmation: bool = False
    webhook: Webhook | None = None
    dispatch: DispatchPolicy = Field(default_factory=DispatchPolicy)
    job_timeout: timedelta = Field(default=timedelta(hours=12), gt=timedelta(0))
    cycle_time_sla: timedelta | None = Field(default=timedelta(days=3), gt=timedelta(0))

    def snapshot(self) -> dict[str, Any]:
        """The JSON form carried by ``retrain-requested`` and stored with a job."""
        return self.model_dump(mode="json")


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        current = out.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            out[key] = _deep_merge(current, value)
        else:
            out[key] = value
    return out


def effective_policy(default: RetrainPolicy, override: Mapping[str, Any] | None) -> RetrainPolicy:
    """The default policy with a model's (partial) override merged in, field by field.

    Raises ``pydantic.ValidationError`` naming the offending field.
    """
    if not override:
        return default
    return RetrainPolicy.model_validate(_deep_merge(default.snapshot(), override))


def quiet_until(policy: RetrainPolicy, now: datetime) -> datetime | None:
    """When the quiet period covering ``now`` ends (UTC), following adjacent periods; or None."""
    at = _utc(now)
    until: datetime | None = None
    # Adjacent or overlapping periods chain; a policy that is quiet all week
    # still ends somewhere, and the bound keeps a pathological one finite.
    for _ in range(16):
        ends = [p[1] for q in policy.quiet_hours if (p := q.period_containing(at)) is not None]
        if not ends:
            break
        at = max(ends)
        until = at
    return until


def backoff_delay(dispatch: DispatchPolicy, attempt: int) -> timedelta:
    """The wait after failed attempt number ``attempt`` (1-based): exponential, capped."""
    if attempt < 1:
        raise ValueError("attempts are counted from 1")
    delay: timedelta = dispatch.backoff_initial * 2 ** min(attempt - 1, 30)
    return min(delay, dispatch.backoff_max)


# --------------------------------------------------------------------------- signals


@dataclass(frozen=True)
class Signal:
    """A monitoring event reduced to what a policy looks at."""

    event_id: str
    kind: SignalKind
    model: str
    severity: Severity
    at: datetime
    version: str | None = None
    drift_kind: str | None = None
    metric: str | None = None
    quality_kinds: frozenset[str] = frozenset()
    subjects: frozenset[str] = frozenset()
    """What the signal is about: drifted features, the degraded metric, violated kinds."""

    @classmethod
    def from_payload(
        cls,
        event_id: str,
        at: datetime,
        payload: DriftDetected | PerformanceDegraded | DataQualityViolated,
    ) -> Signal:
        if isinstance(payload, DriftDetected):
            return cls(
                event_id,
                "drift-detected",
                payload.model,
                payload.severity,
                _utc(at),
                version=payload.version,
                drift_kind=payload.kind,
                subjects=frozenset(f.name for f in payload.features if f.drifted),
            )
        if isinstance(payload, PerformanceDegraded):
            return cls(
                event_id,
                "performance-degraded",
                payload.model,
                payload.severity,
                _utc(at),
                version=payload.version,
                metric=payload.metric,
                subjects=frozenset({f"metric:{payload.metric}"}),
            )
        kinds = frozenset(v.kind for v in payload.violations if isinstance(v, QualityViolation))
        return cls(
            event_id,
            "data-quality-violated",
            payload.model,
            payload.severity,
            _utc(at),
            version=payload.version,
            quality_kinds=kinds,
            subjects=frozenset(f"quality:{k}" for k in kinds),
        )


@dataclass(frozen=True)
class PendingSignal:
    """A triggering signal counted toward a streak and not yet used by a job."""

    event_id: str
    kind: SignalKind
    at: datetime
    subjects: frozenset[str] = frozenset()


@dataclass(frozen=True)
class InFlight:
    """A job of the model that is still under way: active, or its version still rolling out."""

    job_id: str
    subjects: frozenset[str]
    active: bool
    produced_version: str | None = None


@dataclass(frozen=True)
class RolloutRecord:
    """What the scheduler knows of one rollout, from ``rollout-*`` events."""

    rollout_id: str
    candidate: str
    baseline: str | None
    state: Literal["in-rollout", "completed", "rolled-back"]
    at: datetime
    """When it started, or when it finished once it has."""


def not_serving(rollouts: Iterable[RolloutRecord], awaiting_rollout: Iterable[str] = ()) -> dict[str, str]:
    """The versions known to serve no production traffic, each with the reason.

    * the candidate of a rollout still under way (shadow or canary);
    * a version a retrain job produced that has not finished a rollout yet;
    * once a rollout has completed, every other version a rollout involved
      (replaced, or rolled back) — the latest completed candidate is the champion.

    A version the scheduler has never seen in a rollout is not listed: without
    evidence, a signal about it is taken at its word.
    """
    records = sorted(rollouts, key=lambda r: (_utc(r.at), r.rollout_id))
    out: dict[str, str] = {}
    champion: str | None = None
    for r in records:
        if r.state == "completed":
            champion = r.candidate
    if champion is not None:
        for r in records:
            for version in (r.candidate, r.baseline):
                if version is not None and version != champion:
                    out[version] = f"version {version} was replaced by champion {champion}"
        for r in records:
            if r.state == "rolled-back" and r.candidate != champion:
                out[r.candidate] = f"version {r.candidate} was rolled back"
    for version in awaiting_rollout:
        if version != champion:
            out[version] = f"version {version} has not finished a rollout"
    for r in records:
        if r.state == "in-rollout" and r.candidate != champion:
            out[r.candidate] = f"version {r.candidate} is the candidate of rollout {r.rollout_id} (shadow or canary)"
    return out


@dataclass(frozen=True)
class ModelState:
    """What :func:`decide` needs to know about one model."""

    model: str
    active_jobs: int = 0
    last_job_at: datetime | None = None
    """The later of the latest job's request time and its end (None: never retrained)."""
    pending: tuple[PendingSignal, ...] = ()
    in_flight: tuple[InFlight, ...] = ()
    not_serving: Mapping[str, str] = field(default_factory=dict)
    """Versions known to serve no production traffic (see :func:`not_serving`)."""


# --------------------------------------------------------------------------- decisions


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


@dataclass(frozen=True)
class CreateJob:
    plan: JobPlan
    kind: Literal["create"] = "create"


@dataclass(frozen=True)
class DeferJob:
    """Create the job now but dispatch it no earlier than ``until`` (quiet hours)."""

    plan: JobPlan
    until: datetime
    kind: Literal["defer"] = "defer"


@dataclass(frozen=True)
class CountSignal:
    """The signal counts toward a streak that is not yet long enough."""

    count: int
    needed: int
    kind: Literal["count"] = "count"


@dataclass(frozen=True)
class JoinJob:
    """The signal is about what a job in flight already addresses: it joins that job."""

    job_id: str
    subjects: frozenset[str]
    detail: str
    kind: Literal["join"] = "join"


IgnoreReason = Literal[
    "trigger-disabled", "below-threshold", "not-matching", "not-serving", "max-concurrency", "cooldown"
]


@dataclass(frozen=True)
class IgnoreSignal:
    reason: IgnoreReason
    detail: str
    kind: Literal["ignore"] = "ignore"


Decision: TypeAlias = CreateJob | DeferJob | JoinJob | CountSignal | IgnoreSignal


def _trigger_mismatch(policy: RetrainPolicy, signal: Signal) -> IgnoreSignal | None:
    t = policy.triggers
    rule: DriftTrigger | PerformanceTrigger | QualityTrigger
    if signal.kind == "drift-detected":
        rule = t.drift_detected
    elif signal.kind == "performance-degraded":
        rule = t.performance_degraded
    else:
        rule = t.data_quality_violated
    if not rule.enabled:
        return IgnoreSignal("trigger-disabled", f"{signal.kind} does not trigger retraining")
    if SEVERITY_RANK[signal.severity] < SEVERITY_RANK[rule.min_severity]:
        return IgnoreSignal(
            "below-threshold",
            f"{signal.kind} severity {signal.severity} is below {rule.min_severity}",
        )
    if isinstance(rule, DriftTrigger) and signal.drift_kind not in rule.kinds:
        return IgnoreSignal("not-matching", f"{signal.drift_kind} drift does not trigger")
    if isinstance(rule, PerformanceTrigger) and rule.metrics is not None and signal.metric not in rule.metrics:
        return IgnoreSignal("not-matching", f"metric {signal.metric} does not trigger")
    if isinstance(rule, QualityTrigger) and not signal.quality_kinds & set(rule.kinds):
        found = ", ".join(sorted(signal.quality_kinds)) or "none"
        return IgnoreSignal("not-matching", f"violation kinds ({found}) do not trigger")
    return None


def _capacity_block(
    policy: RetrainPolicy, state: ModelState, now: datetime, *, in_flight: bool = False
) -> IgnoreSignal | None:
    busy = state.active_jobs
    what = "active"
    if in_flight and policy.storm_guard.until_rollout:
        # A finished job whose version is still rolling out is still this
        # model's retrain: another one now would train on the same world.
        busy = max(busy, len(state.in_flight))
        what = "in flight"
    if busy >= policy.max_concurrent_jobs:
        return IgnoreSignal(
            "max-concurrency",
            f"{busy} job(s) already {what} for {state.model} (max {policy.max_concurrent_jobs})",
        )
    return None


def _plan(
    policy: RetrainPolicy,
    model: str,
    trigger: str,
    event_ids: tuple[str, ...],
    first_at: datetime,
    window_end: datetime,
    now: datetime,
    base_version: str | None = None,
    subjects: frozenset[str] = frozenset(),
) -> Decision:
    initial = JobState.AWAITING_CONFIRMATION if policy.require_confirmation else JobState.REQUESTED
    until = quiet_until(policy, now)
    wait = start_data_wait(policy, trigger, first_at)
    plan = JobPlan(
        model=model,
        trigger=trigger,
        trigger_event_ids=event_ids,
        first_signal_at=first_at,
        # While a job waits for post-signal data this is provisional: the
        # window is fixed when the wait ends (see final_window).
        data_window=DataWindow(start=window_end - policy.data_window, end=window_end),
        initial_state=initial,
        dispatch_not_before=until,
        base_version=base_version,
        subjects=subjects,
        data_wait=wait,
    )
    return DeferJob(plan, until) if until is not None else CreateJob(plan)


def _joins(policy: RetrainPolicy, state: ModelState, signal: Signal) -> JoinJob | None:
    mode = policy.storm_guard.join
    if mode == "off" or not signal.subjects:
        return None
    for job in state.in_flight:
        common = signal.subjects & job.subjects
        if (mode == "overlap" and common) or (mode == "subset" and signal.subjects <= job.subjects):
            return JoinJob(
                job.job_id,
                signal.subjects,
                f"joins job {job.job_id}: {', '.join(sorted(common))} already being retrained for",
            )
    return None


def decide(policy: RetrainPolicy, state: ModelState, signal: Signal, now: datetime) -> Decision:
    """What ``signal`` means for ``state.model`` at ``now`` under ``policy``.

    Checks, in order: the signal triggers at all (kind enabled, severity at
    or above the threshold, matching drift kind / metric / violation kind);
    the storm guard — a signal about a version that serves no production
    traffic is ignored, and one about what a job in flight already addresses
    joins that job; the model has room for another job
    (``max_concurrent_jobs``, counting jobs whose version is still rolling
    out); the cooldown since the previous job has passed; the streak of
    triggering signals within ``consecutive_within`` is long enough. Then it
    plans a job (waiting for post-signal data when the policy says so),
    deferred past quiet hours when ``now`` falls in one. A signal that
    arrives while the model is blocked does not count toward a later streak.
    """
    now = _utc(now)
    mismatch = _trigger_mismatch(policy, signal)
    if mismatch is not None:
        return mismatch
    if policy.storm_guard.ignore_not_serving and signal.version is not None:
        why = state.not_serving.get(signal.version)
        if why is not None:
            return IgnoreSignal("not-serving", why)
    joined = _joins(policy, state, signal)
    if joined is not None:
        return joined
    blocked = _capacity_block(policy, state, now, in_flight=True)
    if blocked is not None:
        return blocked
    if state.last_job_at is not None and policy.cooldown > timedelta(0):
        ends = _utc(state.last_job_at) + policy.cooldown
        if now < ends:
            return IgnoreSignal("cooldown", f"cooling down until {ends.isoformat()}")
    horizon = now - policy.consecutive_within
    streak = sorted(
        (p for p in state.pending if _utc(p.at) >= horizon and p.event_id != signal.event_id),
        key=lambda p: p.at,
    )
    streak.append(PendingSignal(signal.event_id, signal.kind, signal.at, signal.subjects))
    if len(streak) < policy.consecutive_signals:
        return CountSignal(len(streak), policy.consecutive_signals)
    return _plan(
        policy,
        state.model,
        streak[0].kind,
        tuple(p.event_id for p in streak),
        _utc(streak[0].at),
        max(_utc(signal.at), _utc(streak[-1].at)),
        now,
        signal.version,
        frozenset().union(*(p.subjects for p in streak)),
    )


def plan_manual(
    policy: RetrainPolicy,
    state: ModelState,
    now: datetime,
    *,
    data_window: DataWindow | None = None,
) -> Decision:
    """A job asked for by a person: no trigger, streak or cooldown, but the
    concurrency limit, confirmation and quiet hours still apply."""
    now = _utc(now)
    blocked = _capacity_block(policy, state, now)
    if blocked is not None:
        return blocked
    decision = _plan(policy, state.model, "manual", (), now, now, now)
    if data_window is not None and isinstance(decision, CreateJob | DeferJob):
        plan = replace(decision.plan, data_window=data_window)
        if isinstance(decision, DeferJob):
            return DeferJob(plan, decision.until)
        return CreateJob(plan)
    return decision


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
        at = _utc(at)
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
    at = _utc(at)
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
    return _utc(now) < _utc(ended) + policy.storm_guard.in_flight_max


def is_timed_out(job: Job, timeout: timedelta, now: datetime) -> bool:
    """Whether a dispatched or running job has exceeded ``timeout`` since dispatch."""
    if job.state not in (S.DISPATCHED, S.RUNNING) or job.dispatched_at is None:
        return False
    return _utc(now) >= _utc(job.dispatched_at) + timeout


# --------------------------------------------------------------------------- cycle time

CycleOutcome = Literal["completed", "rolled-back", "failed"]
STEP_NAMES: tuple[str, ...] = (
    "signal-to-job",
    "job-to-dispatched",
    "dispatched-to-registered",
    "registered-to-rollout",
)


@dataclass(frozen=True)
class CycleTime:
    """One measured loop: first signal → rollout finished (or the job failed)."""

    job_id: str
    model: str
    version: str | None
    outcome: CycleOutcome
    started_at: datetime
    finished_at: datetime
    seconds: float
    steps: dict[str, float]
    shares: dict[str, float]
    sla_seconds: float | None
    sla_breached: bool


def measure_cycle(job: Job, outcome: CycleOutcome, finished_at: datetime, sla: timedelta | None) -> CycleTime:
    """The cycle time of ``job``, ending at ``finished_at``.

    Steps whose endpoints are unknown (a job that failed before registering a
    version has no ``dispatched-to-registered``) are left out; shares are of
    the whole cycle and sum to 1 when every step is known.
    """
    marks: list[tuple[str, datetime | None]] = [
        ("signal", job.first_signal_at),
        ("job", job.requested_at),
        ("dispatched", job.dispatched_at),
        ("registered", job.registered_at),
        ("rollout", finished_at),
    ]
    started = _utc(job.first_signal_at)
    finished = max(_utc(finished_at), started)
    total = (finished - started).total_seconds()
    steps: dict[str, float] = {}
    for name, (_, a), (_, b) in zip(STEP_NAMES, marks, marks[1:], strict=False):
        if a is not None and b is not None:
            steps[name] = max((_utc(b) - _utc(a)).total_seconds(), 0.0)
    shares = {k: (v / total if total > 0 else 0.0) for k, v in steps.items()}
    sla_seconds = sla.total_seconds() if sla is not None else None
    return CycleTime(
        job_id=job.id,
        model=job.model,
        version=job.produced_version,
        outcome=outcome,
        started_at=started,
        finished_at=finished,
        seconds=total,
        steps=steps,
        shares=shares,
        sla_seconds=sla_seconds,
        sla_breached=sla_seconds is not None and total > sla_seconds,
    )


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) with linear interpolation; None for no values."""
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError("q must be within [0, 100]")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True)
class CycleStats:
    """Cycle-time statistics of one model."""

    model: str
    cycles: int
    p50_seconds: float | None
    p90_seconds: float | None
    mean_shares: dict[str, float]
    sla_breaches: int
    cycles_by_outcome: dict[str, int]
    jobs_by_state: dict[str, int] = field(default_factory=dict)


def summarise_cycles(
    model: str, cycles: Iterable[CycleTime], jobs_by_state: Mapping[str, int] | None = None
) -> CycleStats:
    """p50/p90 over cycles that reached production (completed rollouts), mean step
    shares over the same, breaches and counts over every recorded cycle."""
    all_cycles = list(cycles)
    done = [c for c in all_cycles if c.outcome == "completed"]
    by_outcome: dict[str, int] = {}
    for c in all_cycles:
        by_outcome[c.outcome] = by_outcome.get(c.outcome, 0) + 1
    shares: dict[str, float] = {}
    for name in STEP_NAMES:
        known = [c.shares[name] for c in done if name in c.shares]
        if known:
            shares[name] = sum(known) / len(known)
    return CycleStats(
        model=model,
        cycles=len(all_cycles),
        p50_seconds=percentile([c.seconds for c in done], 50),
        p90_seconds=percentile([c.seconds for c in done], 90),
        mean_shares=shares,
        sla_breaches=sum(1 for c in all_cycles if c.sla_breached),
        cycles_by_outcome=by_outcome,
        jobs_by_state=dict(jobs_by_state or {}),
    )


def _utc(t: datetime) -> datetime:
    if t.tzinfo is None:
        return t.replace(tzinfo=UTC)
    return t.astimezone(UTC)
