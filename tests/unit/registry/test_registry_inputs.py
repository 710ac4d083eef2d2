"""Parsing of what callers send: MLflow search filters, tag filters, unstorable values."""

from __future__ import annotations

import pytest

from mloop.registry.api_models import like_pattern, parse_tags
from mloop.registry.errors import InvalidInput
from mloop.registry.mlflow_api import MlflowError, parse_filter
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
