"""The registry's validation gates, promotion rules and alias moves, without I/O."""

from __future__ import annotations

import re
from typing import Any

import pytest

from mloop.contracts.payloads import FeatureSchema, FeatureSpec, Lineage
from mloop.registry.domain import (
    CHAMPION,
    LINEAGE_FIELDS,
    PREVIOUS_CHAMPION,
    AliasMove,
    Champion,
    MetricRule,
    Policy,
    PromotionState,
    SegmentBound,
    VersionState,
    auto_approver,
    champion_moves,
    check_alias_by_hand,
    check_alias_target,
    check_archivable,
    check_deletable,
    check_feature_schema,
    check_lineage,
    check_metrics,
    check_promotable,
    check_segments,
    check_tag_change,
    effective_policy,
    metric_direction,
    review,
    validate,
)
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

SHA = "5f7c" + "0" * 60


def full_lineage(**overrides: Any) -> Lineage:
    data: dict[str, Any] = {
        "code": {"repo": "https://git.example.com/acme/credit", "commit": "9fceb02d0ae598e95dc970b74767f19372d61af8"},
        "dataset": {"uri": "s3://data/credit.parquet", "version": "2026-11-20", "sha256": SHA},
        "features": {"version": "7", "schema": [{"name": "age", "type": "number"},
                                                {"name": "region", "type": "category", "optional": True}]},
        "environment": {"image": "registry.example.com/train@sha256:abc", "lock_hash": None},
        "params": {"C": 1.0},
    }
    for path, value in overrides.items():
        section, _, name = path.partition("__")
        if name:
            data[section][name] = value
        else:
            data[section] = value
    return Lineage.model_validate(data)


def schema(*specs: tuple[str, str] | tuple[str, str, bool]) -> FeatureSchema:
    return FeatureSchema(schema=[FeatureSpec(name=s[0], type=s[1], optional=bool(s[2]) if len(s) > 2 else False)
                                 for s in specs])


def champ(metrics: dict[str, float] | None = None, features: FeatureSchema | None = None) -> Champion:
    return Champion(version="3", metrics=metrics or {}, features=features or FeatureSchema())


# --------------------------------------------------------------------------- lineage


def test_complete_lineage_passes_the_lineage_gate() -> None:
    check = check_lineage(full_lineage(), Policy().required_lineage)
    assert check.passed and check.name == "lineage-complete"


@pytest.mark.parametrize(
    ("override", "missing"),
    [
        ({"dataset__sha256": None}, "dataset.sha256"),
        ({"dataset__uri": "  "}, "dataset.uri"),
        ({"dataset__version": None}, "dataset.version"),
        ({"code__repo": None}, "code.repo"),
        ({"code__commit": None}, "code.commit"),
        ({"features__version": None}, "features.version"),
        ({"features__schema": []}, "features.schema"),
        ({"environment": {"image": None, "lock_hash": None}}, "environment"),
    ],
)
def test_each_missing_lineage_field_fails_the_gate_and_is_named(override: dict[str, Any], missing: str) -> None:
    check = check_lineage(full_lineage(**override), Policy().required_lineage)
    assert not check.passed
    assert check.detail == f"missing {missing}"


def test_a_lockfile_hash_alone_satisfies_the_environment() -> None:
    lineage = full_lineage(environment={"image": None, "lock_hash": "abc123"})
    assert check_lineage(lineage, ["environment"]).passed


def test_params_and_retrain_job_are_only_checked_when_the_policy_requires_them() -> None:
    lineage = full_lineage(params={})
    assert check_lineage(lineage, Policy().required_lineage).passed
    check = check_lineage(lineage, ["params", "retrain_job_id"])
    assert not check.passed and check.detail == "missing params, retrain_job_id"


def test_an_empty_lineage_lists_every_missing_field() -> None:
    check = check_lineage(Lineage(), Policy().required_lineage)
    assert not check.passed
    for f in Policy().required_lineage:
        assert f in check.detail


