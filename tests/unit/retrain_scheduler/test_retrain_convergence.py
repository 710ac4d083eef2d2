"""The loop converges: post-signal data waits, the storm guard and the versions that serve, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pydantic
import pytest

from mloop.contracts.payloads import DriftDetected, FeatureDriftResult, PerformanceDegraded, Window
from mloop.retrain_scheduler.domain import (
    CreateJob,
    DataWait,
    IgnoreSignal,
    InFlight,
    Job,
    JobState,
    JoinJob,
    ModelState,
    RetrainPolicy,
    RolloutRecord,
    Signal,
    decide,
    effective_policy,
    final_window,
    in_flight,
    new_job,
    not_serving,
    plan_manual,
    start_data_wait,
)

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
WINDOW = Window(start=T0 - timedelta(minutes=5), end=T0, size=2000)


def drift(*features: str, version: str = "1", n: int = 0, at: datetime = T0) -> Signal:
    payload = DriftDetected(
        model="credit-risk",
        version=version,
        kind="data",
        severity="high",
        window=WINDOW,
        features=[
            FeatureDriftResult(name=f, method="chi2", statistic=50.0, p_value=1e-9, threshold=0.01, drifted=True)
            for f in features
        ]
        + [FeatureDriftResult(name="age", method="ks", statistic=0.01, p_value=0.9, threshold=0.01, drifted=False)],
    )
    return Signal.from_payload(f"drift-{n}", at, payload)


def degraded(version: str = "1") -> Signal:
    payload = PerformanceDegraded(
        model="credit-risk", version=version, metric="accuracy", value=0.6, severity="high", window=WINDOW
    )
    return Signal.from_payload("perf-1", T0, payload)


def policy(**override: object) -> RetrainPolicy:
    return effective_policy(RetrainPolicy(), {"cooldown": "PT0S", **override})


def created(d: object) -> CreateJob:
    assert isinstance(d, CreateJob), d
    return d


# --------------------------------------------------------------------------- waiting for post-signal data


def test_a_drift_job_waits_for_post_signal_data_by_default_and_a_manual_one_does_not() -> None:
    p = RetrainPolicy()
    plan = created(decide(p, ModelState("credit-risk"), drift("income"), T0)).plan
    assert plan.data_wait is not None
    assert plan.data_wait.since == T0 and plan.data_wait.waiting
    assert plan.data_wait.min_rows == p.post_signal_data.min_rows > 0
    assert plan.data_wait.deadline == T0 + p.post_signal_data.max_wait
    manual = plan_manual(p, ModelState("credit-risk"), T0)
    assert isinstance(manual, CreateJob) and manual.plan.data_wait is None


def test_performance_jobs_do_not_wait_unless_the_policy_says_so() -> None:
    assert created(decide(policy(), ModelState("credit-risk"), degraded(), T0)).plan.data_wait is None
    p = policy(post_signal_data={"triggers": ["drift-detected", "performance-degraded"]})
    assert created(decide(p, ModelState("credit-risk"), degraded(), T0)).plan.data_wait is not None


def test_a_disabled_or_empty_wait_is_no_wait() -> None:
    assert start_data_wait(policy(post_signal_data={"enabled": False}), "drift-detected", T0) is None
    assert start_data_wait(policy(post_signal_data={"min_rows": 0}), "drift-detected", T0) is None


def test_labelled_rows_imply_as_many_rows() -> None:
    wait = start_data_wait(policy(post_signal_data={"min_rows": 10, "min_labelled_rows": 50}), "drift-detected", T0)
    assert wait is not None and wait.min_rows == 50 and wait.wants_labels


def test_the_wait_ends_with_enough_rows_and_labels_or_at_the_deadline() -> None:
    wait = DataWait(since=T0, min_rows=100, min_labelled_rows=40, deadline=T0 + timedelta(minutes=10))
    wait = wait.counted(99, 40)
    assert wait.due(T0 + timedelta(seconds=5)) is None
    more = wait.counted(1, 0)
    assert more.due(T0 + timedelta(seconds=6)) == "enough-data"
    labels_short = DataWait(since=T0, min_rows=100, min_labelled_rows=40, deadline=T0 + timedelta(minutes=10))
    assert labels_short.counted(500, 39).due(T0 + timedelta(seconds=6)) is None
    assert labels_short.due(T0 + timedelta(minutes=10)) == "max-wait"
    ended = more.ended(T0 + timedelta(seconds=6), "enough-data")
    assert not ended.waiting and ended.seconds == 6.0
    assert ended.due(T0 + timedelta(hours=1)) is None  # an ended wait never ends twice
    assert more.counted(-5, -5).rows == more.rows  # nothing is ever uncounted


def test_the_final_window_holds_every_post_signal_row() -> None:
    end = T0 + timedelta(seconds=30)
    p = policy(data_window="PT60S")
    wait = DataWait(since=T0, min_rows=1, min_labelled_rows=0, deadline=T0 + timedelta(hours=1))
    w = final_window(p, wait, end)
    assert (w.start, w.end) == (end - timedelta(seconds=60), end)
    # A data window shorter than the wait still reaches back to the signal.
    short = final_window(policy(data_window="PT10S"), wait, end)
    assert short.start == T0 and short.end == end
    # 'signal': only the new world.
    only_new = final_window(p, wait.model_copy(update={"window_start": "signal"}), end)
    assert (only_new.start, only_new.end) == (T0, end)


def test_a_job_records_its_wait_and_its_subjects() -> None:
    p = RetrainPolicy()
    plan = created(decide(p, ModelState("credit-risk"), drift("income", "loan_amount"), T0)).plan
    job = new_job("j1", plan, p, requested_by="policy", at=T0)
    assert job.subjects == ["income", "loan_amount"]  # the undrifted feature is not a subject
    assert job.data_wait is not None and job.data_wait.since == T0
    again = Job.model_validate(job.model_dump(mode="json"))
    assert again.data_wait == job.data_wait


def test_post_signal_policy_fields_are_validated() -> None:
    with pytest.raises(pydantic.ValidationError, match="min_rows"):
        effective_policy(RetrainPolicy(), {"post_signal_data": {"min_rows": -1}})
    with pytest.raises(pydantic.ValidationError, match="window_start"):
        effective_policy(RetrainPolicy(), {"post_signal_data": {"window_start": "yesterday"}})
    with pytest.raises(pydantic.ValidationError, match="join"):
        effective_policy(RetrainPolicy(), {"storm_guard": {"join": "sometimes"}})


# --------------------------------------------------------------------------- which versions serve


def rollout(rid: str, candidate: str, baseline: str | None, state: str, minutes: int) -> RolloutRecord:
    return RolloutRecord(rid, candidate, baseline, state, T0 + timedelta(minutes=minutes))  # type: ignore[arg-type]


def test_a_candidate_in_rollout_does_not_serve_and_the_champion_does() -> None:
    out = not_serving([rollout("r1", "1", None, "completed", 0), rollout("r2", "2", "1", "in-rollout", 5)])
    assert set(out) == {"2"}
    assert "shadow or canary" in out["2"]


def test_after_completion_the_replaced_champion_no_longer_serves() -> None:
    out = not_serving(
        [rollout("r1", "1", None, "completed", 0), rollout("r2", "2", "1", "completed", 5)], awaiting_rollout=["3"]
    )
    assert set(out) == {"1", "3"}
    assert "replaced" in out["1"] and "not finished a rollout" in out["3"]


def test_a_rolled_back_candidate_does_not_serve_and_the_baseline_still_does() -> None:
    out = not_serving([rollout("r1", "1", None, "completed", 0), rollout("r2", "2", "1", "rolled-back", 5)])
    assert set(out) == {"2"}
    assert "rolled back" in out["2"]


def test_a_version_never_seen_in_a_rollout_is_taken_at_its_word() -> None:
    assert not_serving([]) == {}
    assert "7" not in not_serving([rollout("r1", "1", None, "completed", 0)])


def test_a_retried_candidate_that_completes_becomes_the_champion() -> None:
    out = not_serving(
        [
            rollout("r1", "1", None, "completed", 0),
            rollout("r2", "2", "1", "rolled-back", 5),
            rollout("r3", "2", "1", "completed", 9),
        ]
    )
    assert set(out) == {"1"}


# --------------------------------------------------------------------------- the storm guard


def test_signals_about_a_shadow_or_canary_version_start_no_job() -> None:
    state = ModelState("credit-risk", not_serving=not_serving([rollout("r2", "2", "1", "in-rollout", 0)]))
    d = decide(policy(), state, drift("income", version="2"), T0)
    assert isinstance(d, IgnoreSignal) and d.reason == "not-serving"
    # The champion's own signal still counts.
    assert isinstance(decide(policy(), state, drift("income", version="1"), T0), CreateJob)
    # A policy can turn the guard off.
    off = policy(storm_guard={"ignore_not_serving": False})
    assert isinstance(decide(off, state, drift("income", version="2"), T0), CreateJob)


def test_a_signal_about_the_features_of_the_job_in_flight_joins_it() -> None:
    flying = (InFlight("job-1", frozenset({"income", "loan_amount"}), active=False, produced_version="2"),)
    state = ModelState("credit-risk", in_flight=flying)
    d = decide(policy(), state, drift("income", "utilisation"), T0)
    assert isinstance(d, JoinJob) and d.job_id == "job-1"
    assert d.subjects == {"income", "utilisation"}
    # 'subset': a new drifted feature is not the same incident.
    subset = policy(storm_guard={"join": "subset"})
    assert isinstance(decide(subset, state, drift("income"), T0), JoinJob)
    d2 = decide(subset, state, drift("income", "utilisation"), T0)
    assert isinstance(d2, IgnoreSignal) and d2.reason == "max-concurrency"


def test_a_signal_about_other_things_waits_for_the_version_in_rollout() -> None:
    flying = (InFlight("job-1", frozenset({"income"}), active=False, produced_version="2"),)
    state = ModelState("credit-risk", in_flight=flying)
    d = decide(policy(), state, degraded(), T0)
    assert isinstance(d, IgnoreSignal) and d.reason == "max-concurrency" and "in flight" in d.detail
    # Without the rollout hold only active jobs count.
    free = policy(storm_guard={"until_rollout": False, "join": "off"})
    assert isinstance(decide(free, state, degraded(), T0), CreateJob)


def test_joining_can_be_turned_off() -> None:
    flying = (InFlight("job-1", frozenset({"income"}), active=True),)
    state = ModelState("credit-risk", active_jobs=1, in_flight=flying)
    d = decide(policy(storm_guard={"join": "off"}), state, drift("income"), T0)
    assert isinstance(d, IgnoreSignal) and d.reason == "max-concurrency"


def _job(state: JobState, *, version: str | None, finished: datetime | None) -> Job:
    p = RetrainPolicy()
    plan = created(decide(p, ModelState("m"), drift("income"), T0)).plan
    return new_job("j", plan, p, requested_by="policy", at=T0).model_copy(
        update={"state": state, "produced_version": version, "finished_at": finished}
    )


def test_a_job_is_in_flight_until_its_version_finishes_its_rollout_within_a_bound() -> None:
    p = RetrainPolicy()
    done = T0 + timedelta(minutes=10)
    assert in_flight(_job(JobState.DISPATCHED, version=None, finished=None), p, False, done)
    completed = _job(JobState.COMPLETED, version="2", finished=done)
    assert in_flight(completed, p, False, done + timedelta(hours=1))
    assert not in_flight(completed, p, True, done + timedelta(hours=1))
    assert not in_flight(completed, p, False, done + p.storm_guard.in_flight_max)
    assert not in_flight(_job(JobState.COMPLETED, version=None, finished=done), p, False, done)
    assert not in_flight(_job(JobState.FAILED, version=None, finished=done), p, False, done)
    hold_off = effective_policy(p, {"storm_guard": {"until_rollout": False}})
    assert not in_flight(completed, hold_off, False, done + timedelta(hours=1))
