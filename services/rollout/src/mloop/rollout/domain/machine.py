"""The rollout state machine: pure, deterministic, time passed in.

Phases::

    initialized ──start──▶ shadowing ──▶ progressing (step 0 … n-1) ──▶ promoting ──▶ completed
                      │         ╲______________________________________↗    │
                      │   pause ⇅ resume (paused remembers where it was)     │
                      └──────────────▶ rolled-back (gates, deadline) / aborted (operator)
                                         │ retry ──▶ a fresh attempt from the start

Every function takes a :class:`Rollout` and returns a :class:`Transition`: the
new state plus its effects — the routing table to publish on
``traffic-split-changed`` (None when it does not change), the rollout events
to publish, and the analysis record for the history. An action that is not
allowed in the current phase raises :class:`IllegalTransition` naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mloop.contracts.payloads import (
    GateResult,
    RolloutAdvanced,
    RolloutCompleted,
    RolloutEvent,
    RolloutPaused,
    RolloutResumed,
    RolloutRolledBack,
    RolloutStarted,
    Route,
)
from mloop.rollout.domain.evidence import Evidence
from mloop.rollout.domain.gates import Outcome, Verdict, evaluate
from mloop.rollout.domain.plan import RolloutPlan

__all__ = [
    "ACTIONS",
    "ACTIVE",
    "ALLOWED",
    "TERMINAL",
    "Action",
    "AnalysisAction",
    "AnalysisRecord",
    "IllegalTransition",
    "Phase",
    "Rollout",
    "RolloutError",
    "Transition",
    "abort",
    "act",
    "analyse",
    "check_deadline",
    "new_rollout",
    "next_analysis_at",
    "pause",
    "promote_full",
    "promote_step",
    "resume",
    "retry",
    "routes_for",
    "samples_reached",
    "start",
]

Phase = Literal[
    "initialized",
    "shadowing",
    "progressing",
    "paused",
    "promoting",
    "completed",
    "rolled-back",
    "aborted",
]
Action = Literal["start", "pause", "resume", "abort", "promote-step", "promote-full", "retry"]
ACTIONS: tuple[Action, ...] = (
    "start",
    "pause",
    "resume",
    "abort",
    "promote-step",
    "promote-full",
    "retry",
)
ACTIVE: frozenset[Phase] = frozenset({"shadowing", "progressing", "promoting"})
TERMINAL: frozenset[Phase] = frozenset({"completed", "rolled-back", "aborted"})

#: Where each operator action is legal.
ALLOWED: dict[Action, frozenset[Phase]] = {
    "start": frozenset({"initialized"}),
    "pause": ACTIVE,
    "resume": frozenset({"paused"}),
    "abort": frozenset({"initialized", "shadowing", "progressing", "paused", "promoting"}),
    "promote-step": frozenset({"shadowing", "progressing", "paused", "promoting"}),
    "promote-full": frozenset({"shadowing", "progressing", "paused"}),
    "retry": frozenset({"rolled-back", "aborted"}),
}


class RolloutError(Exception):
    """Base of the rollout domain's errors."""


class IllegalTransition(RolloutError):
    """An action that the rollout's current phase does not allow (HTTP 409)."""

    def __init__(self, action: str, phase: str) -> None:
        super().__init__(f"cannot {action} a rollout that is {phase}")
        self.action = action
        self.phase = phase


class Rollout(BaseModel):
    """The state of one rollout of ``candidate`` against ``baseline``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    model: str
    candidate: str
    baseline: str | None
    plan: RolloutPlan
    phase: Phase = "initialized"
    paused_from: Phase | None = None
    step_index: int = Field(default=0, ge=0, description="Index into the plan's traffic steps")
    weight: float = Field(default=0.0, ge=0.0, le=1.0, description="Candidate's serving weight")
    failed_checks: int = 0
    seq: int = Field(default=0, description="Last rollout event sequence number used")
    attempt: int = 1
    created_at: datetime
    phase_started_at: datetime | None = None
    step_start_requests: int = 0
    candidate_requests: int = Field(default=0, description="Latest cumulative candidate count")
    last_analysis_at: datetime | None = None
    p_values: dict[str, float] = Field(default_factory=dict)
    last_gates: list[GateResult] = Field(default_factory=list)
    skipped_steps: list[float] = Field(default_factory=list)
    reason: str = ""
    actor: str = ""
    finished_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL

    def can(self, action: Action) -> bool:
        return self.phase in ALLOWED[action]


AnalysisAction = Literal["none", "advance", "complete", "pause", "rollback"]


@dataclass(frozen=True)
class AnalysisRecord:
    """One analysis of the evidence, for the rollout's history."""

    at: datetime
    phase: Phase
    step_index: int
    weight: float
    outcome: Outcome
    action: AnalysisAction
    failed_checks: int
    gates: list[dict[str, Any]]
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "phase": self.phase,
            "step_index": self.step_index,
            "weight": self.weight,
            "outcome": self.outcome,
            "action": self.action,
            "failed_checks": self.failed_checks,
            "gates": self.gates,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Transition:
    """A new state and what to publish because of it."""

    rollout: Rollout
    routes: list[Route] | None = None
    events: list[RolloutEvent] = field(default_factory=list)
    analysis: AnalysisRecord | None = None