def test_a_policy_cannot_require_an_unknown_lineage_field() -> None:
    with pytest.raises(ValueError, match="unknown lineage fields"):
        Policy(required_lineage=["dataset.checksum"])
    assert set(Policy().required_lineage) <= set(LINEAGE_FIELDS)


# --------------------------------------------------------------------------- metrics


@pytest.mark.parametrize(
    ("name", "direction"),
    [("auc", "higher"), ("accuracy", "higher"), ("f1", "higher"), ("log_loss", "lower"), ("rmse", "lower"),
     ("mae", "lower"), ("AUC", "higher"), ("val_loss", "lower"), ("calibration_error", "lower"), ("widgets", None)],
)
def test_metric_directions_are_known_for_common_metrics(name: str, direction: str | None) -> None:
    assert metric_direction(name) == direction


def test_a_policy_rule_overrides_the_known_direction() -> None:
    assert metric_direction("widgets", MetricRule(direction="lower")) == "lower"
    assert metric_direction("auc", MetricRule(direction="lower")) == "lower"


@pytest.mark.parametrize(
    ("metric", "candidate", "champion_value", "passed"),
    [
        ("auc", 0.91, 0.91, True),
        ("auc", 0.95, 0.91, True),
        ("auc", 0.905, 0.91, True),  # within tolerance 0.01
        ("auc", 0.90, 0.91, True),  # exactly at tolerance
        ("auc", 0.85, 0.91, False),
        ("accuracy", 0.80, 0.90, False),
        ("f1", 0.70, 0.705, True),
        ("log_loss", 0.30, 0.32, True),
        ("log_loss", 0.33, 0.32, True),
        ("log_loss", 0.40, 0.32, False),
        ("rmse", 10.0, 9.0, False),
        ("mae", 1.0, 2.0, True),
    ],
)
def test_each_metric_is_compared_with_the_champion_in_its_direction(
    metric: str, candidate: float, champion_value: float, passed: bool
) -> None:
    [check] = check_metrics({metric: candidate}, champ({metric: champion_value}), Policy())
    assert check.name == f"metric-not-worse:{metric}"
    assert check.passed is passed, check.detail
    assert "champion v3" in check.detail


def test_a_per_metric_tolerance_overrides_the_policy_tolerance() -> None:
    policy = Policy(metric_tolerance=0.01, metrics={"auc": MetricRule(tolerance=0.1)})
    [check] = check_metrics({"auc": 0.85}, champ({"auc": 0.91}), policy)
    assert check.passed, check.detail
    # The same candidate fails under the policy tolerance alone, so the override is what let it pass.
    [without] = check_metrics({"auc": 0.85}, champ({"auc": 0.91}), Policy(metric_tolerance=0.01))
    assert not without.passed


def test_a_relative_tolerance_scales_with_the_champion_value() -> None:
    policy = Policy(metrics={"rmse": MetricRule(tolerance=0.05, relative=True)})
    assert check_metrics({"rmse": 104.0}, champ({"rmse": 100.0}), policy)[0].passed
    assert not check_metrics({"rmse": 106.0}, champ({"rmse": 100.0}), policy)[0].passed


def test_without_a_champion_every_metric_passes_and_says_why() -> None:
    checks = check_metrics({"auc": 0.5, "log_loss": 3.0}, None, Policy())
    assert all(c.passed and c.detail == "no champion to compare with" for c in checks)
    assert [c.name for c in checks] == ["metric-not-worse:auc", "metric-not-worse:log_loss"]


def test_a_metric_the_champion_lacks_or_of_unknown_direction_is_not_compared() -> None:
    checks = check_metrics({"auc": 0.5, "widgets": 1.0}, champ({"widgets": 9.0}), Policy())
    by_name = {c.name: c for c in checks}
    assert by_name["metric-not-worse:auc"].passed and "has no auc" in by_name["metric-not-worse:auc"].detail
    assert by_name["metric-not-worse:widgets"].passed and "unknown" in by_name["metric-not-worse:widgets"].detail


