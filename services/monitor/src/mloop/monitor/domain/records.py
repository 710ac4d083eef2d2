"""What the monitor's decisions take in and give out.

Inputs: a :class:`PredictionBatch` of one (model, version) as columns, and
:class:`LabelledPrediction` pairs. Outputs: an :class:`Outcome` of evaluated
windows (:class:`WindowResult`, what the history API lists) and events to
publish (:class:`Emission`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np

from mloop.contracts.payloads import Payload, PredictionRecord, Severity, Window

__all__ = [
    "PREDICTION",
    "Emission",
    "LabelledPrediction",
    "Outcome",
    "PredictionBatch",
    "ReferenceSource",
    "Signal",
    "WindowResult",
    "as_datetime",
    "reference_kinds",
]

Signal = Literal["data", "prediction", "quality", "performance"]
ReferenceSource = Literal["training-profile", "first-predictions"]
#: The name the prediction goes by among the features of a profile, a window and the quality checks.
PREDICTION = "prediction"


@dataclass(frozen=True)
class PredictionBatch:
    """Records of one (model, version) read from one partition, in offset order, as columns."""

    request_ids: list[str]
    timestamps: np.ndarray[Any, np.dtype[np.float64]]
    features: list[dict[str, Any]]
    predictions: list[Any]
    errors: int = 0
    partition: int = 0
    """The partition the records were read from (its event-time watermark moves with them)."""
    partitions: tuple[int, ...] = ()
    """Every partition that carries the model's traffic (empty: ``partition`` alone)."""

    @classmethod
    def from_records(cls, records: Sequence[PredictionRecord]) -> PredictionBatch:
        return cls(
            [r.request_id for r in records],
            np.fromiter((r.timestamp.timestamp() for r in records), dtype=np.float64, count=len(records)),
            [r.features for r in records],
            [r.prediction for r in records],
            sum(1 for r in records if r.error),
        )

    def __len__(self) -> int:
        return len(self.request_ids)

    def slice(self, start: int, stop: int) -> PredictionBatch:
        return PredictionBatch(
            self.request_ids[start:stop], self.timestamps[start:stop], self.features[start:stop],
            self.predictions[start:stop], 0, self.partition, self.partitions,
        )

    def take(self, index: np.ndarray[Any, np.dtype[np.int64]]) -> PredictionBatch:
        """The rows at ``index`` (in that order); serving errors are counted by the caller."""
        ids, feats, preds = self.request_ids, self.features, self.predictions
        return PredictionBatch(
            [ids[i] for i in index], self.timestamps[index], [feats[i] for i in index],
            [preds[i] for i in index], 0, self.partition, self.partitions,
        )


@dataclass(frozen=True)
class LabelledPrediction:
    """A prediction joined with its ground truth."""

    request_id: str
    prediction: Any
    label: Any
    predicted_at: float
    labelled_at: float


@dataclass(frozen=True)
class WindowResult:
    """One evaluated window of one signal: what the history API lists."""

    signal: Signal
    window_no: int
    window: Window
    alarm: bool
    severity: Severity | None
    evidence: dict[str, Any]


@dataclass(frozen=True)
class Emission:
    """An event to publish through the outbox."""

    topic: str
    payload: Payload
    window_no: int = 0


@dataclass
class Outcome:
    results: list[WindowResult] = field(default_factory=list)
    emissions: list[Emission] = field(default_factory=list)

    def extend(self, other: Outcome) -> None:
        self.results.extend(other.results)
        self.emissions.extend(other.emissions)


def as_datetime(ts: float | None) -> datetime:
    """An event time in seconds as an aware datetime (the epoch when unknown)."""
    return datetime.fromtimestamp(ts if ts is not None else 0.0, UTC)


def reference_kinds(schema: Sequence[Mapping[str, Any]]) -> dict[str, Literal["numeric", "categorical"]]:
    """Feature kinds from a registered feature schema (``lineage.features.schema``)."""
    out: dict[str, Literal["numeric", "categorical"]] = {}
    for f in schema:
        out[str(f["name"])] = "numeric" if f.get("type") in ("number", "integer") else "categorical"
    return out
