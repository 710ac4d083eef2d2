"""The rollout domain: decisions only, no I/O.

Read in this order: :mod:`~mloop.rollout.plan` (what a rollout should do),
:mod:`~mloop.rollout.evidence` (what it has seen per version),
:mod:`~mloop.rollout.gates` (what the evidence says) and
:mod:`~mloop.rollout.machine` (what happens next, and what to publish).
"""

from mloop.rollout.evidence import Evidence, VersionStats, is_correct, prediction_distance
from mloop.rollout.gates import Verdict, evaluate
from mloop.rollout.machine import (
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
from mloop.rollout.plan import Gate, RolloutPlan, Step, Strategy, ThresholdRange, default_plan

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
