"""Cycle time, the loop's yardstick.

:func:`measure_cycle` measures one job from the first triggering signal to
the rollout of the version it produced, split into steps;
:func:`summarise_cycles` gives percentiles over many.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from mloop.retrain_scheduler.domain.instants import as_utc
from mloop.retrain_scheduler.domain.jobs import Job

__all__ = [
    "STEP_NAMES",
    "CycleOutcome",
    "CycleStats",
    "CycleTime",
    "measure_cycle",
    "percentile",
    "summarise_cycles",
]


# --------------------------------------------------------------------------- cycle time

CycleOutcome = Literal["completed", "rolled-back", "failed"]
STEP_NAMES: tuple[str, ...] = (
    "signal-to-job",
    "job-to-dispatched",
    "dispatched-to-registered",
    "registered-to-rollout",
)


@dataclass(frozen=True)
class CycleTime:
    """One measured loop: first signal → rollout finished (or the job failed)."""

    job_id: str
    model: str
    version: str | None
    outcome: CycleOutcome
    started_at: datetime
    finished_at: datetime
    seconds: float
    steps: dict[str, float]
    shares: dict[str, float]
    sla_seconds: float | None
    sla_breached: bool


def measure_cycle(job: Job, outcome: CycleOutcome, finished_at: datetime, sla: timedelta | None) -> CycleTime:
    """The cycle time of ``job``, ending at ``finished_at``.

    Steps whose endpoints are unknown (a job that failed before registering a
    version has no ``dispatched-to-registered``) are left out; shares are of
    the whole cycle and sum to 1 when every step is known.
    """
    marks: list[tuple[str, datetime | None]] = [
        ("signal", job.first_signal_at),
        ("job", job.requested_at),
        ("dispatched", job.dispatched_at),
        ("registered", job.registered_at),
        ("rollout", finished_at),
    ]
    started = as_utc(job.first_signal_at)
    finished = max(as_utc(finished_at), started)
    total = (finished - started).total_seconds()
    steps: dict[str, float] = {}
    for name, (_, a), (_, b) in zip(STEP_NAMES, marks, marks[1:], strict=False):
        if a is not None and b is not None:
            steps[name] = max((as_utc(b) - as_utc(a)).total_seconds(), 0.0)
    shares = {k: (v / total if total > 0 else 0.0) for k, v in steps.items()}
    sla_seconds = sla.total_seconds() if sla is not None else None
    return CycleTime(
        job_id=job.id,
        model=job.model,
        version=job.produced_version,
        outcome=outcome,
        started_at=started,
        finished_at=finished,
        seconds=total,
        steps=steps,
        shares=shares,
        sla_seconds=sla_seconds,
        sla_breached=sla_seconds is not None and total > sla_seconds,
    )


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) with linear interpolation; None for no values."""
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError("q must be within [0, 100]")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True)
class CycleStats:
    """Cycle-time statistics of one model."""

    model: str
    cycles: int
    p50_seconds: float | None
    p90_seconds: float | None
    mean_shares: dict[str, float]
    sla_breaches: int
    cycles_by_outcome: dict[str, int]
    jobs_by_state: dict[str, int] = field(default_factory=dict)


def summarise_cycles(
    model: str, cycles: Iterable[CycleTime], jobs_by_state: Mapping[str, int] | None = None
) -> CycleStats:
    """p50/p90 over cycles that reached production (completed rollouts), mean step
    shares over the same, breaches and counts over every recorded cycle."""
    all_cycles = list(cycles)
    done = [c for c in all_cycles if c.outcome == "completed"]
    by_outcome: dict[str, int] = {}
    for c in all_cycles:
        by_outcome[c.outcome] = by_outcome.get(c.outcome, 0) + 1
    shares: dict[str, float] = {}
    for name in STEP_NAMES:
        known = [c.shares[name] for c in done if name in c.shares]
        if known:
            shares[name] = sum(known) / len(known)
    return CycleStats(
        model=model,
        cycles=len(all_cycles),
        p50_seconds=percentile([c.seconds for c in done], 50),
        p90_seconds=percentile([c.seconds for c in done], 90),
        mean_shares=shares,
        sla_breaches=sum(1 for c in all_cycles if c.sla_breached),
        cycles_by_outcome=by_outcome,
        jobs_by_state=dict(jobs_by_state or {}),
    )