def new_rollout(
    *,
    rollout_id: str,
    model: str,
    candidate: str,
    baseline: str | None,
    plan: RolloutPlan,
    now: datetime,
) -> Rollout:
    """A rollout in ``initialized``; nothing is published until it starts."""
    return Rollout(
        id=rollout_id,
        model=model,
        candidate=candidate,
        baseline=baseline,
        plan=plan,
        created_at=now,
    )


# ---------------------------------------------------------------------- routing


def routes_for(r: Rollout) -> list[Route]:
    """The full routing table for the rollout's phase, baseline first.

    Routers lay non-shadow routes out on [0, 1) in table order, so listing
    the baseline first and the candidate last lets the candidate's range grow
    from the top end and every key it already serves stays on it.
    """
    phase = r.paused_from if r.phase == "paused" and r.paused_from else r.phase
    cand, base = r.candidate, r.baseline
    if base is None or base == cand or phase in ("promoting", "completed"):
        return [Route(version=cand, weight=1.0)]
    if phase in ("rolled-back", "aborted", "initialized"):
        return [Route(version=base, weight=1.0)]
    if phase == "shadowing":
        return [
            Route(version=base, weight=1.0),
            Route(version=cand, weight=r.plan.shadow_fraction, shadow=True),
        ]
    w = round(r.weight, 6)
    return [Route(version=base, weight=round(1.0 - w, 6)), Route(version=cand, weight=w)]


# ---------------------------------------------------------------------- events

_EVENT_TYPES: dict[str, type[RolloutEvent]] = {
    "started": RolloutStarted,
    "advanced": RolloutAdvanced,
    "paused": RolloutPaused,
    "resumed": RolloutResumed,
    "completed": RolloutCompleted,
    "rolled-back": RolloutRolledBack,
}


def _emit(
    r: Rollout, kind: str, reason: str, actor: str, gates: list[GateResult] | None = None
) -> tuple[Rollout, RolloutEvent]:
    r = r.model_copy(update={"seq": r.seq + 1})
    event = _EVENT_TYPES[kind](
        model=r.model,
        rollout_id=r.id,
        seq=r.seq,
        version=r.candidate,
        baseline_version=r.baseline,
        strategy=r.plan.strategy,
        phase=r.phase,
        step_index=r.step_index,
        weight=r.weight,
        reason=reason,
        actor=actor,
        gates=list(gates if gates is not None else r.last_gates),
    )
    return r, event


def _require(r: Rollout, action: Action) -> None:
    if not r.can(action):
        raise IllegalTransition(action, r.phase)


# ---------------------------------------------------------------------- entering phases


def _enter(r: Rollout, phase: Phase, now: datetime, **update: Any) -> Rollout:
    values: dict[str, Any] = {
        "phase": phase,
        "paused_from": None,
        "phase_started_at": now,
        "step_start_requests": r.candidate_requests,
        **update,
    }
    if phase in TERMINAL:
        values["finished_at"] = now
    return r.model_copy(update=values)


def _first_phase(r: Rollout, now: datetime) -> Rollout:
    """Where a (re)started rollout begins."""
    plan = r.plan
    if r.baseline is None or r.baseline == r.candidate:
        return _enter(r, "completed", now, weight=1.0)
    if plan.shadow_duration_s > 0:
        return _enter(r, "shadowing", now, weight=0.0, step_index=0)
    return _after_shadow(r, now)


