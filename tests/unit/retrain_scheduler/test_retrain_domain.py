"""Retrain policies, decisions, the job state machine and cycle time, without I/O."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pydantic
import pytest

from mloop.contracts.payloads import (
    DataQualityViolated,
    DriftDetected,
    PerformanceDegraded,
    QualityViolation,
    Window,
)
from mloop.retrain_scheduler.domain import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    CountSignal,
    CreateJob,
    DeferJob,
    DispatchPolicy,
    IgnoreSignal,
    IllegalTransition,
    Job,
    JobState,
    ModelState,
    PendingSignal,
    QuietHours,
    RetrainPolicy,
    Signal,
    backoff_delay,
    decide,
    effective_policy,
    is_timed_out,
    measure_cycle,
    new_job,
    percentile,
    plan_manual,
    quiet_until,
    summarise_cycles,
)

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)  # a Thursday
WINDOW = Window(start=T0 - timedelta(hours=1), end=T0, size=500)


def drift(
    model: str = "credit-risk",
    severity: str = "medium",
    n: int = 0,
    *,
    at: datetime = T0,
    kind: str = "data",
) -> Signal:
    payload = DriftDetected.model_validate(
        {
            "model": model,
            "version": "3",
            "kind": kind,
            "severity": severity,
            "window": WINDOW.model_dump(),
            "features": [],
        }
    )
    return Signal.from_payload(f"{model}-drift-{n}", at, payload)


def degraded(model: str = "credit-risk", severity: str = "low", metric: str = "accuracy") -> Signal:
    payload = PerformanceDegraded(model=model, version="3", metric=metric, value=0.7, severity=severity, window=WINDOW)
    return Signal.from_payload(f"{model}-perf", T0, payload)


def quality(kinds: list[str], severity: str = "high") -> Signal:
    payload = DataQualityViolated.model_validate(
        {
            "model": "credit-risk",
            "version": "3",
            "severity": severity,
            "window": WINDOW.model_dump(),
            "violations": [{"kind": k} for k in kinds],
        }
    )
    assert all(isinstance(v, QualityViolation) for v in payload.violations)
    return Signal.from_payload("quality-1", T0, payload)


class Scheduler:
    """A minimal in-memory driver: applies decisions to per-model state."""

    def __init__(self, policy: RetrainPolicy) -> None:
        self.policy = policy
        self.states: dict[str, ModelState] = {}
        self.jobs: list[tuple[str, CreateJob | DeferJob]] = []
        self.decisions: list[Any] = []

    def signal(self, s: Signal, now: datetime) -> Any:
        state = self.states.get(s.model, ModelState(s.model))
        d = decide(self.policy, state, s, now)
        self.decisions.append(d)
        if isinstance(d, CreateJob | DeferJob):
            self.jobs.append((s.model, d))
            state = replace(state, active_jobs=state.active_jobs + 1, last_job_at=now, pending=())
        elif isinstance(d, CountSignal):
            state = replace(state, pending=(*state.pending, PendingSignal(s.event_id, s.kind, s.at)))
        self.states[s.model] = state
        return d

    def finish_all(self, now: datetime) -> None:
        for m, st in self.states.items():
            self.states[m] = replace(st, active_jobs=0, last_job_at=now)


# --------------------------------------------------------------------------- decide


def test_storm_of_100_drift_events_within_cooldown_creates_exactly_one_job() -> None:
    sched = Scheduler(RetrainPolicy())
    for i in range(100):
        now = T0 + timedelta(seconds=30 * i)
        sched.signal(drift(n=i, at=now), now)
    assert len(sched.jobs) == 1
    assert sum(isinstance(d, IgnoreSignal) for d in sched.decisions) == 99


def test_storm_after_the_job_ended_is_still_held_back_by_the_cooldown() -> None:
    sched = Scheduler(RetrainPolicy(cooldown=timedelta(hours=6)))
    sched.signal(drift(n=0), T0)
    sched.finish_all(T0 + timedelta(minutes=5))
    reasons = set()
    for i in range(1, 100):
        now = T0 + timedelta(minutes=10 + i)
        d = sched.signal(drift(n=i, at=now), now)
        reasons.add(d.reason)
    assert len(sched.jobs) == 1
    assert reasons == {"cooldown"}


def test_a_signal_after_the_cooldown_creates_a_new_job() -> None:
    sched = Scheduler(RetrainPolicy(cooldown=timedelta(hours=1)))
    sched.signal(drift(n=0), T0)
    sched.finish_all(T0 + timedelta(minutes=10))
    later = T0 + timedelta(minutes=71)
    assert isinstance(sched.signal(drift(n=1, at=later), later), CreateJob)
    assert len(sched.jobs) == 2


def test_two_models_are_independent() -> None:
    sched = Scheduler(RetrainPolicy())
    for i in range(50):
        now = T0 + timedelta(seconds=i)
        sched.signal(drift("credit-risk", n=i, at=now), now)
        sched.signal(drift("churn", n=i, at=now), now)
    assert sorted(m for m, _ in sched.jobs) == ["churn", "credit-risk"]


def test_severity_below_threshold_is_ignored() -> None:
    d = decide(RetrainPolicy(), ModelState("credit-risk"), drift(severity="low"), T0)
    assert isinstance(d, IgnoreSignal)
    assert d.reason == "below-threshold"
    assert "low" in d.detail and "medium" in d.detail


@pytest.mark.parametrize("severity", ["medium", "high"])
def test_default_policy_triggers_on_medium_or_higher_drift(severity: str) -> None:
    d = decide(RetrainPolicy(), ModelState("credit-risk"), drift(severity=severity), T0)
    assert isinstance(d, CreateJob)
    assert d.plan.initial_state is JobState.REQUESTED
    assert d.plan.trigger == "drift-detected"


def test_default_policy_triggers_on_performance_degraded_but_not_on_data_quality() -> None:
    assert isinstance(decide(RetrainPolicy(), ModelState("credit-risk"), degraded(), T0), CreateJob)
    d = decide(RetrainPolicy(), ModelState("credit-risk"), quality(["missing-rate"]), T0)
    assert isinstance(d, IgnoreSignal) and d.reason == "trigger-disabled"


def test_data_quality_triggers_only_on_configured_kinds() -> None:
    policy = effective_policy(
        RetrainPolicy(),
        {"triggers": {"data_quality_violated": {"enabled": True, "kinds": ["schema-mismatch"]}}},
    )
    state = ModelState("credit-risk")
    assert isinstance(decide(policy, state, quality(["schema-mismatch", "type-error"]), T0), CreateJob)
    d = decide(policy, state, quality(["missing-rate"]), T0)
    assert isinstance(d, IgnoreSignal) and d.reason == "not-matching"


def test_performance_trigger_can_be_limited_to_metrics() -> None:
    policy = effective_policy(RetrainPolicy(), {"triggers": {"performance_degraded": {"metrics": ["auc"]}}})
    state = ModelState("credit-risk")
    assert isinstance(decide(policy, state, degraded(metric="accuracy"), T0), IgnoreSignal)
    assert isinstance(decide(policy, state, degraded(metric="auc"), T0), CreateJob)


def test_drift_trigger_can_be_limited_to_data_drift() -> None:
    policy = effective_policy(RetrainPolicy(), {"triggers": {"drift_detected": {"kinds": ["data"]}}})
    state = ModelState("credit-risk")
    assert isinstance(decide(policy, state, drift(kind="prediction"), T0), IgnoreSignal)


def test_max_concurrency_holds() -> None:
    sched = Scheduler(RetrainPolicy(cooldown=timedelta(0), max_concurrent_jobs=2))
    for i in range(20):
        now = T0 + timedelta(seconds=i)
        sched.signal(drift(n=i, at=now), now)
    assert len(sched.jobs) == 2
    assert sched.states["credit-risk"].active_jobs == 2
    assert {d.reason for d in sched.decisions if isinstance(d, IgnoreSignal)} == {"max-concurrency"}


def test_consecutive_signals_are_counted_before_a_job_is_created() -> None:
    sched = Scheduler(RetrainPolicy(consecutive_signals=3))
    d1 = sched.signal(drift(n=1), T0)
    d2 = sched.signal(drift(n=2, at=T0 + timedelta(minutes=5)), T0 + timedelta(minutes=5))
    d3 = sched.signal(drift(n=3, at=T0 + timedelta(minutes=9)), T0 + timedelta(minutes=9))
    assert (d1, d2) == (CountSignal(1, 3), CountSignal(2, 3))
    assert isinstance(d3, CreateJob)
    assert d3.plan.trigger_event_ids == (
        "credit-risk-drift-1",
        "credit-risk-drift-2",
        "credit-risk-drift-3",
    )
    assert d3.plan.first_signal_at == T0


def test_signals_older_than_the_streak_window_no_longer_count() -> None:
    sched = Scheduler(RetrainPolicy(consecutive_signals=2, consecutive_within=timedelta(hours=1)))
    sched.signal(drift(n=1), T0)
    later = T0 + timedelta(hours=2)
    assert sched.signal(drift(n=2, at=later), later) == CountSignal(1, 2)


def test_a_redelivered_signal_does_not_count_twice() -> None:
    policy = RetrainPolicy(consecutive_signals=2)
    s = drift(n=1)
    state = ModelState("credit-risk", pending=(PendingSignal(s.event_id, s.kind, s.at),))
    assert decide(policy, state, s, T0) == CountSignal(1, 2)


def test_data_window_is_the_policy_window_up_to_the_signal() -> None:
    d = decide(RetrainPolicy(), ModelState("credit-risk"), drift(), T0 + timedelta(seconds=3))
    assert isinstance(d, CreateJob)
    assert d.plan.data_window.end == T0
    assert d.plan.data_window.start == T0 - timedelta(days=7)


def test_confirmation_required_starts_awaiting_confirmation() -> None:
    d = decide(RetrainPolicy(require_confirmation=True), ModelState("credit-risk"), drift(), T0)
    assert isinstance(d, CreateJob)
    assert d.plan.initial_state is JobState.AWAITING_CONFIRMATION


# --------------------------------------------------------------------------- quiet hours


def berlin_nights() -> RetrainPolicy:
    return RetrainPolicy(quiet_hours=[QuietHours(start=time(22), end=time(6), timezone="Europe/Berlin")])


def test_quiet_hours_defer_a_job_to_the_end_of_the_quiet_period() -> None:
    # 23:30 in Berlin (UTC+1 in November) is 22:30 UTC; quiet ends 06:00 Berlin = 05:00 UTC.
    now = datetime(2026, 11, 26, 22, 30, tzinfo=UTC)
    d = decide(berlin_nights(), ModelState("credit-risk"), drift(at=now), now)
    assert isinstance(d, DeferJob)
    assert d.until == datetime(2026, 11, 27, 5, 0, tzinfo=UTC)
    assert d.plan.dispatch_not_before == d.until


def test_quiet_period_started_the_previous_evening_is_recognised_after_midnight() -> None:
    now = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)  # 04:00 Berlin
    assert quiet_until(berlin_nights(), now) == datetime(2026, 11, 27, 5, 0, tzinfo=UTC)


def test_outside_quiet_hours_the_job_is_created_for_immediate_dispatch() -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    d = decide(berlin_nights(), ModelState("credit-risk"), drift(at=now), now)
    assert isinstance(d, CreateJob) and d.plan.dispatch_not_before is None


def test_quiet_hours_follow_daylight_saving_time() -> None:
    # 29 March 2026: Berlin switches to UTC+2; quiet ends at 06:00 local = 04:00 UTC.
    now = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert quiet_until(berlin_nights(), now) == datetime(2026, 3, 29, 4, 0, tzinfo=UTC)


def test_adjacent_quiet_periods_chain() -> None:
    policy = RetrainPolicy(
        quiet_hours=[
            QuietHours(start=time(22), end=time(6)),
            QuietHours(start=time(6), end=time(8)),
        ]
    )
    now = datetime(2026, 11, 26, 23, 0, tzinfo=UTC)
    assert quiet_until(policy, now) == datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def test_weekend_quiet_hours_apply_only_on_their_days() -> None:
    weekend = RetrainPolicy(quiet_hours=[QuietHours(start=time(0), end=time(23, 59), days=[5, 6])])
    assert quiet_until(weekend, datetime(2026, 11, 26, 12, tzinfo=UTC)) is None  # Thursday
    assert quiet_until(weekend, datetime(2026, 11, 28, 12, tzinfo=UTC)) == datetime(2026, 11, 28, 23, 59, tzinfo=UTC)


# --------------------------------------------------------------------------- policy as data


def test_override_merges_field_by_field_into_the_default() -> None:
    policy = effective_policy(
        RetrainPolicy(),
        {"cooldown": "PT30M", "triggers": {"drift_detected": {"min_severity": "high"}}},
    )
    assert policy.cooldown == timedelta(minutes=30)
    assert policy.triggers.drift_detected.min_severity == "high"
    assert policy.triggers.performance_degraded.enabled is True
    assert policy.data_window == timedelta(days=7)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"consecutive_signals": 0}, ("consecutive_signals",)),
        (
            {"triggers": {"drift_detected": {"min_severity": "extreme"}}},
            ("triggers", "drift_detected", "min_severity"),
        ),
        (
            {"quiet_hours": [{"start": "22:00", "end": "06:00", "timezone": "Mars/Olympus"}]},
            ("quiet_hours", 0, "timezone"),
        ),
        ({"webhook": {"url": "not a url"}}, ("webhook", "url")),
        ({"cooldwon": "PT1H"}, ("cooldwon",)),
    ],
)
def test_an_invalid_policy_names_the_field(override: dict[str, Any], field: tuple[Any, ...]) -> None:
    with pytest.raises(pydantic.ValidationError) as exc:
        effective_policy(RetrainPolicy(), override)
    assert any(tuple(e["loc"]) == field for e in exc.value.errors())


def test_policy_round_trips_through_json() -> None:
    policy = effective_policy(
        RetrainPolicy(),
        {
            "webhook": {"url": "http://127.0.0.1:9000/train", "secret_ref": "trainer"},
            "quiet_hours": [{"start": "22:00", "end": "06:00", "timezone": "Europe/Berlin"}],
        },
    )
    assert RetrainPolicy.model_validate(policy.snapshot()) == policy


def test_backoff_is_exponential_and_capped() -> None:
    d = DispatchPolicy(backoff_initial=timedelta(seconds=1), backoff_max=timedelta(seconds=10))
    assert [backoff_delay(d, n).total_seconds() for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_manual_trigger_bypasses_cooldown_but_not_concurrency() -> None:
    policy = RetrainPolicy()
    cooling = ModelState("credit-risk", last_job_at=T0)
    d = plan_manual(policy, cooling, T0 + timedelta(minutes=1))
    assert isinstance(d, CreateJob) and d.plan.trigger == "manual"
    busy = ModelState("credit-risk", active_jobs=1)
    assert isinstance(plan_manual(policy, busy, T0), IgnoreSignal)


# --------------------------------------------------------------------------- state machine


def a_job(state: JobState = JobState.REQUESTED) -> Job:
    d = decide(RetrainPolicy(), ModelState("credit-risk"), drift(), T0)
    assert isinstance(d, CreateJob)
    job = new_job("job-1", d.plan, RetrainPolicy(), requested_by="policy:default", at=T0)
    return job.model_copy(update={"state": state})


ALLOWED = {
    (JobState.REQUESTED, JobState.DISPATCHED),
    (JobState.REQUESTED, JobState.FAILED),
    (JobState.REQUESTED, JobState.CANCELLED),
    (JobState.AWAITING_CONFIRMATION, JobState.REQUESTED),
    (JobState.AWAITING_CONFIRMATION, JobState.DISPATCHED),
    (JobState.AWAITING_CONFIRMATION, JobState.CANCELLED),
    (JobState.DISPATCHED, JobState.RUNNING),
    (JobState.DISPATCHED, JobState.COMPLETED),
    (JobState.DISPATCHED, JobState.FAILED),
    (JobState.DISPATCHED, JobState.TIMED_OUT),
    (JobState.DISPATCHED, JobState.CANCELLED),
    (JobState.RUNNING, JobState.COMPLETED),
    (JobState.RUNNING, JobState.FAILED),
    (JobState.RUNNING, JobState.TIMED_OUT),
    (JobState.RUNNING, JobState.CANCELLED),
}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(JobState, JobState)))
def test_transition_table(current: JobState, target: JobState) -> None:
    job = a_job(current)
    if (current, target) in ALLOWED:
        moved = job.transition(target, T0 + timedelta(minutes=1))
        assert moved.state is target
        assert moved.seq == job.seq + 1
    else:
        with pytest.raises(IllegalTransition) as exc:
            job.transition(target, T0)
        assert current.value in str(exc.value)
        assert exc.value.current == current.value


def test_terminal_and_active_states_partition_all_states() -> None:
    assert {
        JobState.COMPLETED,
        JobState.FAILED,
        JobState.TIMED_OUT,
        JobState.CANCELLED,
    } == TERMINAL_STATES
    assert set(JobState) == ACTIVE_STATES | TERMINAL_STATES
    assert set(TRANSITIONS) == set(JobState)


def test_transitions_stamp_their_times() -> None:
    job = a_job()
    t1, t2, t3 = (T0 + timedelta(minutes=m) for m in (1, 2, 3))
    job = job.transition(JobState.DISPATCHED, t1).transition(JobState.RUNNING, t2)
    job = job.transition(JobState.COMPLETED, t3, "produced version 4")
    assert (job.dispatched_at, job.running_at, job.finished_at) == (t1, t2, t3)
    assert job.seq == 3 and job.detail == "produced version 4"


def test_a_running_job_times_out_after_the_policy_timeout() -> None:
    job = a_job().transition(JobState.DISPATCHED, T0).transition(JobState.RUNNING, T0)
    assert not is_timed_out(job, timedelta(hours=1), T0 + timedelta(minutes=59))
    assert is_timed_out(job, timedelta(hours=1), T0 + timedelta(hours=1))
    assert not is_timed_out(a_job(), timedelta(hours=1), T0 + timedelta(days=1))


# --------------------------------------------------------------------------- cycle time


def test_cycle_time_runs_from_first_signal_to_rollout_with_step_shares() -> None:
    job = a_job().model_copy(update={"first_signal_at": T0 - timedelta(minutes=10), "requested_at": T0})
    job = job.transition(JobState.DISPATCHED, T0 + timedelta(minutes=10))
    job = job.model_copy(update={"registered_at": T0 + timedelta(minutes=50), "produced_version": "4"})
    c = measure_cycle(job, "completed", T0 + timedelta(minutes=90), timedelta(hours=1))
    assert c.seconds == 100 * 60
    assert c.steps == {
        "signal-to-job": 600,
        "job-to-dispatched": 600,
        "dispatched-to-registered": 2400,
        "registered-to-rollout": 2400,
    }
    assert c.shares["registered-to-rollout"] == pytest.approx(0.4)
    assert sum(c.shares.values()) == pytest.approx(1.0)
    assert c.sla_breached and c.version == "4"


def test_cycle_time_of_a_failed_job_leaves_unknown_steps_out() -> None:
    job = a_job().transition(JobState.FAILED, T0 + timedelta(minutes=3))
    c = measure_cycle(job, "failed", T0 + timedelta(minutes=3), None)
    assert set(c.steps) == {"signal-to-job"}
    assert not c.sla_breached and c.sla_seconds is None


def test_percentiles_interpolate() -> None:
    assert percentile([], 50) is None
    assert percentile([10.0], 90) == 10.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile(list(map(float, range(1, 11))), 90) == pytest.approx(9.1)


def test_cycle_statistics_per_model() -> None:
    base = a_job().transition(JobState.DISPATCHED, T0 + timedelta(minutes=1))
    cycles = [
        measure_cycle(base, "completed", T0 + timedelta(minutes=m), timedelta(minutes=45)) for m in (10, 20, 30, 40, 50)
    ] + [measure_cycle(base, "rolled-back", T0 + timedelta(minutes=5), None)]
    stats = summarise_cycles("credit-risk", cycles, {"completed": 5})
    assert stats.cycles == 6
    assert stats.p50_seconds == 30 * 60
    assert stats.p90_seconds == pytest.approx(46 * 60)
    assert stats.sla_breaches == 1
    assert stats.cycles_by_outcome == {"completed": 5, "rolled-back": 1}
    assert stats.jobs_by_state == {"completed": 5}


@pytest.mark.parametrize(
    ("target", "delivery"),
    [
        (JobState.RUNNING, "delivered"),
        (JobState.COMPLETED, "delivered"),
        (JobState.FAILED, "gave-up"),
        (JobState.TIMED_OUT, "gave-up"),
        (JobState.CANCELLED, "gave-up"),
    ],
)
def test_a_pending_webhook_delivery_ends_with_the_job_or_its_first_report(target: JobState, delivery: str) -> None:
    job = a_job().transition(JobState.DISPATCHED, T0)
    job = job.model_copy(update={"delivery": "pending", "next_attempt_at": T0})
    moved = job.transition(target, T0 + timedelta(minutes=1))
    assert moved.delivery == delivery and moved.next_attempt_at is None
