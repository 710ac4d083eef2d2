"""The monitor's decisions, pure: no Kafka, no SQL.

One :class:`VersionMonitor` watches one (model, version):

* **Reference.** The training-data profile from ``model-registered``, or,
  without one, a profile of the version's first ``reference_size``
  predictions.
* **Windows.** Traffic is counted into the reference's bins pane by pane
  (see ``windows.py``); tumbling or sliding, by row count or event time.
  When a pane closes, the window it completes is evaluated.
* **Verdicts** per window: data drift and prediction drift (``mloop.stats``
  tests with correction and an effect-size floor), data quality (missing
  rates, NaN/inf, type errors, out-of-range values, unseen categories,
  schema skew); per window of joined labels: performance against the
  registered metrics plus a Page-Hinkley detector on the loss.
* **Hysteresis.** An incident opens (one event) on the first alarming window,
  stays open while windows keep alarming, and resolves (``incident-resolved``)
  after ``resolve_after_windows`` clean windows in a row.

Every decision depends only on the records and their order, never on the
wall clock or on how the records were batched, so replaying from stored
offsets reproduces it exactly.
"""

from __future__ import annotations

import math
import operator
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, model_validator

from mloop.contracts.payloads import (
    DataQualityViolated,
    DriftDetected,
    FeatureDriftResult,
    IncidentResolved,
    Payload,
    PerformanceDegraded,
    PredictionRecord,
    QualityViolation,
    ReferenceInfo,
    Severity,
    Window,
)
from mloop.monitor.performance import (
    compute_metrics,
    direction,
    loss_of,
    loss_scale,
    regression_standard_error,
    score_of,
    task_of,
)
from mloop.monitor.windows import (
    CategoricalCounts,
    NumericCounts,
    Pane,
    merge_panes,
    numeric_column,
    window_profile,
)
from mloop.stats.changepoint import PageHinkley
from mloop.stats.drift import (
    Correction,
    DriftConfig,
    DriftReport,
    FeatureDrift,
    Method,
    detect_drift,
    drift_severity,
)
from mloop.stats.profile import CategoricalProfile, NumericProfile, ReferenceProfile

__all__ = [
    "DriftSettings",
    "Emission",
    "LabelledPrediction",
    "MonitorConfig",
    "Outcome",
    "PerformanceSettings",
    "PredictionBatch",
    "QualitySettings",
    "ReferenceSource",
    "Signal",
    "VersionMonitor",
    "WindowResult",
    "WindowSettings",
    "reference_kinds",
]

Signal = Literal["data", "prediction", "quality", "performance"]
ReferenceSource = Literal["training-profile", "first-predictions"]
_TOPIC_OF: dict[Signal, Literal["drift-detected", "performance-degraded", "data-quality-violated"]] = {
    "data": "drift-detected",
    "prediction": "drift-detected",
    "quality": "data-quality-violated",
    "performance": "performance-degraded",
}
_INCIDENT_NS = uuid.UUID("0c6f2d4e-8a51-4f57-9d0e-5b1c3a7e2f90")
_SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2}
PREDICTION = "prediction"
_NO_PRIORITIES = np.empty(0)


# --------------------------------------------------------------------------- configuration


#: A sliding window is cut into at most this many panes: each row lands in every pane's window.
MAX_PANES = 100
_MAX_SECONDS = 30 * 86400.0


class WindowSettings(BaseModel):
    """How traffic is cut into windows (at most ``MAX_PANES`` panes per sliding window)."""

    mode: Literal["tumbling", "sliding"] = "tumbling"
    by: Literal["count", "time"] = "count"
    size: int = Field(2000, ge=10, le=1_000_000, description="Rows per window (by count)")
    slide: int | None = Field(None, ge=1, le=1_000_000,
                              description="Rows per step of a sliding window; divides size")
    seconds: float = Field(3600.0, gt=0, le=_MAX_SECONDS, description="Event-time span of a window (by time)")
    slide_seconds: float | None = Field(None, gt=0, le=_MAX_SECONDS,
                                        description="Step of a sliding time window; divides seconds")
    min_rows: int = Field(100, ge=2, le=1_000_000, description="A time window with fewer rows is not evaluated")

    @model_validator(mode="after")
    def _slides_divide(self) -> WindowSettings:
        if self.mode == "sliding":
            if self.by == "count":
                slide = self.slide or self.size // 4
                if slide < 1 or self.size % slide:
                    raise ValueError("slide must divide size")
                if self.size // slide > MAX_PANES:
                    raise ValueError(f"slide must be at least size / {MAX_PANES}")
            else:
                step = self.slide_seconds or self.seconds / 4
                ratio = self.seconds / step
                if abs(ratio - round(ratio)) > 1e-9:
                    raise ValueError("slide_seconds must divide seconds")
                if ratio > MAX_PANES:
                    raise ValueError(f"slide_seconds must be at least seconds / {MAX_PANES}")
        return self

    @property
    def panes_per_window(self) -> int:
        if self.mode == "tumbling":
            return 1
        if self.by == "count":
            return self.size // (self.slide or self.size // 4)
        return round(self.seconds / (self.slide_seconds or self.seconds / 4))

    @property
    def pane_rows(self) -> int:
        return self.size // self.panes_per_window

    @property
    def pane_seconds(self) -> float:
        return self.seconds / self.panes_per_window


