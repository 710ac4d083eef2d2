"""The rollout domain: decisions only, no I/O.

Read in this order: ``plan.py`` (what a rollout should do), ``evidence.py``
(what it has seen per version), ``gates.py`` (what the evidence says) and
``machine.py`` (what happens next, and what to publish).
"""

from mloop.rollout.domain.evidence import Evidence, VersionStats, is_correct, prediction_distance
from mloop.rollout.domain.gates import Verdict, evaluate
from mloop.rollout.domain.machine import (
    ACTIONS,
    ACTIVE,
    ALLOWED,
    TERMINAL,
    Action,
    AnalysisRecord,
    IllegalTransition,
    Phase,
    Rollout,
    RolloutError,
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
from mloop.rollout.domain.plan import Gate, RolloutPlan, Step, Strategy, ThresholdRange, default_plan

__all__ = [
    "ACTIONS",
    "ACTIVE",
    "ALLOWED",
    "TERMINAL",
    "Action",
    "AnalysisRecord",
    "Evidence",
    "Gate",
    "IllegalTransition",
    "Phase",
    "Rollout",
    "RolloutError",
    "RolloutPlan",
    "Step",
    "Strategy",
    "ThresholdRange",
    "Transition",
    "Verdict",
    "VersionStats",
    "abort",
    "act",
    "analyse",
    "check_deadline",
    "default_plan",
    "evaluate",
    "is_correct",
    "new_rollout",
    "pause",
    "prediction_distance",
    "promote_full",
    "promote_step",
    "resume",
    "retry",
    "routes_for",
    "start",
]
