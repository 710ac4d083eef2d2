"""Retraining policies as data: a default policy plus per-model overrides.

:func:`effective_policy` merges them; :func:`quiet_until` and
:func:`backoff_delay` read the dispatch rules; :class:`DataWait` is how long a
job waits for post-signal data before it is dispatched.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator, model_validator

from mloop.contracts.payloads import (
    DataWindow,
    Severity,
)
from mloop.retrain_scheduler.domain.instants import as_utc

__all__ = [
    "MAX_SPAN",
    "SEVERITY_RANK",
    "SIGNAL_KINDS",
    "DataWait",
    "DataWaitOutcome",
    "DispatchPolicy",
    "DriftKind",
    "DriftTrigger",
    "PerformanceTrigger",
    "PostSignalData",
    "QualityKind",
    "QualityTrigger",
    "QuietHours",
    "RetrainPolicy",
    "SignalKind",
    "StormGuard",
    "Triggers",
    "Webhook",
    "backoff_delay",
    "effective_policy",
    "final_window",
    "quiet_until",
    "start_data_wait",
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


# --------------------------------------------------------------------------- policy


#: Every duration of a policy is at most a year: a larger one overflows date arithmetic.
MAX_SPAN = timedelta(days=366)


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
        now_utc = as_utc(now)
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
    backoff_initial: timedelta = Field(default=timedelta(seconds=2), ge=timedelta(0), le=MAX_SPAN)
    backoff_max: timedelta = Field(default=timedelta(minutes=5), ge=timedelta(0), le=MAX_SPAN)
    request_timeout: timedelta = Field(default=timedelta(seconds=10), gt=timedelta(0), le=MAX_SPAN)


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
    min_rows: int = Field(default=5000, ge=0, le=10**12, description="Predictions logged at or after the signal.")
    min_labelled_rows: int = Field(
        default=0, ge=0, le=10**12, description="Of those, how many must have their label (ground truth) too."
    )
    max_wait: timedelta = Field(
        default=timedelta(hours=24),
        gt=timedelta(0), le=MAX_SPAN,
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
        gt=timedelta(0), le=MAX_SPAN,
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
        return max((as_utc(self.ended_at) - as_utc(self.since)).total_seconds(), 0.0)

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
        if as_utc(now) >= as_utc(self.deadline):
            return "max-wait"
        return None

    def ended(self, at: datetime, outcome: DataWaitOutcome) -> DataWait:
        return self.model_copy(update={"ended_at": as_utc(at), "outcome": outcome})


def start_data_wait(policy: RetrainPolicy, trigger: str, since: datetime) -> DataWait | None:
    """The wait a job triggered by ``trigger`` at ``since`` starts with, or None (no wait)."""
    rule = policy.post_signal_data
    if not rule.enabled or trigger not in rule.triggers:
        return None
    if rule.min_rows == 0 and rule.min_labelled_rows == 0:
        return None
    since = as_utc(since)
    return DataWait(
        since=since,
        min_rows=max(rule.min_rows, rule.min_labelled_rows),
        min_labelled_rows=rule.min_labelled_rows,
        deadline=since + rule.max_wait,
        window_start=rule.window_start,
    )


def final_window(policy: RetrainPolicy, wait: DataWait, end: datetime) -> DataWindow:
    """The training window of a job whose wait ended at ``end``: it holds every post-signal row counted."""
    end = as_utc(end)
    start = end - policy.data_window
    if wait.window_start == "signal":
        start = as_utc(wait.since)
    return DataWindow(start=min(start, as_utc(wait.since)), end=end)


class RetrainPolicy(_PolicyPart):
    """Everything that decides whether, when and how a model is retrained."""

    triggers: Triggers = Field(default_factory=Triggers)
    consecutive_signals: int = Field(
        default=1, ge=1, le=1000, description="Triggering signals needed before a job is created."
    )
    consecutive_within: timedelta = Field(
        default=timedelta(days=1),
        gt=timedelta(0), le=MAX_SPAN,
        description="Signals older than this no longer count toward the streak.",
    )
    cooldown: timedelta = Field(
        default=timedelta(hours=6),
        ge=timedelta(0), le=MAX_SPAN,
        description="No new automatic job this long after the previous one was requested or ended.",
    )
    max_concurrent_jobs: int = Field(default=1, ge=1, le=100)
    data_window: timedelta = Field(
        default=timedelta(days=7),
        gt=timedelta(0), le=MAX_SPAN,
        description="Training data: this long up to the end of the window.",
    )
    post_signal_data: PostSignalData = Field(default_factory=PostSignalData)
    storm_guard: StormGuard = Field(default_factory=StormGuard)
    quiet_hours: list[QuietHours] = Field(default_factory=list)
    require_confirmation: bool = False
    webhook: Webhook | None = None
    dispatch: DispatchPolicy = Field(default_factory=DispatchPolicy)
    job_timeout: timedelta = Field(default=timedelta(hours=12), gt=timedelta(0), le=MAX_SPAN)
    cycle_time_sla: timedelta | None = Field(default=timedelta(days=3), gt=timedelta(0), le=MAX_SPAN)

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
    at = as_utc(now)
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
