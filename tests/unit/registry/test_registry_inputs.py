"""Parsing of what callers send: MLflow search filters, tag filters, unstorable values."""

from __future__ import annotations

import re

import pytest

from mloop.registry.api_models import like_pattern, parse_tags
from mloop.registry.domain import LINEAGE_FIELDS, Policy, check_lineage
from mloop.registry.errors import InvalidInput
from mloop.registry.mlflow_api import MlflowError, lineage_from_tags, parse_filter, parse_order_by
from mloop.registry.schemas import VersionRegistration, unstorable


def test_mlflow_filters_become_store_filters() -> None:
    f = parse_filter("name = 'credit-risk' AND tags.team = 'risk' AND run_id = \"r1\"", allow_run_id=True)
    assert (f.model, dict(f.tags), f.run_id) == ("credit-risk", {"team": "risk"}, "r1")
    f = parse_filter("name LIKE 'credit%' AND tag.`mlflow.prompt.is_prompt` != 'true'", allow_run_id=False)
    assert f.model_like == "credit%" and dict(f.tags_not) == {"mlflow.prompt.is_prompt": "true"}
    assert parse_filter("  ", allow_run_id=False) == parse_filter(None, allow_run_id=False)
    assert parse_filter("name ilike 'c%'", allow_run_id=False).model_like == "c%"
    assert parse_filter("name = 'say \"hi\"'", allow_run_id=False).model == 'say "hi"'


@pytest.mark.parametrize(
    "text",
    ["version_number > 1", "name != 'x'", "run_id = 'r'", "tags.team LIKE 'r%'", "name = x",
     "name = 'a' OR name = 'b'", "name = 'a'b'"],
)
def test_unsupported_mlflow_filters_are_refused_naming_the_clause(text: str) -> None:
    with pytest.raises(MlflowError, match="unsupported"):
        parse_filter(text, allow_run_id=False)


def test_tag_filters_are_equalities_or_presence() -> None:
    assert parse_tags(["team:risk", "tier", "url:http://x"]) == ({"team": "risk", "url": "http://x"}, ["tier"])
    assert parse_tags(None) == ({}, [])
    with pytest.raises(InvalidInput):
        parse_tags([":v"])


def test_name_substrings_match_literally() -> None:
    assert like_pattern("credit") == "%credit%"
    assert like_pattern("50%_off") == "%50\\%\\_off%"
    assert like_pattern("") is None and like_pattern(None) is None


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"a": 1.0, "b": [1, "x"]}, None),
        ({"a": float("nan")}, "a"),
        ({"a": {"b": [0.0, float("inf")]}}, "a.b.1"),
        ({"a": "nul\x00"}, "a"),
        ({"k\x00": 1}, "k\x00"),
        ("\x00", "(root)"),
    ],
)
def test_unstorable_values_are_found_by_path(value: object, where: str | None) -> None:
    assert unstorable(value) == where


def test_a_registration_with_a_nan_anywhere_is_invalid() -> None:
    with pytest.raises(ValueError, match=r"lineage\.params\.C"):
        VersionRegistration.model_validate(
            {"artifact_uri": "s3://m", "lineage": {"params": {"C": float("nan")}}})


def test_mlflow_order_by_maps_onto_store_keys() -> None:
    assert parse_order_by(["version_number DESC", "`creation_timestamp`", "name asc"], versions=True) == [
        ("version", True), ("created_at", False), ("name", False)]
    assert parse_order_by(["timestamp DESC", "last_updated_timestamp"], versions=False) == [
        ("created_at", True), ("updated_at", False)]
    assert parse_order_by(None, versions=True) == []


@pytest.mark.parametrize("clause", ["version_number", "source DESC", "name UP", "name; DROP TABLE models", ""])
def test_unknown_mlflow_orderings_are_refused(clause: str) -> None:
    with pytest.raises(MlflowError, match="order_by"):
        parse_order_by([clause], versions=clause != "version_number")


FULL_LINEAGE_TAGS = {
    "mloop.lineage.code.repo": "https://git.example.com/acme/credit",
    "mloop.lineage.code.commit": "9fceb02d0ae598e95dc970b74767f19372d61af8",
    "mloop.lineage.dataset.uri": "s3://data/credit.parquet",
    "mloop.lineage.dataset.version": "2026-11-20",
    "mloop.lineage.dataset.sha256": "5f7c1e0b9a3d4c2e8f6a7b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e",
    "mloop.lineage.features.version": "7",
    "mloop.lineage.features.schema": '[{"name": "age", "type": "number"}]',
    "mloop.lineage.environment.lock_hash": "b1946ac9",
    "mloop.lineage.params.C": "1.0",
    "mloop.lineage.retrain_job_id": "job-1",
    "mloop.metric.auc": "0.91",
    "team": "risk",
}


def test_lineage_and_metrics_ride_on_mlflow_tags() -> None:
    lineage, metrics = lineage_from_tags(FULL_LINEAGE_TAGS)
    assert lineage.code.commit == "9fceb02d0ae598e95dc970b74767f19372d61af8"
    assert lineage.dataset.version == "2026-11-20" and lineage.environment.lock_hash == "b1946ac9"
    assert [f.name for f in lineage.features.schema_] == ["age"]
    assert lineage.params == {"C": "1.0"} and lineage.retrain_job_id == "job-1"
    assert metrics == {"auc": 0.91}
    # Every field the default policy requires can be given as a tag.
    assert check_lineage(lineage, Policy().required_lineage).passed
    assert check_lineage(lineage, list(LINEAGE_FIELDS)).passed
    nothing, no_metrics = lineage_from_tags({"team": "risk"})
    assert not check_lineage(nothing, Policy().required_lineage).passed and no_metrics == {}


@pytest.mark.parametrize(("key", "value", "named"), [
    ("mloop.lineage.code.comit", "abc1234", "mloop.lineage.code.comit"),  # a typo is not silently ignored
    ("mloop.lineage.code.commit", "not-hex", "mloop.lineage.code.commit"),
    ("mloop.lineage.dataset.sha256", "abc", "mloop.lineage.dataset.sha256"),
    ("mloop.lineage.features.schema", "[{", "mloop.lineage.features.schema"),
    ("mloop.lineage.features.schema", '[{"name": "a", "type": "blob"}]', "mloop.lineage.features"),
    ("mloop.metric.auc", "high", "mloop.metric.auc"),
    ("mloop.metric.auc", "nan", "mloop.metric.auc"),
    ("mloop.metric.", "1", "mloop.metric."),
])
def test_invalid_lineage_tags_are_refused_naming_the_tag(key: str, value: str, named: str) -> None:
    with pytest.raises(MlflowError, match=re.escape(named)):
        lineage_from_tags({key: value})