class DriftSettings(BaseModel):
    """Drift tests (see ``mloop.stats.drift.DriftConfig``)."""

    alpha: float = Field(0.01, gt=0, lt=1, description="Family-wise false-alarm rate of one window")
    correction: Correction = "bh"
    methods: dict[str, Method] = Field(
        default_factory=dict, description="Per feature, a drift method of mloop.stats.drift (default: omnibus)")
    min_shift: float = Field(0.05, ge=0, description="Effect floor: location shift in reference standard deviations")
    min_log_scale: float = Field(0.05, ge=0, description="Effect floor: |log| of the standard-deviation ratio")
    min_mass: float = Field(0.025, ge=0, description="Effect floor: share of probability mass moved")
    min_missing: float = Field(0.01, ge=0, description="Effect floor: change of the missing share")
    min_psi: float = Field(0.02, ge=0, description="Effect floor of the psi and js methods")
    min_wasserstein: float = Field(0.1, ge=0)
    small_window_rows: int = Field(0, ge=0, le=1_000_000,
                                   description="Below this many values numeric features use KS on "
                                   "samples (0: never)")
    sample_size: int = Field(1000, ge=0, le=20_000, description="Values kept per numeric feature per window "
                             "for the sample tests (KS, Cramér-von Mises, Wasserstein)")

    def config(self) -> DriftConfig:
        return DriftConfig(
            alpha=self.alpha, correction=self.correction, methods=dict(self.methods), min_shift=self.min_shift,
            min_log_scale=self.min_log_scale, min_mass=self.min_mass, min_missing=self.min_missing,
            min_psi=self.min_psi, min_wasserstein=self.min_wasserstein, small_window_rows=self.small_window_rows,
            prediction_name=PREDICTION,
        )


    def samples_needed(self, window: WindowSettings) -> int:
        """How many values a window must keep per numeric feature.

        None when every numeric test runs on binned counts: a count window at
        least ``small_window_rows`` long with no sample method configured.
        """
        sample_methods = {"ks", "cvm", "wasserstein"}
        no_ks_fallback = self.small_window_rows == 0 or (
            window.by == "count" and window.size >= self.small_window_rows)
        if no_ks_fallback and not set(self.methods.values()) & sample_methods:
            return 0
        return self.sample_size


class QualitySettings(BaseModel):
    """Rates above which a window violates data quality."""

    max_missing_increase: float = Field(0.1, ge=0, le=1, description="Over the reference's missing rate")
    max_invalid_rate: float = Field(0.01, ge=0, le=1, description="NaN/inf values")
    max_type_error_rate: float = Field(0.01, ge=0, le=1)
    max_out_of_range_rate: float = Field(0.05, ge=0, le=1)
    range_margin: float = Field(0.1, ge=0, description="Share of the reference range tolerated outside it")
    max_unseen_increase: float = Field(0.1, ge=0, le=1, description="Over the reference's 'other' share")
    max_schema_mismatch_rate: float = Field(0.01, ge=0, le=1)


