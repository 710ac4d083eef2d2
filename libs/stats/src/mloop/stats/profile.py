"""Compact, mergeable profiles of tabular data: the monitor's reference and windows.

A :class:`ReferenceProfile` summarises a table (feature name → column) plus,
optionally, the model's prediction column:

* numeric columns → :class:`NumericProfile`: counts in fixed quantile bins
  (cut points taken from the data the profile was first built from, outer
  edges at ±inf), missing count, moments (n, mean, M2, min, max) and a
  uniform reservoir sample;
* categorical columns → :class:`CategoricalProfile`: counts of the top-K
  categories of the first data, an "other" bucket, missing count.

Profiles are values: ``update`` and ``merge`` return new profiles. Merging is
associative and commutative on counts and moments (moments up to float
rounding, via Chan et al.'s parallel algorithm); the merged reservoir is a
uniform sample of the union. Profiles that do not share bins or categories
cannot be merged: build window profiles with :func:`counts_like` (or
:meth:`ReferenceProfile.counts_like`) so they share the reference's bins.

``to_dict`` gives a JSON-safe dict (finite floats or ``None``; no raw data
except the reservoir sample) and ``from_dict`` validates and restores it.
Non-finite numbers, ``None`` and unparseable values count as missing; they
never raise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from mloop.stats._coerce import (
    Column,
    FloatArray,
    IntArray,
    Kind,
    as_1d,
    as_float_array,
    category_counts,
    infer_kind,
)
from mloop.stats._exceptions import (
    IncompatibleProfilesError,
    InvalidConfigError,
    InvalidInputError,
    ProfileFormatError,
)

__all__ = [
    "DEFAULT_BINS",
    "DEFAULT_RESERVOIR_SIZE",
    "DEFAULT_TOP_K",
    "PROFILE_FORMAT",
    "SAMPLE_DIGITS",
    "CategoricalProfile",
    "FeatureProfile",
    "Kind",
    "Moments",
    "NumericProfile",
    "ReferenceProfile",
    "Reservoir",
    "columns_from_rows",
    "counts_like",
    "infer_kind",
    "numeric_window",
    "profile_from_dict",
    "profile_values",
    "row_count",
]

PROFILE_FORMAT = "mloop.reference-profile/v1"
DEFAULT_BINS = 20
DEFAULT_TOP_K = 20
DEFAULT_RESERVOIR_SIZE = 1000
# Significant digits kept for sample values in dicts: about 11 bytes per value
# in JSON instead of 20, and irrelevant to the tests run on the sample.
SAMPLE_DIGITS = 7

# numpy's hypergeometric sampler refuses populations of 10**9 and more.
_HYPERGEOMETRIC_LIMIT = 10**9 - 1


def _default_rng(*state: int) -> np.random.Generator:
    """A generator seeded from the sizes involved: reproducible, yet not one fixed stream."""
    return np.random.default_rng([0x6D6C6F6F70, *state])


def _frozen(arr: npt.NDArray[Any]) -> npt.NDArray[Any]:
    arr.setflags(write=False)
    return arr


# --------------------------------------------------------------------------- moments


@dataclass(frozen=True)
class Moments:
    """Count, mean, sum of squared deviations (M2), min and max of finite values.

    ``min``/``max`` are ``+inf``/``-inf`` and ``mean`` is 0 while ``n`` is 0.
    """

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = math.inf
    max: float = -math.inf

    @classmethod
    def of(cls, finite: FloatArray) -> Moments:
        """Moments of an array of finite values."""
        n = int(finite.size)
        if n == 0:
            return cls()
        mean = float(finite.mean())
        dev = finite - mean
        # Not np.dot: a BLAS call here costs more than the sum on a busy machine.
        return cls(n, mean, float(np.sum(dev * dev)), float(finite.min()), float(finite.max()))

    def merge(self, other: Moments) -> Moments:
        """Combine with another set of moments (Chan, Golub & LeVeque)."""
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * other.n / n
        m2 = self.m2 + other.m2 + delta * delta * self.n * other.n / n
        return Moments(n, mean, m2, min(self.min, other.min), max(self.max, other.max))

    @property
    def variance(self) -> float:
        """Sample variance (n - 1 denominator); 0 for fewer than two values."""
        return self.m2 / (self.n - 1) if self.n > 1 else 0.0

    @property
    def std(self) -> float:
        """Sample standard deviation; 0 for fewer than two values."""
        return math.sqrt(max(self.variance, 0.0))

    def to_dict(self) -> dict[str, Any]:
        if self.n == 0:
            return {"n": 0, "mean": None, "m2": None, "min": None, "max": None}
        return {"n": self.n, "mean": self.mean, "m2": self.m2, "min": self.min, "max": self.max}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Moments:
        n = _int(data, "n")
        if n == 0:
            return cls()
        m2 = _float(data, "m2")
        lo, hi = _float(data, "min"), _float(data, "max")
        if m2 < 0 or lo > hi:
            raise ProfileFormatError("moments: m2 must be >= 0 and min <= max")
        return cls(n, _float(data, "mean"), m2, lo, hi)


# --------------------------------------------------------------------------- reservoir


@dataclass(frozen=True, eq=False)
class Reservoir:
    """A uniform random sample of at most ``capacity`` of the ``seen`` finite values."""

    capacity: int
    seen: int
    values: FloatArray

    @classmethod
    def of(cls, finite: FloatArray, capacity: int, rng: np.random.Generator | None = None) -> Reservoir:
        """Sample ``finite`` (all of it when it fits) into a new reservoir."""
        if finite.size <= capacity:
            return cls(capacity, int(finite.size), _frozen(finite.copy()))
        rng = rng if rng is not None else _default_rng(finite.size, capacity)
        picked = rng.choice(finite, size=capacity, replace=False)
        return cls(capacity, int(finite.size), _frozen(picked))

    def merge(self, other: Reservoir, rng: np.random.Generator | None = None) -> Reservoir:
        """A uniform sample of the union of both populations.

        How many items come from each side is hypergeometric, then that many
        are drawn without replacement from each side's sample; given uniform
        inputs this gives an exactly uniform sample of the union.
        """
        capacity = min(self.capacity, other.capacity)
        seen = self.seen + other.seen
        k = min(capacity, seen)
        rng = rng if rng is not None else _default_rng(self.seen, other.seen, capacity)
        if other.seen == 0 or self.seen == 0:
            side = self if other.seen == 0 else other
            if side.values.size <= k:
                return Reservoir(capacity, seen, side.values)
            return Reservoir(capacity, seen, _frozen(rng.choice(side.values, size=k, replace=False)))
        if seen <= _HYPERGEOMETRIC_LIMIT:
            k_self = int(rng.hypergeometric(self.seen, other.seen, k))
        else:
            k_self = int(rng.binomial(k, self.seen / seen))
        # Samples smaller than min(capacity, seen) (built elsewhere) can cap what is drawn.
        k_self = max(k - other.values.size, min(k_self, self.values.size))
        k_self = min(k_self, self.values.size)
        k_other = min(k - k_self, other.values.size)
        mine = rng.choice(self.values, size=k_self, replace=False)
        theirs = rng.choice(other.values, size=k_other, replace=False)
        return Reservoir(capacity, seen, _frozen(np.concatenate([mine, theirs])))

    def to_dict(self, *, digits: int | None = SAMPLE_DIGITS) -> dict[str, Any]:
        """JSON-safe dict; values are rounded to ``digits`` significant digits
        (``None``: exact) because the sample dominates the profile's size."""
        values: list[float] = self.values.tolist()
        if digits is not None:
            values = [float(f"{v:.{digits}g}") for v in values]
        return {"capacity": self.capacity, "seen": self.seen, "values": values}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reservoir:
        capacity, seen = _int(data, "capacity"), _int(data, "seen")
        values = _float_list(data, "values")
        if capacity < 1 or values.size > min(capacity, seen):
            raise ProfileFormatError("sample: more values than capacity or than seen")
        return cls(capacity, seen, _frozen(values))


