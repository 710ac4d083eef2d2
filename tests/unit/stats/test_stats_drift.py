"""Drift tests one by one, the correction across features, and the window verdict."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from scipy.spatial import distance as spd

from mloop.stats import (
    DriftConfig,
    IncompatibleProfilesError,
    InvalidConfigError,
    InvalidInputError,
    ReferenceProfile,
    chi2_homogeneity,
    cvm_test,
    detect_drift,
    jensen_shannon,
    ks_test,
    psi,
    wasserstein,
)
from mloop.stats.drift import adjust_p_values, psi_noise, rejection_threshold, wasserstein_noise

count_vectors = st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=30)


# --------------------------------------------------------------------------- PSI, JS


def test_psi_matches_the_textbook_formula() -> None:
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
    assert psi([50, 50], [25, 75]) == pytest.approx(expected)
    assert psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0, abs=1e-12)


def test_psi_smooths_empty_bins_to_a_large_finite_value() -> None:
    value = psi([100, 0], [50, 50], epsilon=1e-4)
    assert math.isfinite(value) and value > 3


@settings(max_examples=200, deadline=None)
@given(count_vectors, st.data())
def test_psi_is_never_negative(ref: list[int], data: st.DataObject) -> None:
    cur = data.draw(st.lists(st.integers(0, 10_000), min_size=len(ref), max_size=len(ref)))
    if sum(ref) == 0 or sum(cur) == 0:
        with pytest.raises(InvalidInputError):
            psi(ref, cur)
        return
    assert psi(ref, cur) >= 0.0
    assert psi(ref, ref) == pytest.approx(0.0, abs=1e-12)


def test_psi_rejects_mismatched_or_negative_counts() -> None:
    with pytest.raises(InvalidInputError):
        psi([1, 2], [1, 2, 3])
    with pytest.raises(InvalidInputError):
        psi([1, -2], [1, 2])


def test_psi_noise_is_the_mean_psi_between_samples_of_one_distribution() -> None:
    rng = np.random.default_rng(0)
    probs = np.full(20, 0.05)
    values = [psi(rng.multinomial(5000, probs), rng.multinomial(2000, probs)) for _ in range(400)]
    assert np.mean(values) == pytest.approx(psi_noise(20, 5000, 2000), rel=0.05)
    assert psi_noise(1, 10, 10) == 0.0


def test_jensen_shannon_matches_scipy_base_2_and_is_bounded() -> None:
    ref, cur = np.array([10, 20, 30, 40]), np.array([40, 30, 20, 10])
    assert jensen_shannon(ref, cur) == pytest.approx(spd.jensenshannon(ref / 100, cur / 100, base=2))
    assert jensen_shannon([1, 0], [0, 1]) == pytest.approx(1.0)
    assert jensen_shannon(ref, ref) == pytest.approx(0.0, abs=1e-7)


# --------------------------------------------------------------------------- chi-squared


def test_chi2_homogeneity_matches_scipy_contingency_test() -> None:
    ref, cur = np.array([250, 240, 260, 250]), np.array([90, 110, 120, 80])
    expected = sps.chi2_contingency(np.vstack([ref, cur]), correction=False)
    result = chi2_homogeneity(ref, cur)
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)
    assert result.dof == expected.dof == 3


def test_chi2_homogeneity_drops_empty_bins_and_pools_sparse_ones() -> None:
    result = chi2_homogeneity([1000, 1000, 10, 8, 0], [500, 500, 3, 4, 0])
    pooled = sps.chi2_contingency(np.array([[18, 1000, 1000], [7, 500, 500]]), correction=False)
    assert result.bins == 3
    assert result.statistic == pytest.approx(pooled.statistic)
    assert result.p_value == pytest.approx(pooled.pvalue)


def test_a_pool_still_too_sparse_absorbs_the_next_smallest_bin() -> None:
    result = chi2_homogeneity([1000, 1000, 2, 1], [500, 500, 3, 0])
    pooled = sps.chi2_contingency(np.array([[1003, 1000], [503, 500]]), correction=False)
    assert result.bins == 2
    assert result.statistic == pytest.approx(pooled.statistic)


def test_chi2_homogeneity_with_a_single_bin_has_nothing_to_test() -> None:
    assert chi2_homogeneity([10, 0], [5, 0]) == (0.0, 1.0, 0, 1)


def test_chi2_homogeneity_p_values_are_uniform_under_the_null() -> None:
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(12))
    p = [chi2_homogeneity(rng.multinomial(5000, probs), rng.multinomial(2000, probs)).p_value for _ in range(2000)]
    assert np.mean(np.array(p) < 0.05) == pytest.approx(0.05, abs=0.015)
    assert sps.kstest(p, "uniform").pvalue > 0.01


# --------------------------------------------------------------------------- sample tests


def test_ks_and_cvm_match_scipy() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=300), rng.normal(0.3, 1, size=200)
    ks = sps.ks_2samp(a, b)
    cvm = sps.cramervonmises_2samp(a, b)
    assert ks_test(a, b) == pytest.approx((ks.statistic, ks.pvalue))
    assert cvm_test(a, b) == pytest.approx((cvm.statistic, cvm.pvalue))


def test_sample_tests_drop_non_finite_values() -> None:
    a = [0.0, 1.0, 2.0, math.nan, math.inf]
    assert ks_test(a, [0.0, 1.0, 2.0]).statistic == 0.0
    with pytest.raises(InvalidInputError):
        ks_test([math.nan], [1.0])


def test_wasserstein_of_a_shift_is_the_shift_in_scale_units() -> None:
    x = np.random.default_rng(3).normal(size=1000)
    assert wasserstein(x, x + 0.5) == pytest.approx(0.5)
    assert wasserstein(x, x + 0.5, scale=2.0) == pytest.approx(0.25)
    with pytest.raises(InvalidConfigError):
        wasserstein(x, x, scale=0.0)


def test_wasserstein_noise_predicts_the_distance_between_null_samples() -> None:
    rng = np.random.default_rng(4)
    ref = rng.exponential(size=1000)
    observed = [wasserstein(ref, rng.exponential(size=300)) for _ in range(300)]
    # the reference sample's own deviation from the population adds a little spread
    assert np.mean(observed) == pytest.approx(wasserstein_noise(ref, 300), rel=0.15)


# --------------------------------------------------------------------------- correction


def test_benjamini_hochberg_adjustment_matches_scipy() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.5, 0.2])
    np.testing.assert_allclose(adjust_p_values(p, "bh"), sps.false_discovery_control(p, method="bh"))
    np.testing.assert_allclose(adjust_p_values(p, "bonferroni"), np.minimum(p * 6, 1))
    np.testing.assert_allclose(adjust_p_values(p, "none"), p)


def test_rejection_thresholds_follow_the_procedures() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    assert rejection_threshold(p, 0.05, "bh") == pytest.approx(0.05)  # all four pass their step
    assert rejection_threshold(p, 0.05, "bonferroni") == pytest.approx(0.0125)
    assert rejection_threshold([0.2, 0.9], 0.05, "bh") == pytest.approx(0.025)  # none: the smallest step
    assert rejection_threshold([], 0.05, "bh") == 0.05


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=40), st.sampled_from(["bh", "bonferroni"]))
def test_threshold_and_adjusted_p_values_agree_on_what_is_significant(p: list[float], method: Any) -> None:
    cut = rejection_threshold(p, 0.05, method)
    q = adjust_p_values(p, method)
    for raw, adj in zip(p, q, strict=True):
        assert (raw <= cut) == (adj <= 0.05 + 1e-12) or math.isclose(raw, cut)


# --------------------------------------------------------------------------- detect_drift


def columns(n: int, seed: int, shift: float = 0.0, k_numeric: int = 3) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {f"x{i}": rng.normal(size=n) for i in range(k_numeric)}
    out["x0"] = out["x0"] + shift
    out["color"] = rng.choice(["red", "green", "blue"], n, p=[0.5, 0.3, 0.2])
    return out


@pytest.fixture(scope="module")
def reference() -> ReferenceProfile:
    cols = columns(5000, seed=0)
    return ReferenceProfile.from_columns(cols, prediction=cols["x1"] * 0.5)


def test_identical_data_shows_no_drift(reference: ReferenceProfile) -> None:
    cols = columns(5000, seed=0)
    report = detect_drift(reference, cols, prediction=cols["x1"] * 0.5)
    assert not report.drifted and report.severity is None
    assert all(f.statistic == pytest.approx(0.0, abs=1e-9) for f in report.features)
    assert all(f.effect_size == 0.0 for f in report.features)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(60, 3000))
def test_a_window_equal_to_the_reference_data_never_drifts(seed: int, n: int) -> None:
    cols = columns(n, seed)
    ref = ReferenceProfile.from_columns(cols)
    report = detect_drift(ref, cols)
    assert not report.drifted
    assert all(f.p_value is None or f.p_value > 0.99 for f in report.features)


def test_methods_default_by_kind_and_window_size(reference: ReferenceProfile) -> None:
    large = detect_drift(reference, columns(2000, 1))
    small = detect_drift(reference, columns(200, 1))
    omnibus = {"x0": "omnibus", "x1": "omnibus", "x2": "omnibus", "color": "chi2"}
    assert {f.name: f.method for f in large.features} == omnibus
    assert {f.name: f.method for f in small.features} == omnibus
    # KS on samples below a configured window size.
    fallback = detect_drift(reference, columns(200, 1), DriftConfig(small_window_rows=500))
    assert {f.name: f.method for f in fallback.features} == {"x0": "ks", "x1": "ks", "x2": "ks", "color": "chi2"}


def test_methods_can_be_overridden_per_feature_and_per_kind(reference: ReferenceProfile) -> None:
    config = DriftConfig(methods={"x0": "cvm", "color": "js"}, numeric_method="psi")
    report = detect_drift(reference, columns(2000, 1), config)
    methods = {f.name: f.method for f in report.features}
    assert methods == {"x0": "cvm", "x1": "psi", "x2": "psi", "color": "js"}
    psi_result = next(f for f in report.features if f.name == "x1")
    assert psi_result.p_value is None and psi_result.threshold == config.psi_threshold


@pytest.mark.parametrize("method", ["chi2", "psi", "js", "wasserstein", "ks", "cvm"])
def test_every_method_flags_a_large_shift_and_passes_identical_data(reference: ReferenceProfile, method: Any) -> None:
    config = DriftConfig(methods={"x0": method})
    assert "x0" in detect_drift(reference, columns(2000, 5, shift=1.0), config).drifted_features
    assert not detect_drift(reference, columns(5000, 0), config).drifted


def test_sample_methods_are_refused_for_categorical_features(reference: ReferenceProfile) -> None:
    with pytest.raises(InvalidConfigError):
        detect_drift(reference, columns(2000, 1), DriftConfig(methods={"color": "ks"}))


def test_effect_floor_keeps_a_tiny_shift_on_a_huge_window_from_alarming() -> None:
    ref_cols = columns(100_000, 10)
    reference = ReferenceProfile.from_columns(ref_cols)
    window = columns(100_000, 11, shift=0.04)
    report = detect_drift(reference, window)
    x0 = next(f for f in report.features if f.name == "x0")
    assert x0.detail["significant"] is True  # statistically real ...
    assert x0.detail["effect_kind"] == "shift"
    assert 0.02 < x0.effect_size < 0.05 and not x0.drifted  # ... but below the 0.05 sd floor
    assert not report.drifted
    no_floor = DriftConfig(min_shift=0.0, min_log_scale=0.0, min_mass=0.0)
    assert "x0" in detect_drift(reference, window, no_floor).drifted_features


def test_profile_and_raw_column_windows_give_the_same_binned_verdict(reference: ReferenceProfile) -> None:
    cols = columns(2000, 7, shift=0.3)
    pred = cols["x1"] * 0.5
    from_columns = detect_drift(reference, cols, prediction=pred)
    from_profile = detect_drift(reference, reference.counts_like(cols, prediction=pred))
    assert [(f.name, f.statistic, f.p_value) for f in from_columns.features] == [
        (f.name, f.statistic, f.p_value) for f in from_profile.features
    ]
    assert from_profile.drifted_features == ("x0",)


def test_a_window_binned_differently_is_refused(reference: ReferenceProfile) -> None:
    independent = ReferenceProfile.from_columns(columns(2000, 3), prediction=np.zeros(2000))
    with pytest.raises(IncompatibleProfilesError):
        detect_drift(reference, independent)


def test_columns_with_too_few_values_or_absent_are_skipped_with_a_reason(reference: ReferenceProfile) -> None:
    cols = columns(2000, 1)
    cols["x2"] = np.full(2000, np.nan)
    del cols["color"]
    report = detect_drift(reference, cols)
    assert set(report.skipped) == {"x2", "color", "prediction"}
    assert "0 valid values" in report.skipped["x2"]
    assert {f.name for f in report.features} == {"x0", "x1"}


def test_prediction_drift_is_reported_apart_from_data_drift(reference: ReferenceProfile) -> None:
    cols = columns(2000, 8)
    report = detect_drift(reference, cols, prediction=cols["x1"] * 0.5 + 0.5)
    assert report.prediction is not None and report.prediction.name == "prediction"
    assert report.prediction_drifted and report.drifted
    assert not report.data_drifted and report.drifted_features == ()


def test_a_categorical_mass_shift_is_detected(reference: ReferenceProfile) -> None:
    cols = columns(2000, 9)
    cols["color"] = np.random.default_rng(9).choice(["red", "green", "blue"], 2000, p=[0.4, 0.35, 0.25])
    report = detect_drift(reference, cols)
    assert report.drifted_features == ("color",)
    color = report.features[-1]
    assert color.method == "chi2" and color.detail["dof"] == 2


def test_bonferroni_uses_alpha_over_the_number_of_tests(reference: ReferenceProfile) -> None:
    config = DriftConfig(correction="bonferroni")
    report = detect_drift(reference, columns(2000, 1), config)
    tested = len(report.features) + len(report.missing) + (report.prediction is not None)
    assert report.missing == () and tested == 4  # no prediction in the window: skipped
    assert all(f.threshold == pytest.approx(config.alpha / tested) for f in report.features)


def test_severity_grows_with_effect_size_and_share_of_drifted_features(reference: ReferenceProfile) -> None:
    by_effect = DriftConfig(severity_share=(0.9, 1.0), severity_features=10)
    small = detect_drift(reference, columns(2000, 1, shift=0.15), by_effect)
    middle = detect_drift(reference, columns(2000, 1, shift=0.3), by_effect)
    big = detect_drift(reference, columns(2000, 1, shift=1.5), by_effect)
    assert small.drifted_features == middle.drifted_features == big.drifted_features == ("x0",)
    assert small.severity == "low"  # a shift of 0.15 sd
    assert middle.severity == "medium"  # 0.3 sd: past 0.2
    assert big.severity == "high"  # 1.5 sd: past 0.5
    everything = columns(2000, 1, shift=0.15)
    everything["x1"] = everything["x1"] + 0.15
    everything["x2"] = everything["x2"] - 0.15
    assert detect_drift(reference, everything, by_effect).severity == "low"
    assert detect_drift(reference, everything).severity == "high"  # three of five columns: 60 %
    assert detect_drift(reference, columns(2000, 1, shift=0.15)).severity == "medium"  # one of five: 20 %


def test_report_dict_is_json_safe_and_carries_the_event_fields(reference: ReferenceProfile) -> None:
    report = detect_drift(reference, columns(2000, 1, shift=0.5))
    d = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert d["drifted"] is True and d["severity"] in {"low", "medium", "high"}
    for f in d["features"]:
        assert {"name", "method", "statistic", "p_value", "threshold", "drifted", "effect_size"} <= set(f)
    x0 = d["features"][0]
    assert x0["detail"]["severity"] in {"low", "medium", "high"} and x0["detail"]["mean_shift"] > 0.3


def test_bad_input_raises_stats_errors(reference: ReferenceProfile) -> None:
    cols = columns(100, 1)
    cols["x1"] = cols["x1"][:50]
    with pytest.raises(InvalidInputError):
        detect_drift(reference, cols)
    with pytest.raises(InvalidInputError):
        detect_drift(reference, reference, prediction=[1.0])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"alpha": 0.0},
        {"alpha": 1.5},
        {"correction": "holm"},
        {"methods": {"x": "t-test"}},
        {"categorical_method": "ks"},
        {"min_psi": -1.0},
        {"min_rows": 1},
        {"severity_psi": (0.3, 0.1)},
    ],
)
def test_drift_config_rejects_out_of_domain_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidConfigError):
        DriftConfig(**kwargs)
