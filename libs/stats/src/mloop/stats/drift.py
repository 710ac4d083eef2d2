"""Data and prediction drift: per-feature tests, correction across features, verdict.

Single tests (usable on their own):

* :func:`psi` — population stability index on binned counts, epsilon-smoothed;
* :func:`jensen_shannon` — Jensen-Shannon distance (base 2, in [0, 1]);
* :func:`chi2_homogeneity` — two-sample chi-squared test on binned counts;
* :func:`wasserstein` — earth mover's distance between samples, in units of
  the reference's spread;
* :func:`ks_test`, :func:`cvm_test` — Kolmogorov-Smirnov and Cramér-von Mises
  two-sample tests on samples (scipy).

:func:`rank_tests` (Wilcoxon location and Klotz normal-scores scale tests on
binned counts), :func:`cauchy_combination`, :func:`mass_moved` and
:func:`missing_rate_test` (Fisher's exact test of the missing share) are the
parts of the default verdict.

:func:`detect_drift` compares a window of traffic with a reference profile:

1. Numeric features (and a numeric prediction) get the ``omnibus`` test:
   location, scale and chi-squared shape tests, all on the counts in the
   reference's quantile bins, Cauchy-combined into one p-value. It has
   close to the power of a t-test on a pure shift (the grouping into 20
   quantile bins keeps nearly all the information), of a scale test on a
   change of spread, and of chi-squared on anything else, and needs no raw
   values. Categorical features get chi-squared on top-K + other.
   ``DriftConfig.methods`` overrides per feature (``ks``/``cvm`` run on
   samples).
2. Every feature with a missing value on either side also gets a test of
   its missing share (``kind="missing"`` in the results).
3. All p-values of a window form one family, corrected with
   Benjamini-Hochberg (default, ``scipy.stats.false_discovery_control``) or
   Bonferroni at ``alpha`` (0.01): with no drift about one window in
   1/alpha alarms.
4. A significant test only counts if its effect clears a floor, in units a
   user can read: location shift in reference standard deviations, log
   ratio of standard deviations, share of probability mass moved
   (noise-corrected), change of the missing share. The effect must clear
   the floor by its own standard error (``effect - se >= floor``), which
   depends on both sample sizes: on a huge window the reference's own
   noise remains (a 5,000-row reference alone puts 0.014 sd of noise on a
   shift), and an estimate one standard error above a negligible true
   change would otherwise pass. On ordinary windows significance already
   needs an effect several standard errors from 0, so the floors cost no
   power there.
5. Severity: each drifted test's effect against the ``severity_*`` bounds,
   the worst of them, raised by breadth (:func:`drift_severity`).

Why a two-sample test: the reference is itself a finite sample, so its
bin proportions are estimates. A goodness-of-fit test against them as if
they were exact underestimates the variance and over-alarms, badly so when
the window is as large as the reference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, get_args

import numpy as np
from scipy import special as sp_special
from scipy import stats as sps
from scipy.spatial import distance as spd

from mloop.stats._coerce import Column, FloatArray, as_1d, as_float_array
from mloop.stats._exceptions import (
    IncompatibleProfilesError,
    InvalidConfigError,
    InvalidInputError,
)
from mloop.stats.profile import (
    CategoricalProfile,
    FeatureProfile,
    NumericProfile,
    ReferenceProfile,
    counts_like,
    numeric_window,
    row_count,
)

__all__ = [
    "BINNED_METHODS",
    "P_VALUE_METHODS",
    "SAMPLE_METHODS",
    "Correction",
    "DriftConfig",
    "DriftReport",
    "FeatureDrift",
    "HomogeneityResult",
    "Kind",
    "Method",
    "RankTests",
    "SampleTestResult",
    "Severity",
    "adjust_p_values",
    "cauchy_combination",
    "chi2_homogeneity",
    "cvm_test",
    "detect_drift",
    "drift_severity",
    "jensen_shannon",
    "ks_test",
    "mass_moved",
    "mass_moved_noise",
    "missing_rate_test",
    "psi",
    "psi_noise",
    "rank_tests",
    "rejection_threshold",
    "wasserstein",
    "wasserstein_noise",
]

Method = Literal["omnibus", "chi2", "psi", "js", "wasserstein", "ks", "cvm"]
Kind = Literal["distribution", "missing"]
Correction = Literal["bh", "bonferroni", "none"]
Severity = Literal["low", "medium", "high"]
Detail = Mapping[str, float | int | str | bool | None]

P_VALUE_METHODS: frozenset[str] = frozenset({"omnibus", "chi2", "ks", "cvm"})
BINNED_METHODS: frozenset[str] = frozenset({"omnibus", "chi2", "psi", "js"})
SAMPLE_METHODS: frozenset[str] = frozenset({"wasserstein", "ks", "cvm"})

_SEVERITY_ORDER: dict[Severity, int] = {"low": 0, "medium": 1, "high": 2}
# Standard error of the normal-equivalent shift sqrt(2) * Phi^-1(AUC), per unit of sqrt(1/n + 1/m).
_SHIFT_SE = math.sqrt(math.pi / 3.0)
# Standard deviation over mean of a half-normal variable.
_HALF_NORMAL_CV = math.sqrt(math.pi / 2.0 - 1.0)


# --------------------------------------------------------------------------- single tests


class HomogeneityResult(NamedTuple):
    """Chi-squared homogeneity test result; ``bins`` is the number of columns tested."""

    statistic: float
    p_value: float
    dof: int
    bins: int


class SampleTestResult(NamedTuple):
    """Two-sample test result."""

    statistic: float
    p_value: float


def _counts(values: Column, what: str) -> FloatArray:
    arr = as_float_array(values, what)
    if arr.size and (not np.all(np.isfinite(arr)) or arr.min() < 0):
        raise InvalidInputError(f"{what} must be finite and non-negative")
    return arr


def _paired_counts(reference: Column, current: Column) -> tuple[FloatArray, FloatArray]:
    ref, cur = _counts(reference, "reference counts"), _counts(current, "current counts")
    if ref.size != cur.size:
        raise InvalidInputError(f"count vectors differ in length: {ref.size} vs {cur.size}")
    if ref.sum() <= 0 or cur.sum() <= 0:
        raise InvalidInputError("both count vectors need a positive total")
    return ref, cur


def psi(reference_counts: Column, current_counts: Column, *, epsilon: float = 1e-4) -> float:
    """Population stability index ``sum((q - p) * ln(q / p))`` of two binned counts.

    Proportions below ``epsilon`` are raised to it (then renormalised) so
    empty bins give a large but finite value. Always >= 0; 0 for identical
    proportions. Raises InvalidInputError for mismatched or empty counts.
    """
    ref, cur = _paired_counts(reference_counts, current_counts)
    p = np.maximum(ref / ref.sum(), epsilon)
    q = np.maximum(cur / cur.sum(), epsilon)
    p /= p.sum()
    q /= q.sum()
    return max(float(np.sum((q - p) * np.log(q / p))), 0.0)


def psi_noise(bins: int, reference_n: int, current_n: int) -> float:
    """Expected PSI between two samples of one distribution: ``(bins - 1)(1/n + 1/m)``.

    PSI is approximately a chi-squared divergence, so sampling noise alone
    inflates it by this much; subtract it to estimate the population PSI.
    """
    if bins < 2 or reference_n <= 0 or current_n <= 0:
        return 0.0
    return (bins - 1) * (1.0 / reference_n + 1.0 / current_n)


def jensen_shannon(reference_counts: Column, current_counts: Column) -> float:
    """Jensen-Shannon distance (square root of the divergence, base 2), in [0, 1]."""
    ref, cur = _paired_counts(reference_counts, current_counts)
    return float(np.clip(spd.jensenshannon(ref / ref.sum(), cur / cur.sum(), base=2), 0.0, 1.0))


def chi2_homogeneity(
    reference_counts: Column,
    current_counts: Column,
    *,
    min_expected: float = 5.0,
) -> HomogeneityResult:
    """Chi-squared test that two binned samples come from the same distribution.

    A 2 x k contingency test (no continuity correction), the same as
    ``scipy.stats.chi2_contingency(..., correction=False)``. Bins empty in
    both samples are dropped; bins whose expected count would fall below
    ``min_expected`` are pooled, smallest first, so the chi-squared
    approximation holds. With fewer than two bins left there is nothing to
    test: statistic 0, p-value 1. Raises InvalidInputError for mismatched or
    empty counts.
    """
    ref, cur = _paired_counts(reference_counts, current_counts)
    return _chi2(ref, cur, min_expected)


def _chi2(ref: FloatArray, cur: FloatArray, min_expected: float) -> HomogeneityResult:
    table = np.vstack([ref, cur])
    table = table[:, table.sum(axis=0) > 0]
    table = _pool_sparse_columns(table, min_expected)
    k = table.shape[1]
    if k < 2:
        return HomogeneityResult(0.0, 1.0, 0, k)
    rows = table.sum(axis=1, keepdims=True)
    cols = table.sum(axis=0, keepdims=True)
    expected = rows * cols / table.sum()
    stat = float(np.sum((table - expected) ** 2 / expected))
    dof = k - 1
    # The special function, not the distribution object: same value, a fraction of the overhead.
    return HomogeneityResult(stat, float(sp_special.chdtrc(dof, stat)), dof, k)


def _pool_sparse_columns(table: FloatArray, min_expected: float) -> FloatArray:
    cols = table.sum(axis=0)
    total = cols.sum()
    need = min_expected * total / table.sum(axis=1).min()
    if cols.size < 2 or cols.min() >= need:
        return table
    order = np.argsort(cols, kind="stable")
    cum = np.cumsum(cols[order])
    n_small = int(np.sum(cols < need))
    reached = np.nonzero(cum >= need)[0]
    # Pool every sparse column, and more of the next-smallest if the pool is still sparse.
    last = max(n_small - 1, int(reached[0])) if reached.size else cols.size - 1
    pooled = table[:, order[: last + 1]].sum(axis=1, keepdims=True)
    return np.hstack([pooled, table[:, order[last + 1 :]]])


def _sample(values: Column, what: str) -> FloatArray:
    arr = as_float_array(values, what)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        raise InvalidInputError(f"{what} has no finite values")
    return arr


def ks_test(reference_sample: Column, current_sample: Column) -> SampleTestResult:
    """Two-sample Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``), non-finite values dropped."""
    res = sps.ks_2samp(_sample(reference_sample, "reference sample"), _sample(current_sample, "current sample"))
    return SampleTestResult(float(res.statistic), float(res.pvalue))


def cvm_test(reference_sample: Column, current_sample: Column) -> SampleTestResult:
    """Two-sample Cramér-von Mises test (``scipy.stats.cramervonmises_2samp``)."""
    ref = _sample(reference_sample, "reference sample")
    cur = _sample(current_sample, "current sample")
    if ref.size < 2 or cur.size < 2:
        raise InvalidInputError("the Cramér-von Mises test needs at least two values per sample")
    res = sps.cramervonmises_2samp(ref, cur)
    return SampleTestResult(float(res.statistic), float(min(max(res.pvalue, 0.0), 1.0)))


def wasserstein(reference_sample: Column, current_sample: Column, *, scale: float = 1.0) -> float:
    """Wasserstein-1 distance between two samples divided by ``scale``.

    Pass the reference's standard deviation (or IQR) as ``scale`` to get a
    shift in reference units: a mean shift of ``d`` standard deviations gives
    about ``d``. Raises InvalidConfigError for a non-positive scale.
    """
    if not scale > 0 or not math.isfinite(scale):
        raise InvalidConfigError("scale must be a positive finite number")
    ref = _sample(reference_sample, "reference sample")
    cur = _sample(current_sample, "current sample")
    return float(sps.wasserstein_distance(ref, cur)) / scale


def wasserstein_noise(reference_sample: Column, current_n: int, *, scale: float = 1.0) -> float:
    """Expected Wasserstein-1 distance between the reference sample and an
    independent sample of ``current_n`` values from the same distribution.

    ``sqrt(2/pi) * sqrt(1/n + 1/m) * integral(sqrt(F(1 - F)))``, with ``F`` the
    reference sample's empirical CDF, divided by ``scale``. Subtract it from
    an observed distance to estimate the population distance.
    """
    xs = np.sort(_sample(reference_sample, "reference sample"))
    n = xs.size
    if n < 2 or current_n <= 0 or not scale > 0:
        return 0.0
    cdf = np.arange(1, n) / n
    spread = float(np.sum(np.diff(xs) * np.sqrt(cdf * (1.0 - cdf))))
    return math.sqrt(2.0 / math.pi) * math.sqrt(1.0 / n + 1.0 / current_n) * spread / scale


class RankTests(NamedTuple):
    """Linear rank tests of two binned samples (ties within a bin share a mid-rank).

    ``location_z``/``scale_z`` are standardised statistics (positive: the
    current sample is larger / more spread out), ``*_p`` their two-sided
    p-values. ``auc`` is P(current > reference) + P(tie) / 2 and ``shift``
    the normal-equivalent location shift ``sqrt(2) * Phi^-1(auc)`` in
    standard deviations.
    """

    location_z: float
    location_p: float
    scale_z: float
    scale_p: float
    auc: float
    shift: float


def _two_sided_normal_p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2.0)) if math.isfinite(z) else 0.0


def rank_tests(reference_counts: Column, current_counts: Column) -> RankTests:
    """Wilcoxon (location) and Klotz normal-scores (scale) tests on counts in shared ordered bins.

    Exact permutation mean and variance of each statistic given the bin
    margins, normal approximation for the p-value (good from a few dozen
    values per side). With 20 quantile bins the grouping keeps nearly all the
    information of the raw values for a location change and most of it for a
    scale change; no raw values are needed, so windows that only keep counts
    can run them. Raises InvalidInputError for mismatched or empty counts.
    """
    ref, cur = _paired_counts(reference_counts, current_counts)
    return _rank_tests(ref, cur)


def _rank_tests(ref: FloatArray, cur: FloatArray) -> RankTests:
    pooled = ref + cur
    n_ref, n_cur = float(ref.sum()), float(cur.sum())
    total = n_ref + n_cur
    midrank = np.cumsum(pooled) - (pooled - 1.0) / 2.0
    u = midrank / (total + 1.0)
    normal = sp_special.ndtri(u)
    out: list[float] = []
    for scores in (u, normal * normal):
        mean = float(np.dot(pooled, scores)) / total
        dev = scores - mean
        var = n_ref * n_cur / (total * (total - 1.0)) * float(np.dot(pooled, dev * dev)) if total > 1 else 0.0
        stat = float(np.dot(cur, dev))
        out.append(stat / math.sqrt(var) if var > 0 else 0.0)
    z_loc, z_scale = out
    auc = (float(np.dot(cur, midrank)) - n_cur * (n_cur + 1.0) / 2.0) / (n_cur * n_ref)
    auc = min(max(auc, 1e-12), 1.0 - 1e-12)
    shift = math.sqrt(2.0) * float(sp_special.ndtri(auc))
    return RankTests(z_loc, _two_sided_normal_p(z_loc), z_scale, _two_sided_normal_p(z_scale), auc, shift)


def cauchy_combination(p_values: Sequence[float], weights: Sequence[float] | None = None) -> float:
    """Combine p-values of tests on the same data into one (Cauchy combination, Liu & Xie 2020).

    ``sum(w_i * tan((0.5 - p_i) * pi))`` is standard Cauchy under the null
    whatever the dependence between the tests (asymptotically, and very
    accurately in the small-p tail that decides significance). A single very
    small p-value carries the result: the price of combining k tests is
    about a factor ``1 / w_i`` on the p-value of the test that sees the
    change. Weights are normalised to sum to 1. Raises InvalidInputError for
    an empty list or mismatched weights.
    """
    # Plain floats: this runs once per feature per window on two or three values.
    p = [min(max(float(v), 1e-300), 1.0) for v in p_values]
    if not p:
        raise InvalidInputError("nothing to combine")
    w = [1.0] * len(p) if weights is None else [float(v) for v in weights]
    if len(w) != len(p) or any(not v >= 0 for v in w) or sum(w) <= 0:
        raise InvalidInputError("weights must be non-negative, one per p-value")
    total = sum(w)
    t = sum(wi / total * _cauchy_term(pi) for wi, pi in zip(w, p, strict=True))
    if t > 1e15:
        return min(1.0 / (t * math.pi), 1.0)
    return min(max(0.5 - math.atan(t) / math.pi, 0.0), 1.0)


def _cauchy_term(p: float) -> float:
    # tan((0.5 - p) * pi) loses precision for tiny p; 1 / (p * pi) is its limit there.
    return 1.0 / (p * math.pi) if p < 1e-15 else math.tan((0.5 - p) * math.pi)


def mass_moved(reference_counts: Column, current_counts: Column) -> float:
    """Share of probability mass that moved between the bins: total variation, in [0, 1].

    ``0.5 * sum(|p_i - q_i|)``. A 10 % share of a category moved to the
    others gives 0.1; a 5 % new category gives 0.05. Raises
    InvalidInputError for mismatched or empty counts.
    """
    ref, cur = _paired_counts(reference_counts, current_counts)
    return 0.5 * float(np.abs(ref / ref.sum() - cur / cur.sum()).sum())


def mass_moved_noise(reference_counts: Column, reference_n: int, current_n: int) -> float:
    """Expected :func:`mass_moved` between two samples of the reference's distribution.

    ``0.5 * sum(sqrt(2/pi) * sqrt(p_i (1 - p_i) (1/n + 1/m)))`` (normal
    approximation to each bin's difference). :func:`detect_drift` takes it
    off in quadrature, ``sqrt(moved^2 - noise^2)``, to estimate the
    population value.
    """
    ref = _counts(reference_counts, "reference counts")
    if ref.sum() <= 0 or reference_n <= 0 or current_n <= 0:
        return 0.0
    p = ref / ref.sum()
    spread = float(np.sqrt(p * (1.0 - p)).sum())
    return 0.5 * math.sqrt(2.0 / math.pi) * math.sqrt(1.0 / reference_n + 1.0 / current_n) * spread


def missing_rate_test(reference_missing: int, reference_total: int, current_missing: int, current_total: int) -> float:
    """Two-sided p-value that the missing share is the same in both samples.

    Fisher's exact test on the 2 x 2 table (missing / present by sample),
    two-sided as twice the smaller hypergeometric tail (never below the
    level it states): exact however rare the missing values are, where a
    normal approximation over-alarms. 1.0 when nothing
    is missing on either side. Raises InvalidInputError for counts out of range.
    """
    if not (0 <= reference_missing <= reference_total and 0 <= current_missing <= current_total):
        raise InvalidInputError("missing counts must lie between 0 and the totals")
    k = reference_missing + current_missing
    if k == 0 or reference_total == 0 or current_total == 0:
        return 1.0
    total = reference_total + current_total
    # The hypergeometric pmf over the whole support at once (log-gamma), then both tails:
    # the same numbers as scipy.stats.hypergeom at a small fraction of its per-call cost.
    lo, hi = max(0, k - reference_total), min(k, current_total)
    x = np.arange(lo, hi + 1, dtype=np.float64)
    log_pmf = (
        _log_choose(current_total, x) + _log_choose(reference_total, k - x) - float(_log_choose(total, np.float64(k)))
    )
    pmf = np.exp(log_pmf)
    at = current_missing - lo
    upper = float(pmf[at:].sum())
    lower = float(pmf[: at + 1].sum())
    return min(1.0, 2.0 * min(upper, lower))


def _log_choose(n: int, k: FloatArray | np.float64) -> FloatArray:
    return np.asarray(sp_special.gammaln(n + 1) - sp_special.gammaln(k + 1) - sp_special.gammaln(n - k + 1))


def adjust_p_values(p_values: Sequence[float] | FloatArray, method: Correction) -> FloatArray:
    """Multiplicity-adjusted p-values (Benjamini-Hochberg q-values or Bonferroni)."""
    p = np.clip(np.asarray(p_values, dtype=np.float64), 0.0, 1.0)
    m = p.size
    if m == 0 or method == "none":
        return p
    if method == "bonferroni":
        return np.minimum(p * m, 1.0)
    if method == "bh":
        return np.asarray(sps.false_discovery_control(p, method="bh"), dtype=np.float64)
    raise InvalidConfigError(f"unknown correction {method!r}")


def rejection_threshold(p_values: Sequence[float] | FloatArray, alpha: float, method: Correction) -> float:
    """The p-value cut-off that the correction applies to this family.

    A p-value at or below it is significant. For Benjamini-Hochberg with no
    rejection it is ``alpha / m``, the smallest cut-off the procedure uses.
    """
    p = np.sort(np.asarray(p_values, dtype=np.float64))
    m = p.size
    if m == 0 or method == "none":
        return alpha
    if method == "bonferroni":
        return alpha / m
    if method == "bh":
        passing = np.nonzero(p <= np.arange(1, m + 1) * alpha / m)[0]
        k = int(passing[-1]) + 1 if passing.size else 1
        return k * alpha / m
    raise InvalidConfigError(f"unknown correction {method!r}")


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class DriftConfig:
    """How :func:`detect_drift` decides. Defaults suit windows of 100-1,000,000 rows.

    Raises InvalidConfigError on construction for out-of-domain values.
    """

    alpha: float = 0.01
    """Family-wise false-alarm rate of one window across all its tests
    (features, missing rates, prediction): with no drift, about one window
    in 1/alpha alarms."""
    correction: Correction = "bh"
    methods: Mapping[str, Method] = field(default_factory=dict)
    """Per-column method override; the prediction column is keyed ``prediction_name``."""
    numeric_method: Method | None = None
    """Method for numeric columns; ``None`` is ``omnibus`` (KS on samples below ``small_window_rows``)."""
    categorical_method: Method = "chi2"
    small_window_rows: int = 0
    """Below this many valid values numeric columns are tested with KS on samples
    (0: never; the omnibus test holds its level from ``min_rows`` values)."""
    min_rows: int = 30
    """Columns with fewer valid values in reference or window are skipped."""
    omnibus_weights: tuple[float, float, float] = (0.5, 0.25, 0.25)
    """Cauchy-combination weights of the omnibus test's location, scale and shape tests."""
    min_shift: float = 0.05
    """Effect floor: location shift in reference standard deviations."""
    min_log_scale: float = 0.05
    """Effect floor: |log| of the ratio of standard deviations (0.05: a 5 % change)."""
    min_mass: float = 0.025
    """Effect floor: noise-corrected share of probability mass moved between bins/categories."""
    min_missing: float = 0.01
    """Effect floor: change of the missing share (0.01: one percentage point)."""
    test_missing: bool = True
    """Test each feature's missing share against the reference's."""
    min_psi: float = 0.02
    """Effect floor for the psi/js methods: noise-corrected PSI."""
    min_wasserstein: float = 0.1
    """Effect floor for sample methods: noise-corrected Wasserstein distance in
    reference standard deviations (a 0.1 sd mean shift gives about 0.1)."""
    psi_threshold: float = 0.1
    js_threshold: float = 0.1
    wasserstein_threshold: float = 0.25
    psi_epsilon: float = 1e-4
    min_expected: float = 5.0
    severity_shift: tuple[float, float] = (0.2, 0.5)
    """Location shift (reference standard deviations) from which a feature is medium, high."""
    severity_log_scale: tuple[float, float] = (0.18, 0.4)
    """|log| standard-deviation ratio from which a feature is medium, high (about x1.2, x1.5)."""
    severity_mass: tuple[float, float] = (0.1, 0.25)
    """Share of mass moved from which a feature is medium, high."""
    severity_missing: tuple[float, float] = (0.05, 0.2)
    """Change of the missing share from which a feature is medium, high."""
    severity_psi: tuple[float, float] = (0.1, 0.25)
    """psi/js methods: noise-corrected PSI from which a feature's drift is medium, high."""
    severity_wasserstein: tuple[float, float] = (0.3, 0.5)
    severity_features: int = 3
    """Drifted features from which the window is at least medium, whatever each one's size."""
    severity_share: tuple[float, float] = (0.2, 0.5)
    """Share of tested features drifted from which the window is at least medium, high."""
    prediction_name: str = "prediction"

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise InvalidConfigError("alpha must be in (0, 1)")
        if self.correction not in get_args(Correction):
            raise InvalidConfigError(f"unknown correction {self.correction!r}")
        methods = get_args(Method)
        for name, method in self.methods.items():
            if method not in methods:
                raise InvalidConfigError(f"unknown method {method!r} for {name!r}")
        if self.numeric_method is not None and self.numeric_method not in methods:
            raise InvalidConfigError(f"unknown numeric method {self.numeric_method!r}")
        if self.categorical_method not in BINNED_METHODS:
            raise InvalidConfigError("categorical_method must be one of omnibus, chi2, psi, js")
        if self.small_window_rows < 0 or self.min_rows < 2:
            raise InvalidConfigError("small_window_rows must be >= 0 and min_rows >= 2")
        nonneg = (
            self.min_shift,
            self.min_log_scale,
            self.min_mass,
            self.min_missing,
            self.min_psi,
            self.min_wasserstein,
            self.psi_threshold,
            self.js_threshold,
            self.wasserstein_threshold,
        )
        if any(not (v >= 0 and math.isfinite(v)) for v in nonneg):
            raise InvalidConfigError("thresholds and floors must be finite and >= 0")
        if len(self.omnibus_weights) != 3 or any(not w >= 0 for w in self.omnibus_weights) or not (
            sum(self.omnibus_weights) > 0
        ):
            raise InvalidConfigError("omnibus_weights must be three non-negative numbers, not all 0")
        if not 0 < self.psi_epsilon < 0.01 or not self.min_expected > 0:
            raise InvalidConfigError("psi_epsilon must be in (0, 0.01), min_expected > 0")
        pairs = (
            self.severity_shift,
            self.severity_log_scale,
            self.severity_mass,
            self.severity_missing,
            self.severity_psi,
            self.severity_wasserstein,
            self.severity_share,
        )
        for pair in pairs:
            if len(pair) != 2 or not 0 <= pair[0] <= pair[1]:
                raise InvalidConfigError("severity bounds must be (medium, high) with medium <= high")
        if self.severity_features < 1:
            raise InvalidConfigError("severity_features must be >= 1")


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class FeatureDrift:
    """The verdict on one test of one column.

    ``kind`` is ``"distribution"`` (the values' distribution) or
    ``"missing"`` (the share of missing values, method ``"fisher"``).
    ``statistic`` is the method's statistic (``-log10`` of the combined
    p-value for ``omnibus``, chi-squared, KS D, PSI, ...; for missing: the window's missing share).
    For methods with a p-value, ``threshold`` is the corrected p-value
    cut-off and ``p_value`` the raw p-value; for distance methods
    ``p_value`` is ``None`` and ``threshold`` applies to ``statistic``.
    ``effect_size`` is the estimated size of the change in the unit named
    by ``detail['effect_kind']``: ``shift`` (reference standard deviations),
    ``log_scale`` (log of the standard-deviation ratio), ``mass`` (share of
    probability mass moved, noise-corrected), ``missing`` (change of the
    missing share), ``psi`` or ``wasserstein`` for those methods.
    ``drifted`` needs both significance and an effect that clears its
    floor by its standard error (``detail['effect_se']``, same unit):
    ``effect_size - effect_se >= detail['effect_floor']`` (a floor of 0:
    significance alone). ``detail`` holds
    the evidence (JSON-safe).
    """

    name: str
    method: Method | Literal["fisher"]
    statistic: float
    p_value: float | None
    threshold: float
    effect_size: float
    drifted: bool
    detail: Detail = field(default_factory=dict)
    kind: Kind = "distribution"

    @property
    def severity(self) -> Severity | None:
        """This column's severity if drifted (from ``detail['severity']``)."""
        level = self.detail.get("severity")
        if self.drifted and level in ("low", "medium", "high"):
            return level  # type: ignore[return-value]
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict with ``name, kind, method, statistic, p_value, threshold, drifted, ...``."""
        return {
            "name": self.name,
            "kind": self.kind,
            "method": self.method,
            "statistic": _json_float(self.statistic),
            "p_value": _json_float(self.p_value),
            "threshold": _json_float(self.threshold),
            "effect_size": _json_float(self.effect_size),
            "drifted": self.drifted,
            "detail": {k: _json_value(v) for k, v in self.detail.items()},
        }


@dataclass(frozen=True)
class DriftReport:
    """The verdict on a window: per-column results, what drifted, how badly.

    ``features`` holds the distribution tests, ``missing`` the missing-share
    tests (only features with a missing value on either side are tested).
    ``drifted_features`` names every feature with a drifted test of either
    kind; ``drifted`` is true if any feature or the prediction drifted.
    ``severity`` is ``None`` when nothing drifted. ``skipped`` maps columns
    that could not be tested to the reason (too few values, absent).
    """

    features: tuple[FeatureDrift, ...]
    prediction: FeatureDrift | None
    drifted_features: tuple[str, ...]
    drifted: bool
    severity: Severity | None
    correction: Correction
    alpha: float
    reference_rows: int
    current_rows: int
    skipped: Mapping[str, str] = field(default_factory=dict)
    missing: tuple[FeatureDrift, ...] = ()

    @property
    def data_drifted(self) -> bool:
        """Whether any input feature drifted (distribution or missing share)."""
        return bool(self.drifted_features)

    @property
    def prediction_drifted(self) -> bool:
        """Whether the prediction column drifted."""
        return self.prediction is not None and self.prediction.drifted

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of the whole report."""
        return {
            "drifted": self.drifted,
            "severity": self.severity,
            "drifted_features": list(self.drifted_features),
            "prediction_drifted": self.prediction_drifted,
            "correction": self.correction,
            "alpha": self.alpha,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "features": [f.to_dict() for f in self.features],
            "missing": [f.to_dict() for f in self.missing],
            "prediction": self.prediction.to_dict() if self.prediction is not None else None,
            "skipped": dict(self.skipped),
        }


# --------------------------------------------------------------------------- detection


@dataclass
class _Tested:
    name: str
    method: Method | Literal["fisher"]
    statistic: float
    p_value: float | None
    effect: float
    floor: float
    severity: Severity
    detail: dict[str, float | int | str | bool | None]
    kind: Kind = "distribution"
    effect_se: float = 0.0


def detect_drift(
    reference: ReferenceProfile,
    current: ReferenceProfile | Mapping[str, Column],
    config: DriftConfig | None = None,
    *,
    prediction: Column | None = None,
) -> DriftReport:
    """Compare a window with the reference and decide whether it drifted.

    ``current`` is either a profile built with ``reference.counts_like(...)``
    (sample tests then use its reservoir) or the raw columns of the window
    (sample tests use every value); ``prediction`` is the window's
    prediction column when ``current`` is raw columns. The default tests use
    only the counts in the reference's bins, so both give the same verdict.

    Raises IncompatibleProfilesError if ``current`` is a profile whose bins
    or categories differ from the reference's, InvalidInputError for ragged
    columns, InvalidConfigError for a method that does not fit a column
    (a sample method on a categorical feature).
    """
    config = config if config is not None else DriftConfig()
    if isinstance(current, ReferenceProfile):
        if prediction is not None:
            raise InvalidInputError("prediction belongs inside the current profile")
        window = current
        samples = {name: p.sample.values for name, p in window.features.items() if isinstance(p, NumericProfile)}
        pred_sample = window.prediction.sample.values if isinstance(window.prediction, NumericProfile) else None
    else:
        window, samples, pred_sample = _window_from_columns(reference, current, prediction)

    tested: list[_Tested] = []
    missing: list[_Tested] = []
    skipped: dict[str, str] = {}
    for name, ref in reference.features.items():
        cur = window.features.get(name)
        if cur is None:
            skipped[name] = "absent from the current window"
            continue
        _check_compatible(name, ref, cur)
        result = _test_column(name, ref, cur, samples.get(name), config.methods.get(name), config)
        if isinstance(result, str):
            skipped[name] = result
        else:
            tested.append(result)
        if config.test_missing:
            miss = _test_missing(name, ref, cur, config)
            if miss is not None:
                missing.append(miss)
    pred_tested: _Tested | None = None
    if reference.prediction is not None and window.prediction is not None:
        name = config.prediction_name
        _check_compatible(name, reference.prediction, window.prediction)
        result = _test_column(
            name,
            reference.prediction,
            window.prediction,
            pred_sample,
            config.methods.get(name),
            config,
        )
        if isinstance(result, str):
            skipped[name] = result
        else:
            pred_tested = result

    family = [*tested, *missing, *([pred_tested] if pred_tested is not None else [])]
    with_p = [t for t in family if t.p_value is not None]
    p_values = [t.p_value for t in with_p if t.p_value is not None]
    cutoff = rejection_threshold(p_values, config.alpha, config.correction)
    adjusted = dict(zip(map(id, with_p), adjust_p_values(p_values, config.correction).tolist(), strict=True))
    decided = {id(t): _decide(t, cutoff, adjusted.get(id(t)), config) for t in family}

    features = tuple(decided[id(t)] for t in tested)
    missing_results = tuple(decided[id(t)] for t in missing)
    pred_result = decided[id(pred_tested)] if pred_tested is not None else None
    drifted_names = tuple(dict.fromkeys(f.name for f in (*features, *missing_results) if f.drifted))
    drifted_cols = [f for f in decided.values() if f.drifted]
    return DriftReport(
        features=features,
        prediction=pred_result,
        drifted_features=drifted_names,
        drifted=bool(drifted_cols),
        severity=drift_severity(drifted_cols, len(tested) + (pred_tested is not None), config),
        correction=config.correction,
        alpha=config.alpha,
        reference_rows=reference.row_count,
        current_rows=window.row_count,
        skipped=skipped,
        missing=missing_results,
    )


def drift_severity(
    drifted: Sequence[FeatureDrift], tested: int, config: DriftConfig | None = None
) -> Severity | None:
    """The severity of a window from its drifted tests, ``None`` if none drifted.

    The worst single feature's level (see :class:`DriftConfig` ``severity_*``:
    e.g. a shift of 0.2 / 0.5 reference standard deviations, 10 % / 25 % of
    the mass moved, the missing share up by 5 / 20 points), raised by
    breadth: at least ``medium`` once ``severity_features`` distinct columns
    drifted or ``severity_share[0]`` of the ``tested`` columns, ``high`` from
    ``severity_share[1]`` of them (and at least ``severity_features``).
    """
    config = config if config is not None else DriftConfig()
    hits = [f for f in drifted if f.drifted]
    if not hits:
        return None
    worst = max((f.severity or "low" for f in hits), key=_SEVERITY_ORDER.__getitem__)
    names = len({f.name for f in hits})
    share = names / max(tested, 1)
    medium_share, high_share = config.severity_share
    by_breadth: Severity = "low"
    if names >= config.severity_features or share >= medium_share:
        by_breadth = "medium"
    if share >= high_share and names >= config.severity_features:
        by_breadth = "high"
    return max(worst, by_breadth, key=_SEVERITY_ORDER.__getitem__)


def _window_from_columns(
    reference: ReferenceProfile,
    columns: Mapping[str, Column],
    prediction: Column | None,
) -> tuple[ReferenceProfile, dict[str, FloatArray], FloatArray | None]:
    arrays = {name: as_1d(columns[name], f"column {name!r}") for name in reference.features if name in columns}
    pred = as_1d(prediction, "prediction") if prediction is not None else None
    rows = row_count(arrays, pred)
    rng = np.random.default_rng(rows)
    features: dict[str, FeatureProfile] = {}
    samples: dict[str, FloatArray] = {}
    for name, ref in reference.features.items():
        col = arrays[name] if name in arrays else np.full(rows, np.nan)
        if isinstance(ref, NumericProfile):
            features[name], samples[name] = numeric_window(ref, col, rng=rng)
        else:
            features[name] = counts_like(ref, col)
    pred_profile: FeatureProfile | None = None
    pred_sample: FloatArray | None = None
    if reference.prediction is not None:
        col = pred if pred is not None else np.full(rows, np.nan)
        if isinstance(reference.prediction, NumericProfile):
            pred_profile, pred_sample = numeric_window(reference.prediction, col, rng=rng)
        else:
            pred_profile = counts_like(reference.prediction, col)
    return ReferenceProfile(features, pred_profile, rows), samples, pred_sample


def _check_compatible(name: str, ref: FeatureProfile, cur: FeatureProfile) -> None:
    if isinstance(ref, NumericProfile):
        if not isinstance(cur, NumericProfile) or not np.array_equal(ref.cuts, cur.cuts):
            raise IncompatibleProfilesError(
                f"{name!r}: the window was not binned like the reference (build it with reference.counts_like)"
            )
    elif not isinstance(cur, CategoricalProfile) or cur.categories != ref.categories:
        raise IncompatibleProfilesError(f"{name!r}: the window's categories differ from the reference's")


def _scale(ref: NumericProfile) -> tuple[float, str]:
    std = ref.moments.std
    if std > 0 and math.isfinite(std):
        return std, "std"
    if ref.sample.values.size:
        q75, q25 = np.percentile(ref.sample.values, [75, 25])
        if q75 > q25:
            return float(q75 - q25) / 1.349, "iqr"
    return 1.0, "unit"


def _level(value: float, bounds: tuple[float, float]) -> Severity:
    return "high" if value >= bounds[1] else "medium" if value >= bounds[0] else "low"


def _test_missing(name: str, ref: FeatureProfile, cur: FeatureProfile, config: DriftConfig) -> _Tested | None:
    # A test that cannot reject (nothing missing on either side) stays out of the family,
    # so clean features cost the correction nothing (Tarone's argument for discrete tests).
    if ref.missing + cur.missing == 0 or ref.total < config.min_rows or cur.total < config.min_rows:
        return None
    p = missing_rate_test(ref.missing, ref.total, cur.missing, cur.total)
    change = cur.missing_rate - ref.missing_rate
    detail: dict[str, float | int | str | bool | None] = {
        "effect_kind": "missing",
        "reference_missing_rate": ref.missing_rate,
        "current_missing_rate": cur.missing_rate,
        "reference_missing": ref.missing,
        "current_missing": cur.missing,
        "reference_total": ref.total,
        "current_total": cur.total,
    }
    severity = _level(abs(change), config.severity_missing)
    pooled = (ref.missing + cur.missing) / (ref.total + cur.total)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / ref.total + 1.0 / cur.total))
    return _Tested(name, "fisher", cur.missing_rate, p, change, config.min_missing, severity, detail, "missing", se)