def _after_shadow(r: Rollout, now: datetime) -> Rollout:
    steps = r.plan.traffic_steps
    if r.plan.strategy in ("shadow", "binary") or not steps:
        return _enter(r, "promoting", now, weight=1.0, step_index=len(steps))
    return _enter(r, "progressing", now, weight=steps[0].weight, step_index=0)


def _next(r: Rollout, now: datetime) -> Rollout:
    """One step forward from the phase the rollout is (or was, if paused) in."""
    phase = r.paused_from if r.phase == "paused" and r.paused_from else r.phase
    if phase == "shadowing":
        return _after_shadow(r, now)
    if phase == "progressing":
        steps = r.plan.traffic_steps
        nxt = r.step_index + 1
        if nxt < len(steps):
            return _enter(r, "progressing", now, step_index=nxt, weight=steps[nxt].weight)
        return _enter(r, "promoting", now, step_index=len(steps), weight=1.0)
    if phase == "promoting":
        return _enter(r, "completed", now, weight=1.0)
    raise AssertionError(f"no next phase after {phase}")  # pragma: no cover


def _advance(r: Rollout, now: datetime, reason: str, actor: str, gates: list[GateResult] | None = None) -> Transition:
    before = routes_for(r)
    r = _next(r, now).model_copy(update={"reason": reason, "actor": actor})
    kind = "completed" if r.phase == "completed" else "advanced"
    r, event = _emit(r, kind, reason, actor, gates)
    after = routes_for(r)
    return Transition(r, routes=after if after != before else None, events=[event])


def _roll_back(
    r: Rollout,
    now: datetime,
    reason: str,
    actor: str,
    phase: Phase = "rolled-back",
    gates: list[GateResult] | None = None,
) -> Transition:
    r = _enter(r, phase, now, weight=0.0).model_copy(update={"reason": reason, "actor": actor})
    r, event = _emit(r, "rolled-back", reason, actor, gates)
    routes = routes_for(r) if r.baseline is not None else None
    return Transition(r, routes=routes, events=[event])


# ---------------------------------------------------------------------- operator actions


def start(r: Rollout, *, now: datetime, actor: str, reason: str = "") -> Transition:
    """Begin the rollout: shadow, first canary step, or straight to full traffic.

    Without a baseline (the model's first champion) the rollout completes at
    once with the candidate at 100 %.
    """
    _require(r, "start")
    return _begin(r, now, actor, reason or "started")


def _begin(r: Rollout, now: datetime, actor: str, reason: str) -> Transition:
    r = _first_phase(r, now).model_copy(update={"reason": reason, "actor": actor})
    events: list[RolloutEvent] = []
    if r.phase == "completed":
        why = f"{reason}; no previous champion: completed at full traffic"
        r, started = _emit(r.model_copy(update={"reason": why}), "started", why, actor)
        r, done = _emit(r, "completed", why, actor)
        events = [started, done]
    else:
        r, started = _emit(r, "started", reason, actor)
        events = [started]
    return Transition(r, routes=routes_for(r), events=events)


def pause(r: Rollout, *, now: datetime, actor: str, reason: str = "") -> Transition:
    """Hold the rollout where it is; traffic stays as it is."""
    _require(r, "pause")
    why = reason or f"paused by {actor}"
    r = r.model_copy(update={"phase": "paused", "paused_from": r.phase, "reason": why, "actor": actor})
    r, event = _emit(r, "paused", why, actor)
    return Transition(r, events=[event])


def resume(r: Rollout, *, now: datetime, actor: str, reason: str = "") -> Transition:
    """Continue from where the rollout was paused; the step's clocks restart."""
    _require(r, "resume")
    assert r.paused_from is not None
    why = reason or f"resumed by {actor}"
    r = _enter(r, r.paused_from, now).model_copy(update={"reason": why, "actor": actor})
    r, event = _emit(r, "resumed", why, actor)
    return Transition(r, events=[event])


def abort(r: Rollout, *, now: datetime, actor: str, reason: str = "") -> Transition:
    """Stop at once and send all traffic back to the baseline."""
    _require(r, "abort")
    why = f"aborted by {actor}" + (f": {reason}" if reason else "")
    return _roll_back(r, now, why, actor, phase="aborted")


def promote_step(r: Rollout, *, now: datetime, actor: str, reason: str = "") -> Transition:
    """Go to the next step without waiting for the analysis (resumes a paused rollout)."""
    _require(r, "promote-step")
    why = f"promote-step by {actor}" + (f": {reason}" if reason else "")
    return _advance(r, now, why, actor)