# --------------------------------------------------------------------------- numeric


@dataclass(frozen=True, eq=False)
class NumericProfile:
    """Histogram, moments and sample of a numeric column.

    ``cuts`` are the finite inner bin edges (strictly increasing); bin ``i``
    is ``[cuts[i-1], cuts[i])`` with ``cuts[-1] = -inf`` and ``cuts[len] = +inf``
    implied, so ``counts`` has ``len(cuts) + 1`` entries and no value falls
    outside. ``missing`` counts NaN, ±inf, ``None`` and unparseable values.
    """

    kind: ClassVar[Literal["numeric"]] = "numeric"

    cuts: FloatArray
    counts: IntArray
    missing: int
    moments: Moments
    sample: Reservoir

    @classmethod
    def from_values(
        cls,
        values: Column,
        *,
        n_bins: int = DEFAULT_BINS,
        reservoir_size: int = DEFAULT_RESERVOIR_SIZE,
        rng: np.random.Generator | None = None,
    ) -> NumericProfile:
        """Profile ``values``, placing bin cuts at their quantiles.

        ``n_bins`` quantile bins plus one, empty in the reference, for values
        above its maximum; with ties (discrete data) duplicate cut points
        collapse and there are fewer. Raises InvalidInputError for non-1-D
        input and InvalidConfigError for ``n_bins < 1`` or ``reservoir_size < 1``.
        """
        if n_bins < 1 or reservoir_size < 1:
            raise InvalidConfigError("n_bins and reservoir_size must be >= 1")
        x = as_float_array(values)
        finite = x[np.isfinite(x)]
        if finite.size:
            probs = np.arange(1, n_bins, dtype=np.float64) / n_bins
            # Cuts at observed values: with ties (discrete data) bins then align with the atoms.
            # One more cut just above the maximum gives values beyond the reference's range a
            # bin of their own; without it a constant column could never be seen to change upwards.
            quantiles = np.quantile(finite, probs, method="higher")
            cuts = np.unique(np.append(quantiles, np.nextafter(finite.max(), np.inf)))
        else:
            cuts = np.empty(0, dtype=np.float64)
        return cls._build(cuts, finite, x.size - finite.size, reservoir_size, rng)

    @classmethod
    def _build(
        cls,
        cuts: FloatArray,
        finite: FloatArray,
        missing: int,
        capacity: int,
        rng: np.random.Generator | None,
    ) -> NumericProfile:
        # Bin i is [cuts[i-1], cuts[i]). Counting by locating the cuts in the sorted
        # values is several times faster on large windows than locating every
        # value among the cuts, and gives identical counts.
        below = np.searchsorted(np.sort(finite), cuts, side="left")
        counts = np.diff(below, prepend=0, append=finite.size).astype(np.int64)
        return cls(
            _frozen(cuts),
            _frozen(counts),
            int(missing),
            Moments.of(finite),
            Reservoir.of(finite, capacity, rng),
        )

    def counts_like(self, values: Column, *, rng: np.random.Generator | None = None) -> NumericProfile:
        """Profile ``values`` with this profile's bins and reservoir capacity."""
        x = as_float_array(values)
        finite = x[np.isfinite(x)]
        return self._build(self.cuts, finite, x.size - finite.size, self.sample.capacity, rng)

    def update(self, values: Column, *, rng: np.random.Generator | None = None) -> NumericProfile:
        """This profile with ``values`` added (bins unchanged)."""
        return self.merge(self.counts_like(values, rng=rng), rng=rng)

    def merge(self, other: NumericProfile, *, rng: np.random.Generator | None = None) -> NumericProfile:
        """The profile of both populations; raises IncompatibleProfilesError if bins differ."""
        if not isinstance(other, NumericProfile):
            raise IncompatibleProfilesError("cannot merge a numeric with a categorical profile")
        if not np.array_equal(self.cuts, other.cuts):
            raise IncompatibleProfilesError("numeric profiles have different bin cuts")
        return NumericProfile(
            self.cuts,
            _frozen(self.counts + other.counts),
            self.missing + other.missing,
            self.moments.merge(other.moments),
            self.sample.merge(other.sample, rng),
        )

    @property
    def edges(self) -> FloatArray:
        """All bin edges, ``-inf`` and ``+inf`` included."""
        return np.concatenate([[-np.inf], self.cuts, [np.inf]])

    @property
    def valid(self) -> int:
        """Number of finite values."""
        return self.moments.n

    @property
    def total(self) -> int:
        """Number of values seen, missing included."""
        return self.moments.n + self.missing

    @property
    def missing_rate(self) -> float:
        """Share of missing values (0 when empty)."""
        return self.missing / self.total if self.total else 0.0

    def to_dict(self, *, sample_digits: int | None = SAMPLE_DIGITS) -> dict[str, Any]:
        """JSON-safe dict; everything exact except sample values (see Reservoir.to_dict)."""
        return {
            "kind": self.kind,
            "cuts": self.cuts.tolist(),
            "counts": self.counts.tolist(),
            "missing": self.missing,
            "moments": self.moments.to_dict(),
            "sample": self.sample.to_dict(digits=sample_digits),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NumericProfile:
        cuts = _float_list(data, "cuts")
        if cuts.size > 1 and not np.all(np.diff(cuts) > 0):
            raise ProfileFormatError("cuts must be strictly increasing")
        counts = _count_list(data, "counts")
        if counts.size != cuts.size + 1:
            raise ProfileFormatError("numeric profile needs len(cuts) + 1 counts")
        moments = Moments.from_dict(_mapping(data, "moments"))
        sample = Reservoir.from_dict(_mapping(data, "sample"))
        if int(counts.sum()) != moments.n or sample.seen != moments.n:
            raise ProfileFormatError("counts, moments.n and sample.seen disagree")
        return cls(_frozen(cuts), _frozen(counts), _int(data, "missing"), moments, sample)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NumericProfile) and self.to_dict(sample_digits=None) == other.to_dict(
            sample_digits=None
        )

    __hash__ = None  # type: ignore[assignment]


