"""Validation gates (:func:`validate`): lineage completeness, each declared
metric against the champion's (direction-aware, with a tolerance), segment
and fairness bounds, and feature-schema compatibility with the champion.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mloop.contracts.payloads import FeatureSchema, Lineage, ValidationCheck
from mloop.registry.domain.policy import HIGHER_IS_BETTER, LOWER_IS_BETTER, Direction, MetricRule, Policy

__all__ = [
    "Champion",
    "ValidationResult",
    "check_feature_schema",
    "check_lineage",
    "check_metrics",
    "check_segments",
    "metric_direction",
    "validate",
]


@dataclass(frozen=True)
class Champion:
    """What the gates compare a candidate with: the version the ``champion`` alias points to."""

    version: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    features: FeatureSchema = field(default_factory=FeatureSchema)


@dataclass(frozen=True)
class ValidationResult:
    passed: bool
    checks: list[ValidationCheck]

    def failed(self) -> list[str]:
        return [c.name for c in self.checks if not c.passed]


def _present(lineage: Lineage, path: str) -> bool:
    if path == "environment":
        return bool(lineage.environment.image or lineage.environment.lock_hash)
    if path == "features.schema":
        return bool(lineage.features.schema_)
    if path == "params":
        return bool(lineage.params)
    if path == "retrain_job_id":
        return bool(lineage.retrain_job_id)
    section, _, name = path.partition(".")
    value = getattr(getattr(lineage, section), name)
    return value is not None and str(value).strip() != ""


def check_lineage(lineage: Lineage, required: Sequence[str]) -> ValidationCheck:
    """``lineage-complete``: every required lineage field is present."""
    missing = [f for f in required if not _present(lineage, f)]
    if missing:
        return ValidationCheck(name="lineage-complete", passed=False, detail="missing " + ", ".join(missing))
    return ValidationCheck(name="lineage-complete", passed=True, detail=f"{len(required)} required fields present")


def metric_direction(name: str, rule: MetricRule | None = None) -> Direction | None:
    """Whether higher or lower is better for ``name``; None when unknown."""
    if rule is not None and rule.direction is not None:
        return rule.direction
    key = name.lower()
    if key in HIGHER_IS_BETTER:
        return "higher"
    if key in LOWER_IS_BETTER or key.endswith(("_loss", "_error")):
        return "lower"
    return None


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def check_metrics(
    metrics: Mapping[str, float], champion: Champion | None, policy: Policy
) -> list[ValidationCheck]:
    """``required-metrics`` and one ``metric-not-worse:<name>`` check per declared metric.

    A metric is compared when the champion has it and its direction is known;
    otherwise the check passes and its detail says why it was not compared.
    """
    checks: list[ValidationCheck] = []
    missing = [m for m in policy.required_metrics if m not in metrics]
    if policy.required_metrics:
        checks.append(
            ValidationCheck(
                name="required-metrics",
                passed=not missing,
                detail=("missing " + ", ".join(missing)) if missing else "all required metrics declared",
            )
        )
    bad = [m for m, v in metrics.items() if not math.isfinite(v)]
    for m in bad:
        checks.append(ValidationCheck(name=f"metric-not-worse:{m}", passed=False, detail=f"{m} is not finite"))
    if not metrics:
        checks.append(ValidationCheck(name="metrics-not-worse", passed=True, detail="no metrics declared"))
        return checks
    for name in sorted(set(metrics) - set(bad)):
        value = metrics[name]
        check = f"metric-not-worse:{name}"
        if champion is None:
            checks.append(ValidationCheck(name=check, passed=True, detail="no champion to compare with"))
            continue
        if name not in champion.metrics:
            checks.append(
                ValidationCheck(name=check, passed=True, detail=f"champion v{champion.version} has no {name}")
            )
            continue
        rule = policy.metrics.get(name)
        direction = metric_direction(name, rule)
        if direction is None:
            checks.append(
                ValidationCheck(
                    name=check, passed=True, detail=f"direction of {name} unknown; set it in the policy to compare"
                )
            )
            continue
        base = champion.metrics[name]
        tolerance = rule.tolerance if rule is not None and rule.tolerance is not None else policy.metric_tolerance
        allowed = tolerance * abs(base) if rule is not None and rule.relative else tolerance
        worse_by = (base - value) if direction == "higher" else (value - base)
        passed = worse_by <= allowed + 1e-12
        relation = f"worse by {_fmt(worse_by)}" if worse_by > 0 else "not worse"
        checks.append(
            ValidationCheck(
                name=check,
                passed=passed,
                detail=(
                    f"{name} {_fmt(value)} vs champion v{champion.version} {_fmt(base)} "
                    f"({direction} is better): {relation}, tolerance {_fmt(allowed)}"
                ),
            )
        )
    return checks


def check_segments(
    segment_metrics: Mapping[str, Mapping[str, float]], policy: Policy
) -> list[ValidationCheck]:
    """One ``segment-bounds:<metric>`` check per metric the policy bounds."""
    checks: list[ValidationCheck] = []
    for metric, bound in sorted(policy.segment_bounds.items()):
        name = f"segment-bounds:{metric}"
        values = {seg: float(m[metric]) for seg, m in segment_metrics.items() if metric in m}
        if not values:
            checks.append(
                ValidationCheck(
                    name=name,
                    passed=not bound.required,
                    detail=f"no segment reports {metric}" + (" (required)" if bound.required else ""),
                )
            )
            continue
        problems: list[str] = []
        for seg, v in sorted(values.items()):
            if not math.isfinite(v):
                problems.append(f"{seg}={v} is not finite")
            elif bound.min is not None and v < bound.min:
                problems.append(f"{seg}={_fmt(v)} < min {_fmt(bound.min)}")
            elif bound.max is not None and v > bound.max:
                problems.append(f"{seg}={_fmt(v)} > max {_fmt(bound.max)}")
        finite = [v for v in values.values() if math.isfinite(v)]
        gap = (max(finite) - min(finite)) if finite else 0.0
        if bound.max_gap is not None and gap > bound.max_gap + 1e-12:
            problems.append(f"gap between segments {_fmt(gap)} > max_gap {_fmt(bound.max_gap)}")
        checks.append(
            ValidationCheck(
                name=name,
                passed=not problems,
                detail="; ".join(problems) if problems else f"{len(values)} segments within bounds (gap {_fmt(gap)})",
            )
        )
    return checks


def check_feature_schema(candidate: FeatureSchema, champion: Champion | None) -> ValidationCheck:
    """``feature-schema-compatible``: what serving sends to the champion still fits the candidate.

    An added optional feature is fine, and so is a required feature becoming
    optional. A removed or retyped feature fails, and so does an added
    required feature or an optional one becoming required (serving may not
    send it).
    """
    name = "feature-schema-compatible"
    if champion is None or not champion.features.schema_:
        return ValidationCheck(name=name, passed=True, detail="no champion schema to compare with")
    old = {f.name: f for f in champion.features.schema_}
    new = {f.name: f for f in candidate.schema_}
    problems: list[str] = []
    for fname, spec in old.items():
        if fname not in new:
            problems.append(f"removed {fname}")
        elif new[fname].type != spec.type:
            problems.append(f"retyped {fname} from {spec.type} to {new[fname].type}")
        elif spec.optional and not new[fname].optional:
            problems.append(f"{fname} became required")
    for fname, spec in new.items():
        if fname not in old and not spec.optional:
            problems.append(f"added required {fname}")
    if problems:
        return ValidationCheck(
            name=name, passed=False, detail=f"incompatible with champion v{champion.version}: " + "; ".join(problems)
        )
    added = sorted(set(new) - set(old))
    return ValidationCheck(
        name=name,
        passed=True,
        detail=f"compatible with champion v{champion.version}"
        + (f" (added optional {', '.join(added)})" if added else ""),
    )


def validate(
    *,
    lineage: Lineage,
    metrics: Mapping[str, float],
    segment_metrics: Mapping[str, Mapping[str, float]],
    champion: Champion | None,
    policy: Policy,
) -> ValidationResult:
    """Every automated gate for one candidate version, in a stable order."""
    checks = [check_lineage(lineage, policy.required_lineage)]
    checks += check_metrics(metrics, champion, policy)
    checks += check_segments(segment_metrics, policy)
    if policy.check_feature_schema:
        checks.append(check_feature_schema(lineage.features, champion))
    return ValidationResult(passed=all(c.passed for c in checks), checks=checks)
