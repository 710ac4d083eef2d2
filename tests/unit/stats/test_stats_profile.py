"""Reference profiles: building, binning like a reference, merging, serialising."""

from __future__ import annotations

import json
import math
from typing import Any, cast

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mloop.stats import (
    CategoricalProfile,
    IncompatibleProfilesError,
    InvalidConfigError,
    InvalidInputError,
    NumericProfile,
    ProfileFormatError,
    ReferenceProfile,
    columns_from_rows,
    counts_like,
)
from mloop.stats.profile import PROFILE_FORMAT, Moments, Reservoir, infer_kind

# --------------------------------------------------------------------------- helpers

finite_floats = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
any_floats = st.one_of(finite_floats, st.just(math.nan), st.just(math.inf), st.just(-math.inf))
batches = st.lists(any_floats, min_size=0, max_size=120)
words = st.sampled_from(["a", "b", "c", "d", "e", "f", "g"])
cat_batches = st.lists(st.one_of(words, st.none()), min_size=0, max_size=120)


def reference_numeric(seed: int = 0, n: int = 500) -> NumericProfile:
    return NumericProfile.from_values(np.random.default_rng(seed).normal(size=n), reservoir_size=50)


def assert_same_counts_and_moments(a: NumericProfile, b: NumericProfile) -> None:
    np.testing.assert_array_equal(a.counts, b.counts)
    assert a.missing == b.missing
    assert a.moments.n == b.moments.n
    assert a.sample.seen == b.sample.seen
    assert a.sample.values.size == b.sample.values.size
    if a.moments.n:
        scale = max(1.0, abs(a.moments.mean))
        assert a.moments.mean == pytest.approx(b.moments.mean, rel=1e-9, abs=1e-9 * scale)
        assert a.moments.m2 == pytest.approx(b.moments.m2, rel=1e-7, abs=1e-6)
        assert a.moments.min == b.moments.min
        assert a.moments.max == b.moments.max


# --------------------------------------------------------------------------- numeric


def test_numeric_profile_puts_cuts_at_quantiles_and_counts_every_value() -> None:
    values = np.arange(1000, dtype=float)
    profile = NumericProfile.from_values(values, n_bins=10)
    above_max = np.nextafter(999.0, np.inf)
    np.testing.assert_array_equal(profile.cuts, [*np.arange(100.0, 1000.0, 100.0), above_max])
    np.testing.assert_array_equal(profile.counts, [100] * 10 + [0])
    assert profile.edges[0] == -np.inf and profile.edges[-1] == np.inf
    assert profile.valid == 1000 and profile.missing == 0


def test_numeric_profile_moments_match_numpy() -> None:
    values = np.random.default_rng(3).gamma(2.0, 3.0, 777)
    m = NumericProfile.from_values(values).moments
    assert m.n == 777
    assert m.mean == pytest.approx(values.mean())
    assert m.variance == pytest.approx(values.var(ddof=1))
    assert m.std == pytest.approx(values.std(ddof=1))
    assert (m.min, m.max) == (values.min(), values.max())


def test_non_finite_and_unparseable_values_count_as_missing_without_raising() -> None:
    profile = NumericProfile.from_values([1.0, None, math.nan, math.inf, -math.inf, "x", "2.5", 3])
    assert profile.missing == 5
    assert profile.valid == 3
    assert profile.missing_rate == pytest.approx(5 / 8)
    assert profile.total == 8


def test_a_constant_reference_still_sees_values_above_and_below_it() -> None:
    profile = NumericProfile.from_values(np.zeros(100))
    np.testing.assert_array_equal(profile.counts_like([-1.0, 0.0, 0.0, 1.0]).counts, [1, 2, 1])


def test_discrete_values_collapse_duplicate_cuts() -> None:
    values = np.repeat([0.0, 1.0, 2.0], [500, 300, 200])
    profile = NumericProfile.from_values(values, n_bins=20)
    assert np.all(np.diff(profile.cuts) > 0)
    assert set(profile.cuts.tolist()) <= {0.0, 1.0, 2.0, np.nextafter(2.0, 3.0)}
    assert profile.counts.sum() == 1000


def test_all_missing_column_gives_a_single_open_bin() -> None:
    profile = NumericProfile.from_values([None, math.nan])
    assert profile.cuts.size == 0
    np.testing.assert_array_equal(profile.counts, [0])
    assert profile.missing == 2
    assert profile.moments == Moments()
    assert profile.to_dict()["moments"]["mean"] is None


