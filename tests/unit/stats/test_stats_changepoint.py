"""Page-Hinkley and CUSUM: detection, quiet periods, and checkpointed state."""

from __future__ import annotations

import json
import math
from typing import Any, cast

import numpy as np
import pytest

from mloop.stats import Cusum, InvalidConfigError, InvalidInputError, PageHinkley


def first_alarm(detector: PageHinkley | Cusum, xs: np.ndarray) -> int | None:
    for i, x in enumerate(xs):
        if detector.update(float(x)):
            return i
    return None


def test_page_hinkley_stays_quiet_on_a_stable_error_rate_and_catches_a_rise() -> None:
    rng = np.random.default_rng(0)
    stable = (rng.random(5000) < 0.1).astype(float)
    worse = (rng.random(2000) < 0.3).astype(float)
    ph = PageHinkley()  # delta 0.005, lambda 50
    assert first_alarm(ph, stable) is None
    alarm = first_alarm(ph, worse)
    assert alarm is not None and alarm < 400
    assert ph.alarms == 1


def test_page_hinkley_direction_decrease_ignores_rises() -> None:
    xs = np.r_[np.zeros(200), np.ones(200)]
    assert first_alarm(PageHinkley(threshold=10, direction="decrease"), xs) is None
    assert first_alarm(PageHinkley(threshold=10, direction="decrease"), 1 - xs) is not None
    assert first_alarm(PageHinkley(threshold=10, direction="both"), 1 - xs) is not None


def test_page_hinkley_waits_for_min_samples() -> None:
    ph = PageHinkley(threshold=1.0, min_samples=50, delta=0.0)
    xs = np.r_[np.zeros(5), np.full(100, 10.0)]
    assert first_alarm(ph, xs) == 49


def test_cusum_with_known_parameters_flags_a_one_sigma_shift_quickly() -> None:
    rng = np.random.default_rng(1)
    cusum = Cusum(target=0.0, sigma=1.0)
    assert first_alarm(cusum, rng.normal(0, 1, 200)) is None
    alarm = first_alarm(cusum, rng.normal(1, 1, 500))
    assert alarm is not None and alarm < 40


def test_cusum_in_control_run_length_is_long() -> None:
    rng = np.random.default_rng(2)
    run_lengths = []
    for _ in range(30):
        c = Cusum(target=0.0, sigma=1.0)
        run_lengths.append(first_alarm(c, rng.normal(size=3000)) or 3000)
    assert np.median(run_lengths) > 200  # theory: ARL0 about 465 for k=0.5, h=5, two-sided


def test_cusum_estimates_target_and_sigma_during_warmup() -> None:
    rng = np.random.default_rng(3)
    c = Cusum(warmup=500)
    assert first_alarm(c, rng.normal(10, 2, 500)) is None
    assert c.ready
    assert c.target == pytest.approx(10, abs=0.3)
    assert c.sigma == pytest.approx(2, rel=0.1)
    assert first_alarm(c, rng.normal(13, 2, 200)) is not None


def test_cusum_constant_warmup_does_not_divide_by_zero() -> None:
    c = Cusum(warmup=10)
    for _ in range(10):
        c.update(0.0)
    assert c.sigma == c.min_sigma
    assert c.update(1.0) is True


def test_non_finite_observations_are_ignored() -> None:
    ph, c = PageHinkley(), Cusum()
    for x in (math.nan, math.inf, -math.inf):
        assert ph.update(x) is False and c.update(x) is False
    assert ph.n == 0 and c.n == 0


@pytest.mark.parametrize("make", [lambda: PageHinkley(threshold=5), lambda: Cusum(warmup=20)])
def test_a_restored_detector_continues_exactly_where_it_stopped(make: object) -> None:
    rng = np.random.default_rng(4)
    xs = np.r_[rng.normal(0, 1, 300), rng.normal(0.8, 1, 300)]
    straight = make()  # type: ignore[operator]
    split = make()  # type: ignore[operator]
    alarms_straight = [straight.update(float(x)) for x in xs]
    alarms_split = [split.update(float(x)) for x in xs[:250]]
    state = json.loads(json.dumps(split.to_dict(), allow_nan=False))
    resumed = type(split).from_dict(state)
    alarms_split += [resumed.update(float(x)) for x in xs[250:]]
    assert alarms_split == alarms_straight
    assert resumed == straight


def test_restoring_rejects_foreign_or_incomplete_state() -> None:
    with pytest.raises(InvalidInputError):
        Cusum.from_dict(PageHinkley().to_dict())
    state = PageHinkley().to_dict()
    del state["mean"]
    with pytest.raises(InvalidInputError):
        PageHinkley.from_dict(state)
    with pytest.raises(InvalidConfigError):
        PageHinkley.from_dict(PageHinkley().to_dict() | {"direction": "sideways"})


@pytest.mark.parametrize(
    "build",
    [
        lambda: PageHinkley(threshold=0),
        lambda: PageHinkley(delta=-1),
        lambda: Cusum(h=0),
        lambda: Cusum(sigma=0.0),
        lambda: Cusum(direction=cast(Any, "up")),
    ],
)
def test_detector_parameters_are_validated(build: object) -> None:
    with pytest.raises(InvalidConfigError):
        build()  # type: ignore[operator]
