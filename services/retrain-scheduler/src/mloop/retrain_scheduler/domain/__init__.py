"""Retraining decisions, the job state machine and cycle time — pure, no I/O.

Everything here is a function of data in, data out:

* ``policy.py`` — :class:`RetrainPolicy`, policies as data: a default policy
  plus per-model overrides (:func:`effective_policy` merges them).
* ``signals.py`` — the signal and what is known about a model when it arrives.
* ``decision.py`` — :func:`decide`, what a monitoring signal means for a model
  right now: create a job, defer its dispatch past quiet hours, count the
  signal toward a streak, or ignore it (with the reason).
* ``jobs.py`` — :class:`Job` and :data:`TRANSITIONS`, the job lifecycle; an
  illegal move raises :class:`IllegalTransition`.
* ``cycle.py`` — :func:`measure_cycle` and :func:`summarise_cycles`, the loop's
  yardstick: from the first triggering signal to the rollout of the version a
  job produced, split into steps.
* ``errors.py`` — the errors the above raise.
"""

from mloop.retrain_scheduler.domain.cycle import (
    CycleOutcome,
    CycleStats,
    CycleTime,
    measure_cycle,
    percentile,
    summarise_cycles,
)
from mloop.retrain_scheduler.domain.decision import (
    CountSignal,
    CreateJob,
    Decision,
    DeferJob,
    IgnoreSignal,
    JoinJob,
    decide,
    plan_manual,
)
from mloop.retrain_scheduler.domain.errors import IllegalTransition, JobLimitReached, JobNotFound, RetrainSchedulerError
from mloop.retrain_scheduler.domain.jobs import (
    ACTIVE_STATES,
    INITIAL_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    Job,
    JobPlan,
    JobState,
    check_transition,
    in_flight,
    is_timed_out,
    new_job,
)
from mloop.retrain_scheduler.domain.policy import (
    SEVERITY_RANK,
    SIGNAL_KINDS,
    DataWait,
    DataWaitOutcome,
    DispatchPolicy,
    DriftTrigger,
    PerformanceTrigger,
    PostSignalData,
    QualityTrigger,
    QuietHours,
    RetrainPolicy,
    StormGuard,
    Triggers,
    Webhook,
    backoff_delay,
    effective_policy,
    final_window,
    quiet_until,
    start_data_wait,
)
from mloop.retrain_scheduler.domain.signals import (
    InFlight,
    ModelState,
    PendingSignal,
    RolloutRecord,
    Signal,
    not_serving,
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
