"""Window state: traffic counted into the reference's bins, pane by pane.

A window is a run of *panes*. A tumbling window is one pane; a sliding
window of ``k`` panes advances one pane at a time. Each pane holds, per
feature, counts in the reference's bins (numeric) or categories
(categorical), missing/invalid/type-error/out-of-range counts, moments and
a bounded sample: compact, mergeable and independent of how the traffic was
split into batches, so a restart that re-reads from the stored offsets
rebuilds exactly the same panes.

The sample is a bottom-k sample: every row gets a pseudo-random priority
from a hash of its request id and the feature's index, and a feature keeps
the values of the ``k`` rows of lowest priority (ties broken by value). That
is a uniform sample without replacement whose content depends only on the
set of rows in the pane: not on their order, not on batch boundaries, not on
which partition or instance delivered them. Kept samples are stored sorted
by (priority, value), so equal sets of rows give equal pane state.
"""

from __future__ import annotations

import base64
import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np
import numpy.typing as npt

from mloop.stats.profile import (
    CategoricalProfile,
    FeatureProfile,
    Moments,
    NumericProfile,
    ReferenceProfile,
    Reservoir,
)

__all__ = [
    "CategoricalCounts",
    "FeatureCounts",
    "NumericCounts",
    "Pane",
    "category_key",
    "finite_columns",
    "numeric_block",
    "numeric_column",
    "numeric_columns",
    "request_hashes",
    "window_profile",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
U64Array = npt.NDArray[np.uint64]


def request_hashes(request_ids: Sequence[str]) -> U64Array:
    """A 64-bit FNV-1a hash of each request id's code points, computed column by column with numpy.

    The ids become one fixed-width UCS-4 array; each step folds one character
    position of every id at once, and the padding of shorter ids is skipped,
    so an id hashes the same whatever batch it comes in.
    """
    n = len(request_ids)
    if n == 0:
        return np.empty(0, dtype=np.uint64)
    arr = np.asarray(request_ids, dtype=np.str_)
    width = arr.dtype.itemsize // 4
    codes = arr.view(np.uint32).reshape(n, width).astype(np.uint64)
    h = np.full(n, _FNV_OFFSET, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(width):
            c = codes[:, j]
            h = np.where(c != 0, (h ^ c) * _FNV_PRIME, h)
    return h


def _priorities(hashes: U64Array, feature_index: int) -> FloatArray:
    """SplitMix64 of each row's hash and the feature index, as floats in [0, 1)."""
    row: FloatArray = _priorities_block(hashes, np.array([feature_index], dtype=np.int64))[0]
    return row


def _priorities_block(hashes: U64Array, feature_indices: IntArray) -> FloatArray:
    """SplitMix64 of each row's hash and each feature index, as floats in [0, 1): one row per index."""
    with np.errstate(over="ignore"):
        z = hashes[np.newaxis, :] + (feature_indices.astype(np.uint64) + np.uint64(1))[:, np.newaxis] * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9) & _MASK64
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB) & _MASK64
        z = z ^ (z >> np.uint64(31))
    out: FloatArray = (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return out


def _bottom_k(prio: FloatArray, vals: FloatArray, k: int) -> tuple[FloatArray, FloatArray]:
    """The ``k`` entries of lowest (priority, value), sorted by it: the same for any order of the input."""
    if prio.size > k:
        part = np.argpartition(prio, k - 1)
        threshold = prio[part[k - 1]]
        below = np.nonzero(prio < threshold)[0]
        tied = np.nonzero(prio == threshold)[0]
        if below.size + tied.size > k:  # equal priorities (a request id seen twice): the smaller values
            tied = tied[np.argsort(vals[tied], kind="stable")[:k - below.size]]
        keep = np.concatenate([below, tied])
        prio, vals = prio[keep], vals[keep]
    order = np.lexsort((vals, prio))
    return prio[order], vals[order]


def _bottom_k_rows(prio: FloatArray, vals: FloatArray, k: int) -> tuple[FloatArray, FloatArray] | None:
    """:func:`_bottom_k` of each row of two equal-shape 2-D arrays, or None where a row has tied priorities.

    Ties (a request id seen twice) need :func:`_bottom_k`'s value order, so the caller takes that path.
    """
    if prio.shape[1] > k:
        part = np.argpartition(prio, k - 1, axis=1)
        threshold = np.take_along_axis(prio, part[:, k - 1:k], axis=1)
        if np.count_nonzero(prio == threshold) != prio.shape[0]:
            return None
        keep = part[:, :k]
        prio, vals = np.take_along_axis(prio, keep, axis=1), np.take_along_axis(vals, keep, axis=1)
    order = np.lexsort((vals, prio), axis=1)
    return np.take_along_axis(prio, order, axis=1), np.take_along_axis(vals, order, axis=1)


def _b64(arr: FloatArray) -> str:
    return base64.b64encode(np.ascontiguousarray(arr, dtype="<f8").tobytes()).decode()


def _unb64(text: str) -> FloatArray:
    return np.frombuffer(base64.b64decode(text), dtype="<f8").astype(np.float64)


# --------------------------------------------------------------------------- extraction


@dataclass(frozen=True)
class NumericColumn:
    """One batch of a numeric feature: finite values (NaN where not), and why not."""

    values: FloatArray
    missing: int
    invalid: int
    type_errors: int


def numeric_column(raw: Sequence[Any]) -> NumericColumn:
    """Convert served values to floats, telling missing, NaN/inf and wrong types apart.

    ``None`` is missing; NaN and ±inf are invalid values; strings that do not
    parse as numbers are type errors. All three become NaN (missing) for drift.
    """
    n_none = raw.count(None) if isinstance(raw, list | tuple) else sum(1 for v in raw if v is None)
    try:
        x = np.array(raw, dtype=np.float64)
        type_errors = 0
    except (TypeError, ValueError):
        x = np.empty(len(raw), dtype=np.float64)
        type_errors = 0
        for i, v in enumerate(raw):
            if v is None:
                x[i] = np.nan
            elif isinstance(v, int | float):
                x[i] = float(v)
            else:
                try:
                    x[i] = float(v)
                except (TypeError, ValueError):
                    x[i] = np.nan
                    type_errors += 1
    finite = np.isfinite(x)
    not_finite = int(x.size - np.count_nonzero(finite))
    invalid = not_finite - n_none - type_errors
    if not_finite:
        x = np.where(finite, x, np.nan)
    return NumericColumn(x, n_none, max(invalid, 0), type_errors)


def numeric_block(features: Sequence[Mapping[str, Any]], names: Sequence[str]) -> FloatArray | None:
    """Every record's ``names`` as one float block (a row per name) in one C-level pass, or None.

    None when a record lacks a name or a value cannot be read as a number at
    all; ``None`` values read as NaN, so the block may hold NaN and infinities.
    """
    n, k = len(features), len(names)
    if not n or not k:
        return None
    try:
        if k == 1:
            flat = np.fromiter(map(operator.itemgetter(names[0]), features), dtype=np.float64, count=n)
        else:
            flat = np.fromiter(chain.from_iterable(map(operator.itemgetter(*names), features)),
                               dtype=np.float64, count=n * k)
    except (KeyError, TypeError, ValueError):
        return None
    # One copy makes each feature's values contiguous for the per-feature counting.
    return np.ascontiguousarray(flat.reshape(n, k).T)


def numeric_columns(
    features: Sequence[Mapping[str, Any]], names: Sequence[str]
) -> list[NumericColumn | None] | None:
    """Every record's ``names`` as float columns in one C-level pass: the common batch's fast path.

    Per name, the :class:`NumericColumn` that :func:`numeric_column` would
    give, or None where the column holds a value that is not a finite number
    (the conversion reads ``None`` as NaN, so only ``numeric_column`` tells
    missing, invalid and wrong-typed values apart): the caller converts that
    column the general way. None for the whole batch when a record lacks a
    name or a value cannot be read as a number at all.
    """
    block = numeric_block(features, names)
    return None if block is None else finite_columns(block)


def finite_columns(block: FloatArray) -> list[NumericColumn | None]:
    """Each row of a :func:`numeric_block` as a :class:`NumericColumn` when all its values are finite, else None."""
    finite: list[bool] = np.all(np.isfinite(block), axis=1).tolist()
    return [NumericColumn(x, 0, 0, 0) if ok else None for x, ok in zip(block, finite, strict=True)]


def category_key(value: Any) -> str | None:
    """The category a served value stands for: integral floats as integers, ``None`` missing."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    return str(value)


# --------------------------------------------------------------------------- accumulators


@dataclass
class NumericCounts:
    """A numeric feature's share of one pane, in the reference's bins."""

    counts: IntArray
    missing: int = 0
    invalid: int = 0
    type_errors: int = 0
    out_of_range: int = 0
    moments: Moments = field(default_factory=Moments)
    sample_priority: FloatArray = field(default_factory=lambda: np.empty(0))
    sample_values: FloatArray = field(default_factory=lambda: np.empty(0))

    @classmethod
    def empty(cls, ref: NumericProfile) -> NumericCounts:
        return cls(np.zeros(ref.counts.size, dtype=np.int64))

    def add(
        self,
        ref: NumericProfile,
        col: NumericColumn,
        priorities: FloatArray,
        sample_size: int,
        range_margin: float,
    ) -> None:
        finite_mask = ~np.isnan(col.values)
        finite = col.values[finite_mask]
        idx = np.searchsorted(ref.cuts, finite, side="right")
        self.counts = self.counts + np.bincount(idx, minlength=self.counts.size).astype(np.int64)
        self.missing += col.missing
        self.invalid += col.invalid
        self.type_errors += col.type_errors
        self.moments = self.moments.merge(Moments.of(finite))
        lo, hi = ref.moments.min, ref.moments.max
        if ref.moments.n and math.isfinite(lo) and math.isfinite(hi):
            margin = range_margin * max(hi - lo, abs(hi), abs(lo), 1e-12)
            self.out_of_range += int(np.count_nonzero((finite < lo - margin) | (finite > hi + margin)))
        if sample_size > 0 and finite.size:
            self.sample_priority, self.sample_values = _bottom_k(
                np.concatenate([self.sample_priority, priorities[finite_mask]]),
                np.concatenate([self.sample_values, finite]), sample_size)

    @staticmethod
    def add_finite_block(
        counts: Sequence[NumericCounts],
        refs: Sequence[NumericProfile],
        block: FloatArray,
        priorities: FloatArray | None,
        sample_size: int,
        range_margin: float,
    ) -> None:
        """:meth:`add` of several features' columns at once, every value finite (the common batch).

        ``block`` has one row per feature (``counts[j]`` counts row ``j``,
        binned by ``refs[j]``) and ``priorities`` the rows' sample priorities
        in the same shape. The state each feature ends with is exactly the one
        :meth:`add` gives: the moments, range and sample work on whole rows,
        so only the binning is a call per feature.
        """
        k, n = block.shape
        if not n:
            return
        means = block.mean(axis=1)
        dev = block - means[:, np.newaxis]
        m2 = np.sum(dev * dev, axis=1)
        mins, maxs = block.min(axis=1), block.max(axis=1)
        lo = np.full(k, -np.inf)
        hi = np.full(k, np.inf)
        for j, ref in enumerate(refs):
            r_lo, r_hi = ref.moments.min, ref.moments.max
            if ref.moments.n and math.isfinite(r_lo) and math.isfinite(r_hi):
                margin = range_margin * max(r_hi - r_lo, abs(r_hi), abs(r_lo), 1e-12)
                lo[j], hi[j] = r_lo - margin, r_hi + margin
        outside = np.count_nonzero((block < lo[:, np.newaxis]) | (block > hi[:, np.newaxis]), axis=1).tolist()
        stats = zip(means.tolist(), m2.tolist(), mins.tolist(), maxs.tolist(), outside, strict=True)
        for c, ref, row, (mean, sq, mn, mx, out) in zip(counts, refs, block, stats, strict=True):
            idx = np.searchsorted(ref.cuts, row, side="right")
            c.counts = c.counts + np.bincount(idx, minlength=c.counts.size).astype(np.int64)
            c.moments = c.moments.merge(Moments(n, mean, sq, mn, mx))
            c.out_of_range += out
        if sample_size <= 0 or priorities is None:
            return
        sizes = {c.sample_priority.size for c in counts}
        merged = None
        if len(sizes) == 1:
            merged = _bottom_k_rows(
                np.concatenate([np.stack([c.sample_priority for c in counts]), priorities], axis=1),
                np.concatenate([np.stack([c.sample_values for c in counts]), block], axis=1), sample_size)
        if merged is not None:
            for c, prio, vals in zip(counts, *merged, strict=True):
                c.sample_priority, c.sample_values = prio, vals
            return
        for c, prio, vals in zip(counts, priorities, block, strict=True):
            c.sample_priority, c.sample_values = _bottom_k(
                np.concatenate([c.sample_priority, prio]), np.concatenate([c.sample_values, vals]), sample_size)

    def merge_into(self, other: NumericCounts | None) -> NumericCounts:
        if other is None:
            return self
        prio = np.concatenate([other.sample_priority, self.sample_priority])
        vals = np.concatenate([other.sample_values, self.sample_values])
        return NumericCounts(
            other.counts + self.counts,
            other.missing + self.missing,
            other.invalid + self.invalid,
            other.type_errors + self.type_errors,
            other.out_of_range + self.out_of_range,
            other.moments.merge(self.moments),
            prio,
            vals,
        )

    @property
    def total(self) -> int:
        return int(self.moments.n + self.missing + self.invalid + self.type_errors)

    def profile(self, ref: NumericProfile, sample_size: int) -> NumericProfile:
        """This window as a stats profile, comparable with ``ref``."""
        prio, vals = self.sample_priority, self.sample_values
        if sample_size > 0:
            _, vals = _bottom_k(prio, vals, sample_size)
        return NumericProfile(
            ref.cuts,
            self.counts.copy(),
            self.missing + self.invalid + self.type_errors,
            self.moments,
            Reservoir(max(sample_size, int(vals.size), 1), self.moments.n, vals.copy()),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "numeric",
            "counts": self.counts.tolist(),
            "missing": self.missing,
            "invalid": self.invalid,
            "type_errors": self.type_errors,
            "out_of_range": self.out_of_range,
            "moments": [self.moments.n, self.moments.mean, self.moments.m2,
                        self.moments.min if self.moments.n else None,
                        self.moments.max if self.moments.n else None],
            "sp": _b64(self.sample_priority),
            "sv": _b64(self.sample_values),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NumericCounts:
        n, mean, m2, lo, hi = d["moments"]
        moments = Moments(n, mean, m2, lo, hi) if n else Moments()
        return cls(
            np.asarray(d["counts"], dtype=np.int64),
            d["missing"], d["invalid"], d["type_errors"], d["out_of_range"], moments,
            _unb64(d["sp"]), _unb64(d["sv"]),
        )


@dataclass
class CategoricalCounts:
    """A categorical feature's share of one pane, in the reference's categories."""

    counts: IntArray
    other: int = 0
    missing: int = 0

    @classmethod
    def empty(cls, ref: CategoricalProfile) -> CategoricalCounts:
        return cls(np.zeros(len(ref.categories), dtype=np.int64))

    def add(self, index: Mapping[str, int], raw: Sequence[Any]) -> None:
        other_slot = len(index)
        # Known categories served as text are looked up in one C-level pass;
        # only the rest (missing, unseen, numbers, booleans) are keyed one by one.
        try:
            codes: list[int | None] = list(map(index.get, raw))
        except TypeError:  # an unhashable value: key every one
            codes = [None] * len(raw)
        if None in codes:
            for i, c in enumerate(codes):
                if c is None:
                    v = raw[i]
                    k = v if type(v) is str else category_key(v)
                    codes[i] = -1 if k is None else index.get(k, other_slot)
        arr = np.asarray(codes, dtype=np.int64)
        self.missing += int(np.count_nonzero(arr < 0))
        binned = np.bincount(arr[arr >= 0], minlength=other_slot + 1)
        self.counts = self.counts + binned[:other_slot].astype(np.int64)
        self.other += int(binned[other_slot])

    def merge_into(self, other: CategoricalCounts | None) -> CategoricalCounts:
        if other is None:
            return self
        return CategoricalCounts(other.counts + self.counts, other.other + self.other, other.missing + self.missing)

    @property
    def total(self) -> int:
        return int(self.counts.sum()) + self.other + self.missing

    def profile(self, ref: CategoricalProfile) -> CategoricalProfile:
        return CategoricalProfile(ref.categories, self.counts.copy(), self.other, self.missing)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "categorical", "counts": self.counts.tolist(), "other": self.other, "missing": self.missing}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CategoricalCounts:
        return cls(np.asarray(d["counts"], dtype=np.int64), d["other"], d["missing"])


FeatureCounts = NumericCounts | CategoricalCounts


def _empty_counts(ref: FeatureProfile) -> FeatureCounts:
    if isinstance(ref, NumericProfile):
        return NumericCounts.empty(ref)
    return CategoricalCounts.empty(ref)


def _counts_from_dict(d: Mapping[str, Any]) -> FeatureCounts:
    return NumericCounts.from_dict(d) if d["kind"] == "numeric" else CategoricalCounts.from_dict(d)


# --------------------------------------------------------------------------- pane


@dataclass
class Pane:
    """One pane of traffic of a (model, version): rows, time span and per-feature counts."""

    number: int
    rows: int = 0
    start: float | None = None
    end: float | None = None
    key: int | None = None
    """For time panes: the pane's index (event time // pane seconds)."""
    features: dict[str, FeatureCounts] = field(default_factory=dict)
    prediction: FeatureCounts | None = None
    unexpected: dict[str, int] = field(default_factory=dict)
    """Features served that the reference does not know → rows carrying them."""
    absent: dict[str, int] = field(default_factory=dict)
    """Required schema features → rows that lacked them."""
    serving_errors: int = 0
    late: int = 0
    """Records read after their own pane had closed, while their partition was in this one."""

    @classmethod
    def open(cls, number: int, reference: ReferenceProfile, key: int | None = None) -> Pane:
        return cls(
            number,
            key=key,
            features={name: _empty_counts(p) for name, p in reference.features.items()},
            prediction=_empty_counts(reference.prediction) if reference.prediction is not None else None,
        )

    @staticmethod
    def priorities(hashes: U64Array, feature_index: int) -> FloatArray:
        """The sample priority of each row (by its request id's hash) for the feature at ``feature_index``."""
        return _priorities(hashes, feature_index)

    @staticmethod
    def priorities_block(hashes: U64Array, feature_indices: Sequence[int]) -> FloatArray:
        """:meth:`priorities` for several features: one row per index."""
        return _priorities_block(hashes, np.asarray(feature_indices, dtype=np.int64))

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "rows": self.rows,
            "start": self.start,
            "end": self.end,
            "key": self.key,
            "features": {k: v.to_dict() for k, v in self.features.items()},
            "prediction": self.prediction.to_dict() if self.prediction is not None else None,
            "unexpected": self.unexpected,
            "absent": self.absent,
            "serving_errors": self.serving_errors,
            "late": self.late,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Pane:
        return cls(
            d["number"], d["rows"], d["start"], d["end"], d.get("key"),
            {k: _counts_from_dict(v) for k, v in d["features"].items()},
            _counts_from_dict(d["prediction"]) if d.get("prediction") else None,
            dict(d.get("unexpected", {})), dict(d.get("absent", {})), d.get("serving_errors", 0),
            d.get("late", 0),
        )


def merge_panes(panes: Sequence[Pane]) -> Pane:
    """The union of consecutive panes (the window they form)."""
    first = panes[0]
    out = Pane(first.number, 0, None, None, first.key, {}, None, {}, {}, 0)
    for p in panes:
        out.rows += p.rows
        if p.start is not None:
            out.start = p.start if out.start is None else min(out.start, p.start)
        if p.end is not None:
            out.end = p.end if out.end is None else max(out.end, p.end)
        for name, c in p.features.items():
            out.features[name] = c.merge_into(out.features.get(name))  # type: ignore[arg-type]
        if p.prediction is not None:
            out.prediction = p.prediction.merge_into(out.prediction)  # type: ignore[arg-type]
        for k, v in p.unexpected.items():
            out.unexpected[k] = out.unexpected.get(k, 0) + v
        for k, v in p.absent.items():
            out.absent[k] = out.absent.get(k, 0) + v
        out.serving_errors += p.serving_errors
        out.late += p.late
    return out


def window_profile(reference: ReferenceProfile, window: Pane, sample_size: int) -> ReferenceProfile:
    """The window as a profile binned like ``reference`` (what ``detect_drift`` compares)."""
    features: dict[str, FeatureProfile] = {}
    for name, ref in reference.features.items():
        c = window.features[name]
        if isinstance(ref, NumericProfile) and isinstance(c, NumericCounts):
            features[name] = c.profile(ref, sample_size)
        elif isinstance(ref, CategoricalProfile) and isinstance(c, CategoricalCounts):
            features[name] = c.profile(ref)
    pred: FeatureProfile | None = None
    if reference.prediction is not None and window.prediction is not None:
        rp, wp = reference.prediction, window.prediction
        if isinstance(rp, NumericProfile) and isinstance(wp, NumericCounts):
            pred = wp.profile(rp, sample_size)
        elif isinstance(rp, CategoricalProfile) and isinstance(wp, CategoricalCounts):
            pred = wp.profile(rp)
    return ReferenceProfile(features, pred, window.rows)