def test_required_metrics_must_be_declared() -> None:
    checks = check_metrics({"log_loss": 0.3}, None, Policy(required_metrics=["auc", "log_loss"]))
    assert checks[0].name == "required-metrics" and not checks[0].passed and checks[0].detail == "missing auc"


def test_no_metrics_is_one_passing_check() -> None:
    [check] = check_metrics({}, champ({"auc": 0.9}), Policy())
    assert check.passed and check.name == "metrics-not-worse"


def test_a_non_finite_metric_fails() -> None:
    checks = check_metrics({"auc": float("nan")}, None, Policy())
    assert [c.passed for c in checks] == [False]


# --------------------------------------------------------------------------- segments


def test_segments_within_bounds_pass() -> None:
    policy = Policy(segment_bounds={"recall": SegmentBound(min=0.6, max_gap=0.1)})
    [check] = check_segments({"north": {"recall": 0.7}, "south": {"recall": 0.75}}, policy)
    assert check.passed and check.name == "segment-bounds:recall"


@pytest.mark.parametrize(
    ("bound", "segments", "fragment"),
    [
        (SegmentBound(min=0.6), {"north": {"recall": 0.5}}, "north=0.5 < min 0.6"),
        (SegmentBound(max=0.2), {"a": {"fpr": 0.3}}, "a=0.3 > max 0.2"),
        (SegmentBound(max_gap=0.05), {"a": {"x": 0.7}, "b": {"x": 0.8}}, "gap between segments 0.1 > max_gap 0.05"),
        (SegmentBound(required=True), {}, "no segment reports"),
    ],
)
def test_a_segment_outside_its_bounds_fails_and_names_the_segment(
    bound: SegmentBound, segments: dict[str, dict[str, float]], fragment: str
) -> None:
    metric = next(iter(next(iter(segments.values())))) if segments else "recall"
    [check] = check_segments(segments, Policy(segment_bounds={metric: bound}))
    assert not check.passed
    assert fragment in check.detail


def test_a_bounded_metric_no_segment_reports_passes_unless_required() -> None:
    [check] = check_segments({"a": {"other": 1.0}}, Policy(segment_bounds={"recall": SegmentBound(min=0.5)}))
    assert check.passed and "no segment reports recall" in check.detail


def test_segment_bounds_must_be_ordered() -> None:
    with pytest.raises(ValueError):
        SegmentBound(min=0.9, max=0.1)


# --------------------------------------------------------------------------- feature schema

BASE = schema(("age", "number"), ("income", "number"), ("region", "category", True))


@pytest.mark.parametrize(
    ("candidate", "passed", "fragment"),
    [
        (BASE, True, "compatible"),
        (schema(("age", "number"), ("income", "number"), ("region", "category", True), ("tenure", "integer", True)),
         True, "added optional tenure"),
        (schema(("age", "number"), ("income", "number"), ("region", "category", True), ("tenure", "integer")),
         False, "added required tenure"),
        (schema(("age", "number"), ("region", "category", True)), False, "removed income"),
        (schema(("age", "string"), ("income", "number"), ("region", "category", True)), False,
         "retyped age from number to string"),
        (schema(("age", "number"), ("income", "number"), ("region", "category")), False, "region became required"),
        (schema(("age", "number", True), ("income", "number"), ("region", "category", True)), True, "compatible"),
    ],
)
def test_feature_schema_compatibility_with_the_champion(candidate: FeatureSchema, passed: bool, fragment: str) -> None:
    check = check_feature_schema(candidate, champ(features=BASE))
    assert check.name == "feature-schema-compatible"
    assert check.passed is passed
    assert fragment in check.detail


def test_without_a_champion_schema_any_schema_is_compatible() -> None:
    assert check_feature_schema(BASE, None).passed
    assert check_feature_schema(BASE, champ()).passed


# --------------------------------------------------------------------------- validate


