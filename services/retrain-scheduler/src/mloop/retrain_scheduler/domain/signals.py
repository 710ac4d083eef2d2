"""What the scheduler knows when a signal arrives: the signal, pending and in-flight work, rollouts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from mloop.contracts.payloads import (
    DataQualityViolated,
    DriftDetected,
    PerformanceDegraded,
    QualityViolation,
    Severity,
)
from mloop.retrain_scheduler.domain.instants import as_utc
from mloop.retrain_scheduler.domain.policy import SignalKind

__all__ = ["InFlight", "ModelState", "PendingSignal", "RolloutRecord", "Signal", "not_serving"]


# --------------------------------------------------------------------------- signals


@dataclass(frozen=True)
class Signal:
    """A monitoring event reduced to what a policy looks at."""

    event_id: str
    kind: SignalKind
    model: str
    severity: Severity
    at: datetime
    version: str | None = None
    drift_kind: str | None = None
    metric: str | None = None
    quality_kinds: frozenset[str] = frozenset()
    subjects: frozenset[str] = frozenset()
    """What the signal is about: drifted features, the degraded metric, violated kinds."""

    @classmethod
    def from_payload(
        cls,
        event_id: str,
        at: datetime,
        payload: DriftDetected | PerformanceDegraded | DataQualityViolated,
    ) -> Signal:
        if isinstance(payload, DriftDetected):
            return cls(
                event_id,
                "drift-detected",
                payload.model,
                payload.severity,
                as_utc(at),
                version=payload.version,
                drift_kind=payload.kind,
                subjects=frozenset(f.name for f in payload.features if f.drifted),
            )
        if isinstance(payload, PerformanceDegraded):
            return cls(
                event_id,
                "performance-degraded",
                payload.model,
                payload.severity,
                as_utc(at),
                version=payload.version,
                metric=payload.metric,
                subjects=frozenset({f"metric:{payload.metric}"}),
            )
        kinds = frozenset(v.kind for v in payload.violations if isinstance(v, QualityViolation))
        return cls(
            event_id,
            "data-quality-violated",
            payload.model,
            payload.severity,
            as_utc(at),
            version=payload.version,
            quality_kinds=kinds,
            subjects=frozenset(f"quality:{k}" for k in kinds),
        )


@dataclass(frozen=True)
class PendingSignal:
    """A triggering signal counted toward a streak and not yet used by a job."""

    event_id: str
    kind: SignalKind
    at: datetime
    subjects: frozenset[str] = frozenset()


@dataclass(frozen=True)
class InFlight:
    """A job of the model that is still under way: active, or its version still rolling out."""

    job_id: str
    subjects: frozenset[str]
    active: bool
    produced_version: str | None = None


@dataclass(frozen=True)
class RolloutRecord:
    """What the scheduler knows of one rollout, from ``rollout-*`` events."""

    rollout_id: str
    candidate: str
    baseline: str | None
    state: Literal["in-rollout", "completed", "rolled-back"]
    at: datetime
    """When it started, or when it finished once it has."""


def not_serving(rollouts: Iterable[RolloutRecord], awaiting_rollout: Iterable[str] = ()) -> dict[str, str]:
    """The versions known to serve no production traffic, each with the reason.

    * the candidate of a rollout still under way (shadow or canary);
    * a version a retrain job produced that has not finished a rollout yet;
    * once a rollout has completed, every other version a rollout involved
      (replaced, or rolled back) — the latest completed candidate is the champion.

    A version the scheduler has never seen in a rollout is not listed: without
    evidence, a signal about it is taken at its word.
    """
    records = sorted(rollouts, key=lambda r: (as_utc(r.at), r.rollout_id))
    out: dict[str, str] = {}
    champion: str | None = None
    for r in records:
        if r.state == "completed":
            champion = r.candidate
    if champion is not None:
        for r in records:
            for version in (r.candidate, r.baseline):
                if version is not None and version != champion:
                    out[version] = f"version {version} was replaced by champion {champion}"
        for r in records:
            if r.state == "rolled-back" and r.candidate != champion:
                out[r.candidate] = f"version {r.candidate} was rolled back"
    for version in awaiting_rollout:
        if version != champion:
            out[version] = f"version {version} has not finished a rollout"
    for r in records:
        if r.state == "in-rollout" and r.candidate != champion:
            out[r.candidate] = f"version {r.candidate} is the candidate of rollout {r.rollout_id} (shadow or canary)"
    return out


@dataclass(frozen=True)
class ModelState:
    """What :func:`decide` needs to know about one model."""

    model: str
    active_jobs: int = 0
    last_job_at: datetime | None = None
    """The later of the latest job's request time and its end (None: never retrained)."""
    pending: tuple[PendingSignal, ...] = ()
    in_flight: tuple[InFlight, ...] = ()
    not_serving: Mapping[str, str] = field(default_factory=dict)
    """Versions known to serve no production traffic (see :func:`not_serving`)."""
