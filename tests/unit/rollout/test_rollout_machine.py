"""The rollout state machine: every phase x action, and the analysis decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mloop.contracts.payloads import (
    RolloutAdvanced,
    RolloutCompleted,
    RolloutPaused,
    RolloutResumed,
    RolloutRolledBack,
    RolloutStarted,
    Route,
    TrafficSplitChanged,
)
from mloop.rollout.domain.evidence import Evidence, VersionStats, prediction_key
from mloop.rollout.domain.machine import (
    ACTIONS,
    Action,
    IllegalTransition,
    Phase,
    Rollout,
    Transition,
    abort,
    act,
    analyse,
    check_deadline,
    new_rollout,
    pause,
    promote_full,
    promote_step,
    resume,
    retry,
    routes_for,
    start,
)
from mloop.rollout.domain.plan import Gate, RolloutPlan, ThresholdRange

T0 = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def stats(
    requests: int,
    errors: int = 0,
    *,
    latency_ms: float = 5.0,
    labelled: int = 0,
    correct: int = 0,
    prediction: float = 0.5,
) -> VersionStats:
    s = VersionStats()
    s.record_prediction(error=False, latency_ms=latency_ms, prediction=prediction)
    bucket, key = next(iter(s.latency)), prediction_key(prediction)
    assert key is not None
    return VersionStats(
        requests=requests,
        errors=errors,
        latency={bucket: requests},
        predictions={key: requests - errors},
        labelled=labelled,
        correct=correct,
    )


def evidence(baseline: int, candidate: int, *, base_errors: int = 0, cand_errors: int = 0, **cand: float) -> Evidence:
    return Evidence(
        baseline=stats(baseline, base_errors),
        candidate=stats(candidate, cand_errors, **cand),  # type: ignore[arg-type]
    )


FAST = dict(
    step_min_duration_s=60,
    step_min_samples=100,
    analysis_interval_s=10,
    inconclusive_timeout_s=600,
    progress_deadline_s=1200,
)


def canary(**overrides: object) -> RolloutPlan:
    return RolloutPlan.model_validate({"strategy": "canary", **FAST, **overrides})


def rollout(plan: RolloutPlan | None = None, baseline: str | None = "3") -> Rollout:
    return new_rollout(
        rollout_id="r-1",
        model="credit-risk",
        candidate="4",
        baseline=baseline,
        plan=plan or canary(),
        now=T0,
    )


def in_phase(phase: Phase) -> Rollout:
    """A rollout brought into ``phase`` through legal transitions."""
    r = rollout(canary(shadow_duration_s=60) if phase == "shadowing" else canary())
    if phase == "initialized":
        return r
    r = start(r, now=at(0), actor="alice").rollout
    if phase in ("shadowing", "progressing"):
        return r
    if phase == "paused":
        return pause(r, now=at(1), actor="alice").rollout
    if phase == "promoting":
        return promote_full(r, now=at(1), actor="alice").rollout
    if phase == "completed":
        r = promote_full(r, now=at(1), actor="alice").rollout
        return analyse(r, evidence(1000, 1000), now=at(10)).rollout
    if phase == "rolled-back":
        return analyse(r, evidence(5000, 500, base_errors=50, cand_errors=100), now=at(10)).rollout
    if phase == "aborted":
        return abort(r, now=at(1), actor="alice").rollout
    raise AssertionError(phase)


# phase -> action -> resulting phase (None: illegal, 409)
EXPECTED: dict[Phase, dict[Action, Phase | None]] = {
    "initialized": {
        "start": "progressing",
        "pause": None,
        "resume": None,
        "abort": "aborted",
        "promote-step": None,
        "promote-full": None,
        "retry": None,
    },
    "shadowing": {
        "start": None,
        "pause": "paused",
        "resume": None,
        "abort": "aborted",
        "promote-step": "progressing",
        "promote-full": "promoting",
        "retry": None,
    },
    "progressing": {
        "start": None,
        "pause": "paused",
        "resume": None,
        "abort": "aborted",
        "promote-step": "progressing",
        "promote-full": "promoting",
        "retry": None,
    },
    "paused": {
        "start": None,
        "pause": None,
        "resume": "progressing",
        "abort": "aborted",
        "promote-step": "progressing",
        "promote-full": "promoting",
        "retry": None,
    },
    "promoting": {
        "start": None,
        "pause": "paused",
        "resume": None,
        "abort": "aborted",
        "promote-step": "completed",
        "promote-full": None,
        "retry": None,
    },
    "completed": {a: None for a in ACTIONS},
    "rolled-back": {**{a: None for a in ACTIONS}, "retry": "progressing"},
    "aborted": {**{a: None for a in ACTIONS}, "retry": "progressing"},
}


@pytest.mark.parametrize(("phase", "action"), [(p, a) for p in EXPECTED for a in ACTIONS], ids=lambda v: str(v))
def test_every_action_in_every_phase(phase: Phase, action: Action) -> None:
    r = in_phase(phase)
    assert r.phase == phase
    expected = EXPECTED[phase][action]
    if expected is None:
        with pytest.raises(IllegalTransition) as info:
            act(r, action, now=at(30), actor="bob")
        assert info.value.phase == phase
        assert phase in str(info.value)
        return
    t = act(r, action, now=at(30), actor="bob")
    assert t.rollout.phase == expected
    assert len(t.events) >= 1
    assert [e.seq for e in t.events] == list(range(r.seq + 1, r.seq + 1 + len(t.events)))
    assert all(e.actor == "bob" for e in t.events)
    if t.routes is not None:
        TrafficSplitChanged(model="credit-risk", seq=1, routes=t.routes)  # a valid table


def test_start_opens_the_first_canary_step_with_the_candidate_last() -> None:
    t = start(rollout(), now=at(0), actor="registry")
    assert t.rollout.phase == "progressing"
    assert t.routes == [Route(version="3", weight=0.95), Route(version="4", weight=0.05)]
    assert isinstance(t.events[0], RolloutStarted)
    assert t.events[0].weight == 0.05
    assert t.events[0].baseline_version == "3"


def test_first_champion_completes_at_once_at_full_traffic() -> None:
    t = start(rollout(baseline=None), now=at(0), actor="registry")
    assert t.rollout.phase == "completed"
    assert t.routes == [Route(version="4", weight=1.0)]
    assert [type(e) for e in t.events] == [RolloutStarted, RolloutCompleted]
    assert "no previous champion" in t.events[-1].reason


def test_shadow_phase_mirrors_traffic_then_opens_the_first_step() -> None:
    r = rollout(canary(shadow_duration_s=120, shadow_fraction=0.5))
    t = start(r, now=at(0), actor="registry")
    assert t.rollout.phase == "shadowing"
    assert t.routes == [
        Route(version="3", weight=1.0),
        Route(version="4", weight=0.5, shadow=True),
    ]
    r = t.rollout
    t = analyse(r, evidence(1000, 500), now=at(60))
    assert t.rollout.phase == "shadowing"  # shadow duration not over yet
    t = analyse(t.rollout, evidence(2000, 1000), now=at(120))
    assert t.rollout.phase == "progressing"
    assert t.routes == [Route(version="3", weight=0.95), Route(version="4", weight=0.05)]
    assert isinstance(t.events[0], RolloutAdvanced)


def test_abort_during_shadow_sends_everything_back_to_the_baseline() -> None:
    r = in_phase("shadowing")
    t = abort(r, now=at(5), actor="alice", reason="wrong features")
    assert t.rollout.phase == "aborted"
    assert t.routes == [Route(version="3", weight=1.0)]
    (event,) = t.events
    assert isinstance(event, RolloutRolledBack)
    assert event.phase == "aborted"
    assert event.reason == "aborted by alice: wrong features"


def test_good_canary_walks_every_step_to_completion() -> None:
    r = start(rollout(), now=at(0), actor="registry").rollout
    weights, kinds = [r.weight], []
    base = cand = 0
    for tick in range(1, 200):
        base += int(1000 * (1 - r.weight))
        cand += int(1000 * r.weight)
        t = analyse(r, evidence(base, cand, base_errors=base // 50, cand_errors=cand // 50), now=at(tick * 10))
        r = t.rollout
        kinds += [type(e).__name__ for e in t.events]
        if t.routes is not None:
            weights.append(r.weight)
        if r.terminal:
            break
    assert r.phase == "completed"
    assert weights == [0.05, 0.25, 0.5, 1.0]
    assert kinds == ["RolloutAdvanced"] * 3 + ["RolloutCompleted"]
    assert r.failed_checks == 0


def test_step_waits_for_its_minimum_duration_and_samples() -> None:
    r = start(rollout(canary(step_min_samples=500)), now=at(0), actor="registry").rollout
    t = analyse(r, evidence(10_000, 400), now=at(59))
    assert t.rollout.phase == "progressing" and t.rollout.step_index == 0
    t = analyse(t.rollout, evidence(10_000, 400), now=at(70))
    assert t.rollout.step_index == 0  # duration over, samples not yet
    assert t.analysis is not None and "400 of 500" in t.analysis.reason
    t = analyse(t.rollout, evidence(10_000, 500), now=at(80))
    assert t.rollout.step_index == 1


def test_candidate_proven_worse_rolls_back_at_once() -> None:
    r = start(rollout(canary(failure_threshold=5)), now=at(0), actor="registry").rollout
    t = analyse(r, evidence(20_000, 1_000, base_errors=400, cand_errors=80), now=at(10))
    assert t.rollout.phase == "rolled-back"
    assert t.routes == [Route(version="3", weight=1.0)]
    (event,) = t.events
    assert isinstance(event, RolloutRolledBack)
    assert "error-rate" in event.reason
    assert any(g.name == "error-rate" and g.outcome == "fail" for g in event.gates)
    assert t.analysis is not None and t.analysis.action == "rollback"


def test_canary_rolls_back_after_threshold_failed_checks() -> None:
    plan = canary(
        failure_threshold=3,
        gates=[Gate(metric="latency-p95", threshold=ThresholdRange(max=50.0))],
    )
    r = start(rollout(plan), now=at(0), actor="registry").rollout
    slow = evidence(5_000, 300, latency_ms=80.0)
    for tick, expected in ((1, 1), (2, 2)):
        t = analyse(r, slow, now=at(tick * 10))
        r = t.rollout
        assert r.phase == "progressing"
        assert r.failed_checks == expected
        assert not t.events and t.routes is None
    t = analyse(r, slow, now=at(30))
    assert t.rollout.phase == "rolled-back"
    assert "3 failed checks" in t.rollout.reason
    assert t.routes == [Route(version="3", weight=1.0)]


def test_a_failing_check_does_not_advance_even_when_the_step_is_due() -> None:
    plan = canary(gates=[Gate(metric="latency-p95", threshold=ThresholdRange(max=50.0))])
    r = start(rollout(plan), now=at(0), actor="registry").rollout
    t = analyse(r, evidence(5_000, 300, latency_ms=80.0), now=at(120))
    assert t.rollout.step_index == 0 and t.rollout.failed_checks == 1
    t = analyse(t.rollout, evidence(6_000, 400), now=at(130))
    assert t.rollout.step_index == 1


def test_inconclusive_gates_pause_for_a_human() -> None:
    # Champion/challenger: accuracy must be proven better; no labels ever arrive.
    plan = RolloutPlan.model_validate({"strategy": "champion-challenger", **FAST})
    r = start(rollout(plan), now=at(0), actor="registry").rollout
    assert r.weight == 0.5
    t = analyse(r, evidence(5_000, 5_000), now=at(300))
    assert t.rollout.phase == "progressing"
    t = analyse(t.rollout, evidence(10_000, 10_000), now=at(600))
    assert t.rollout.phase == "paused"
    assert t.rollout.paused_from == "progressing"
    (event,) = t.events
    assert isinstance(event, RolloutPaused)
    assert event.reason.startswith("inconclusive") and "accuracy" in event.reason
    assert t.routes is None  # traffic stays where it is


def test_challenger_proven_better_is_promoted() -> None:
    plan = RolloutPlan.model_validate({"strategy": "champion-challenger", **FAST})
    r = start(rollout(plan), now=at(0), actor="registry").rollout
    ev = Evidence(
        baseline=stats(5_000, labelled=4_000, correct=3_200),
        candidate=stats(5_000, labelled=4_000, correct=3_500),
    )
    t = analyse(r, ev, now=at(60))
    assert t.rollout.phase == "promoting"
    assert t.routes == [Route(version="4", weight=1.0)]


def test_resume_after_pause_continues_the_same_step() -> None:
    r = start(rollout(), now=at(0), actor="registry").rollout
    r = analyse(r, evidence(5_000, 300), now=at(70)).rollout  # -> step 1 (25 %)
    assert r.step_index == 1
    p = pause(r, now=at(80), actor="alice")
    assert p.rollout.phase == "paused" and p.routes is None
    assert isinstance(p.events[0], RolloutPaused)
    assert analyse(p.rollout, evidence(9_000, 9_000), now=at(500)).rollout.phase == "paused"
    t = resume(p.rollout, now=at(900), actor="alice")
    assert t.rollout.phase == "progressing" and t.rollout.step_index == 1
    assert t.rollout.weight == 0.25
    assert isinstance(t.events[0], RolloutResumed)
    assert routes_for(t.rollout) == [Route(version="3", weight=0.75), Route(version="4", weight=0.25)]
    # The step's clock restarted at resume: no deadline hit, no instant advance.
    t2 = analyse(t.rollout, evidence(10_000, 10_000), now=at(910))
    assert t2.rollout.phase == "progressing" and t2.rollout.step_index == 1


def test_progress_deadline_rolls_back_a_stuck_step() -> None:
    r = start(rollout(canary(inconclusive_timeout_s=5_000)), now=at(0), actor="registry").rollout
    assert check_deadline(r, now=at(1_199)) is None
    t = analyse(r, evidence(100, 3), now=at(1_200))  # never enough samples
    assert t.rollout.phase == "rolled-back"
    assert "progress deadline" in t.rollout.reason
    assert t.routes == [Route(version="3", weight=1.0)]
    expired = check_deadline(r, now=at(1_300))
    assert expired is not None and expired.rollout.phase == "rolled-back"


def test_promote_full_skips_and_records_the_remaining_steps() -> None:
    r = start(rollout(), now=at(0), actor="registry").rollout
    t = promote_full(r, now=at(5), actor="alice", reason="hotfix")
    assert t.rollout.phase == "promoting"
    assert t.rollout.skipped_steps == [0.25, 0.5]
    assert "skipped steps [0.25, 0.5]" in t.events[0].reason
    assert t.routes == [Route(version="4", weight=1.0)]


def test_promote_step_moves_one_step_without_analysis() -> None:
    r = start(rollout(), now=at(0), actor="registry").rollout
    t = promote_step(r, now=at(1), actor="alice")
    assert (t.rollout.step_index, t.rollout.weight) == (1, 0.25)
    assert "promote-step by alice" in t.events[0].reason


def test_retry_starts_a_fresh_attempt() -> None:
    r = in_phase("rolled-back")
    assert r.failed_checks == 0 and r.p_values
    t = retry(r, now=at(100), actor="alice")
    assert t.rollout.phase == "progressing"
    assert t.rollout.attempt == 2 and t.rollout.p_values == {} and t.rollout.step_index == 0
    assert isinstance(t.events[0], RolloutStarted)
    assert t.routes == [Route(version="3", weight=0.95), Route(version="4", weight=0.05)]


@pytest.mark.parametrize("phase", ["initialized", "paused", "completed", "rolled-back", "aborted"])
def test_analysis_outside_active_phases_changes_nothing(phase: Phase) -> None:
    r = in_phase(phase)
    t = analyse(r, evidence(10_000, 10_000, cand_errors=5_000), now=at(5_000))
    assert t == Transition(r)


def test_binary_rollout_switches_at_once_and_rolls_back_in_the_hold() -> None:
    plan = RolloutPlan.model_validate(
        {
            "strategy": "binary",
            **FAST,
            "promotion_hold_s": 300,
            "failure_threshold": 1,
            "gates": [{"metric": "error-rate", "threshold": {"max": 0.05}}],
        }
    )
    t = start(rollout(plan), now=at(0), actor="registry")
    assert t.rollout.phase == "promoting" and t.routes == [Route(version="4", weight=1.0)]
    t = analyse(t.rollout, evidence(0, 1_000, cand_errors=100), now=at(10))
    assert t.rollout.phase == "rolled-back"
    assert t.routes == [Route(version="3", weight=1.0)]


def test_shadow_strategy_cuts_over_after_the_shadow_phase() -> None:
    plan = RolloutPlan.model_validate({"strategy": "shadow", **FAST, "shadow_duration_s": 60})
    r = start(rollout(plan), now=at(0), actor="registry").rollout
    assert r.phase == "shadowing"
    t = analyse(r, evidence(1_000, 1_000), now=at(60))
    assert t.rollout.phase == "promoting"
    t = analyse(t.rollout, evidence(1_000, 1_100), now=at(70))
    assert t.rollout.phase == "completed"
    assert isinstance(t.events[0], RolloutCompleted)


def test_rollout_state_round_trips_through_json() -> None:
    r = analyse(in_phase("progressing"), evidence(1_000, 100), now=at(10)).rollout
    assert Rollout.model_validate_json(r.model_dump_json()) == r


def test_champion_challenger_shadow_phase_ends_without_a_verdict_on_accuracy() -> None:
    plan = RolloutPlan.model_validate({"strategy": "champion-challenger", **FAST, "shadow_duration_s": 60})
    r = start(rollout(plan), now=at(0), actor="registry").rollout
    assert r.phase == "shadowing"
    t = analyse(r, evidence(5_000, 5_000), now=at(60))  # no labels yet: accuracy inconclusive
    assert t.rollout.phase == "progressing" and t.rollout.weight == 0.5
