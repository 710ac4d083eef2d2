"""The fault schedule: which faults, on what, and when, drawn from one seed.

Pure: :func:`plan` with the same seed and settings returns the same schedule,
so a failing run is repeated with ``make chaos SEED=<its seed>``. Every run
holds each kind of fault the platform must survive:

* ``kill-service``: ``kill -9`` of each of the five services, restarted after a
  short downtime;
* ``kill-kafka``: ``kill -9`` of the broker, restarted;
* ``restart-postgres``: Postgres stopped (``fast``: connections cut, a clean
  shutdown) and started again;
* ``pause-service``: ``SIGSTOP`` of one service for longer than the consumer
  session timeout, so its consumer groups rebalance, then ``SIGCONT``;
* ``webhook-failing`` or ``webhook-slow``: the retrain webhook receiver answers
  503, or answers later than the scheduler's request timeout, to the next
  deliveries.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["SERVICE_NAMES", "Fault", "FaultKind", "Schedule", "plan"]

#: The platform's five services, as the local stack names them.
SERVICE_NAMES: tuple[str, ...] = ("registry", "rollout", "monitor", "retrain_scheduler", "audit")


class FaultKind(StrEnum):
    KILL_SERVICE = "kill-service"
    KILL_KAFKA = "kill-kafka"
    RESTART_POSTGRES = "restart-postgres"
    PAUSE_SERVICE = "pause-service"
    WEBHOOK_FAILING = "webhook-failing"
    WEBHOOK_SLOW = "webhook-slow"


@dataclass(frozen=True)
class Fault:
    """One planned fault.

    ``at_s`` is the offset from the start of the fault phase; ``duration_s`` is
    how long the target stays down (or paused) before it is restarted (or
    continued); ``deliveries`` is, for a webhook fault, how many deliveries in a
    row the receiver spoils.
    """

    at_s: float
    kind: FaultKind
    target: str
    duration_s: float = 0.0
    deliveries: int = 0

    def describe(self) -> str:
        if self.kind is FaultKind.PAUSE_SERVICE:
            return f"SIGSTOP {self.target} for {self.duration_s:.1f}s, then SIGCONT"
        if self.kind in (FaultKind.WEBHOOK_FAILING, FaultKind.WEBHOOK_SLOW):
            how = "answers 503" if self.kind is FaultKind.WEBHOOK_FAILING else "answers after the request timeout"
            return f"the retrain webhook receiver {how} to the next {self.deliveries} deliveries"
        if self.kind is FaultKind.RESTART_POSTGRES:
            return f"stop postgres, start it {self.duration_s:.1f}s later"
        return f"kill -9 {self.target}, restart it {self.duration_s:.1f}s later"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kind": self.kind.value}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Fault:
        return cls(
            at_s=float(d["at_s"]),
            kind=FaultKind(d["kind"]),
            target=str(d["target"]),
            duration_s=float(d.get("duration_s", 0.0)),
            deliveries=int(d.get("deliveries", 0)),
        )


@dataclass(frozen=True)
class Schedule:
    """The faults of one run, in the order of their planned time."""

    seed: int
    span_s: float
    faults: tuple[Fault, ...] = field(default_factory=tuple)

    def counts(self) -> dict[str, int]:
        """Faults per kind, every kind listed (zero included)."""
        found = Counter(f.kind.value for f in self.faults)
        return {k.value: found.get(k.value, 0) for k in FaultKind}

    def render(self) -> str:
        lines = [f"fault schedule for seed {self.seed} ({len(self.faults)} faults over {self.span_s:g}s):"]
        lines += [f"  t+{f.at_s:6.1f}s  {f.kind.value:<17} {f.describe()}" for f in self.faults]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "span_s": self.span_s, "faults": [f.to_dict() for f in self.faults]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Schedule:
        return cls(int(d["seed"]), float(d["span_s"]), tuple(Fault.from_dict(f) for f in d["faults"]))


def plan(
    seed: int,
    *,
    span_s: float = 60.0,
    services: Sequence[str] = SERVICE_NAMES,
    session_timeout_s: float = 10.0,
) -> Schedule:
    """The schedule of ``seed``: every fault kind at random moments within ``span_s`` seconds.

    Each service is killed once, the broker once, Postgres once, one service
    (drawn) is paused for ``session_timeout_s`` plus two to five seconds, and
    the webhook receiver is spoiled (failing or slow, drawn) for one to three
    deliveries, in the first seconds so it meets the retrain job's delivery.
    Raises ValueError for an empty service list or a span too short to hold them.
    """
    if not services:
        raise ValueError("services: at least one service to put under faults")
    if span_s < 10:
        raise ValueError("span_s: at least 10 seconds")
    rng = random.Random(seed)
    faults: list[Fault] = []
    for name in services:
        faults.append(Fault(0.0, FaultKind.KILL_SERVICE, name, round(rng.uniform(0.2, 3.0), 1)))
    faults.append(Fault(0.0, FaultKind.KILL_KAFKA, "kafka", round(rng.uniform(0.2, 3.0), 1)))
    faults.append(Fault(0.0, FaultKind.RESTART_POSTGRES, "postgres", round(rng.uniform(0.5, 4.0), 1)))
    paused = rng.choice(list(services))
    faults.append(Fault(0.0, FaultKind.PAUSE_SERVICE, paused, round(session_timeout_s + rng.uniform(2.0, 5.0), 1)))
    rng.shuffle(faults)
    times = sorted(round(rng.uniform(0.0, span_s), 1) for _ in faults)
    placed = [Fault(t, f.kind, f.target, f.duration_s) for t, f in zip(times, faults, strict=True)]
    kind = rng.choice([FaultKind.WEBHOOK_FAILING, FaultKind.WEBHOOK_SLOW])
    # At the start: the receiver spoils the next deliveries from then on, and the job's delivery comes early.
    placed.append(Fault(round(rng.uniform(0.0, min(5.0, span_s * 0.1)), 1), kind, "webhook", 0.0, rng.randint(1, 3)))
    placed.sort(key=lambda f: (f.at_s, f.kind.value, f.target))
    return Schedule(seed, span_s, tuple(placed))