def _test_column(
    name: str,
    ref: FeatureProfile,
    cur: FeatureProfile,
    cur_sample: FloatArray | None,
    override: Method | None,
    config: DriftConfig,
) -> _Tested | str:
    if ref.valid < config.min_rows:
        return f"only {ref.valid} valid values in the reference (< {config.min_rows})"
    if cur.valid < config.min_rows:
        return f"only {cur.valid} valid values in the window (< {config.min_rows})"
    numeric = isinstance(ref, NumericProfile)
    if override is not None:
        method: Method = override
    elif numeric:
        auto: Method = "omnibus" if cur.valid >= config.small_window_rows else "ks"
        method = config.numeric_method or auto
    else:
        method = config.categorical_method
    if not numeric and method in SAMPLE_METHODS:
        raise InvalidConfigError(f"{name!r} is categorical; {method!r} needs numeric samples")

    ref_bins = ref.counts if isinstance(ref, NumericProfile) else ref.binned
    cur_bins = cur.counts if isinstance(cur, NumericProfile) else cur.binned
    ref_f, cur_f = ref_bins.astype(np.float64), cur_bins.astype(np.float64)
    occupied = int(np.count_nonzero(ref_f + cur_f))
    p_ref, p_cur = ref_f / ref_f.sum(), cur_f / cur_f.sum()
    moved = 0.5 * float(np.abs(p_ref - p_cur).sum())
    moved_noise = (
        0.5 * math.sqrt(2.0 / math.pi) * math.sqrt(1.0 / ref.valid + 1.0 / cur.valid)
        * float(np.sqrt(p_ref * (1.0 - p_ref)).sum())
    )
    # In quadrature: bins that really moved carry little noise on top, bins that did not carry all of it.
    excess_mass = math.sqrt(max(moved * moved - moved_noise * moved_noise, 0.0))
    inv_n = 1.0 / ref.valid + 1.0 / cur.valid
    # The spread of the mass moved: a sum of half-normal bin differences (sd/mean of one is sqrt(pi/2 - 1)).
    mass_se = 0.5 * math.sqrt((1.0 - 2.0 / math.pi) * inv_n * float(np.sum(p_ref * (1.0 - p_ref))))
    detail: dict[str, float | int | str | bool | None] = {
        "mass_moved": moved,
        "mass_moved_noise": moved_noise,
        "bins": occupied,
        "reference_count": ref.valid,
        "current_count": cur.valid,
        "reference_missing_rate": ref.missing_rate,
        "current_missing_rate": cur.missing_rate,
    }
    scale, scale_kind = 1.0, "unit"
    log_scale: float | None = None
    if isinstance(ref, NumericProfile) and isinstance(cur, NumericProfile):
        scale, scale_kind = _scale(ref)
        detail["mean_shift"] = (cur.moments.mean - ref.moments.mean) / scale
        detail["std_ratio"] = cur.moments.std / scale if scale_kind == "std" else None
        detail["scale"] = scale_kind
        if scale_kind == "std" and cur.moments.std > 0:
            log_scale = math.log(cur.moments.std / scale)

    p_value: float | None = None
    # Candidate effects: (kind, value, standard error, floor, severity bounds). A value counts
    # against its floor less one standard error; the one furthest past its floor decides.
    effects: list[tuple[str, float, float, float, tuple[float, float]]] = []
    if method == "omnibus":
        chi = _chi2(ref_f, cur_f, config.min_expected)
        detail["chi2_p_value"] = chi.p_value
        detail["dof"] = chi.dof
        if numeric:
            ranks = _rank_tests(ref_f, cur_f)
            p_value = cauchy_combination([ranks.location_p, ranks.scale_p, chi.p_value], config.omnibus_weights)
            detail["location_z"] = ranks.location_z
            detail["location_p_value"] = ranks.location_p
            detail["scale_z"] = ranks.scale_z
            detail["scale_p_value"] = ranks.scale_p
            detail["shift"] = ranks.shift
            detail["log_scale"] = log_scale
            # Delta method on the AUC: se(shift) = sqrt(pi / 3) * sqrt(1/n + 1/m), in reference sds.
            effects.append(("shift", abs(ranks.shift), _SHIFT_SE * math.sqrt(inv_n), config.min_shift,
                            config.severity_shift))
            if log_scale is not None:
                # Normal theory: var(log s) = 1 / (2 n) per sample.
                effects.append(("log_scale", abs(log_scale), math.sqrt(inv_n / 2.0), config.min_log_scale,
                                config.severity_log_scale))
        else:
            p_value = chi.p_value
        # -log10 of the combined p-value: 0 for identical counts, 2 at p = 0.01.
        statistic = -math.log10(max(p_value, 1e-300))
        effects.append(("mass", excess_mass, mass_se, config.min_mass, config.severity_mass))
    elif method == "chi2":
        res = chi2_homogeneity(ref_bins, cur_bins, min_expected=config.min_expected)
        statistic, p_value = res.statistic, res.p_value
        detail["dof"] = res.dof
        effects.append(("mass", excess_mass, mass_se, config.min_mass, config.severity_mass))
    elif method in ("psi", "js"):
        raw_psi = psi(ref_bins, cur_bins, epsilon=config.psi_epsilon)
        noise = psi_noise(occupied, ref.valid, cur.valid)
        detail["psi"] = raw_psi
        detail["psi_noise"] = noise
        statistic = raw_psi if method == "psi" else jensen_shannon(ref_bins, cur_bins)
        # PSI of two samples of one distribution is about chi-squared(bins - 1) * (1/n + 1/m).
        psi_se = math.sqrt(2.0 * max(occupied - 1, 0)) * inv_n
        effects.append(("psi", max(raw_psi - noise, 0.0), psi_se, config.min_psi, config.severity_psi))
    else:
        assert isinstance(ref, NumericProfile)  # categorical was rejected above
        ref_sample = ref.sample.values
        sample = cur_sample if cur_sample is not None else _sample_of(cur)
        if ref_sample.size < 2 or sample.size < 2:
            return "no samples to test"
        raw_w = wasserstein(ref_sample, sample, scale=scale)
        w_noise = wasserstein_noise(ref_sample, sample.size, scale=scale)
        detail["wasserstein"] = raw_w
        detail["wasserstein_noise"] = w_noise
        detail["reference_sample"] = int(ref_sample.size)
        detail["current_sample"] = int(sample.size)
        if method == "ks":
            statistic, p_value = ks_test(ref_sample, sample)
        elif method == "cvm":
            statistic, p_value = cvm_test(ref_sample, sample)
        else:
            statistic = raw_w
        # The distance's noise is a mean of half-normal terms: its spread is about sqrt(pi/2 - 1) of it.
        effects.append(("wasserstein", max(raw_w - w_noise, 0.0), _HALF_NORMAL_CV * w_noise,
                        config.min_wasserstein, config.severity_wasserstein))
    kind, effect, effect_se, floor, _ = max(
        effects, key=lambda e: (e[1] - e[2]) / e[3] if e[3] > 0 else math.inf
    )
    detail["effect_kind"] = kind
    detail["effect_se"] = effect_se
    severity = max(
        (_level(value, sev) for _, value, _, _, sev in effects), key=_SEVERITY_ORDER.__getitem__
    )
    return _Tested(name, method, statistic, p_value, effect, floor, severity, detail, effect_se=effect_se)


