"""Detection quality on seeded synthetic streams (a fast subset of bench/bench_drift_quality.py).

Each stream draws a fresh 5,000-row reference of 20 numeric features (skewed,
heavy-tailed, discrete, bimodal, correlated, partly missing) plus 3
categorical ones and a model score, then one window; a stream "alarms" if
``detect_drift`` says the window drifted. Seeds are fixed, so these are
deterministic, and the floors below sit well under the measured rates.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from mloop.stats import DriftConfig, ReferenceProfile, detect_drift
from mloop.stats.drift import DriftReport
from mloop.stats.synthetic import synthetic_table

REFERENCE_ROWS = 5_000


def stream_reports(
    streams: int,
    window_rows: int,
    *,
    mean_shift: Mapping[str, float] | None = None,
    mass_shift: Mapping[str, float] | None = None,
    config: DriftConfig | None = None,
    seed: int = 2026,
) -> list[DriftReport]:
    reports = []
    for i in range(streams):
        rng = np.random.default_rng([seed, i])
        ref_table = synthetic_table(rng, REFERENCE_ROWS)
        reference = ReferenceProfile.from_columns(ref_table.columns, prediction=ref_table.prediction)
        window = synthetic_table(rng, window_rows, mean_shift=mean_shift, mass_shift=mass_shift)
        reports.append(detect_drift(reference, window.columns, config, prediction=window.prediction))
    return reports


def test_no_drift_streams_rarely_alarm() -> None:
    reports = stream_reports(40, 2_000)
    false_alarms = sum(r.drifted for r in reports)
    assert false_alarms / len(reports) <= 0.05
    assert all(len(r.features) == 23 and r.prediction is not None for r in reports)


def test_without_the_effect_floor_false_alarms_stay_near_alpha() -> None:
    # The correction alone keeps the per-window chance of any false alarm at about alpha.
    no_floor = DriftConfig(min_shift=0.0, min_log_scale=0.0, min_mass=0.0, min_missing=0.0)
    reports = stream_reports(40, 2_000, config=no_floor)
    assert sum(r.drifted for r in reports) / len(reports) <= 0.1


@pytest.mark.parametrize("feature", ["num_00", "num_02", "num_05", "num_09", "num_17"])
def test_a_quarter_sigma_mean_shift_is_caught_in_one_window(feature: str) -> None:
    streams = 40 if feature == "num_00" else 15
    reports = stream_reports(streams, 2_000, mean_shift={feature: 0.25})
    detected = sum(feature in r.drifted_features for r in reports)
    assert detected / len(reports) >= 0.9


@pytest.mark.parametrize("feature", ["cat_00", "cat_01", "cat_02"])
def test_moving_a_tenth_of_a_categorical_features_mass_is_caught(feature: str) -> None:
    reports = stream_reports(15, 2_000, mass_shift={feature: 0.1})
    assert sum(feature in r.drifted_features for r in reports) / len(reports) >= 0.9


def test_a_negligible_shift_on_a_huge_window_does_not_alarm() -> None:
    reports = stream_reports(4, 100_000, mean_shift={"num_00": 0.02})
    assert not any(r.drifted for r in reports)


def test_small_windows_keep_false_alarms_low_with_the_binned_omnibus_test() -> None:
    # The rank tests' normal approximation and the pooled chi-squared hold at 300 rows.
    reports = stream_reports(40, 300)
    assert all(f.method == "omnibus" for r in reports for f in r.features if f.name.startswith("num"))
    assert sum(r.drifted for r in reports) / len(reports) <= 0.1