def promote_full(r: Rollout, *, now: datetime, actor: str, reason: str = "") -> Transition:
    """Skip the remaining steps and go to full traffic; the skipped steps are recorded."""
    _require(r, "promote-full")
    phase = r.paused_from if r.phase == "paused" and r.paused_from else r.phase
    steps = r.plan.traffic_steps
    if phase == "promoting":
        # Paused at full traffic already: promoting again just resumes there.
        skipped: list[float] = []
    elif phase == "shadowing":
        skipped = [s.weight for s in steps]
    else:
        skipped = [s.weight for s in steps[r.step_index + 1 :]]
    why = f"promote-full by {actor}; skipped steps {skipped}" + (f": {reason}" if reason else "")
    before = routes_for(r)
    r = _enter(r, "promoting", now, weight=1.0, step_index=len(steps)).model_copy(
        update={"reason": why, "actor": actor, "skipped_steps": [*r.skipped_steps, *skipped]}
    )
    r, event = _emit(r, "advanced", why, actor)
    after = routes_for(r)
    return Transition(r, routes=after if after != before else None, events=[event])


def retry(r: Rollout, *, now: datetime, actor: str, reason: str = "") -> Transition:
    """Start a rolled-back or aborted rollout again from the beginning, with fresh evidence."""
    _require(r, "retry")
    fresh = r.model_copy(
        update={
            "attempt": r.attempt + 1,
            "failed_checks": 0,
            "p_values": {},
            "last_gates": [],
            "skipped_steps": [],
            "candidate_requests": 0,
            "step_start_requests": 0,
            "finished_at": None,
            "paused_from": None,
        }
    )
    why = f"retry (attempt {fresh.attempt}) by {actor}" + (f": {reason}" if reason else "")
    return _begin(fresh, now, actor, why)


_ACTIONS = {
    "start": start,
    "pause": pause,
    "resume": resume,
    "abort": abort,
    "promote-step": promote_step,
    "promote-full": promote_full,
    "retry": retry,
}


def act(r: Rollout, action: Action, *, now: datetime, actor: str, reason: str = "") -> Transition:
    """Apply an operator action by name. Raises :class:`IllegalTransition`."""
    return _ACTIONS[action](r, now=now, actor=actor, reason=reason)


# ---------------------------------------------------------------------- analysis


def _elapsed(r: Rollout, now: datetime) -> float:
    started = r.phase_started_at or r.created_at
    return (now - started).total_seconds()


def check_deadline(r: Rollout, *, now: datetime, actor: str = "rollout") -> Transition | None:
    """Roll back an active rollout whose current step outlived the progress deadline."""
    if r.phase not in ACTIVE:
        return None
    elapsed = _elapsed(r, now)
    if elapsed < r.plan.progress_deadline_s:
        return None
    why = (
        f"progress deadline exceeded: {r.phase} step {r.step_index} made no progress "
        f"in {elapsed:.0f}s (deadline {r.plan.progress_deadline_s:g}s)"
    )
    return _roll_back(r, now, why, actor)


def _requirements(r: Rollout) -> tuple[float, int]:
    """The current step's minimum duration (seconds) and candidate requests."""
    plan = r.plan
    if r.phase == "shadowing":
        return plan.shadow_duration_s, plan.step_min_samples
    if r.phase == "progressing":
        return plan.step_duration(r.step_index), plan.step_samples(r.step_index)
    return plan.promotion_hold_s, 0


def next_analysis_at(r: Rollout, now: datetime) -> datetime | None:
    """When to analyse ``r`` next: one analysis interval after ``now``, or sooner,
    at the very moment its current step has lasted its minimum duration — a step
    advances when it is due, not at the next tick. None for a rollout that is
    not active (paused, finished)."""
    if not r.active:
        return None
    regular = now + timedelta(seconds=r.plan.analysis_interval_s)
    duration, _ = _requirements(r)
    began = r.phase_started_at or r.created_at
    due = began + timedelta(seconds=duration)
    # Only a step that has not been analysed since it became due is brought
    # forward (a step past its duration waiting for gates keeps the interval).
    # The analysis that opened the step does not count: a step with no
    # minimum duration is due at once.
    last = r.last_analysis_at
    analysed_since_due = last is not None and last >= due and last > began
    if analysed_since_due or due >= regular:
        return regular
    return max(due, now)