def test_validate_runs_every_gate_and_fails_when_one_fails() -> None:
    policy = Policy(segment_bounds={"recall": SegmentBound(min=0.5)})
    result = validate(
        lineage=full_lineage(dataset__sha256=None),
        metrics={"auc": 0.92},
        segment_metrics={"north": {"recall": 0.7}},
        champion=champ({"auc": 0.91}, BASE),
        policy=policy,
    )
    names = [c.name for c in result.checks]
    assert names == ["lineage-complete", "metric-not-worse:auc", "segment-bounds:recall", "feature-schema-compatible"]
    assert not result.passed
    assert result.failed() == ["lineage-complete", "feature-schema-compatible"]


def test_validate_passes_a_good_candidate_and_can_skip_the_schema_gate() -> None:
    lineage = full_lineage()
    result = validate(lineage=lineage, metrics={"auc": 0.92}, segment_metrics={},
                      champion=champ({"auc": 0.91}, lineage.features), policy=Policy())
    assert result.passed
    skipped = validate(lineage=lineage, metrics={}, segment_metrics={}, champion=None,
                       policy=Policy(check_feature_schema=False))
    assert "feature-schema-compatible" not in [c.name for c in skipped.checks]


def test_a_model_override_changes_only_the_fields_it_sets() -> None:
    default = Policy(metric_tolerance=0.02)
    eff = effective_policy(default, {"required_approvals": 2})
    assert eff.required_approvals == 2 and eff.metric_tolerance == 0.02
    assert effective_policy(default, None) is default
    with pytest.raises(InvalidInput) as info:
        effective_policy(default, {"required_approvals": 0})
    assert info.value.field == "body.required_approvals"


# --------------------------------------------------------------------------- promotion


def version(**kw: Any) -> VersionState:
    base: dict[str, Any] = {"model": "m", "version": "4", "status": "validated", "validation_passed": True}
    base.update(kw)
    return VersionState(**base)


def test_a_validated_version_can_be_requested_and_a_former_champion_again() -> None:
    check_promotable(version(), pending_request=None)
    check_promotable(version(status="production", aliases=(PREVIOUS_CHAMPION,)), pending_request=None)


@pytest.mark.parametrize(
    ("state", "pending", "fragment"),
    [
        ({"status": "validation-failed", "validation_passed": False}, None, "did not pass validation"),
        ({}, "req-1", "pending request req-1"),
        ({"status": "archived"}, None, "archived"),
        ({"status": "rolled-back"}, None, "rolled-back"),
        ({"status": "production", "aliases": (CHAMPION,)}, None, "already the champion"),
        ({"status": "promoted"}, None, "rollout is under way"),
    ],
)
def test_only_a_validated_version_without_a_pending_request_can_be_requested(
    state: dict[str, Any], pending: str | None, fragment: str
) -> None:
    with pytest.raises(NotPromotable, match=fragment):
        check_promotable(version(**state), pending_request=pending)


def pending(approvals: tuple[str, ...] = ()) -> PromotionState:
    return PromotionState(id="r1", status="pending", requested_by="user:dana", requester_sub="dana",
                          approvals=approvals)


def test_a_reviewer_other_than_the_requester_approves() -> None:
    out = review(pending(), reviewer_sub="rita", decision="approved", comment=None, required_approvals=1)
    assert out.status == "approved" and out.promoted and out.approvals == ("rita",)


def test_the_requester_cannot_review_their_own_request() -> None:
    for decision in ("approved", "rejected"):
        with pytest.raises(SelfReview, match="four eyes"):
            review(pending(), reviewer_sub="dana", decision=decision, comment="x",
                   required_approvals=1)


def test_a_rejection_needs_a_comment() -> None:
    for comment in (None, "", "   "):
        with pytest.raises(CommentRequired):
            review(pending(), reviewer_sub="rita", decision="rejected", comment=comment, required_approvals=1)
    out = review(pending(), reviewer_sub="rita", decision="rejected", comment="auc too low", required_approvals=1)
    assert out.status == "rejected" and not out.promoted


