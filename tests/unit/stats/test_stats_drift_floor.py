"""The effect floors: an effect counts only once it clears its floor by its own standard error.

The windows are built from exact normal quantiles (no sampling noise), so
each estimate lands where the test puts it and the cases sit on either side
of the rule deterministically.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

from mloop.stats import ReferenceProfile, detect_drift
from mloop.stats.drift import DriftConfig, FeatureDrift

REFERENCE_ROWS = 5_000
HUGE_ROWS = 100_000


def _quantiles(n: int) -> np.ndarray:
    return np.asarray(sps.norm.ppf((np.arange(n) + 0.5) / n))


def _shifted(shift: float, rows: int = HUGE_ROWS, config: DriftConfig | None = None) -> FeatureDrift:
    reference = ReferenceProfile.from_columns({"x": _quantiles(REFERENCE_ROWS)})
    report = detect_drift(reference, {"x": _quantiles(rows) + shift}, config)
    (feature,) = report.features
    return feature


def _shift_se(rows: int) -> float:
    return math.sqrt(math.pi / 3) * math.sqrt(1 / REFERENCE_ROWS + 1 / rows)


def test_a_shift_past_the_floor_by_less_than_its_standard_error_does_not_drift() -> None:
    # 0.058 sd on a 100,000-row window: significant, above the 0.05 floor, but the 5,000-row
    # reference alone puts 0.0145 sd of noise on the estimate.
    f = _shifted(0.058)
    assert f.detail["significant"] is True
    assert f.detail["effect_kind"] == "shift"
    assert 0.05 < f.effect_size < 0.05 + _shift_se(HUGE_ROWS)
    assert f.detail["effect_se"] == _shift_se(HUGE_ROWS)
    assert not f.drifted


def test_a_shift_past_the_floor_by_more_than_its_standard_error_drifts() -> None:
    f = _shifted(0.075)
    assert f.effect_size - f.detail["effect_se"] >= 0.05  # type: ignore[operator]
    assert f.drifted


def test_a_zero_floor_leaves_significance_alone_to_decide() -> None:
    no_floor = DriftConfig(min_shift=0.0, min_log_scale=0.0, min_mass=0.0, min_missing=0.0)
    f = _shifted(0.058, config=no_floor)
    assert f.detail["significant"] is True and f.drifted


def test_the_standard_error_costs_nothing_on_an_ordinary_window() -> None:
    # At 2,000 rows a 0.10 sd shift that is significant is several standard errors from 0,
    # far past the floor plus one standard error.
    f = _shifted(0.10, rows=2_000)
    assert f.detail["significant"] is True
    assert f.effect_size - f.detail["effect_se"] >= 0.05  # type: ignore[operator]
    assert f.drifted


def test_a_scale_change_is_judged_on_its_log_ratio_less_its_standard_error() -> None:
    reference = ReferenceProfile.from_columns({"x": _quantiles(REFERENCE_ROWS)})
    wide = detect_drift(reference, {"x": _quantiles(2_000) * 1.25})
    (f,) = wide.features
    assert f.detail["effect_kind"] == "log_scale"
    assert math.isclose(f.detail["effect_se"], math.sqrt((1 / REFERENCE_ROWS + 1 / 2_000) / 2))  # type: ignore[arg-type]
    assert f.drifted
    slight = detect_drift(reference, {"x": _quantiles(HUGE_ROWS) * 1.055})
    (g,) = slight.features
    # log(1.055) = 0.054 clears the 0.05 floor but not by its standard error (0.010).
    assert g.detail["significant"] is True and not g.drifted


def _missing(missing_share: float) -> FeatureDrift:
    reference = ReferenceProfile.from_columns({"x": _quantiles(REFERENCE_ROWS)})
    values = _quantiles(HUGE_ROWS)
    values[: round(missing_share * HUGE_ROWS)] = np.nan
    report = detect_drift(reference, {"x": values})
    (m,) = report.missing
    return m


def test_a_missing_share_change_must_clear_its_floor_by_its_standard_error() -> None:
    # Reference 0 % missing; the pooled standard error of the change is about 0.0015.
    below = _missing(0.011)
    assert below.detail["significant"] is True and below.effect_size > 0.01
    assert below.effect_size - below.detail["effect_se"] < 0.01  # type: ignore[operator]
    assert not below.drifted
    above = _missing(0.013)
    assert above.drifted and above.kind == "missing"