# --------------------------------------------------------------------------- categorical

OTHER = "__other__"


@dataclass(frozen=True, eq=False)
class CategoricalProfile:
    """Counts of a categorical column's top-K categories, an "other" bucket, missing.

    Categories are compared by name (see ``_coerce.category_name``: ``1`` and
    ``1.0`` are both ``"1"``, ``True`` is ``"True"``; ``None`` and NaN are missing),
    ordered by decreasing frequency in the data the profile was built from.
    """

    kind: ClassVar[Literal["categorical"]] = "categorical"

    categories: tuple[str, ...]
    counts: IntArray
    other: int
    missing: int

    @classmethod
    def from_values(cls, values: Column, *, top_k: int = DEFAULT_TOP_K) -> CategoricalProfile:
        """Profile ``values``, keeping the ``top_k`` most frequent categories.

        Raises InvalidInputError for non-1-D input, InvalidConfigError for ``top_k < 1``.
        """
        if top_k < 1:
            raise InvalidConfigError("top_k must be >= 1")
        counts, missing = category_counts(values)
        # Most frequent first, ties by name, so the choice of the top K is deterministic.
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top_k]
        kept = np.array([n for _, n in ranked], dtype=np.int64)
        return cls(
            tuple(name for name, _ in ranked),
            _frozen(kept),
            int(sum(counts.values()) - kept.sum()),
            missing,
        )

    def counts_like(self, values: Column) -> CategoricalProfile:
        """Count ``values`` into this profile's categories (the rest into "other")."""
        counts, missing = category_counts(values)
        kept = np.array([counts.get(c, 0) for c in self.categories], dtype=np.int64)
        return CategoricalProfile(self.categories, _frozen(kept), int(sum(counts.values()) - kept.sum()), missing)

    def update(self, values: Column) -> CategoricalProfile:
        """This profile with ``values`` added (categories unchanged)."""
        return self.merge(self.counts_like(values))

    def merge(self, other: CategoricalProfile) -> CategoricalProfile:
        """The profile of both populations.

        Raises IncompatibleProfilesError if the categories differ.
        """
        if not isinstance(other, CategoricalProfile):
            raise IncompatibleProfilesError("cannot merge a categorical with a numeric profile")
        if self.categories != other.categories:
            raise IncompatibleProfilesError("categorical profiles have different categories")
        return CategoricalProfile(
            self.categories,
            _frozen(self.counts + other.counts),
            self.other + other.other,
            self.missing + other.missing,
        )

    @property
    def binned(self) -> IntArray:
        """Counts of the categories followed by the "other" count."""
        return np.append(self.counts, self.other)

    @property
    def valid(self) -> int:
        """Number of non-missing values."""
        return int(self.counts.sum()) + self.other

    @property
    def total(self) -> int:
        """Number of values seen, missing included."""
        return self.valid + self.missing

    @property
    def missing_rate(self) -> float:
        """Share of missing values (0 when empty)."""
        return self.missing / self.total if self.total else 0.0

    def frequencies(self) -> dict[str, int]:
        """Category → count, with the "other" bucket under ``"__other__"``."""
        out = dict(zip(self.categories, self.counts.tolist(), strict=True))
        out[OTHER] = self.other
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "categories": list(self.categories),
            "counts": self.counts.tolist(),
            "other": self.other,
            "missing": self.missing,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CategoricalProfile:
        cats = data.get("categories")
        if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats):
            raise ProfileFormatError("categories must be a list of strings")
        if len(set(cats)) != len(cats):
            raise ProfileFormatError("categories must be distinct")
        counts = _count_list(data, "counts")
        if counts.size != len(cats):
            raise ProfileFormatError("categorical profile needs one count per category")
        return cls(tuple(cats), _frozen(counts), _int(data, "other"), _int(data, "missing"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CategoricalProfile) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


FeatureProfile: TypeAlias = NumericProfile | CategoricalProfile


def profile_values(
    values: Column,
    kind: Kind | None = None,
    *,
    n_bins: int = DEFAULT_BINS,
    top_k: int = DEFAULT_TOP_K,
    reservoir_size: int = DEFAULT_RESERVOIR_SIZE,
    rng: np.random.Generator | None = None,
) -> FeatureProfile:
    """Profile one column as ``kind`` (inferred from the data when ``None``)."""
    kind = kind if kind is not None else infer_kind(values)
    if kind == "numeric":
        return NumericProfile.from_values(values, n_bins=n_bins, reservoir_size=reservoir_size, rng=rng)
    if kind == "categorical":
        return CategoricalProfile.from_values(values, top_k=top_k)
    raise InvalidConfigError(f"unknown kind {kind!r}; expected 'numeric' or 'categorical'")


def counts_like(profile: FeatureProfile, values: Column, *, rng: np.random.Generator | None = None) -> FeatureProfile:
    """Profile ``values`` with the same bins (numeric) or categories as ``profile``.

    The result merges with ``profile`` and compares against it bin by bin.
    """
    if isinstance(profile, NumericProfile):
        return profile.counts_like(values, rng=rng)
    return profile.counts_like(values)


def numeric_window(
    profile: NumericProfile, values: Column, *, rng: np.random.Generator | None = None
) -> tuple[NumericProfile, FloatArray]:
    """Like :meth:`NumericProfile.counts_like`, also returning the finite values themselves.

    For callers that test on the full window rather than on its reservoir.
    """
    x = as_float_array(values)
    finite = x[np.isfinite(x)]
    window = NumericProfile._build(profile.cuts, finite, x.size - finite.size, profile.sample.capacity, rng)
    return window, finite


def profile_from_dict(data: Mapping[str, Any]) -> FeatureProfile:
    """Restore one feature profile from its dict; raises ProfileFormatError."""
    if not isinstance(data, Mapping):
        raise ProfileFormatError("a feature profile must be an object")
    kind = data.get("kind")
    try:
        if kind == "numeric":
            return NumericProfile.from_dict(data)
        if kind == "categorical":
            return CategoricalProfile.from_dict(data)
    except ProfileFormatError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ProfileFormatError(f"malformed {kind} profile: {exc}") from exc
    raise ProfileFormatError(f"unknown profile kind {kind!r}")


# --------------------------------------------------------------------------- reference


@dataclass(frozen=True, eq=False)
class ReferenceProfile:
    """Profiles of every feature (and optionally the prediction) of one table.

    ``row_count`` is the number of rows summarised. The same class describes
    a model's reference data and any window of traffic compared against it.
    """

    features: Mapping[str, FeatureProfile]
    prediction: FeatureProfile | None
    row_count: int

    @classmethod
    def from_columns(
        cls,
        columns: Mapping[str, Column],
        kinds: Mapping[str, Kind] | None = None,
        *,
        prediction: Column | None = None,
        prediction_kind: Kind | None = None,
        n_bins: int = DEFAULT_BINS,
        top_k: int = DEFAULT_TOP_K,
        reservoir_size: int = DEFAULT_RESERVOIR_SIZE,
        seed: int = 0,
    ) -> ReferenceProfile:
        """Build a reference from columns of equal length.

        ``kinds`` maps feature name to ``"numeric"``/``"categorical"``; features
        absent from it are inferred from their dtype/contents (see
        :func:`infer_kind`). Bin cuts and top-K categories come from these
        data and stay fixed for every later update and comparison, so build
        the reference from a representative sample (a few thousand rows).

        Raises InvalidInputError if columns differ in length or are not 1-D,
        InvalidConfigError for unknown kinds or non-positive sizes.
        """
        kinds = kinds or {}
        unknown = set(kinds) - set(columns)
        if unknown:
            raise InvalidInputError(f"kinds given for unknown columns: {sorted(unknown)}")
        arrays = {name: as_1d(col, f"column {name!r}") for name, col in columns.items()}
        pred = as_1d(prediction, "prediction") if prediction is not None else None
        rows = row_count(arrays, pred)
        rng = np.random.default_rng(seed)
        features: dict[str, FeatureProfile] = {
            name: profile_values(
                arr,
                kinds.get(name),
                n_bins=n_bins,
                top_k=top_k,
                reservoir_size=reservoir_size,
                rng=rng,
            )
            for name, arr in arrays.items()
        }
        pred_profile = (
            profile_values(
                pred,
                prediction_kind,
                n_bins=n_bins,
                top_k=top_k,
                reservoir_size=reservoir_size,
                rng=rng,
            )
            if pred is not None
            else None
        )
        return cls(features, pred_profile, rows)

    def counts_like(
        self,
        columns: Mapping[str, Column],
        *,
        prediction: Column | None = None,
        seed: int | None = None,
    ) -> ReferenceProfile:
        """Profile a window of data with this profile's bins and categories.

        A feature absent from ``columns`` counts as missing in every row;
        columns this profile does not know are ignored. Raises
        InvalidInputError for columns of different lengths.
        """
        arrays = {name: as_1d(columns[name], f"column {name!r}") for name in self.features if name in columns}
        pred = as_1d(prediction, "prediction") if prediction is not None else None
        rows = row_count(arrays, pred)
        rng = np.random.default_rng(seed) if seed is not None else _default_rng(rows)
        features: dict[str, FeatureProfile] = {}
        for name, profile in self.features.items():
            col = arrays.get(name)
            if col is None:
                col = np.full(rows, np.nan)
            features[name] = counts_like(profile, col, rng=rng)
        pred_profile: FeatureProfile | None = None
        if self.prediction is not None:
            col = pred if pred is not None else np.full(rows, np.nan)
            pred_profile = counts_like(self.prediction, col, rng=rng)
        return ReferenceProfile(features, pred_profile, rows)

    def update(
        self,
        columns: Mapping[str, Column],
        *,
        prediction: Column | None = None,
        seed: int | None = None,
    ) -> ReferenceProfile:
        """This profile with a batch of rows added (bins and categories unchanged)."""
        batch = self.counts_like(columns, prediction=prediction, seed=seed)
        rng = np.random.default_rng(seed) if seed is not None else None
        return self.merge(batch, rng=rng)

    def merge(self, other: ReferenceProfile, *, rng: np.random.Generator | None = None) -> ReferenceProfile:
        """The profile of both tables; raises IncompatibleProfilesError unless
        both have the same features, bins and categories."""
        if set(self.features) != set(other.features):
            raise IncompatibleProfilesError("reference profiles have different features")
        if (self.prediction is None) != (other.prediction is None):
            raise IncompatibleProfilesError("only one of the profiles has a prediction")
        features = {name: _merge_feature(p, other.features[name], rng) for name, p in self.features.items()}
        pred = (
            _merge_feature(self.prediction, other.prediction, rng)
            if self.prediction is not None and other.prediction is not None
            else None
        )
        return ReferenceProfile(features, pred, self.row_count + other.row_count)

    @property
    def kinds(self) -> dict[str, Kind]:
        """Feature name → kind."""
        return {name: p.kind for name, p in self.features.items()}

    def to_dict(self, *, sample_digits: int | None = SAMPLE_DIGITS) -> dict[str, Any]:
        """JSON-safe dict (see module docs).

        ``from_dict`` restores it exactly, except that reservoir sample values
        are rounded to ``sample_digits`` significant digits (``None`` keeps
        them exact); ``to_dict(from_dict(d)) == d`` always holds.
        """

        def one(p: FeatureProfile) -> dict[str, Any]:
            if isinstance(p, NumericProfile):
                return p.to_dict(sample_digits=sample_digits)
            return p.to_dict()

        return {
            "format": PROFILE_FORMAT,
            "row_count": self.row_count,
            "features": {name: one(p) for name, p in self.features.items()},
            "prediction": one(self.prediction) if self.prediction is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReferenceProfile:
        """Restore and validate a profile dict; raises ProfileFormatError."""
        if not isinstance(data, Mapping):
            raise ProfileFormatError("a reference profile must be an object")
        if data.get("format") != PROFILE_FORMAT:
            raise ProfileFormatError(f"unsupported profile format {data.get('format')!r}; expected {PROFILE_FORMAT!r}")
        raw_features = data.get("features")
        if not isinstance(raw_features, Mapping):
            raise ProfileFormatError("features must be an object")
        features = {str(name): profile_from_dict(p) for name, p in raw_features.items()}
        raw_pred = data.get("prediction")
        pred = profile_from_dict(raw_pred) if raw_pred is not None else None
        rows = _int(data, "row_count")
        for name, p in [*features.items(), ("prediction", pred)]:
            if p is not None and p.total != rows:
                raise ProfileFormatError(f"feature {name!r} counts {p.total} rows, not {rows}")
        return cls(features, pred, rows)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ReferenceProfile) and self.to_dict(sample_digits=None) == other.to_dict(
            sample_digits=None
        )

    __hash__ = None  # type: ignore[assignment]


def columns_from_rows(rows: Iterable[Mapping[str, Any]], names: Sequence[str] | None = None) -> dict[str, list[Any]]:
    """Turn records (``{"age": 41, "region": "north"}``) into columns.

    ``names`` fixes the columns; by default it is every key seen. A key
    absent from a record becomes ``None`` (missing) in that row.
    """
    records = list(rows)
    if names is None:
        seen: dict[str, None] = {}
        for record in records:
            seen.update(dict.fromkeys(record))
        names = list(seen)
    return {name: [record.get(name) for record in records] for name in names}


# --------------------------------------------------------------------------- helpers


def _merge_feature(a: FeatureProfile, b: FeatureProfile, rng: np.random.Generator | None) -> FeatureProfile:
    if isinstance(a, NumericProfile):
        if not isinstance(b, NumericProfile):
            raise IncompatibleProfilesError("cannot merge a numeric with a categorical profile")
        return a.merge(b, rng=rng)
    if not isinstance(b, CategoricalProfile):
        raise IncompatibleProfilesError("cannot merge a categorical with a numeric profile")
    return a.merge(b)


def row_count(arrays: Mapping[str, npt.NDArray[Any]], pred: npt.NDArray[Any] | None) -> int:
    """The one length of the columns and the prediction; ``InvalidInputError`` naming them when lengths differ."""
    lengths = {name: arr.size for name, arr in arrays.items()}
    if pred is not None:
        lengths["prediction"] = pred.size
    distinct = set(lengths.values())
    if len(distinct) > 1:
        raise InvalidInputError(f"columns have different lengths: {lengths}")
    return distinct.pop() if distinct else 0


def _mapping(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    if not isinstance(value, Mapping):
        raise ProfileFormatError(f"{key} must be an object")
    return value


def _int(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProfileFormatError(f"{key} must be a non-negative integer, got {value!r}")
    return value


def _float(data: Mapping[str, Any], key: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProfileFormatError(f"{key} must be a finite number, got {value!r}")
    return float(value)


def _float_list(data: Mapping[str, Any], key: str) -> FloatArray:
    value = data.get(key)
    if not isinstance(value, list) or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        raise ProfileFormatError(f"{key} must be a list of numbers")
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ProfileFormatError(f"{key} must hold finite numbers")
    return arr


def _count_list(data: Mapping[str, Any], key: str) -> IntArray:
    value = data.get(key)
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise ProfileFormatError(f"{key} must be a list of non-negative integers")
    return np.asarray(value, dtype=np.int64).reshape(-1)
