"""What a monitoring signal means for a model right now.

:func:`decide` creates a job, defers its dispatch past quiet hours, joins an
active job, counts the signal toward a streak, or ignores it (with the
reason); :func:`plan_manual` plans a job an operator asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal, TypeAlias

from mloop.contracts.payloads import (
    DataWindow,
)
from mloop.retrain_scheduler.domain.instants import as_utc
from mloop.retrain_scheduler.domain.jobs import JobPlan, JobState
from mloop.retrain_scheduler.domain.policy import (
    SEVERITY_RANK,
    DriftTrigger,
    PerformanceTrigger,
    QualityTrigger,
    RetrainPolicy,
    quiet_until,
    start_data_wait,
)
from mloop.retrain_scheduler.domain.signals import ModelState, PendingSignal, Signal

__all__ = [
    "CountSignal",
    "CreateJob",
    "Decision",
    "DeferJob",
    "IgnoreReason",
    "IgnoreSignal",
    "JoinJob",
    "decide",
    "plan_manual",
]


# --------------------------------------------------------------------------- decisions


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
    now = as_utc(now)
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
        ends = as_utc(state.last_job_at) + policy.cooldown
        if now < ends:
            return IgnoreSignal("cooldown", f"cooling down until {ends.isoformat()}")
    horizon = now - policy.consecutive_within
    streak = sorted(
        (p for p in state.pending if as_utc(p.at) >= horizon and p.event_id != signal.event_id),
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
        as_utc(streak[0].at),
        max(as_utc(signal.at), as_utc(streak[-1].at)),
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
    now = as_utc(now)
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
