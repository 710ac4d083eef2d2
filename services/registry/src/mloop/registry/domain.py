"""The registry's decisions, as pure functions of data.

* **Validation gates** (:func:`validate`): lineage completeness, each declared
  metric against the champion's (direction-aware, with a tolerance), segment
  and fairness bounds, and feature-schema compatibility with the champion.
  The policy that drives them is data (:class:`Policy`): a default plus a
  per-model override (:func:`effective_policy`).
* **Promotion rules** (:func:`check_promotable`, :func:`review`,
  :func:`auto_approver`): only a validated version may be requested; four
  eyes; a rejection needs a comment; a model's explicit auto-approval policy
  is recorded as the approving actor ``policy:<name>``.
* **Rollout outcomes** (:func:`champion_moves`): a completed rollout makes
  its version ``champion`` and keeps the former one as ``previous-champion``.
* **Aliases** (:func:`check_alias_by_hand`, :func:`check_alias_target`):
  ``champion`` and ``previous-champion`` move only with a completed rollout,
  never by hand; other aliases point only at versions that passed validation
  and are not archived.
* **Lifecycle** (:func:`check_archivable`, :func:`check_deletable`): a
  version that ever served traffic or carried an alias is archived, never
  deleted.
* **Fixed tags** (:func:`check_tag_change`): tags that carry lineage or
  metrics into the gates (``mloop.lineage.*``, ``mloop.metric.*``) are set
  at registration and never changed afterwards.

Nothing here does I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mloop.contracts.payloads import FeatureSchema, Lineage, ValidationCheck
from mloop.registry.errors import (
    AlreadyReviewed,
    CommentRequired,
    InvalidInput,
    NotPromotable,
    ProtectedAlias,
    RequestClosed,
    SelfReview,
    VersionInUse,
    VersionNotEligible,
)

__all__ = [
    "CHAMPION",
    "FIXED_TAG_PREFIXES",
    "HIGHER_IS_BETTER",
    "LINEAGE_FIELDS",
    "LOWER_IS_BETTER",
    "POLICY_EXAMPLE",
    "PREVIOUS_CHAMPION",
    "SYSTEM_ALIASES",
    "AliasMove",
    "Champion",
    "Decision",
    "MetricRule",
    "Policy",
    "PromotionState",
    "ReviewOutcome",
    "SegmentBound",
    "ValidationResult",
    "VersionState",
    "VersionStatus",
    "auto_approver",
    "champion_moves",
    "check_alias_by_hand",
    "check_alias_target",
    "check_archivable",
    "check_deletable",
    "check_feature_schema",
    "check_lineage",
    "check_metrics",
    "check_promotable",
    "check_segments",
    "check_tag_change",
    "effective_policy",
    "metric_direction",
    "review",
    "validate",
]

CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous-champion"
#: Aliases only a completed rollout moves (``apply_rollout_completed``), never a person.
SYSTEM_ALIASES = frozenset({CHAMPION, PREVIOUS_CHAMPION})
#: Tag namespaces whose values feed the gates at registration; they are fixed from then on.
FIXED_TAG_PREFIXES = ("mloop.lineage.", "mloop.metric.")

VersionStatus = Literal[
    "validated",  # every gate passed
    "validation-failed",  # at least one gate failed; cannot be promoted
    "pending-promotion",  # a promotion request awaits review
    "promoted",  # approved; a rollout is starting or running
    "production",  # its rollout completed: it is (or was) the champion
    "rolled-back",  # its rollout was rolled back
    "archived",
]
Decision = Literal["approved", "rejected"]
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


# --------------------------------------------------------------------------- policy


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


# --------------------------------------------------------------------------- validation


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


# --------------------------------------------------------------------------- promotion


@dataclass(frozen=True)
class VersionState:
    """What the lifecycle rules need to know about a version."""

    model: str
    version: str
    status: VersionStatus
    validation_passed: bool
    served_traffic: bool = False
    aliases: tuple[str, ...] = ()
    has_promotion_requests: bool = False
    had_aliases: bool = False  # an alias pointed at it once (its alias history)


def check_promotable(version: VersionState, *, pending_request: str | None) -> None:
    """Raise :class:`NotPromotable` unless a promotion request may be filed for ``version``."""
    if not version.validation_passed or version.status == "validation-failed":
        raise NotPromotable(f"version {version.version} did not pass validation; only a validated version "
                            "can be requested for promotion")
    if pending_request is not None:
        raise NotPromotable(f"version {version.version} already has a pending request {pending_request}")
    if version.status in ("archived", "rolled-back"):
        raise NotPromotable(f"version {version.version} is {version.status}")
    if version.status == "promoted":
        raise NotPromotable(f"version {version.version} is already promoted; its rollout is under way")
    if CHAMPION in version.aliases:
        raise NotPromotable(f"version {version.version} is already the champion")


@dataclass(frozen=True)
class PromotionState:
    """A promotion request as the review rules see it."""

    id: str
    status: Literal["pending", "approved", "rejected"]
    requested_by: str  # actor, e.g. user:alice
    requester_sub: str
    approvals: tuple[str, ...] = ()  # reviewer subjects who approved so far


@dataclass(frozen=True)
class ReviewOutcome:
    """The request's status after a review; ``promoted`` when it publishes ``model-promoted``."""

    status: Literal["pending", "approved", "rejected"]
    approvals: tuple[str, ...]
    promoted: bool