class PerformanceSettings(BaseModel):
    window_labels: int = Field(200, ge=10, le=1_000_000, description="Joined labels per performance window")
    tolerance: float = Field(0.1, ge=0, description="Relative degradation of a registered metric that alarms")
    label_horizon_s: float = Field(7 * 86400.0, gt=0, le=366 * 86400.0,
                                   description="How late a label may arrive and still join")
    # Page-Hinkley works on the per-prediction loss (0/1 error, or absolute
    # error), rescaled to the spread of a 0/1 error at a 14% error rate when
    # its in-control spread is wider (``performance.loss_scale``). Calibrated
    # by simulation: on clean traffic under 5% of streams of 5,000 labels
    # alarm, and an accuracy drop from 0.85 to 0.75 is caught within 800
    # labels in more than 95% of streams.
    page_hinkley_delta: float = Field(0.025, ge=0, description="Tolerated increase of the loss (0/1 error, or "
                                      "absolute error rescaled to the spread of a 0/1 error)")
    page_hinkley_threshold: float = Field(20.0, gt=0, description="Alarm level of the cumulative increase")
    page_hinkley_min_samples: int = Field(200, ge=1, le=1_000_000_000,
                                          description="Labels before the detector may alarm")
    # Regression errors can be heavy-tailed: one huge error would move a detector on the raw
    # absolute error as much as a real degradation. Capping them at a few in-control medians keeps
    # nearly all the information about a change of scale (a 20 % rise of the mean absolute error moves
    # the capped loss by 0.18 standard deviations for Student-t(3) errors, against 0.17 uncapped) and
    # bounds what one error can do. Calibrated by simulation on Student-t(3) errors: under 1 % of
    # clean streams of 5,000 labels alarm, a 20 % rise of the mean absolute error is caught within
    # 2,000 labels in 95 % of streams.
    regression_clip: float = Field(3.0, gt=0, description="Absolute errors are capped at this multiple of the "
                                   "first window's median absolute error before the sequential detector")
    regression_page_hinkley_delta: float = Field(0.0125, ge=0, description="Page-Hinkley delta for regression")
    regression_page_hinkley_threshold: float = Field(32.0, gt=0, description="Page-Hinkley threshold for "
                                                     "regression")
    significance_z: float = Field(3.0, ge=0, description="A regression metric (mae, mse, rmse) alarms only when "
                                  "past its threshold by this many of the window's standard errors")


