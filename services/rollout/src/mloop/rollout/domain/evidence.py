"""Live evidence about one model version during a rollout, compact and mergeable.

:class:`VersionStats` is what the rollout service keeps per version from
``prediction-logged`` and ``ground-truth-logged``: counts, a log-bucketed
latency histogram (relative error about 2 %, like DDSketch), a sparse
histogram of predictions and the labelled/correct counts. Two of them merge
by adding counts, so evidence can be aggregated per batch, per partition and
per rollout in any order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TypeVar

import numpy as np
from pydantic import BaseModel, Field
from scipy.spatial.distance import jensenshannon

__all__ = [
    "LATENCY_GAMMA",
    "Evidence",
    "VersionStats",
    "is_correct",
    "latency_histograms",
    "merge_all",
    "prediction_distance",
    "prediction_key",
]

_K = TypeVar("_K", int, str)

#: Ratio between consecutive latency bucket bounds; a quantile read from the
#: histogram is within ``(gamma - 1) / 2`` ≈ 2 % of the true value.
LATENCY_GAMMA = 1.04
_LOG_LATENCY_GAMMA = math.log(LATENCY_GAMMA)
_MIN_LATENCY_MS = 1e-3

#: Buckets for numeric predictions: about 10 % wide on a signed log scale.
_PRED_GAMMA = 1.1
_LOG_PRED_GAMMA = math.log(_PRED_GAMMA)
_PRED_ZERO = 1e-6
#: Most distinct class labels kept; the rest share one bucket.
MAX_LABELS = 100
_OTHER_LABEL = "c:~other"
#: Baseline-quantile bins numeric predictions are coarsened to before the
#: distance is taken, so sampling noise in sparse buckets does not look like drift.
DISTANCE_BINS = 10


def _latency_bucket(ms: float) -> int:
    if ms <= _MIN_LATENCY_MS:
        return math.ceil(math.log(_MIN_LATENCY_MS) / _LOG_LATENCY_GAMMA)
    return math.ceil(math.log(ms) / _LOG_LATENCY_GAMMA)


def _latency_value(bucket: int) -> float:
    # Midpoint (geometric) of the bucket (gamma^(i-1), gamma^i].
    return float(LATENCY_GAMMA ** (bucket - 0.5))


def prediction_key(prediction: float | str | list[float] | None) -> str | None:
    """The histogram bucket of one prediction, or None when there is none.

    Numbers fall in signed log buckets (``n:<index>``, ``n:0`` for ~0), class
    labels are kept as ``c:<label>`` and probability vectors count as their
    most likely class (``c:#<index>``).
    """
    if prediction is None:
        return None
    if isinstance(prediction, bool):
        return f"c:{prediction}"
    if isinstance(prediction, int | float):
        v = float(prediction)
        if math.isnan(v):
            return None
        if abs(v) < _PRED_ZERO:
            return "n:0"
        idx = math.ceil(math.log(min(abs(v), 1e300) / _PRED_ZERO) / _LOG_PRED_GAMMA)
        return f"n:{idx if v > 0 else -idx}"
    if isinstance(prediction, str):
        return f"c:{prediction}"
    if isinstance(prediction, list) and prediction:
        return f"c:#{int(np.argmax(prediction))}"
    return None


def is_correct(prediction: float | str | list[float] | None, label: float | int | str | bool) -> bool | None:
    """Whether a prediction matches its label, or None when that is not defined.

    Class labels compare as strings; probability vectors by their argmax; a
    score in [0, 1] against a 0/1 (or boolean) label is thresholded at 0.5.
    Regression outputs have no "correct" and give None.
    """
    if prediction is None:
        return None
    if isinstance(prediction, list):
        if not prediction:
            return None
        return str(int(np.argmax(prediction))) == _label_str(label)
    if isinstance(prediction, str):
        return prediction == _label_str(label)
    if isinstance(label, bool) or label in (0, 1):
        if 0.0 <= float(prediction) <= 1.0:
            return (float(prediction) >= 0.5) == bool(label)
        return None
    return None


def _label_str(label: float | int | str | bool) -> str:
    if isinstance(label, bool):
        return "1" if label else "0"
    if isinstance(label, float) and label.is_integer():
        return str(int(label))
    return str(label)


class VersionStats(BaseModel):
    """Aggregates of one version's live traffic. Mutable while it is being built."""

    requests: int = Field(default=0, ge=0)
    errors: int = Field(default=0, ge=0)
    latency: dict[int, int] = Field(
        default_factory=dict,
        description="log bucket index -> count (bucket i is (1.04^(i-1), 1.04^i] ms)",
    )
    predictions: dict[str, int] = Field(default_factory=dict, description="prediction bucket -> count")
    labelled: int = Field(default=0, ge=0)
    correct: int = Field(default=0, ge=0)

    # ------------------------------------------------------------------ building

    def record_prediction(
        self,
        *,
        error: bool,
        latency_ms: float | None = None,
        prediction: float | str | list[float] | None = None,
    ) -> None:
        """Count one served (or failed) request."""
        self.requests += 1
        if error:
            self.errors += 1
        if latency_ms is not None and latency_ms >= 0 and math.isfinite(latency_ms):
            b = _latency_bucket(latency_ms)
            self.latency[b] = self.latency.get(b, 0) + 1
        if not error:
            key = prediction_key(prediction)
            if key is not None:
                if key.startswith("c:") and key not in self.predictions:
                    labels = sum(1 for k in self.predictions if k.startswith("c:"))
                    if labels >= MAX_LABELS:
                        key = _OTHER_LABEL
                self.predictions[key] = self.predictions.get(key, 0) + 1

    def record_label(self, *, correct: bool) -> None:
        """Count one labelled prediction."""
        self.labelled += 1
        if correct:
            self.correct += 1

    def merge(self, other: VersionStats) -> VersionStats:
        """A new aggregate holding both; neither input changes."""
        return VersionStats(
            requests=self.requests + other.requests,
            errors=self.errors + other.errors,
            latency=_add(self.latency, other.latency),
            predictions=_add(self.predictions, other.predictions),
            labelled=self.labelled + other.labelled,
            correct=self.correct + other.correct,
        )

    # ------------------------------------------------------------------ reading

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None

    @property
    def latency_count(self) -> int:
        return sum(self.latency.values())

    def latency_quantile(self, q: float) -> float | None:
        """The ``q``-quantile of latency in milliseconds, or None without observations."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must be in [0, 1], got {q}")
        total = self.latency_count
        if total == 0:
            return None
        rank = q * (total - 1)
        seen = 0
        for bucket in sorted(self.latency):
            seen += self.latency[bucket]
            if seen > rank:
                return _latency_value(bucket)
        return _latency_value(max(self.latency))  # pragma: no cover - rounding guard


def latency_histograms(a: VersionStats, b: VersionStats) -> tuple[list[int], list[int]]:
    """Both latency histograms over their union of buckets, in latency order."""
    buckets = sorted(set(a.latency) | set(b.latency))
    return [a.latency.get(k, 0) for k in buckets], [b.latency.get(k, 0) for k in buckets]


def prediction_distance(baseline: VersionStats, candidate: VersionStats) -> float | None:
    """Jensen-Shannon distance (base 2, in [0, 1]) between the prediction distributions.

    Numeric predictions are first grouped into :data:`DISTANCE_BINS` bins at
    the baseline's quantiles; labels are compared as they are. None when
    either side has no predictions.
    """
    if not baseline.predictions or not candidate.predictions:
        return None
    numeric = sorted(
        {k for k in (*baseline.predictions, *candidate.predictions) if k.startswith("n:")},
        key=lambda k: int(k[2:]),
    )
    labels = sorted({k for k in (*baseline.predictions, *candidate.predictions) if not k.startswith("n:")})
    p: list[float] = []
    q: list[float] = []
    if numeric:
        base_counts = np.array([baseline.predictions.get(k, 0) for k in numeric], dtype=np.float64)
        cand_counts = np.array([candidate.predictions.get(k, 0) for k in numeric], dtype=np.float64)
        total = base_counts.sum()
        if total > 0:
            cum = np.cumsum(base_counts) / total
            group = np.minimum((cum * DISTANCE_BINS - 1e-9).astype(np.int64), DISTANCE_BINS - 1)
            group = np.maximum.accumulate(np.maximum(group, 0))
        else:
            group = np.zeros(len(numeric), dtype=np.int64)
        p.extend(np.bincount(group, weights=base_counts, minlength=DISTANCE_BINS).tolist())
        q.extend(np.bincount(group, weights=cand_counts, minlength=DISTANCE_BINS).tolist())
    for k in labels:
        p.append(float(baseline.predictions.get(k, 0)))
        q.append(float(candidate.predictions.get(k, 0)))
    if sum(p) == 0 or sum(q) == 0:
        return None
    return float(jensenshannon(p, q, base=2.0))


def _add(a: Mapping[_K, int], b: Mapping[_K, int]) -> dict[_K, int]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


class Evidence(BaseModel):
    """The two sides an analysis compares, cumulative since the rollout (attempt) began."""

    baseline: VersionStats = Field(default_factory=VersionStats)
    candidate: VersionStats = Field(default_factory=VersionStats)


def merge_all(stats: Iterable[VersionStats]) -> VersionStats:
    out = VersionStats()
    for s in stats:
        out = out.merge(s)
    return out
