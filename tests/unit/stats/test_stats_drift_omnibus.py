"""The omnibus drift test, missing-share tests and severity: calibration and cases.

Everything runs on counts drawn with fixed seeds, so it is fast and
deterministic; the bounds leave room for the binomial noise of the number
of draws.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from mloop.stats import ReferenceProfile, detect_drift
from mloop.stats.drift import (
    DriftConfig,
    FeatureDrift,
    cauchy_combination,
    chi2_homogeneity,
    drift_severity,
    mass_moved,
    missing_rate_test,
    rank_tests,
)
from mloop.stats.synthetic import synthetic_table

# Twenty equiprobable bins of a standard normal reference, plus the empty one above its maximum.
EDGES = sps.norm.ppf(np.linspace(0, 1, 21))


def _binned(rng: np.random.Generator, n: int, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    probs = np.diff(sps.norm.cdf((EDGES - shift) / scale))
    return np.append(rng.multinomial(n, probs / probs.sum()), 0)


def test_rank_tests_hold_their_level_on_binned_data() -> None:
    rng = np.random.default_rng(1)
    loc, scale = [], []
    for _ in range(1000):
        r = rank_tests(_binned(rng, 5000), _binned(rng, 2000))
        loc.append(r.location_p)
        scale.append(r.scale_p)
    assert 0.03 <= np.mean(np.array(loc) <= 0.05) <= 0.07
    assert 0.03 <= np.mean(np.array(scale) <= 0.05) <= 0.07
    assert np.mean(np.array(loc) <= 0.01) <= 0.02


def test_on_a_mean_shift_the_binned_location_test_is_near_the_t_test_and_far_above_chi_squared() -> None:
    rng = np.random.default_rng(2)
    level = 0.01 / 24
    loc = chi = 0
    for _ in range(300):
        ref, cur = _binned(rng, 5000), _binned(rng, 2000, shift=0.10)
        loc += rank_tests(ref, cur).location_p <= level
        chi += chi2_homogeneity(ref, cur).p_value <= level
    # The t-test limit at this level is about 58 %.
    assert loc / 300 >= 0.45
    assert chi / 300 <= 0.35


def test_on_a_scale_change_the_scale_test_sees_what_the_location_test_cannot() -> None:
    rng = np.random.default_rng(3)
    level = 0.01 / 24
    hits = [rank_tests(_binned(rng, 5000), _binned(rng, 2000, scale=np.sqrt(1.25))) for _ in range(200)]
    assert np.mean([h.scale_p <= level for h in hits]) >= 0.9
    assert np.mean([h.location_p <= level for h in hits]) <= 0.05


def test_rank_tests_estimate_the_shift_in_standard_deviations() -> None:
    rng = np.random.default_rng(4)
    r = rank_tests(_binned(rng, 50_000), _binned(rng, 50_000, shift=0.5))
    assert r.shift == pytest.approx(0.5, abs=0.03) and r.location_z > 0 and r.auc > 0.5


def test_cauchy_combination_is_calibrated_and_carried_by_its_smallest_p_value() -> None:
    rng = np.random.default_rng(5)
    p = rng.random((20_000, 3))
    combined = np.array([cauchy_combination(row, (0.5, 0.25, 0.25)) for row in p])
    assert 0.007 <= np.mean(combined <= 0.01) <= 0.013
    assert cauchy_combination([0.3]) == pytest.approx(0.3)
    # One test that sees the change: the price is about 1 / its weight.
    assert cauchy_combination([1e-6, 0.5, 0.5], (0.5, 0.25, 0.25)) == pytest.approx(2e-6, rel=0.01)
    assert cauchy_combination([1e-300, 0.9]) < 1e-290


def test_the_missing_share_test_is_exact_and_never_below_fishers_level() -> None:
    for ref_miss, ref_n, cur_miss, cur_n in [(0, 5000, 100, 2000), (250, 5000, 130, 2000), (0, 5000, 3, 2000),
                                             (10, 300, 0, 300)]:
        p = missing_rate_test(ref_miss, ref_n, cur_miss, cur_n)
        fisher = sps.fisher_exact([[ref_miss, ref_n - ref_miss], [cur_miss, cur_n - cur_miss]]).pvalue
        assert fisher * (1 - 1e-9) <= p <= min(1.0, 2 * fisher) * (1 + 1e-9)
    assert missing_rate_test(0, 5000, 0, 2000) == 1.0
    # 3 missing values in 2,000 rows against none in 5,000: a normal approximation would say p < 0.01.
    assert missing_rate_test(0, 5000, 3, 2000) > 0.04


def test_mass_moved_is_the_share_of_probability_that_changed_bins() -> None:
    assert mass_moved([50, 50], [40, 60]) == pytest.approx(0.1)
    assert mass_moved([10, 0], [10, 0]) == 0.0


def _window(rows: int, seed: int = 0, **change: object) -> tuple[ReferenceProfile, dict[str, object], np.ndarray]:
    rng = np.random.default_rng(seed)
    ref = synthetic_table(rng, 5000)
    profile = ReferenceProfile.from_columns(ref.columns, prediction=ref.prediction)
    win = synthetic_table(rng, rows, **change)  # type: ignore[arg-type]
    return profile, dict(win.columns), win.prediction


def test_missing_values_sent_as_none_are_their_own_kind_of_drift() -> None:
    profile, columns, pred = _window(2000, seed=6)
    col = np.array(columns["num_03"], dtype=object)
    col[np.random.default_rng(7).random(col.size) < 0.06] = None
    columns["num_03"] = list(col)
    report = detect_drift(profile, columns, prediction=pred)  # type: ignore[arg-type]
    missing = {f.name: f for f in report.missing}
    assert missing["num_03"].drifted and missing["num_03"].kind == "missing"
    assert missing["num_03"].effect_size == pytest.approx(0.06, abs=0.015)
    assert missing["num_03"].to_dict()["kind"] == "missing"
    assert "num_03" in report.drifted_features and report.severity == "medium"
    distribution = next(f for f in report.features if f.name == "num_03")
    assert not distribution.drifted  # the values that did arrive are as before
    # Features with nothing missing on either side are not tested (and cost the correction nothing).
    assert "num_00" not in missing and "num_07" in missing and not missing["num_07"].drifted


def test_a_feature_absent_from_the_window_counts_as_missing() -> None:
    profile, columns, pred = _window(2000, seed=8)
    del columns["cat_00"]
    report = detect_drift(profile, columns, prediction=pred)  # type: ignore[arg-type]
    assert next(f for f in report.missing if f.name == "cat_00").drifted
    assert report.severity == "high"  # all of it went missing


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"mean_shift": {"num_00": 0.25, "num_10": 0.25, "num_03": 0.25}}, "medium"),
        ({"mean_shift": {"num_00": 0.15}}, "low"),
        ({"mean_shift": {"num_00": 0.3}}, "medium"),
        ({"mean_shift": {"num_00": 0.7}}, "high"),
        ({"variance_ratio": {"num_00": 1.25}}, "low"),
        ({"variance_ratio": {"num_00": 1.7}}, "medium"),
        ({"variance_ratio": {"num_00": 3.0}}, "high"),
        ({"new_category": {"cat_00": 0.05}}, "low"),
        ({"mass_shift": {"cat_00": 0.15}}, "medium"),
        ({"mass_shift": {"cat_00": 0.35}}, "high"),
        ({"missing_increase": {"num_00": 0.08}}, "medium"),
        ({"missing_increase": {"num_00": 0.3}}, "high"),
    ],
    ids=lambda v: str(v),
)
def test_severity_table(change: dict[str, dict[str, float]], expected: str) -> None:
    profile, columns, pred = _window(5000, seed=9, **change)
    report = detect_drift(profile, columns, prediction=pred)  # type: ignore[arg-type]
    changed = {name for names in change.values() for name in names}
    assert changed <= set(report.drifted_features)
    assert report.severity == expected


def _drifted(name: str, level: str) -> FeatureDrift:
    return FeatureDrift(name, "omnibus", 1.0, 1e-9, 1e-3, 1.0, True, {"severity": level})


def test_breadth_raises_severity() -> None:
    config = DriftConfig()
    assert drift_severity([], 24, config) is None
    assert drift_severity([_drifted("a", "low")], 24, config) == "low"
    assert drift_severity([_drifted(n, "low") for n in "abc"], 24, config) == "medium"
    assert drift_severity([_drifted(n, "low") for n in "abcdefghijkl"], 24, config) == "high"
    # The same feature drifting in distribution and missing share counts once for breadth.
    assert drift_severity([_drifted("a", "low"), _drifted("a", "low"), _drifted("b", "low")], 24, config) == "low"
    assert drift_severity([_drifted("a", "high")], 24, config) == "high"
