"""Rollout plans as data: strategy, steps, gates, timings.

A plan is validated once, when it is stored as a model's default or attached
to a rollout; everything downstream can rely on it. Semantics follow Flagger
and Argo Rollouts where they are good:

* ``steps`` are candidate weights, strictly increasing in (0, 1). Full
  traffic (1.0) is the promotion that always follows the last step, so
  ``[0.05, 0.25, 0.5, 1.0]`` and ``[0.05, 0.25, 0.5]`` mean the same. Flagger's
  ``step_weight``/``max_weight`` generate them instead.
* A step advances when it has run ``min_duration_s`` and seen ``min_samples``
  candidate requests and no gate failed at that analysis.
* ``failure_threshold`` failed checks (cumulative, as in Flagger) roll back.
  A sequential gate that concludes "candidate worse" rolls back at once: its
  error rate is already controlled, counting would only delay.
* Required gates still inconclusive ``inconclusive_timeout_s`` after a step
  started pause the rollout for a human (as Argo pauses on inconclusive).
* A step that has not advanced within ``progress_deadline_s`` rolls back.
* ``alpha`` is the plan's family-wise level: the chance that its sequential
  gates together roll back a candidate no worse than its baseline. Each
  sequential gate tests at its share of it (:meth:`RolloutPlan.gate_alphas`,
  Bonferroni over the gates' own ``alpha`` values), because each gate's
  always-valid test holds its own level over every look but several gates
  each spending their own level would add up.

Every number is bounded (at most ``MAX_STEPS`` steps, durations up to
``MAX_DURATION_S``, counts up to ``MAX_COUNT``, finite floats) and checked when
the plan is parsed, before any steps are built: a plan is attacker-supplied
input, and a step weight of ``1e-5`` would otherwise build 100,000 steps.
"""

from __future__ import annotations

import itertools
from typing import Any, Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "Gate",
    "Metric",
    "RolloutPlan",
    "SequentialMode",
    "Step",
    "Strategy",
    "ThresholdRange",
    "default_gates",
    "default_plan",
]

Strategy = Literal["shadow", "canary", "champion-challenger", "binary"]
Metric = Literal["error-rate", "latency-p50", "latency-p95", "latency-p99", "prediction-distance", "accuracy"]
#: ``off``: threshold ranges only. ``guard``: one-sided always-valid test, a
#: candidate proven worse fails decisively, anything else passes. ``decide``:
#: two-sided, the candidate must be proven better to pass (champion/challenger).
SequentialMode = Literal["off", "guard", "decide"]

#: At most this many traffic steps, however they are given.
MAX_STEPS = 200
#: The smallest ``step_weight``: ``MAX_STEPS`` steps reach full traffic.
MIN_STEP_WEIGHT = 1.0 / MAX_STEPS
#: Durations and timeouts: at most 30 days.
MAX_DURATION_S = 30 * 24 * 3600.0
#: Sample counts and thresholds: at most a billion.
MAX_COUNT = 1_000_000_000

