"""When a rollout is analysed next: at the moment a step is due, not at the next interval tick."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mloop.rollout.domain.evidence import Evidence, VersionStats
from mloop.rollout.domain.machine import Rollout, analyse, new_rollout, next_analysis_at, samples_reached, start
from mloop.rollout.domain.plan import RolloutPlan

T0 = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def plan(**overrides: object) -> RolloutPlan:
    return RolloutPlan.model_validate(
        {
            "strategy": "canary",
            "steps": [0.1, 0.5],
            "step_min_duration_s": 10,
            "step_min_samples": 100,
            "analysis_interval_s": 3,
            "inconclusive_timeout_s": 600,
            "progress_deadline_s": 1200,
            "gates": [],
            **overrides,
        }
    )


def started(**overrides: object) -> Rollout:
    r = new_rollout(rollout_id="r-1", model="m", candidate="2", baseline="1", plan=plan(**overrides), now=T0)
    return start(r, now=T0, actor="alice").rollout


def evidence(candidate: int) -> Evidence:
    return Evidence(baseline=VersionStats(requests=10 * candidate), candidate=VersionStats(requests=candidate))


def test_a_step_is_analysed_at_the_moment_it_has_lasted_its_minimum_duration() -> None:
    r = started()
    assert r.phase == "progressing"
    # 10 s step, 3 s interval: 3, 6, 9 ... and then exactly 10, not 12.
    assert next_analysis_at(r, at(0)) == at(3)
    r = analyse(r, evidence(50), now=at(9)).rollout
    assert next_analysis_at(r, at(9)) == at(10)
    # Analysed at the due moment with the samples in: it advances there and then.
    t = analyse(r, evidence(150), now=at(10))
    assert t.rollout.step_index == 1 and t.rollout.phase_started_at == at(10)
    assert next_analysis_at(t.rollout, at(10)) == at(13)


def test_a_ready_step_waiting_for_gates_or_samples_keeps_its_interval() -> None:
    r = started()
    r = analyse(r, evidence(50), now=at(10)).rollout  # due, but 50 of 100 samples
    assert r.step_index == 0
    assert next_analysis_at(r, at(10)) == at(13)  # no busy loop on a due step


def test_a_zero_hold_promotion_completes_at_once_not_one_interval_later() -> None:
    r = started(steps=[0.5])
    t = analyse(r, evidence(150), now=at(10))
    assert t.rollout.phase == "promoting"
    assert next_analysis_at(t.rollout, at(10)) == at(10)
    done = analyse(t.rollout, evidence(160), now=at(10.01))
    assert done.rollout.phase == "completed"
    assert next_analysis_at(done.rollout, at(10.01)) is None


def test_the_shadow_phase_ends_on_time_too() -> None:
    r = started(shadow_duration_s=4)
    assert r.phase == "shadowing"
    assert next_analysis_at(r, at(3)) == at(4)


def test_evidence_that_completes_the_samples_of_a_due_step_asks_for_an_analysis_now() -> None:
    r = started()
    r = analyse(r, evidence(50), now=at(10)).rollout  # due, short of samples
    assert not samples_reached(r, 99, at(11))
    assert samples_reached(r, 100, at(11))
    # Not before the step has lasted long enough, and only once per step.
    early = analyse(started(), evidence(50), now=at(5)).rollout
    assert not samples_reached(early, 500, at(6))
    counted = analyse(r, evidence(100), now=at(11)).rollout
    assert counted.step_index == 1
    again = r.model_copy(update={"candidate_requests": 120})
    assert not samples_reached(again, 130, at(12))