def samples_reached(r: Rollout, candidate_requests: int, now: datetime) -> bool:
    """Whether the candidate's cumulative request count reaching ``candidate_requests``
    makes a step ready that had lasted long enough and waited only for samples
    at its last analysis: then it is worth analysing at once."""
    if not r.active:
        return False
    duration, samples = _requirements(r)
    if samples <= 0 or _elapsed(r, now) < duration:
        return False
    seen_before = r.candidate_requests - r.step_start_requests
    return seen_before < samples <= candidate_requests - r.step_start_requests


def _readiness(r: Rollout, now: datetime) -> tuple[bool, str]:
    duration, samples = _requirements(r)
    elapsed = _elapsed(r, now)
    seen = r.candidate_requests - r.step_start_requests
    if elapsed < duration:
        return False, f"{elapsed:.0f}s of {duration:g}s"
    if seen < samples:
        return False, f"{seen} of {samples} candidate requests"
    return True, ""


def analyse(r: Rollout, evidence: Evidence, *, now: datetime, actor: str = "rollout") -> Transition:
    """One analysis tick of an active rollout; a no-op in any other phase.

    In order: a sequential gate proving the candidate worse rolls back at
    once; otherwise a failed check counts, and ``failure_threshold`` of them
    roll back; a step past its progress deadline rolls back; a ready step
    whose gates pass advances; a step whose required gates stay inconclusive
    past ``inconclusive_timeout_s`` pauses for a human.
    """
    if r.phase not in ACTIVE:
        return Transition(r)
    verdict: Verdict = evaluate(r.plan.gate_list, evidence, r.p_values, r.plan.gate_alphas())
    gates = verdict.results
    before_phase, before_step, before_weight = r.phase, r.step_index, r.weight
    r = r.model_copy(
        update={
            "candidate_requests": evidence.candidate.requests,
            "last_analysis_at": now,
            "p_values": {**r.p_values, **verdict.p_values},
            "last_gates": gates,
        }
    )

    def record(t: Transition, action: AnalysisAction, reason: str = "") -> Transition:
        rec = AnalysisRecord(
            at=now,
            phase=before_phase,
            step_index=before_step,
            weight=before_weight,
            outcome=verdict.outcome,
            action=action,
            failed_checks=t.rollout.failed_checks,
            gates=verdict.evidence(),
            reason=reason,
        )
        return Transition(t.rollout, routes=t.routes, events=t.events, analysis=rec)

    if verdict.decisive:
        why = "candidate worse than baseline (always-valid sequential test): " + ", ".join(verdict.decisive)
        return record(_roll_back(r, now, why, actor, gates=gates), "rollback", why)

    if verdict.failed:
        r = r.model_copy(update={"failed_checks": r.failed_checks + 1})
        if r.failed_checks >= r.plan.failure_threshold:
            why = (
                f"{r.failed_checks} failed checks (threshold {r.plan.failure_threshold}); "
                f"failing now: {', '.join(verdict.failed)}"
            )
            return record(_roll_back(r, now, why, actor, gates=gates), "rollback", why)
        why = f"failed check {r.failed_checks} of {r.plan.failure_threshold}: " + ", ".join(verdict.failed)
        return record(Transition(r), "none", why)

    expired = check_deadline(r, now=now, actor=actor)
    if expired is not None:
        return record(expired, "rollback", expired.rollout.reason)

    ready, waiting = _readiness(r, now)
    # Shadowing only proves the candidate safe to take traffic, and at full
    # traffic there is nothing left to choose between: only failures count there.
    conclusive = verdict.outcome == "pass" or r.phase in ("shadowing", "promoting")
    if ready and conclusive:
        why = "gates passed" if r.phase != "promoting" else "promotion hold passed"
        t = _advance(r, now, why, actor, gates=gates)
        return record(t, "complete" if t.rollout.phase == "completed" else "advance", why)

    if _elapsed(r, now) >= r.plan.inconclusive_timeout_s:
        pending = verdict.inconclusive if ready else [waiting]
        why = "inconclusive: " + ", ".join(pending)
        t = pause(r, now=now, actor=actor, reason=why)
        return record(t, "pause", why)

    return record(Transition(r), "none", waiting or "waiting for: " + ", ".join(verdict.inconclusive))