def test_two_required_approvals_need_two_distinct_reviewers() -> None:
    first = review(pending(), reviewer_sub="rita", decision="approved", comment=None, required_approvals=2)
    assert first.status == "pending" and not first.promoted
    with pytest.raises(AlreadyReviewed):
        review(pending(first.approvals), reviewer_sub="rita", decision="approved", comment=None, required_approvals=2)
    second = review(pending(first.approvals), reviewer_sub="raj", decision="approved", comment=None,
                    required_approvals=2)
    assert second.status == "approved" and second.promoted and second.approvals == ("rita", "raj")


def test_a_decided_request_cannot_be_reviewed_again() -> None:
    closed = PromotionState(id="r1", status="approved", requested_by="user:dana", requester_sub="dana")
    with pytest.raises(RequestClosed):
        review(closed, reviewer_sub="rita", decision="approved", comment=None, required_approvals=1)


def test_auto_approval_is_recorded_as_the_policy() -> None:
    assert auto_approver(Policy()) is None
    assert auto_approver(Policy(auto_approval="low-risk")) == "policy:low-risk"
    with pytest.raises(ValueError):
        Policy(auto_approval="Not A Name")


# --------------------------------------------------------------------------- aliases and lifecycle


def test_a_completed_rollout_makes_the_version_champion_and_keeps_the_former() -> None:
    assert champion_moves("3", "2", "4") == [AliasMove(CHAMPION, "4", "3"), AliasMove(PREVIOUS_CHAMPION, "3", "2")]
    assert champion_moves(None, None, "1") == [AliasMove(CHAMPION, "1", None)]
    assert champion_moves("4", "3", "4") == []


def test_a_version_that_served_traffic_is_never_deleted() -> None:
    with pytest.raises(VersionInUse, match="never deleted"):
        check_deletable(version(served_traffic=True))
    with pytest.raises(VersionInUse):
        check_deletable(version(aliases=("challenger",)))
    with pytest.raises(VersionInUse, match="promotion trail"):
        check_deletable(version(has_promotion_requests=True))
    with pytest.raises(VersionInUse, match="carried an alias"):  # the alias was moved away since
        check_deletable(version(had_aliases=True))
    check_deletable(version())


@pytest.mark.parametrize("alias", [CHAMPION, PREVIOUS_CHAMPION])
def test_the_champion_aliases_are_never_set_or_removed_by_hand(alias: str) -> None:
    with pytest.raises(ProtectedAlias, match="managed by the platform"):
        check_alias_target(alias, version())  # even on a perfectly eligible version
    with pytest.raises(ProtectedAlias):
        check_alias_by_hand(alias)


def test_other_aliases_point_only_at_validated_unarchived_versions() -> None:
    check_alias_target("challenger", version())
    check_alias_target("challenger", version(status="production", served_traffic=True))
    check_alias_by_hand("challenger")
    with pytest.raises(VersionNotEligible, match="did not pass validation"):
        check_alias_target("challenger", version(status="validation-failed", validation_passed=False))
    with pytest.raises(VersionNotEligible, match="did not pass validation"):  # status alone is not enough
        check_alias_target("challenger", version(validation_passed=False))
    with pytest.raises(VersionNotEligible, match="archived"):
        check_alias_target("challenger", version(status="archived"))


def test_lineage_and_metric_tags_are_fixed_after_registration() -> None:
    check_tag_change(["qa", "mloop.owner", "lineage.code.commit"])
    with pytest.raises(InvalidInput, match=re.escape("mloop.lineage.code.commit")) as caught:
        check_tag_change(["qa", "mloop.lineage.code.commit"])
    assert caught.value.field == "body.tags"
    with pytest.raises(InvalidInput, match=re.escape("mloop.metric.auc")):
        check_tag_change(["mloop.metric.auc"])


def test_an_aliased_version_cannot_be_archived() -> None:
    with pytest.raises(VersionInUse, match="champion"):
        check_archivable(version(aliases=(CHAMPION,)))
    with pytest.raises(VersionInUse, match="pending promotion"):
        check_archivable(version(status="pending-promotion"))
    check_archivable(version(served_traffic=True))