def test_counts_like_bins_new_data_with_the_reference_edges() -> None:
    ref = NumericProfile.from_values(np.arange(100, dtype=float), n_bins=4)
    window = counts_like(ref, [-1000.0, 0.0, 30.0, 60.0, 99.0, 1e9, math.nan])
    assert isinstance(window, NumericProfile)
    np.testing.assert_array_equal(window.cuts, ref.cuts)
    # cuts are 25, 50, 75 and just above 99: values land in bins by [lo, hi)
    np.testing.assert_array_equal(window.counts, [2, 1, 1, 1, 1])
    assert window.missing == 1


def test_value_on_a_cut_goes_to_the_bin_above() -> None:
    ref = NumericProfile(np.array([1.0, 2.0]), np.zeros(3, dtype=np.int64), 0, Moments(), Reservoir(10, 0, np.empty(0)))
    np.testing.assert_array_equal(ref.counts_like([1.0, 2.0, 0.999]).counts, [1, 1, 1])


def test_update_equals_merge_with_counts_like() -> None:
    ref = reference_numeric()
    batch = np.random.default_rng(9).normal(1.0, 2.0, 300)
    updated = ref.update(batch)
    assert_same_counts_and_moments(updated, ref.merge(ref.counts_like(batch)))
    assert updated.moments.n == 800


def test_merging_profiles_with_different_cuts_is_refused() -> None:
    with pytest.raises(IncompatibleProfilesError):
        reference_numeric(1).merge(reference_numeric(2))


def test_merged_moments_equal_moments_of_the_concatenation() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(10, 3, 1000), rng.exponential(2, 333)
    ref = NumericProfile.from_values(a)
    merged = ref.merge(ref.counts_like(b)).moments
    both = np.concatenate([a, b])
    assert merged.mean == pytest.approx(both.mean())
    assert merged.variance == pytest.approx(both.var(ddof=1))


@settings(max_examples=60, deadline=None)
@given(batches, batches, batches)
def test_numeric_merge_is_associative(a: list[float], b: list[float], c: list[float]) -> None:
    ref = reference_numeric()
    pa, pb, pc = (ref.counts_like(x) for x in (a, b, c))
    assert_same_counts_and_moments(pa.merge(pb).merge(pc), pa.merge(pb.merge(pc)))


@settings(max_examples=60, deadline=None)
@given(batches, batches)
def test_numeric_merge_is_commutative(a: list[float], b: list[float]) -> None:
    ref = reference_numeric()
    pa, pb = ref.counts_like(a), ref.counts_like(b)
    assert_same_counts_and_moments(pa.merge(pb), pb.merge(pa))


@settings(max_examples=60, deadline=None)
@given(batches)
def test_counts_plus_missing_always_equal_the_rows_seen(values: list[float]) -> None:
    window = reference_numeric().counts_like(values)
    assert window.counts.sum() + window.missing == len(values)
    assert window.counts.sum() == sum(math.isfinite(v) for v in values)


# --------------------------------------------------------------------------- reservoir


def test_reservoir_keeps_everything_until_full() -> None:
    r = Reservoir.of(np.arange(5.0), 10)
    assert r.seen == 5 and r.values.tolist() == [0, 1, 2, 3, 4]


def test_merged_reservoir_has_capacity_items_from_both_sides_in_proportion() -> None:
    rng = np.random.default_rng(0)
    taken_from_a = []
    for _ in range(300):
        a = Reservoir.of(np.zeros(3000), 100, rng)
        b = Reservoir.of(np.ones(1000), 100, rng)
        merged = a.merge(b, rng)
        assert merged.values.size == 100 and merged.seen == 4000
        taken_from_a.append(int(np.sum(merged.values == 0)))
    # hypergeometric(3000, 1000, 100): mean 75, sd ~4.3; the mean of 300 draws is within ~0.25
    assert np.mean(taken_from_a) == pytest.approx(75, abs=1.5)