_SEQUENTIAL_METRICS = {"error-rate", "accuracy", "latency-p50", "latency-p95", "latency-p99"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ThresholdRange(_Strict):
    """Inclusive bounds; a missing bound is open."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self

    def contains(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    @property
    def bound(self) -> float | None:
        """The bound worth reporting: the upper one if there is one."""
        return self.max if self.max is not None else self.min

    def describe(self) -> str:
        lo = "-inf" if self.min is None else f"{self.min:g}"
        hi = "inf" if self.max is None else f"{self.max:g}"
        return f"[{lo}, {hi}]"


class Gate(_Strict):
    """One check of the candidate against its threshold ranges and the baseline.

    ``threshold`` bounds the candidate's value (error rate and accuracy as
    fractions, latencies in ms, the prediction distance in [0, 1]);
    ``relative`` bounds candidate / baseline. ``sequential`` compares the
    candidate with the baseline by an always-valid mSPRT at level ``alpha``
    with mixing scale ``tau`` (Cohen's h). Fewer than ``min_samples``
    candidate observations (labelled ones for accuracy) make it inconclusive;
    an inconclusive gate only holds the rollout if it is ``required``.
    """

    metric: Metric
    threshold: ThresholdRange = Field(default_factory=ThresholdRange)
    relative: ThresholdRange | None = None
    sequential: SequentialMode = "off"
    alpha: float = Field(default=0.05, gt=0.0, lt=1.0)
    tau: float = Field(default=0.08, gt=0.0, le=3.0)
    min_samples: int = Field(default=100, ge=1, le=MAX_COUNT)
    required: bool = True

    @model_validator(mode="after")
    def _sequential_applies(self) -> Self:
        if self.sequential != "off" and self.metric not in _SEQUENTIAL_METRICS:
            raise ValueError(f"a sequential test does not apply to {self.metric}")
        if self.sequential == "decide" and self.metric.startswith("latency"):
            raise ValueError("latency gates can only guard (sequential='guard')")
        if self.metric == "prediction-distance" and self.relative is not None:
            raise ValueError("prediction-distance is already relative to the baseline")
        return self

    @property
    def name(self) -> str:
        return self.metric


class Step(_Strict):
    """One traffic step; unset durations and samples fall back to the plan's."""

    weight: float = Field(gt=0.0, le=1.0)
    min_duration_s: float | None = Field(default=None, ge=0.0, le=MAX_DURATION_S)
    min_samples: int | None = Field(default=None, ge=0, le=MAX_COUNT)


def default_gates(strategy: Strategy = "canary") -> list[Gate]:
    """The gates a plan gets when it names none."""
    if strategy == "champion-challenger":
        return [
            Gate(metric="accuracy", sequential="decide", min_samples=200),
            Gate(metric="error-rate", sequential="guard"),
            Gate(metric="latency-p95", relative=ThresholdRange(max=1.5), min_samples=200),
        ]
    return [
        Gate(metric="error-rate", sequential="guard"),
        Gate(metric="latency-p95", relative=ThresholdRange(max=1.5), min_samples=200),
        Gate(metric="prediction-distance", threshold=ThresholdRange(max=0.2), min_samples=200),
        Gate(metric="accuracy", sequential="guard", min_samples=200, required=False),
    ]


_DEFAULT_STEPS: dict[Strategy, list[float]] = {
    "canary": [0.05, 0.25, 0.5],
    "champion-challenger": [0.5],
    "shadow": [],
    "binary": [],
}


class RolloutPlan(_Strict):
    """How one model's versions are rolled out. See the module docstring."""

    strategy: Strategy = "canary"
    steps: list[Step] | None = Field(
        default=None, max_length=MAX_STEPS, description="Candidate weights (or step objects); defaults per strategy"
    )
    step_weight: float | None = Field(default=None, ge=MIN_STEP_WEIGHT, le=1.0)
    max_weight: float | None = Field(default=None, gt=0.0, le=1.0)
    step_min_duration_s: float = Field(default=300.0, ge=0.0, le=MAX_DURATION_S)
    step_min_samples: int = Field(default=1000, ge=0, le=MAX_COUNT)
    analysis_interval_s: float = Field(default=15.0, ge=0.1, le=24 * 3600.0)
    failure_threshold: int = Field(default=3, ge=1, le=1000)
    inconclusive_timeout_s: float = Field(default=900.0, gt=0.0, le=MAX_DURATION_S)
    progress_deadline_s: float = Field(default=1800.0, gt=0.0, le=MAX_DURATION_S)
    shadow_duration_s: float = Field(default=0.0, ge=0.0, le=MAX_DURATION_S)
    shadow_fraction: float = Field(default=1.0, gt=0.0, le=1.0)
    promotion_hold_s: float = Field(default=0.0, ge=0.0, le=MAX_DURATION_S)
    alpha: float = Field(
        default=0.05,
        gt=0.0,
        lt=1.0,
        description="Family-wise chance that the sequential gates roll back a candidate no worse than its "
        "baseline; split over the sequential gates in proportion to their own alpha",
    )
    gates: list[Gate] | None = Field(default=None, max_length=len(get_args(Metric)))

    @field_validator("steps", mode="before")
    @classmethod
    def _steps_from_numbers(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"weight": s} if isinstance(s, int | float) else s for s in v]
        return v

    @model_validator(mode="after")
    def _normalise(self) -> Self:
        if self.steps is not None and self.step_weight is not None:
            raise ValueError("give either steps or step_weight/max_weight, not both")
        steps = self.steps
        if steps is None and self.step_weight is not None:
            top = self.max_weight if self.max_weight is not None else 0.5
            n = int(top / self.step_weight + 1e-9)
            steps = [Step(weight=round(self.step_weight * (i + 1), 6)) for i in range(n)]
            # Stored expanded, so the plan reads back the same.
            object.__setattr__(self, "step_weight", None)
            object.__setattr__(self, "max_weight", None)
        if steps is None:
            steps = [Step(weight=w) for w in _DEFAULT_STEPS[self.strategy]]
        if steps and steps[-1].weight >= 1.0:
            steps = steps[:-1]  # full traffic is the promotion that follows anyway
        weights = [s.weight for s in steps]
        if any(b <= a for a, b in itertools.pairwise(weights)):
            raise ValueError(f"step weights must increase strictly, got {weights}")
        if self.strategy in ("shadow", "binary") and steps:
            raise ValueError(f"a {self.strategy} rollout has no traffic steps")
        if self.strategy in ("canary", "champion-challenger") and not steps:
            raise ValueError(f"a {self.strategy} rollout needs at least one step below 100%")
        if self.strategy == "shadow" and self.shadow_duration_s <= 0:
            raise ValueError("a shadow rollout needs shadow_duration_s > 0")
        gates = self.gates if self.gates is not None else default_gates(self.strategy)
        names = [g.name for g in gates]
        if len(names) != len(set(names)):
            raise ValueError(f"one gate per metric, got {names}")
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "gates", gates)
        return self

    # Typed views of the normalised fields.

    @property
    def traffic_steps(self) -> list[Step]:
        return list(self.steps or [])

    @property
    def gate_list(self) -> list[Gate]:
        return list(self.gates or [])

    def gate_alphas(self) -> dict[str, float]:
        """Sequential gate name -> the level its test runs at.

        A gate's own ``alpha`` scaled by ``plan.alpha / sum(sequential gates' alpha)``
        when that sum exceeds the plan's level (never raised above the gate's
        own). By the union bound the gates together then reject a healthy
        candidate with probability at most ``alpha``, at every look.
        """
        sequential = [g for g in self.gate_list if g.sequential != "off"]
        total = sum(g.alpha for g in sequential)
        share = min(1.0, self.alpha / total) if total > 0 else 1.0
        return {g.name: g.alpha * share for g in sequential}

    def step_duration(self, index: int) -> float:
        s = self.traffic_steps[index]
        return s.min_duration_s if s.min_duration_s is not None else self.step_min_duration_s

    def step_samples(self, index: int) -> int:
        s = self.traffic_steps[index]
        return s.min_samples if s.min_samples is not None else self.step_min_samples


def default_plan(strategy: Strategy = "canary") -> RolloutPlan:
    return RolloutPlan(strategy=strategy)
