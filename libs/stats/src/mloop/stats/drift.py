"""Data and prediction drift: per-feature tests, correction across features, verdict.

Single tests (usable on their own):

* :func:`psi` — population stability index on binned counts, epsilon-smoothed;
* :func:`jensen_shannon` — Jensen-Shannon distance (base 2, in [0, 1]);
* :func:`chi2_homogeneity` — two-sample chi-squared test on binned counts;
* :func:`wasserstein` — earth mover's distance between samples, in units of
  the reference's spread;
* :func:`ks_test`, :func:`cvm_test` — Kolmogorov-Smirnov and Cramér-von Mises
  two-sample tests on samples (scipy).

:func:`detect_drift` compares a window of traffic with a reference profile:

1. For each feature (and the prediction) it picks a method: numeric features
   get the chi-squared test on the reference's quantile bins when the window
   has at least ``small_window_rows`` valid values and KS on samples below;
   categorical features get chi-squared on top-K + other. ``DriftConfig.methods``
   overrides per feature.
2. The p-values of all tested columns form one family, corrected with
   Benjamini-Hochberg (default) or Bonferroni at ``alpha``. Under the global
   null both keep the chance of *any* false alarm in a window at ``alpha``.
3. A significant feature only counts as drifted if its effect size clears a
   floor: PSI ≥ ``min_psi`` for binned methods, Wasserstein distance (in
   reference standard deviations) ≥ ``min_wasserstein`` for sample methods.
   Both effect sizes are estimates of the population value: the distance
   that sampling noise alone would produce (:func:`psi_noise`,
   :func:`wasserstein_noise`) is subtracted. A huge window makes any shift
   significant; the floor keeps negligible shifts from alarming, and on
   ordinary windows it removes most of the alarms that are pure chance.

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
    "Method",
    "SampleTestResult",
    "Severity",
    "adjust_p_values",
    "chi2_homogeneity",
    "cvm_test",
    "detect_drift",
    "jensen_shannon",
    "ks_test",
    "psi",
    "psi_noise",
    "rejection_threshold",
    "wasserstein",
    "wasserstein_noise",
]

Method = Literal["chi2", "psi", "js", "wasserstein", "ks", "cvm"]
Correction = Literal["bh", "bonferroni", "none"]
Severity = Literal["low", "medium", "high"]
Detail = Mapping[str, float | int | str | bool | None]

P_VALUE_METHODS: frozenset[str] = frozenset({"chi2", "ks", "cvm"})
BINNED_METHODS: frozenset[str] = frozenset({"chi2", "psi", "js"})
SAMPLE_METHODS: frozenset[str] = frozenset({"wasserstein", "ks", "cvm"})

_SEVERITY_ORDER: dict[Severity, int] = {"low": 0, "medium": 1, "high": 2}


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
    return HomogeneityResult(stat, float(sps.chi2.sf(stat, dof)), dof, k)


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


def adjust_p_values(p_values: Sequence[float] | FloatArray, method: Correction) -> FloatArray:
    """Multiplicity-adjusted p-values (Benjamini-Hochberg q-values or Bonferroni)."""
    p = np.clip(np.asarray(p_values, dtype=np.float64), 0.0, 1.0)
    m = p.size
    if m == 0 or method == "none":
        return p
    if method == "bonferroni":
        return np.minimum(p * m, 1.0)
    if method == "bh":
        order = np.argsort(p)
        scaled = p[order] * m / np.arange(1, m + 1)
        q = np.minimum.accumulate(scaled[::-1])[::-1]
        out = np.empty(m)
        out[order] = np.minimum(q, 1.0)
        return out
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
    """How :func:`detect_drift` decides. Defaults suit windows of 500-100,000 rows.

    Raises InvalidConfigError on construction for out-of-domain values.
    """

    alpha: float = 0.05
    """Family-wise significance level across all tested columns of one window."""
    correction: Correction = "bh"
    methods: Mapping[str, Method] = field(default_factory=dict)
    """Per-column method override; the prediction column is keyed ``prediction_name``."""
    numeric_method: Method | None = None
    """Method for numeric columns; ``None`` picks chi2 or KS by window size."""
    categorical_method: Method = "chi2"
    small_window_rows: int = 500
    """Below this many valid values numeric columns are tested with KS on samples."""
    min_rows: int = 30
    """Columns with fewer valid values in reference or window are skipped."""
    min_psi: float = 0.02
    """Effect floor for binned methods: noise-corrected PSI."""
    min_wasserstein: float = 0.1
    """Effect floor for sample methods: noise-corrected Wasserstein distance in
    reference standard deviations (a 0.1 sd mean shift gives about 0.1)."""
    psi_threshold: float = 0.1
    js_threshold: float = 0.1
    wasserstein_threshold: float = 0.25
    psi_epsilon: float = 1e-4
    min_expected: float = 5.0
    severity_psi: tuple[float, float] = (0.1, 0.25)
    """Noise-corrected PSI from which a feature's drift is medium, high."""
    severity_wasserstein: tuple[float, float] = (0.3, 0.5)
    severity_share: tuple[float, float] = (0.2, 0.5)
    """Share of tested columns drifted from which overall severity is at least medium, high."""
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
            raise InvalidConfigError("categorical_method must be one of chi2, psi, js")
        if self.small_window_rows < 1 or self.min_rows < 2:
            raise InvalidConfigError("small_window_rows must be >= 1 and min_rows >= 2")
        nonneg = (
            self.min_psi,
            self.min_wasserstein,
            self.psi_threshold,
            self.js_threshold,
            self.wasserstein_threshold,
        )
        if any(not (v >= 0 and math.isfinite(v)) for v in nonneg):
            raise InvalidConfigError("thresholds and floors must be finite and >= 0")
        if not 0 < self.psi_epsilon < 0.01 or not self.min_expected > 0:
            raise InvalidConfigError("psi_epsilon must be in (0, 0.01), min_expected > 0")
        for pair in (self.severity_psi, self.severity_wasserstein, self.severity_share):
            if len(pair) != 2 or not 0 <= pair[0] <= pair[1]:
                raise InvalidConfigError("severity bounds must be (medium, high) with medium <= high")


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class FeatureDrift:
    """The verdict on one column.

    ``statistic`` is the method's statistic (chi-squared, KS D, PSI, ...).
    For methods with a p-value, ``threshold`` is the corrected p-value
    cut-off and ``p_value`` the raw p-value; for distance methods
    ``p_value`` is ``None`` and ``threshold`` applies to ``statistic``.
    ``effect_size`` is noise-corrected PSI (binned methods) or noise-corrected
    normalised Wasserstein (sample methods); ``drifted`` needs both significance and an
    effect at or above the floor. ``detail`` holds the evidence (JSON-safe).
    """

    name: str
    method: Method
    statistic: float
    p_value: float | None
    threshold: float
    effect_size: float
    drifted: bool
    detail: Detail = field(default_factory=dict)

    @property
    def severity(self) -> Severity | None:
        """This column's severity if drifted (from ``detail['severity']``)."""
        level = self.detail.get("severity")
        if self.drifted and level in ("low", "medium", "high"):
            return level  # type: ignore[return-value]
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict with ``name, method, statistic, p_value, threshold, drifted, ...``."""
        return {
            "name": self.name,
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

    ``drifted`` is true if any feature or the prediction drifted.
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

    @property
    def data_drifted(self) -> bool:
        """Whether any input feature drifted."""
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
            "prediction": self.prediction.to_dict() if self.prediction is not None else None,
            "skipped": dict(self.skipped),
        }


# --------------------------------------------------------------------------- detection


@dataclass
class _Tested:
    name: str
    method: Method
    statistic: float
    p_value: float | None
    effect: float
    floor: float
    severity: Severity
    detail: dict[str, float | int | str | bool | None]


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
    prediction column when ``current`` is raw columns.

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

    family = [*tested, *([pred_tested] if pred_tested is not None else [])]
    with_p = [t for t in family if t.p_value is not None]
    p_values = [t.p_value for t in with_p if t.p_value is not None]
    cutoff = rejection_threshold(p_values, config.alpha, config.correction)
    adjusted = dict(zip(map(id, with_p), adjust_p_values(p_values, config.correction).tolist(), strict=True))
    decided = {id(t): _decide(t, cutoff, adjusted.get(id(t)), config) for t in family}

    features = tuple(decided[id(t)] for t in tested)
    pred_result = decided[id(pred_tested)] if pred_tested is not None else None
    drifted_cols = [f for f in decided.values() if f.drifted]
    return DriftReport(
        features=features,
        prediction=pred_result,
        drifted_features=tuple(f.name for f in features if f.drifted),
        drifted=bool(drifted_cols),
        severity=_overall_severity(drifted_cols, len(family), config),
        correction=config.correction,
        alpha=config.alpha,
        reference_rows=reference.row_count,
        current_rows=window.row_count,
        skipped=skipped,
    )


def _window_from_columns(
    reference: ReferenceProfile,
    columns: Mapping[str, Column],
    prediction: Column | None,
) -> tuple[ReferenceProfile, dict[str, FloatArray], FloatArray | None]:
    arrays = {name: as_1d(columns[name], f"column {name!r}") for name in reference.features if name in columns}
    pred = as_1d(prediction, "prediction") if prediction is not None else None
    lengths = {name: arr.size for name, arr in arrays.items()}
    if pred is not None:
        lengths["prediction"] = pred.size
    distinct = set(lengths.values())
    if len(distinct) > 1:
        raise InvalidInputError(f"columns have different lengths: {lengths}")
    rows = distinct.pop() if distinct else 0
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
        auto: Method = "chi2" if cur.valid >= config.small_window_rows else "ks"
        method = config.numeric_method or auto
    else:
        method = config.categorical_method
    if not numeric and method in SAMPLE_METHODS:
        raise InvalidConfigError(f"{name!r} is categorical; {method!r} needs numeric samples")

    ref_bins = ref.counts if isinstance(ref, NumericProfile) else ref.binned
    cur_bins = cur.counts if isinstance(cur, NumericProfile) else cur.binned
    raw_psi = psi(ref_bins, cur_bins, epsilon=config.psi_epsilon)
    occupied = int(np.count_nonzero(ref_bins + cur_bins))
    noise = psi_noise(occupied, ref.valid, cur.valid)
    excess_psi = max(raw_psi - noise, 0.0)
    detail: dict[str, float | int | str | bool | None] = {
        "psi": raw_psi,
        "psi_noise": noise,
        "bins": occupied,
        "reference_count": ref.valid,
        "current_count": cur.valid,
        "reference_missing_rate": ref.missing_rate,
        "current_missing_rate": cur.missing_rate,
    }
    scale, scale_kind = 1.0, "unit"
    if isinstance(ref, NumericProfile) and isinstance(cur, NumericProfile):
        scale, scale_kind = _scale(ref)
        detail["mean_shift"] = (cur.moments.mean - ref.moments.mean) / scale
        detail["std_ratio"] = cur.moments.std / scale if scale_kind == "std" else None
        detail["scale"] = scale_kind

    p_value: float | None = None
    if method in BINNED_METHODS:
        effect, floor = excess_psi, config.min_psi
        medium, high = config.severity_psi
        if method == "chi2":
            res = chi2_homogeneity(ref_bins, cur_bins, min_expected=config.min_expected)
            statistic, p_value = res.statistic, res.p_value
            detail["dof"] = res.dof
        elif method == "psi":
            statistic = raw_psi
        else:
            statistic = jensen_shannon(ref_bins, cur_bins)
    else:
        assert isinstance(ref, NumericProfile)  # categorical was rejected above
        ref_sample = ref.sample.values
        sample = cur_sample if cur_sample is not None else _sample_of(cur)
        if ref_sample.size < 2 or sample.size < 2:
            return "no samples to test"
        raw_w = wasserstein(ref_sample, sample, scale=scale)
        w_noise = wasserstein_noise(ref_sample, sample.size, scale=scale)
        effect = max(raw_w - w_noise, 0.0)
        floor = config.min_wasserstein
        medium, high = config.severity_wasserstein
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
    severity: Severity = "high" if effect >= high else "medium" if effect >= medium else "low"
    return _Tested(name, method, statistic, p_value, effect, floor, severity, detail)


def _sample_of(profile: FeatureProfile) -> FloatArray:
    if isinstance(profile, NumericProfile):
        return profile.sample.values
    return np.empty(0)


def _decide(t: _Tested, cutoff: float, adjusted_p: float | None, config: DriftConfig) -> FeatureDrift:
    big_enough = t.effect >= t.floor
    detail = dict(t.detail)
    detail["effect_floor"] = t.floor
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
    )


def _overall_severity(drifted: Sequence[FeatureDrift], tested: int, config: DriftConfig) -> Severity | None:
    if not drifted:
        return None
    worst = max((f.severity or "low" for f in drifted), key=_SEVERITY_ORDER.__getitem__)
    share = len(drifted) / max(tested, 1)
    medium_share, high_share = config.severity_share
    by_share: Severity = "high" if share >= high_share else "medium" if share >= medium_share else "low"
    return max(worst, by_share, key=_SEVERITY_ORDER.__getitem__)


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