def review(
    request: PromotionState,
    *,
    reviewer_sub: str,
    decision: Decision,
    comment: str | None,
    required_approvals: int,
) -> ReviewOutcome:
    """Apply one review.

    Raises :class:`RequestClosed` for a decided request, :class:`SelfReview`
    when the reviewer is the requester (four eyes), :class:`AlreadyReviewed`
    for a second approval by the same reviewer, :class:`CommentRequired` for
    a rejection without a comment.
    """
    if request.status != "pending":
        raise RequestClosed(f"promotion request {request.id} is already {request.status}")
    if reviewer_sub == request.requester_sub:
        raise SelfReview(f"four eyes: {request.requested_by} filed this request and cannot review it")
    if decision == "rejected":
        if comment is None or not comment.strip():
            raise CommentRequired()
        return ReviewOutcome(status="rejected", approvals=request.approvals, promoted=False)
    if reviewer_sub in request.approvals:
        raise AlreadyReviewed(f"{reviewer_sub} already approved promotion request {request.id}")
    approvals = (*request.approvals, reviewer_sub)
    done = len(approvals) >= required_approvals
    return ReviewOutcome(status="approved" if done else "pending", approvals=approvals, promoted=done)


def auto_approver(policy: Policy) -> str | None:
    """The actor that approves automatically (``policy:<name>``), or None for four-eyes review."""
    return f"policy:{policy.auto_approval}" if policy.auto_approval else None


# --------------------------------------------------------------------------- aliases and lifecycle


@dataclass(frozen=True)
class AliasMove:
    alias: str
    version: str | None
    previous_version: str | None


def champion_moves(current_champion: str | None, current_previous: str | None, version: str) -> list[AliasMove]:
    """The alias moves when ``version``'s rollout completed: it becomes ``champion``
    and the former champion becomes ``previous-champion``. Nothing when it already is."""
    if current_champion == version:
        return []
    moves = [AliasMove(CHAMPION, version, current_champion)]
    if current_champion is not None and current_previous != current_champion:
        moves.append(AliasMove(PREVIOUS_CHAMPION, current_champion, current_previous))
    return moves


def check_alias_by_hand(alias: str) -> None:
    """Raise :class:`ProtectedAlias` for ``champion`` / ``previous-champion``, whatever the caller's roles:
    only a completed rollout after an approved promotion moves them."""
    if alias in SYSTEM_ALIASES:
        raise ProtectedAlias(f"{alias!r} is managed by the platform: a version becomes champion through an "
                             "approved promotion request and a completed rollout; it is never set or removed "
                             "by hand")


def check_alias_target(alias: str, version: VersionState) -> None:
    """Raise unless a person may point ``alias`` at ``version``.

    :class:`ProtectedAlias` for a platform-managed alias (:func:`check_alias_by_hand`);
    :class:`VersionNotEligible` for a version that failed validation or is archived.
    """
    check_alias_by_hand(alias)
    if not version.validation_passed or version.status == "validation-failed":
        raise VersionNotEligible(f"version {version.version} did not pass validation; an alias cannot point to it")
    if version.status == "archived":
        raise VersionNotEligible(f"version {version.version} is archived; an alias cannot point to it")


def check_tag_change(keys: Iterable[str]) -> None:
    """Raise :class:`InvalidInput` when a tag change touches a tag fixed at registration."""
    fixed = sorted(k for k in keys if k.startswith(FIXED_TAG_PREFIXES))
    if fixed:
        raise InvalidInput(f"tags {', '.join(fixed)} carry lineage or metrics and are fixed at registration; "
                           "register a new version instead", field="body.tags")


def check_archivable(version: VersionState) -> None:
    """Raise :class:`VersionInUse` while an alias points to the version or a promotion is pending."""
    if version.status == "archived":
        return
    if version.status == "pending-promotion":
        raise VersionInUse(f"version {version.version} has a pending promotion request; decide it first")
    if version.aliases:
        raise VersionInUse(
            f"version {version.version} is the target of {', '.join(sorted(version.aliases))}; move the aliases first"
        )


def check_deletable(version: VersionState) -> None:
    """Raise :class:`VersionInUse` for a version that served traffic, is or was aliased or has a promotion trail."""
    if version.served_traffic:
        raise VersionInUse(f"version {version.version} served traffic; it can be archived but never deleted")
    if version.aliases:
        raise VersionInUse(f"version {version.version} is the target of {', '.join(sorted(version.aliases))}")
    if version.had_aliases:
        raise VersionInUse(f"version {version.version} carried an alias; it can be archived but never deleted")
    if version.has_promotion_requests:
        raise VersionInUse(f"version {version.version} has a promotion trail; archive it instead")
