"""The always-valid sequential test, alone and on simulated rollouts."""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt
import pytest

from mloop.rollout.domain.plan import Gate
from mloop.stats.sequential import MSPRT, log_mixture_lr, quantile_exceedance

#: The error-rate gate as every default plan configures it.
GATE = Gate(metric="error-rate", sequential="guard")


def simulate_first_crossing(
    *,
    p_baseline: float,
    p_candidate: float,
    schedule: list[tuple[float, float]],
    interval_s: float,
    sims: int,
    rate_per_s: float = 100.0,
    alpha: float = GATE.alpha,
    tau: float = GATE.tau,
    seed: int = 7,
) -> npt.NDArray[np.float64]:
    """Seconds until the one-sided test first rejects, per simulated rollout (inf: never).

    ``schedule`` is ``[(candidate_weight, seconds), ...]``; the test looks at
    the cumulative counts every ``interval_s`` seconds, as the analysis loop does.
    """
    rng = np.random.default_rng(seed)
    x_a = np.zeros(sims)
    n_a = np.zeros(sims)
    x_b = np.zeros(sims)
    n_b = np.zeros(sims)
    first = np.full(sims, np.inf)
    t = 0.0
    threshold = np.log(1.0 / alpha)
    for weight, seconds in schedule:
        for _ in range(round(seconds / interval_s)):
            t += interval_s
            m_a = rng.poisson(rate_per_s * (1.0 - weight) * interval_s, sims)
            m_b = rng.poisson(rate_per_s * weight * interval_s, sims)
            n_a += m_a
            n_b += m_b
            x_a += rng.binomial(m_a, p_baseline)
            x_b += rng.binomial(m_b, p_candidate)
            worse, _, _ = log_mixture_lr(x_a, n_a, x_b, n_b, tau)
            enough = (n_a >= GATE.min_samples) & (n_b >= GATE.min_samples)
            first[(worse >= threshold) & enough & np.isinf(first)] = t
    return first


CANARY = [(0.05, 300.0), (0.25, 300.0), (0.5, 300.0)]


@pytest.mark.parametrize("base_rate", [0.005, 0.02, 0.1])
@pytest.mark.parametrize("interval_s", [10.0, 30.0])
def test_false_positive_rate_stays_below_alpha_when_checked_every_interval(base_rate: float, interval_s: float) -> None:
    crossings = simulate_first_crossing(
        p_baseline=base_rate,
        p_candidate=base_rate,
        schedule=CANARY,
        interval_s=interval_s,
        sims=1000,
    )
    assert np.isfinite(crossings).mean() <= 0.05


def test_false_positive_rate_stays_below_alpha_over_a_long_step() -> None:
    # An hour at 5 %, 360 looks: the level must not creep up with the number of looks.
    crossings = simulate_first_crossing(
        p_baseline=0.02, p_candidate=0.02, schedule=[(0.05, 3600.0)], interval_s=10.0, sims=1000
    )
    assert np.isfinite(crossings).mean() <= 0.05


def test_doubled_error_rate_is_caught_within_the_first_five_percent_step() -> None:
    # 100 req/s, 5 % canary for 5 minutes: ~1,500 candidate requests.
    crossings = simulate_first_crossing(
        p_baseline=0.02, p_candidate=0.04, schedule=[(0.05, 300.0)], interval_s=10.0, sims=1000
    )
    assert np.isfinite(crossings).mean() >= 0.95
    assert np.median(crossings) <= 180.0


def test_a_fixed_horizon_test_checked_as_often_would_not_hold_its_level() -> None:
    # The reason for the sequential test: a z-test at 5 % peeked at every 10 s
    # rejects a perfectly good candidate far more often than 5 %.
    rng = np.random.default_rng(3)
    sims, looks = 1000, 90
    m_b = rng.poisson(50, (looks, sims)).cumsum(0)
    m_a = rng.poisson(950, (looks, sims)).cumsum(0)
    x_b = rng.binomial(rng.poisson(50, (looks, sims)), 0.02).cumsum(0)
    x_a = rng.binomial(rng.poisson(950, (looks, sims)), 0.02).cumsum(0)
    p = (x_a + x_b) / (m_a + m_b)
    z = (x_b / m_b - x_a / m_a) / np.sqrt(p * (1 - p) * (1 / m_a + 1 / m_b) + 1e-12)
    assert (z > 1.645).any(0).mean() > 0.15


def test_running_p_value_never_increases() -> None:
    test = MSPRT()
    ps = []
    for n in range(100, 3000, 100):
        ps.append(test.update(int(n * 19 * 0.02), n * 19, int(n * 0.03), n).always_valid_p)
    assert all(b <= a for a, b in itertools.pairwise(ps))


def test_worse_candidate_is_reported_worse_and_better_one_is_not() -> None:
    worse = MSPRT().test(200, 10_000, 80, 2_000)
    assert worse.decision == "candidate-worse"
    assert worse.always_valid_p <= 0.05
    assert worse.interval[0] > 0
    better = MSPRT().test(200, 10_000, 5, 2_000)
    assert better.decision == "continue"


def test_two_sided_accuracy_test_concludes_candidate_better() -> None:
    test = MSPRT(sided="two-sided", direction="lower-is-worse")
    result = test.test(8_000, 10_000, 8_600, 10_000)
    assert result.decision == "candidate-better"
    assert test.test(8_600, 10_000, 8_000, 10_000).decision == "candidate-worse"


def test_no_decision_before_min_samples() -> None:
    result = MSPRT(min_samples=500).test(0, 400, 50, 400)
    assert result.decision == "continue"
    assert result.always_valid_p == 1.0


def test_empty_arms_carry_no_evidence() -> None:
    result = MSPRT().test(0, 0, 0, 0)
    assert result.statistic == pytest.approx(1.0)
    assert result.decision == "continue"


@pytest.mark.parametrize("args", [(-1, 10, 0, 10), (11, 10, 0, 10), (0, 10, 5, 4)], ids=["negative", "a>n", "b>n"])
def test_impossible_counts_are_rejected(args: tuple[int, int, int, int]) -> None:
    with pytest.raises(ValueError):
        MSPRT().test(*args)


@pytest.mark.parametrize(("alpha", "tau"), [(0.0, 0.1), (1.0, 0.1), (0.05, 0.0)])
def test_invalid_parameters_are_rejected(alpha: float, tau: float) -> None:
    with pytest.raises(ValueError):
        MSPRT(alpha=alpha, tau=tau)


def test_quantile_exceedance_counts_observations_beyond_the_baseline_quantile() -> None:
    baseline = [10, 60, 20, 8, 2, 0]
    candidate = [0, 10, 30, 30, 20, 10]
    exceed_a, n_a, exceed_b, n_b = quantile_exceedance(baseline, candidate, 0.9)
    assert (n_a, n_b) == (100, 100)
    assert exceed_a == 10  # beyond bin 2, where the baseline's 90th percentile falls
    assert exceed_b == 60
    with pytest.raises(ValueError):
        quantile_exceedance([1, 2], [1, 2, 3], 0.5)