def test_reservoir_sample_is_uniform_over_merged_batches() -> None:
    rng = np.random.default_rng(1)
    hits = np.zeros(10)
    for _ in range(200):
        r = Reservoir.of(np.arange(0.0, 100.0), 20, rng)
        for start in range(100, 1000, 100):
            r = r.merge(Reservoir.of(np.arange(float(start), start + 100.0), 20, rng), rng)
        hits += np.bincount((r.values // 100).astype(int), minlength=10)
    # every block of 100 values is equally likely to be sampled: 200 * 20 / 10 = 400 each
    assert hits.min() > 330 and hits.max() < 470


def test_reservoir_merge_is_reproducible_without_an_explicit_generator() -> None:
    a = Reservoir.of(np.arange(5000.0), 50)
    b = Reservoir.of(np.arange(5000.0, 7000.0), 50)
    np.testing.assert_array_equal(a.merge(b).values, a.merge(b).values)


# --------------------------------------------------------------------------- categorical


def test_categorical_profile_keeps_top_k_by_frequency_and_pools_the_rest() -> None:
    values = ["a"] * 5 + ["b"] * 3 + ["c"] * 3 + ["d"] * 1 + [None, math.nan]
    p = CategoricalProfile.from_values(values, top_k=2)
    assert p.categories == ("a", "b")  # ties broken by name
    assert p.counts.tolist() == [5, 3]
    assert p.other == 4 and p.missing == 2
    assert p.frequencies() == {"a": 5, "b": 3, "__other__": 4}
    assert p.binned.tolist() == [5, 3, 4]


def test_categories_from_different_producers_compare_by_string_form() -> None:
    p = CategoricalProfile.from_values([1, 2, 2])
    window = p.counts_like(np.array([1.0, 2.0, 2.5, math.nan]))
    assert p.categories == ("2", "1")  # most frequent first
    assert window.counts.tolist() == [1, 1]
    assert window.other == 1 and window.missing == 1
    assert p.counts_like(np.array(["1", None], dtype=object)).counts.tolist() == [0, 1]


def test_booleans_are_their_own_categories_even_next_to_equal_integers() -> None:
    assert CategoricalProfile.from_values(np.array([True, False, True])).frequencies() == {
        "True": 2,
        "False": 1,
        "__other__": 0,
    }
    mixed = CategoricalProfile.from_values([1, True, 1.0, False, 0])
    assert dict(zip(mixed.categories, mixed.counts.tolist(), strict=True)) == {"1": 2, "True": 1, "False": 1, "0": 1}


def test_unseen_categories_go_to_other() -> None:
    p = CategoricalProfile.from_values(["x", "y"])
    w = p.counts_like(["z", "z", "x"])
    assert w.counts.tolist() == [1, 0] and w.other == 2


def test_categorical_merge_with_different_categories_is_refused() -> None:
    with pytest.raises(IncompatibleProfilesError):
        CategoricalProfile.from_values(["a"]).merge(CategoricalProfile.from_values(["b"]))


@settings(max_examples=60, deadline=None)
@given(cat_batches, cat_batches, cat_batches)
def test_categorical_merge_is_associative_and_commutative(a: list[Any], b: list[Any], c: list[Any]) -> None:
    ref = CategoricalProfile.from_values(["a", "b", "c", "a"], top_k=2)
    pa, pb, pc = (ref.counts_like(x) for x in (a, b, c))
    left, right = pa.merge(pb).merge(pc), pa.merge(pb.merge(pc))
    assert left == right
    assert pa.merge(pb) == pb.merge(pa)
    assert left.total == len(a) + len(b) + len(c)


# --------------------------------------------------------------------------- reference


def table(n: int = 400, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {
        "age": rng.integers(18, 90, n),
        "income": rng.lognormal(10, 1, n),
        "region": rng.choice(["north", "south", "east"], n),
        "flag": rng.random(n) < 0.3,
        "code": [None if i % 10 == 0 else ["x", 1][i % 2] for i in range(n)],
    }


def test_reference_infers_kinds_from_dtypes_unless_given() -> None:
    ref = ReferenceProfile.from_columns(table())
    assert ref.kinds == {
        "age": "numeric",
        "income": "numeric",
        "region": "categorical",
        "flag": "categorical",
        "code": "categorical",
    }
    forced = ReferenceProfile.from_columns(table(), {"age": "categorical"})
    assert forced.kinds["age"] == "categorical"


def test_infer_kind_treats_numbers_with_none_as_numeric_and_bools_as_categorical() -> None:
    assert infer_kind([1, None, 2.5]) == "numeric"
    assert infer_kind([True, False]) == "categorical"
    assert infer_kind([1, "a"]) == "categorical"
    assert infer_kind([None, None]) == "numeric"


def test_reference_rejects_ragged_columns_and_unknown_kinds() -> None:
    with pytest.raises(InvalidInputError):
        ReferenceProfile.from_columns({"a": [1, 2], "b": [1]})
    with pytest.raises(InvalidInputError):
        ReferenceProfile.from_columns({"a": [1, 2]}, prediction=[1])
    with pytest.raises(InvalidInputError):
        ReferenceProfile.from_columns({"a": [1, 2]}, {"b": "numeric"})
    with pytest.raises(InvalidConfigError):
        ReferenceProfile.from_columns({"a": [1, 2]}, {"a": cast(Any, "text")})
    with pytest.raises(InvalidInputError):
        ReferenceProfile.from_columns({"a": np.zeros((2, 2))})


def test_reference_counts_like_treats_absent_columns_as_missing_and_ignores_extra_ones() -> None:
    ref = ReferenceProfile.from_columns(table(), prediction=np.linspace(0, 1, 400))
    window = ref.counts_like({"age": [20, 30], "surprise": [1, 2]})
    assert window.row_count == 2
    assert window.features["age"].valid == 2
    assert window.features["income"].missing == 2
    assert window.features["region"].missing == 2
    assert window.prediction is not None and window.prediction.missing == 2
    assert set(window.features) == set(ref.features)


def test_reference_update_merges_rows_and_keeps_bins() -> None:
    ref = ReferenceProfile.from_columns(table(400, 0), prediction=np.zeros(400))
    more = table(100, 1)
    updated = ref.update(more, prediction=np.ones(100))
    assert updated.row_count == 500
    age, before = updated.features["age"], ref.features["age"]
    assert isinstance(age, NumericProfile) and isinstance(before, NumericProfile)
    np.testing.assert_array_equal(age.cuts, before.cuts)
    assert age.valid == 500


def test_reference_merge_requires_the_same_features() -> None:
    ref = ReferenceProfile.from_columns(table())
    other = ReferenceProfile.from_columns({"age": [1, 2, 3]})
    with pytest.raises(IncompatibleProfilesError):
        ref.merge(other)


def test_columns_from_rows_fills_absent_keys_with_none() -> None:
    rows: list[dict[str, Any]] = [{"a": 1, "b": "x"}, {"a": 2}, {"c": 3.5}]
    assert columns_from_rows(rows) == {"a": [1, 2, None], "b": ["x", None, None], "c": [None, None, 3.5]}
    assert columns_from_rows(rows, ["c"]) == {"c": [None, None, 3.5]}


# --------------------------------------------------------------------------- serialisation


def test_profile_dict_is_json_safe_compact_and_versioned() -> None:
    ref = ReferenceProfile.from_columns(table(5000), prediction=np.random.default_rng(0).random(5000))
    d = ref.to_dict()
    text = json.dumps(d, allow_nan=False)  # raises on NaN/inf
    assert d["format"] == PROFILE_FORMAT
    assert d["row_count"] == 5000
    # Only the reservoir holds raw values: 1000 per numeric column, ~11 bytes each.
    assert len(text) < 3 * 1000 * 14 + 5000
    assert all(len(v["sample"]["values"]) == 1000 for v in d["features"].values() if v["kind"] == "numeric")


def test_round_trip_restores_an_equal_profile_when_samples_are_exact() -> None:
    ref = ReferenceProfile.from_columns(table(), prediction=np.linspace(0, 1, 400))
    restored = ReferenceProfile.from_dict(json.loads(json.dumps(ref.to_dict(sample_digits=None))))
    assert restored == ref


@settings(max_examples=40, deadline=None)
@given(batches, cat_batches, st.integers(min_value=1, max_value=30))
def test_dict_round_trip_is_a_fixed_point(nums: list[float], cats: list[Any], n_bins: int) -> None:
    n = min(len(nums), len(cats))
    ref = ReferenceProfile.from_columns(
        {"x": nums[:n], "c": cats[:n]}, {"x": "numeric", "c": "categorical"}, n_bins=n_bins, reservoir_size=7
    )
    d = json.loads(json.dumps(ref.to_dict(), allow_nan=False))
    assert ReferenceProfile.from_dict(d).to_dict() == d


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(format="other/v9"), "format"),
        (lambda d: d["features"]["age"].update(kind="text"), "kind"),
        (lambda d: d["features"]["age"]["counts"].append(1), "counts"),
        (lambda d: d["features"]["age"].update(cuts=[3.0, 1.0]), "increasing"),
        (lambda d: d["features"]["age"]["counts"].__setitem__(0, -1), "non-negative"),
        (lambda d: d["features"]["age"]["moments"].update(mean="NaN"), "mean"),
        (lambda d: d["features"]["age"]["sample"].update(capacity=3), "sample"),
        (lambda d: d["features"]["region"].update(categories=["a", "a", "b"]), "distinct"),
        (lambda d: d.update(row_count=7), "rows"),
        (lambda d: d["features"]["age"].pop("moments"), "moments"),
    ],
)
def test_from_dict_rejects_malformed_profiles(mutate: Any, message: str) -> None:
    d = ReferenceProfile.from_columns(table(50)).to_dict()
    mutate(d)
    with pytest.raises(ProfileFormatError, match=message):
        ReferenceProfile.from_dict(d)


def test_profile_format_errors_are_value_errors_for_generic_handlers() -> None:
    with pytest.raises(ValueError):
        ReferenceProfile.from_dict({"format": PROFILE_FORMAT, "features": [], "row_count": 0})
