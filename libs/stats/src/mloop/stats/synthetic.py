"""Seeded synthetic tables for calibrating and benchmarking drift detection.

The mix is deliberately awkward: skewed, heavy-tailed, discrete, bimodal,
correlated and partly missing numeric features, and categorical features
from a few levels up to a long tail that overflows the top-K. Drift is
injected as a mean shift in units of a feature's true standard deviation,
or as probability mass moved off a categorical feature's commonest level.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mloop.stats._coerce import FloatArray
from mloop.stats._exceptions import InvalidConfigError

__all__ = ["SyntheticTable", "numeric_names", "categorical_names", "synthetic_table"]

Sampler = Callable[[np.random.Generator, int], FloatArray]


@dataclass(frozen=True)
class _Numeric:
    sample: Sampler
    mean: float
    std: float
    missing_rate: float = 0.0


def _mixture(rng: np.random.Generator, n: int) -> FloatArray:
    upper = rng.random(n) < 0.3
    return np.where(upper, rng.normal(3.0, 0.5, n), rng.normal(0.0, 1.0, n))


_LOGNORMAL_MEAN = math.exp(0.125)
_LOGNORMAL_STD = math.sqrt((math.exp(0.25) - 1) * math.exp(0.25))
_POISSON, _BINOMIAL = 5, 8  # discrete families: shifted through their parameter
_NUMERIC: tuple[_Numeric, ...] = (
    _Numeric(lambda r, n: r.normal(0.0, 1.0, n), 0.0, 1.0),
    _Numeric(lambda r, n: r.lognormal(0.0, 0.5, n), _LOGNORMAL_MEAN, _LOGNORMAL_STD),
    _Numeric(lambda r, n: r.exponential(1.0, n), 1.0, 1.0),
    _Numeric(lambda r, n: r.uniform(0.0, 1.0, n), 0.5, 1 / math.sqrt(12)),
    _Numeric(lambda r, n: r.standard_t(5, n), 0.0, math.sqrt(5 / 3)),
    _Numeric(lambda r, n: r.poisson(3.0, n).astype(np.float64), 3.0, math.sqrt(3.0)),
    _Numeric(lambda r, n: r.gamma(2.0, 1.0, n), 2.0, math.sqrt(2.0)),
    _Numeric(lambda r, n: r.normal(50.0, 10.0, n), 50.0, 10.0, missing_rate=0.05),
    _Numeric(lambda r, n: r.binomial(10, 0.3, n).astype(np.float64), 3.0, math.sqrt(2.1)),
    _Numeric(_mixture, 0.9, math.sqrt(2.665)),
)


def _zipf(levels: int, exponent: float) -> FloatArray:
    weights = np.power(np.arange(1, levels + 1, dtype=np.float64), -exponent)
    return np.asarray(weights / weights.sum(), dtype=np.float64)


_CATEGORICAL: tuple[tuple[FloatArray, float], ...] = (
    (np.array([0.40, 0.25, 0.15, 0.12, 0.08]), 0.0),
    (np.array([0.6, 0.3, 0.1]), 0.02),
    (_zipf(60, 1.1), 0.0),
)


def numeric_names(n: int) -> list[str]:
    """Names of the first ``n`` numeric features: ``num_00``, ``num_01``, ..."""
    return [f"num_{i:02d}" for i in range(n)]


def categorical_names(n: int) -> list[str]:
    """Names of the first ``n`` categorical features: ``cat_00``, ..."""
    return [f"cat_{i:02d}" for i in range(n)]


@dataclass(frozen=True)
class SyntheticTable:
    """Columns by name, and a model score in (0, 1) computed from them."""

    columns: dict[str, npt.NDArray[np.generic]]
    prediction: FloatArray


def synthetic_table(
    rng: np.random.Generator,
    n_rows: int,
    *,
    n_numeric: int = 20,
    n_categorical: int = 3,
    mean_shift: Mapping[str, float] | None = None,
    mass_shift: Mapping[str, float] | None = None,
    variance_ratio: Mapping[str, float] | None = None,
    new_category: Mapping[str, float] | None = None,
    missing_increase: Mapping[str, float] | None = None,
) -> SyntheticTable:
    """Draw ``n_rows`` rows.

    ``mean_shift`` maps numeric feature names to a shift in standard
    deviations; ``mass_shift`` maps categorical names to the probability
    mass (e.g. 0.1) moved from the commonest level, spread evenly over the
    others; ``variance_ratio`` maps numeric names to a factor on the
    variance (values spread about the family's mean); ``new_category`` maps
    categorical names to the share of rows given a level the reference never
    saw; ``missing_increase`` maps any feature to an extra share of rows
    sent as missing (``None`` / NaN). Numeric feature ``i`` follows family ``i % 10``; features 10-19
    are correlated with features 0-9. Raises InvalidConfigError for unknown
    names or impossible shifts.
    """
    mean_shift = dict(mean_shift or {})
    mass_shift = dict(mass_shift or {})
    variance_ratio = dict(variance_ratio or {})
    new_category = dict(new_category or {})
    missing_increase = dict(missing_increase or {})
    num_names = numeric_names(n_numeric)
    cat_names = categorical_names(n_categorical)
    unknown = (
        (set(mean_shift) - set(num_names))
        | (set(variance_ratio) - set(num_names))
        | (set(mass_shift) - set(cat_names))
        | (set(new_category) - set(cat_names))
        | (set(missing_increase) - set(num_names) - set(cat_names))
    )
    if unknown:
        raise InvalidConfigError(f"unknown synthetic features: {sorted(unknown)}")
    columns: dict[str, npt.NDArray[np.generic]] = {}
    base: list[FloatArray] = []
    for i, name in enumerate(num_names):
        spec = _NUMERIC[i % len(_NUMERIC)]
        shift = mean_shift.get(name, 0.0) * spec.std
        family = i % len(_NUMERIC)
        if family == _POISSON:
            # Integer data stays integer: the rate moves instead of the values.
            values = rng.poisson(max(spec.mean + shift, 0.0), n_rows).astype(np.float64)
            shift = 0.0
        elif family == _BINOMIAL:
            p = min(max((spec.mean + shift) / 10, 0.0), 1.0)
            values = rng.binomial(10, p, n_rows).astype(np.float64)
            shift = 0.0
        else:
            values = spec.sample(rng, n_rows)
        if i >= len(_NUMERIC):
            # Mix in the (population-)standardised sibling: correlated features,
            # with a distribution that does not depend on the sample drawn.
            sib = _NUMERIC[(i - len(_NUMERIC)) % len(_NUMERIC)]
            z = (base[i - len(_NUMERIC)] - sib.mean) / sib.std
            values = (values + 0.5 * spec.std * z) / math.sqrt(1.25)
        base.append(values)
        ratio = variance_ratio.get(name, 1.0)
        if not ratio > 0:
            raise InvalidConfigError(f"variance ratio of {name} must be > 0")
        if ratio != 1.0:
            values = spec.mean + (values - spec.mean) * math.sqrt(ratio)
        values = values + shift
        if spec.missing_rate:
            values = np.where(rng.random(n_rows) < spec.missing_rate, np.nan, values)
        if missing_increase.get(name, 0.0):
            values = np.where(rng.random(n_rows) < missing_increase[name], np.nan, values)
        columns[name] = values
    for j, name in enumerate(cat_names):
        probs, missing_rate = _CATEGORICAL[j % len(_CATEGORICAL)]
        probs = probs.copy()
        moved = mass_shift.get(name, 0.0)
        if not 0 <= moved <= probs[0]:
            raise InvalidConfigError(f"cannot move {moved} of mass off {name}")
        probs[0] -= moved
        probs[1:] += moved / (probs.size - 1)
        labels = np.array([f"{name}_v{k}" for k in range(probs.size)])
        drawn = labels[rng.choice(probs.size, size=n_rows, p=probs / probs.sum())]
        fresh = new_category.get(name, 0.0)
        if not 0 <= fresh <= 1:
            raise InvalidConfigError(f"new-category share of {name} must be in [0, 1]")
        if fresh:
            drawn = np.where(rng.random(n_rows) < fresh, f"{name}_new", drawn)
        extra_missing = missing_increase.get(name, 0.0)
        if missing_rate or extra_missing:
            missing_rate = 1 - (1 - missing_rate) * (1 - extra_missing)
            values_obj = drawn.astype(object)
            values_obj[rng.random(n_rows) < missing_rate] = None
            columns[name] = values_obj
        else:
            columns[name] = drawn
    logit = np.zeros(n_rows)
    for i, values in enumerate(base[:5]):
        spec = _NUMERIC[i]
        shifted = values + mean_shift.get(num_names[i], 0.0) * spec.std
        logit += (0.6 / (i + 1)) * (shifted - spec.mean) / spec.std
    prediction = 1.0 / (1.0 + np.exp(-logit))
    return SyntheticTable(columns, prediction)
