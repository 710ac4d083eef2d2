"""Canonical JSON: RFC 8785 behaviour for everything a CloudEvent can hold."""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mloop.ledger.canonical import CanonicalizationError, _relayout, canonicalize, format_float


def test_objects_are_sorted_and_compact() -> None:
    value = {"b": [1, 2, {"z": None, "a": True}], "a": "x", "c": {}}
    assert canonicalize(value) == b'{"a":"x","b":[1,2,{"a":true,"z":null}],"c":{}}'


def test_key_order_is_by_utf16_code_units() -> None:
    # The sorting example of RFC 8785 §3.2.3: U+1F600 (a surrogate pair,
    # D83D DE00) sorts before U+FB33 although its code point is larger.
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    keys = list(json.loads(canonicalize(value)))
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


def test_insertion_order_does_not_matter() -> None:
    a = OrderedDict([("x", 1), ("y", 2)])
    b = OrderedDict([("y", 2), ("x", 1)])
    assert canonicalize(a) == canonicalize(b) == b'{"x":1,"y":2}'


def test_strings_escape_only_what_json_requires() -> None:
    value = 'quote" backslash\\ nl\n tab\t cr\r bs\b ff\f nul\x00 us\x1f del\x7f é € 😀'
    expected = '"quote\\" backslash\\\\ nl\\n tab\\t cr\\r bs\\b ff\\f nul\\u0000 us\\u001f del\x7f é € 😀"'
    assert canonicalize(value) == expected.encode("utf-8")


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (0.0, "0"),
        (-0.0, "0"),
        (1.0, "1"),
        (-1.5, "-1.5"),
        (4.5, "4.5"),
        (0.002, "0.002"),
        (0.000001, "0.000001"),
        (1e-7, "1e-7"),
        (123456789.0, "123456789"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1e23, "1e+23"),
        (333333333.33333329, "333333333.3333333"),
        (9007199254740992.0, "9007199254740992"),
        (295147905179352830000.0, "295147905179352830000"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (-1.2345e-10, "-1.2345e-10"),
        (0.1, "0.1"),
        (0.0001, "0.0001"),
        (0.00001, "0.00001"),
        (9999999999999998.0, "9999999999999998"),
        (1e16, "10000000000000000"),
        (1 / 3, "0.3333333333333333"),
    ],
)
def test_floats_use_the_ecmascript_shortest_form(number: float, text: str) -> None:
    assert format_float(number) == text
    assert canonicalize(number) == text.encode()


def test_integers_are_written_exactly_whatever_their_size() -> None:
    assert canonicalize([0, -1, 2**53 + 1, -(10**30)]) == (b"[0,-1,9007199254740993,-1000000000000000000000000000000]")


def test_literals_and_tuples() -> None:
    assert canonicalize([True, False, None, (1, "a")]) == b'[true,false,null,[1,"a"]]'


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, [1, {"a": math.nan}]])
def test_nan_and_infinity_are_rejected(bad: Any) -> None:
    with pytest.raises(CanonicalizationError):
        canonicalize(bad)


@pytest.mark.parametrize(
    "bad",
    [
        {1: "int key"},
        {"a": 1, None: 2},
        {"nested": {(1, 2): 3}},
        {1, 2},
        b"bytes",
        object(),
        "lone \ud800 surrogate",
        {"lone \udfff key": 1},
    ],
)
def test_values_without_a_json_form_are_rejected(bad: Any) -> None:
    with pytest.raises(CanonicalizationError):
        canonicalize(bad)


def test_canonicalization_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        canonicalize({"x": math.nan})


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values: an integral float may come back as an int."""
    if isinstance(a, float) or isinstance(b, float):
        numbers = all(isinstance(x, int | float) and not isinstance(x, bool) for x in (a, b))
        return numbers and float(a) == float(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_canonical_form_parses_back_to_an_equal_value_and_is_a_fixed_point(value: Any) -> None:
    encoded = canonicalize(value)
    decoded = json.loads(encoded)
    assert _same(decoded, value)
    # What the offline verifier relies on: re-canonicalising the parsed
    # canonical text gives the very same bytes.
    assert canonicalize(decoded) == encoded


def test_integral_floats_beyond_2_53_keep_their_shortest_digits() -> None:
    encoded = canonicalize(2.003785793495719e16)
    assert encoded == b"20037857934957190"
    assert canonicalize(json.loads(encoded)) == encoded


@settings(max_examples=500, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_float_round_trips_through_its_canonical_text(number: float) -> None:
    assert float(format_float(number)) == number
    if number != 0:
        # The fixed-notation shortcut agrees with the general layout.
        assert format_float(number) == _relayout(number)


plain_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(st.characters(max_codepoint=0xD7FF), max_size=8), children)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(plain_values)
def test_without_floats_it_agrees_with_sorted_compact_json_dumps(value: Any) -> None:
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonicalize(value) == expected.encode("utf-8")