def _sample_of(profile: FeatureProfile) -> FloatArray:
    if isinstance(profile, NumericProfile):
        return profile.sample.values
    return np.empty(0)


def _decide(t: _Tested, cutoff: float, adjusted_p: float | None, config: DriftConfig) -> FeatureDrift:
    # The effect must clear the floor by its own standard error: an estimate one standard error
    # above a negligible true change (the reference's noise on a huge window) does not count.
    # A floor of 0 is no floor at all: significance alone decides.
    big_enough = t.floor <= 0 or abs(t.effect) - t.effect_se >= t.floor
    detail = dict(t.detail)
    detail["effect_floor"] = t.floor
    detail["effect_se"] = t.effect_se
    if t.p_value is not None:
        threshold = cutoff
        significant = t.p_value <= cutoff
        detail["adjusted_p_value"] = adjusted_p
    else:
        threshold = {
            "psi": config.psi_threshold,
            "js": config.js_threshold,
            "wasserstein": config.wasserstein_threshold,
        }[t.method]
        significant = t.statistic >= threshold
    drifted = significant and big_enough
    detail["significant"] = significant
    detail["severity"] = t.severity if drifted else None
    return FeatureDrift(
        name=t.name,
        method=t.method,
        statistic=t.statistic,
        p_value=t.p_value,
        threshold=threshold,
        effect_size=t.effect,
        drifted=drifted,
        detail=detail,
        kind=t.kind,
    )


def _json_float(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _json_value(value: float | int | str | bool | None) -> float | int | str | bool | None:
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    return _json_float(value)