class MonitorConfig(BaseModel):
    """Thresholds and windows of one model (every version)."""

    window: WindowSettings = Field(default_factory=WindowSettings)
    reference_size: int = Field(1000, ge=50, le=100_000, description="First predictions taken as the "
                                "reference when no training profile was registered")
    drift: DriftSettings = Field(default_factory=DriftSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    performance: PerformanceSettings = Field(default_factory=PerformanceSettings)
    resolve_after_windows: int = Field(2, ge=1, le=1000,
                                       description="Clean windows in a row that resolve an incident")


# --------------------------------------------------------------------------- inputs and outputs


@dataclass(frozen=True)
class PredictionBatch:
    """Records of one (model, version) in arrival order, as columns."""

    request_ids: list[str]
    timestamps: np.ndarray[Any, np.dtype[np.float64]]
    features: list[dict[str, Any]]
    predictions: list[Any]
    errors: int = 0

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
            self.predictions[start:stop], 0,
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


@dataclass
class Incident:
    id: str
    signal: Signal
    opened_at: float
    opened_window: int
    clean_windows: int = 0


def _dt(ts: float | None) -> datetime:
    return datetime.fromtimestamp(ts if ts is not None else 0.0, UTC)


def reference_kinds(schema: Sequence[Mapping[str, Any]]) -> dict[str, Literal["numeric", "categorical"]]:
    """Feature kinds from a registered feature schema (``lineage.features.schema``)."""
    out: dict[str, Literal["numeric", "categorical"]] = {}
    for f in schema:
        out[str(f["name"])] = "numeric" if f.get("type") in ("number", "integer") else "categorical"
    return out


# --------------------------------------------------------------------------- the monitor


@dataclass
class VersionMonitor:
    """Windows, reference and open incidents of one (model, version)."""

    model: str
    version: str
    schema: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    reference: ReferenceProfile | None = None
    reference_source: ReferenceSource = "first-predictions"
    reference_changed: bool = False
    bootstrap: dict[str, list[Any]] = field(default_factory=dict)
    bootstrap_rows: int = 0
    panes: list[Pane] = field(default_factory=list)
    open_pane: Pane | None = None
    window_no: int = 0
    incidents: dict[str, Incident] = field(default_factory=dict)
    predictions_seen: int = 0
    serving_errors: int = 0
    labels_joined: int = 0
    perf_pairs: list[list[Any]] = field(default_factory=list)
    perf_window_no: int = 0
    page_hinkley: PageHinkley | None = None
    loss_unit: float | None = None
    loss_cap: float | None = None
    window_signature: str = ""

    # -- reference -------------------------------------------------------------------

    def set_training_profile(self, profile: ReferenceProfile) -> None:
        """Use a registered training profile as the reference; windows start afresh."""
        self.reference = profile
        self.reference_source = "training-profile"
        self.reference_changed = True
        self.bootstrap, self.bootstrap_rows = {}, 0
        self.panes, self.open_pane = [], None

    def _build_reference_from_bootstrap(self) -> None:
        kinds = reference_kinds(self.schema)
        preds = self.bootstrap.pop(PREDICTION, [])
        columns = {name: np.asarray(vals, dtype=object) for name, vals in self.bootstrap.items()}
        for name in kinds:
            columns.setdefault(name, np.full(self.bootstrap_rows, None, dtype=object))
        scores = [score_of(p) for p in preds]
        has_pred = any(s is not None for s in scores)
        pred_kind: Literal["numeric", "categorical"] = (
            "categorical" if any(isinstance(s, str) for s in scores) else "numeric"
        )
        self.reference = ReferenceProfile.from_columns(
            columns,
            {k: v for k, v in kinds.items() if k in columns},
            prediction=np.asarray(scores, dtype=object) if has_pred else None,
            prediction_kind=pred_kind if has_pred else None,
        )
        self.reference_source = "first-predictions"
        self.reference_changed = True
        self.bootstrap, self.bootstrap_rows = {}, 0

    def _collect_bootstrap(self, batch: PredictionBatch) -> None:
        names = set(self.bootstrap) - {PREDICTION}
        for f in batch.features:
            names.update(f)
        names.update(reference_kinds(self.schema))
        for name in names:
            column = self.bootstrap.setdefault(name, [None] * self.bootstrap_rows)
            column.extend(f.get(name) for f in batch.features)
        self.bootstrap.setdefault(PREDICTION, []).extend(batch.predictions)
        self.bootstrap_rows += len(batch)

    # -- predictions -----------------------------------------------------------------

    def observe(self, batch: PredictionBatch, config: MonitorConfig) -> Outcome:
        """Count a batch of predictions; evaluate every window it completes."""
        self._apply_window_settings(config)
        out = Outcome()
        self.predictions_seen += len(batch)
        self.serving_errors += batch.errors
        pos, n = 0, len(batch)
        while pos < n:
            if self.reference is None:
                take = min(n - pos, config.reference_size - self.bootstrap_rows)
                self._collect_bootstrap(batch.slice(pos, pos + take))
                pos += take
                if self.bootstrap_rows >= config.reference_size:
                    self._build_reference_from_bootstrap()
                continue
            pane = self._current_pane(batch.timestamps[pos], config)
            if config.window.by == "count":
                take = min(n - pos, config.window.pane_rows - pane.rows)
                full = pane.rows + take >= config.window.pane_rows
            else:
                keys = np.floor(batch.timestamps[pos:] / config.window.pane_seconds)
                later = np.nonzero(keys > (pane.key if pane.key is not None else keys[0]))[0]
                take = int(later[0]) if later.size else n - pos
                full = bool(later.size)
            if take:
                self._add(pane, batch.slice(pos, pos + take), config)
                pos += take
            if full:
                next_key = (
                    int(np.floor(batch.timestamps[pos] / config.window.pane_seconds))
                    if config.window.by == "time" else None
                )
                out.extend(self._close_pane(config, next_key))
        return out

    def _apply_window_settings(self, config: MonitorConfig) -> None:
        signature = config.window.model_dump_json()
        if signature != self.window_signature:
            # Windows cut another way cannot continue the old ones.
            self.panes, self.open_pane = [], None
            self.window_signature = signature

    def _current_pane(self, first_ts: float, config: MonitorConfig) -> Pane:
        if self.open_pane is None:
            assert self.reference is not None
            key = int(np.floor(first_ts / config.window.pane_seconds)) if config.window.by == "time" else None
            number = self.panes[-1].number + 1 if self.panes else 0
            self.open_pane = Pane.open(number, self.reference, key)
        return self.open_pane

    def _add(self, pane: Pane, batch: PredictionBatch, config: MonitorConfig) -> None:
        assert self.reference is not None
        n = len(batch)
        q = config.drift.samples_needed(config.window) // max(config.window.panes_per_window, 1)
        names = list(self.reference.features)
        required = {str(f["name"]) for f in self.schema if not f.get("optional")}
        columns = _exact_columns(batch.features, names) if required <= set(names) else None
        if columns is None:
            known = set(names) | {str(f["name"]) for f in self.schema}
            for feats in batch.features:
                keys = feats.keys()
                if not keys <= known:
                    for k in keys - known:
                        pane.unexpected[k] = pane.unexpected.get(k, 0) + 1
                if required and not required <= keys:
                    for k in required - keys:
                        pane.absent[k] = pane.absent.get(k, 0) + 1
            # One pass over the records (C-level lookups), then one column per feature.
            columns = list(zip(*(tuple(map(f.get, names)) for f in batch.features), strict=True)) if names else []
        for i, (name, ref) in enumerate(self.reference.features.items()):
            raw = columns[i]
            counts = pane.features[name]
            if isinstance(ref, NumericProfile) and isinstance(counts, NumericCounts):
                counts.add(ref, numeric_column(raw), pane.priorities(i, n) if q else _NO_PRIORITIES, q,
                           config.quality.range_margin)
            elif isinstance(ref, CategoricalProfile) and isinstance(counts, CategoricalCounts):
                counts.add(_category_index(ref), raw)
        rp, pc = self.reference.prediction, pane.prediction
        if rp is not None and pc is not None:
            scores = [p if type(p) is float else score_of(p) for p in batch.predictions]
            if isinstance(rp, NumericProfile) and isinstance(pc, NumericCounts):
                pc.add(rp, numeric_column(scores), pane.priorities(len(names), n) if q else _NO_PRIORITIES, q,
                       config.quality.range_margin)
            elif isinstance(rp, CategoricalProfile) and isinstance(pc, CategoricalCounts):
                pc.add(_category_index(rp), scores)
        lo, hi = float(batch.timestamps.min()), float(batch.timestamps.max())
        pane.start = lo if pane.start is None else min(pane.start, lo)
        pane.end = hi if pane.end is None else max(pane.end, hi)
        pane.rows += n
        pane.serving_errors += batch.errors

    def _close_pane(self, config: MonitorConfig, next_key: int | None) -> Outcome:
        assert self.open_pane is not None
        closed = self.open_pane
        self.panes.append(closed)
        self.open_pane = None
        k = config.window.panes_per_window
        if config.window.by == "time":
            assert closed.key is not None
            members = [p for p in self.panes if p.key is not None and p.key > closed.key - k]
            ready = sum(p.rows for p in members) >= config.window.min_rows
        else:
            members = self.panes[-k:]
            ready = len(members) == k
        self.panes = members[-(k - 1):] if k > 1 else []
        if next_key is not None and self.panes:
            self.panes = [p for p in self.panes if p.key is not None and p.key > next_key - k]
        if not ready:
            return Outcome()
        self.window_no += 1
        return self._evaluate(merge_panes(members), config)

    # -- verdicts ----------------------------------------------------------------------

    def _evaluate(self, window: Pane, config: MonitorConfig) -> Outcome:
        assert self.reference is not None
        out = Outcome()
        span = Window(start=_dt(window.start), end=_dt(window.end), size=window.rows)
        current = window_profile(self.reference, window, config.drift.sample_size)
        drift_config = config.drift.config()
        report = detect_drift(self.reference, current, drift_config)
        distributions = _distributions(window)
        for signal in ("data", "prediction"):
            if signal == "prediction" and report.prediction is None:
                continue
            alarm = report.data_drifted if signal == "data" else report.prediction_drifted
            cols: list[FeatureDrift] = list(report.features)
            missing: list[FeatureDrift] = list(report.missing) if signal == "data" else []
            if signal == "prediction":
                assert report.prediction is not None
                cols = [report.prediction]
            severity = drift_severity([*cols, *missing], len(cols), drift_config) if alarm else None
            evidence = {
                "features": [c.to_dict() for c in cols],
                "missing": [c.to_dict() for c in missing],
                "correction": report.correction,
                "alpha": report.alpha,
                "reference_rows": report.reference_rows,
                "skipped": dict(report.skipped),
                "distributions": {c.name: distributions.get(c.name) for c in cols},
            }
            result = WindowResult(signal, self.window_no, span, alarm, severity, evidence)
            out.results.append(result)
            out.emissions.extend(self._track(result, config, lambda iid, r=result, c=[*cols, *missing], rep=report:
                                             self._drift_event(r, c, rep, iid)))
        violations = self._quality(window, config)
        q_severity = _quality_severity(violations, window.rows) if violations else None
        q_result = WindowResult("quality", self.window_no, span, bool(violations), q_severity,
                                {"violations": [v.model_dump() for v in violations], "rows": window.rows,
                                 "serving_errors": window.serving_errors})
        out.results.append(q_result)
        out.emissions.extend(self._track(q_result, config, lambda iid: DataQualityViolated(
            model=self.model, version=self.version, severity=q_severity or "low", window=span,
            violations=violations, incident_id=iid)))
        return out

    def _drift_event(self, result: WindowResult, cols: Sequence[FeatureDrift], report: DriftReport,
                     incident_id: str) -> DriftDetected:
        assert self.reference is not None
        return DriftDetected(
            model=self.model,
            version=self.version,
            kind=result.signal,
            severity=result.severity or "low",
            window=result.window,
            reference=ReferenceInfo(kind=self.reference_source, size=self.reference.row_count),
            features=[
                FeatureDriftResult(
                    name=c.name, method=c.method, statistic=_finite(c.statistic), p_value=c.p_value,
                    threshold=_finite(c.threshold), drifted=c.drifted, effect_size=_finite(c.effect_size),
                    kind=c.kind,
                )
                for c in cols
            ],
            incident_id=incident_id,
            correction={"bh": "benjamini-hochberg", "bonferroni": "bonferroni"}.get(report.correction, "none"),
        )

    def _quality(self, window: Pane, config: MonitorConfig) -> list[QualityViolation]:
        assert self.reference is not None
        qs = config.quality
        rows = max(window.rows, 1)
        found: list[QualityViolation] = []
        for name, ref in self.reference.features.items():
            c = window.features[name]
            if isinstance(c, NumericCounts):
                checks = [
                    ("missing-rate", c.missing / rows, ref.missing_rate + qs.max_missing_increase),
                    ("invalid-value", c.invalid / rows, qs.max_invalid_rate),
                    ("type-error", c.type_errors / rows, qs.max_type_error_rate),
                    ("out-of-range", c.out_of_range / max(c.moments.n, 1), qs.max_out_of_range_rate),
                ]
            else:
                assert isinstance(ref, CategoricalProfile)
                valid = max(int(c.counts.sum()) + c.other, 1)
                ref_other = ref.other / max(ref.valid, 1)
                checks = [
                    ("missing-rate", c.missing / rows, ref.missing_rate + qs.max_missing_increase),
                    ("unseen-category", c.other / valid, ref_other + qs.max_unseen_increase),
                ]
            for kind, value, threshold in checks:
                if value > threshold:
                    found.append(QualityViolation(kind=kind, feature=name, value=value,
                                                  threshold=threshold, detail=_QUALITY_DETAIL[kind]))
        for name, count in sorted(window.unexpected.items()):
            if count / rows > qs.max_schema_mismatch_rate:
                found.append(QualityViolation(kind="schema-mismatch", feature=name, value=count / rows,
                                              threshold=qs.max_schema_mismatch_rate,
                                              detail="served but not in the registered schema or reference"))
        for name, count in sorted(window.absent.items()):
            if count / rows > qs.max_schema_mismatch_rate:
                found.append(QualityViolation(kind="schema-mismatch", feature=name, value=count / rows,
                                              threshold=qs.max_schema_mismatch_rate,
                                              detail="required by the registered schema but not served"))
        pc = window.prediction
        if isinstance(pc, NumericCounts) and (pc.invalid + pc.type_errors) / rows > qs.max_invalid_rate:
            found.append(QualityViolation(kind="invalid-value", feature=PREDICTION,
                                          value=(pc.invalid + pc.type_errors) / rows,
                                          threshold=qs.max_invalid_rate, detail="prediction is NaN, inf or no number"))
        return found

    def _track(self, result: WindowResult, config: MonitorConfig, make_event: Any) -> list[Emission]:
        """Hysteresis: open an incident once, resolve it after enough clean windows."""
        open_incident = self.incidents.get(result.signal)
        if result.alarm:
            if open_incident is not None:
                open_incident.clean_windows = 0
                return []
            iid = str(uuid.uuid5(_INCIDENT_NS, f"{self.model}/{self.version}/{result.signal}/{result.window_no}"))
            self.incidents[result.signal] = Incident(iid, result.signal, result.window.end.timestamp(),
                                                     result.window_no)
            result.evidence["incident_id"] = iid
            return [Emission(_TOPIC_OF[result.signal], make_event(iid), result.window_no)]
        if open_incident is None:
            return []
        open_incident.clean_windows += 1
        if open_incident.clean_windows < config.resolve_after_windows:
            return []
        del self.incidents[result.signal]
        result.evidence["resolved_incident_id"] = open_incident.id
        return [Emission("incident-resolved", IncidentResolved(
            model=self.model, version=self.version, incident_id=open_incident.id,
            signal=_TOPIC_OF[result.signal], opened_at=_dt(open_incident.opened_at),
            kind=result.signal if result.signal in ("data", "prediction") else None,
            resolved_at=result.window.end), result.window_no)]

    # -- ground truth ----------------------------------------------------------------------

    def observe_labels(self, joined: Iterable[LabelledPrediction], config: MonitorConfig) -> Outcome:
        """Add predictions joined with their labels; evaluate each full performance window."""
        ps = config.performance
        out = Outcome()
        for j in joined:
            self.labels_joined += 1
            self.perf_pairs.append([j.prediction, j.label, j.predicted_at])
            if len(self.perf_pairs) >= ps.window_labels:
                out.extend(self._evaluate_performance(config))
        return out

    def _evaluate_performance(self, config: MonitorConfig) -> Outcome:
        ps = config.performance
        pairs, self.perf_pairs = self.perf_pairs, []
        self.perf_window_no += 1
        task, values = compute_metrics([(p, y) for p, y, _ in pairs])
        scores = [score_of(p) for p, _, _ in pairs]
        labelled = [(s, y) for s, (_, y, _) in zip(scores, pairs, strict=True) if s is not None and y is not None]
        ph_alarm = False
        if labelled:
            t = task_of([s for s, _ in labelled], [y if isinstance(y, str) else float(y) for _, y in labelled])
            losses = [loss_of(t, s, y if isinstance(y, str) else float(y)) for s, y in labelled]
            if t == "regression":
                # The cap is fixed once, from the first window, like the unit below.
                if self.loss_cap is None:
                    median = float(np.median(losses))
                    self.loss_cap = ps.regression_clip * median if median > 0 else 1e308
                cap = self.loss_cap
                losses = [x if x < cap else cap for x in losses]
            # The unit is fixed once, from the registered metrics or the first window of labels
            # (for capped regression losses always the window: registered metrics are uncapped).
            if self.loss_unit is None:
                self.loss_unit = loss_scale(t, losses, {} if t == "regression" else self.metrics)
            scale = self.loss_unit
            if self.page_hinkley is None:
                regression = t == "regression"
                self.page_hinkley = PageHinkley(
                    delta=ps.regression_page_hinkley_delta if regression else ps.page_hinkley_delta,
                    threshold=ps.regression_page_hinkley_threshold if regression else ps.page_hinkley_threshold,
                    min_samples=ps.page_hinkley_min_samples, direction="increase")
            update = self.page_hinkley.update
            for x in losses:
                ph_alarm |= update(x / scale)
        times = [ts for _, _, ts in pairs]
        span = Window(start=_dt(min(times)), end=_dt(max(times)), size=len(pairs))
        degraded: list[dict[str, Any]] = []
        errors = ([float(s) - float(y) for s, y in labelled if not isinstance(s, str) and not isinstance(y, str)]
                  if task == "regression" else [])
        for metric, baseline in self.metrics.items():
            value = values.get(metric)
            if value is None or not math.isfinite(baseline):
                continue
            margin = ps.tolerance * (abs(baseline) if baseline else 1.0)
            higher = direction(metric)
            # A noisy window past the threshold by chance is not a degradation.
            margin += ps.significance_z * regression_standard_error(metric, value, errors)
            if higher is True and value < baseline - margin:
                degraded.append({"metric": metric, "value": value, "baseline": baseline,
                                 "threshold": baseline - margin, "drop": (baseline - value) / max(margin, 1e-12)})
            elif higher is False and value > baseline + margin:
                degraded.append({"metric": metric, "value": value, "baseline": baseline,
                                 "threshold": baseline + margin, "drop": (value - baseline) / max(margin, 1e-12)})
        if self.page_hinkley is None:
            self.page_hinkley = PageHinkley(delta=ps.page_hinkley_delta, threshold=ps.page_hinkley_threshold,
                                            min_samples=ps.page_hinkley_min_samples, direction="increase")
        ph = self.page_hinkley
        alarm = bool(degraded) or ph_alarm
        worst = max(degraded, key=lambda d: d["drop"]) if degraded else None
        severity: Severity | None = None
        if worst is not None:
            severity = "high" if worst["drop"] >= 3 else "medium" if worst["drop"] >= 2 else "low"
        elif ph_alarm:
            severity = "medium"
        evidence = {"task": task, "metrics": values, "baseline": dict(self.metrics), "degraded": degraded,
                    "page_hinkley": {"statistic": ph.statistic, "threshold": ph.threshold, "alarm": ph_alarm,
                                     "alarms": ph.alarms}}
        result = WindowResult("performance", self.perf_window_no, span, alarm, severity, evidence)

        def event(iid: str) -> PerformanceDegraded:
            if worst is not None:
                return PerformanceDegraded(
                    model=self.model, version=self.version, metric=worst["metric"], value=worst["value"],
                    baseline=worst["baseline"], threshold=worst["threshold"], severity=severity or "low",
                    window=span, detector="threshold", incident_id=iid)
            metric = "error_rate" if task != "regression" else "mae"
            return PerformanceDegraded(
                model=self.model, version=self.version, metric=metric, value=values.get(metric, math.nan),
                baseline=self.metrics.get(metric), threshold=ph.threshold, severity=severity or "medium",
                window=span, detector="page-hinkley", incident_id=iid)

        return Outcome([result], self._track(result, config, event))

    # -- persistence ---------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """JSON-safe window state (the reference is stored on its own, once)."""
        return {
            "bootstrap": self.bootstrap,
            "bootstrap_rows": self.bootstrap_rows,
            "panes": [p.to_dict() for p in self.panes],
            "open_pane": self.open_pane.to_dict() if self.open_pane is not None else None,
            "window_no": self.window_no,
            "incidents": {k: vars(v) for k, v in self.incidents.items()},
            "predictions_seen": self.predictions_seen,
            "serving_errors": self.serving_errors,
            "labels_joined": self.labels_joined,
            "perf_pairs": self.perf_pairs,
            "perf_window_no": self.perf_window_no,
            "page_hinkley": self.page_hinkley.to_dict() if self.page_hinkley is not None else None,
            "loss_unit": self.loss_unit,
            "loss_cap": self.loss_cap,
            "window_signature": self.window_signature,
        }

    @classmethod
    def from_state(
        cls,
        model: str,
        version: str,
        state: Mapping[str, Any] | None,
        *,
        reference: ReferenceProfile | None,
        reference_source: ReferenceSource,
        schema: list[dict[str, Any]],
        metrics: dict[str, float],
    ) -> VersionMonitor:
        m = cls(model, version, schema=schema, metrics=metrics, reference=reference,
                reference_source=reference_source)
        if not state:
            return m
        m.bootstrap = {k: list(v) for k, v in state["bootstrap"].items()}
        m.bootstrap_rows = state["bootstrap_rows"]
        m.panes = [Pane.from_dict(p) for p in state["panes"]]
        m.open_pane = Pane.from_dict(state["open_pane"]) if state.get("open_pane") else None
        m.window_no = state["window_no"]
        m.incidents = {k: Incident(**v) for k, v in state["incidents"].items()}
        m.predictions_seen = state["predictions_seen"]
        m.serving_errors = state.get("serving_errors", 0)
        m.labels_joined = state["labels_joined"]
        m.perf_pairs = [list(p) for p in state["perf_pairs"]]
        m.perf_window_no = state["perf_window_no"]
        m.page_hinkley = PageHinkley.from_dict(state["page_hinkley"]) if state.get("page_hinkley") else None
        m.loss_unit = state.get("loss_unit")
        m.loss_cap = state.get("loss_cap")
        m.window_signature = state.get("window_signature", "")
        return m


# --------------------------------------------------------------------------- helpers

_QUALITY_DETAIL = {
    "missing-rate": "more values missing than in the reference",
    "invalid-value": "NaN or infinite values",
    "type-error": "values of the wrong type (text where a number is expected)",
    "out-of-range": "values outside the reference's range",
    "unseen-category": "categories the reference does not know",
}

_INDEX_CACHE: dict[int, tuple[CategoricalProfile, dict[str, int]]] = {}


def _category_index(ref: CategoricalProfile) -> dict[str, int]:
    hit = _INDEX_CACHE.get(id(ref))
    if hit is not None and hit[0] is ref:
        return hit[1]
    index = {c: i for i, c in enumerate(ref.categories)}
    if len(_INDEX_CACHE) > 4096:
        _INDEX_CACHE.clear()
    _INDEX_CACHE[id(ref)] = (ref, index)
    return index


def _exact_columns(features: Sequence[Mapping[str, Any]], names: Sequence[str]) -> list[tuple[Any, ...]] | None:
    """One column per name when every record serves exactly ``names``, else None.

    Records with as many keys as ``names`` and every one of them have no
    other key: nothing unexpected, nothing absent. Both the check and the
    transposition run as C-level loops.
    """
    if not names or not features or set(map(len, features)) != {len(names)}:
        return None
    try:
        if len(names) == 1:
            return [tuple(map(operator.itemgetter(names[0]), features))]
        return list(zip(*map(operator.itemgetter(*names), features), strict=True))
    except KeyError:
        return None


def _distributions(window: Pane) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for name, c in window.features.items():
        out[name] = c.counts.tolist() + ([c.other] if isinstance(c, CategoricalCounts) else [])
    if window.prediction is not None:
        c = window.prediction
        out[PREDICTION] = c.counts.tolist() + ([c.other] if isinstance(c, CategoricalCounts) else [])
    return out


def _quality_severity(violations: Sequence[QualityViolation], rows: int) -> Severity:
    worst = max((v.value or 0.0) for v in violations)
    return "high" if worst >= 0.5 else "medium" if worst >= 0.1 else "low"


def _finite(x: float) -> float:
    return float(x) if math.isfinite(x) else 1e308

