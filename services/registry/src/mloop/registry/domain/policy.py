"""Validation policies as data: a default plus a per-model override (:func:`effective_policy`).

Which metrics are better higher or lower, which lineage fields a policy may
require, and the rules it sets for metrics and segments.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mloop.registry.errors import (
    InvalidInput,
)

__all__ = [
    "HIGHER_IS_BETTER",
    "LINEAGE_FIELDS",
    "LOWER_IS_BETTER",
    "POLICY_EXAMPLE",
    "Direction",
    "MetricRule",
    "Policy",
    "SegmentBound",
    "effective_policy",
]


Direction = Literal["higher", "lower"]

#: Metrics whose direction is known without a policy.
HIGHER_IS_BETTER = frozenset(
    {"auc", "roc_auc", "pr_auc", "accuracy", "balanced_accuracy", "f1", "precision", "recall", "r2", "ndcg", "map"}
)
LOWER_IS_BETTER = frozenset({"log_loss", "logloss", "rmse", "mae", "mse", "mape", "brier", "error_rate"})

#: Lineage fields a policy may require, as dotted paths of :class:`Lineage`.
#: ``environment`` is satisfied by an image or a lockfile hash.
LINEAGE_FIELDS: tuple[str, ...] = (
    "code.repo",
    "code.commit",
    "dataset.uri",
    "dataset.version",
    "dataset.sha256",
    "features.version",
    "features.schema",
    "environment",
    "params",
    "retrain_job_id",
)
_DEFAULT_LINEAGE = [f for f in LINEAGE_FIELDS if f not in ("params", "retrain_job_id")]


class MetricRule(BaseModel):
    """How one metric is compared with the champion's."""

    model_config = ConfigDict(extra="forbid")

    direction: Direction | None = Field(
        None, description="Whether higher or lower is better; defaults to the known direction of the metric name"
    )
    tolerance: float | None = Field(None, ge=0, description="Overrides the policy's metric_tolerance")
    relative: bool = Field(False, description="Tolerance as a fraction of the champion's value")


class SegmentBound(BaseModel):
    """Bounds for one metric across segments (fairness: ``max_gap`` between the best and worst)."""

    model_config = ConfigDict(extra="forbid")

    min: float | None = Field(None, description="Every segment's value must be at least this")
    max: float | None = Field(None, description="Every segment's value must be at most this")
    max_gap: float | None = Field(None, ge=0, description="Largest allowed difference between segments")
    required: bool = Field(False, description="Fail when no segment reports the metric")

    @model_validator(mode="after")
    def _ordered(self) -> SegmentBound:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


POLICY_EXAMPLE: dict[str, Any] = {
    "required_lineage": list(_DEFAULT_LINEAGE),
    "metric_tolerance": 0.01,
    "metrics": {"auc": {"tolerance": 0.005}, "latency_p99_ms": {"direction": "lower"}},
    "required_metrics": ["auc"],
    "segment_bounds": {"recall": {"min": 0.6, "max_gap": 0.1}},
    "check_feature_schema": True,
    "required_approvals": 1,
    "auto_approval": None,
}


class Policy(BaseModel):
    """The validation and promotion policy of a model (or the default one)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [POLICY_EXAMPLE]})

    required_lineage: list[str] = Field(
        default_factory=lambda: list(_DEFAULT_LINEAGE),
        description=f"Lineage fields that must be present; any of {', '.join(LINEAGE_FIELDS)}",
    )
    metric_tolerance: float = Field(0.01, ge=0, description="How much worse than the champion a metric may be")
    metrics: dict[str, MetricRule] = Field(default_factory=dict, description="Per-metric rules")
    required_metrics: list[str] = Field(default_factory=list, description="Metrics every version must declare")
    segment_bounds: dict[str, SegmentBound] = Field(
        default_factory=dict, description="Segment / fairness bounds per metric"
    )
    check_feature_schema: bool = Field(True, description="Require a feature schema compatible with the champion's")
    required_approvals: int = Field(1, ge=1, le=5, description="Distinct reviewers needed to approve a promotion")
    auto_approval: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        pattern=r"^[a-z0-9][a-z0-9._-]*$",
        description="Name of an explicit auto-approval policy; promotions are then approved as policy:<name>",
    )

    @field_validator("required_lineage")
    @classmethod
    def _known_fields(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - set(LINEAGE_FIELDS))
        if unknown:
            raise ValueError(f"unknown lineage fields {unknown}; known: {', '.join(LINEAGE_FIELDS)}")
        return v


def effective_policy(default: Policy, override: Mapping[str, Any] | None) -> Policy:
    """The default policy with a model's override applied field by field.

    Raises :class:`InvalidInput` when the override is not a valid partial policy.
    """
    if not override:
        return default
    merged = default.model_dump()
    merged.update(override)
    try:
        return Policy.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"invalid policy: {first['msg']}", field=f"body.{where}" if where else "body") from exc
