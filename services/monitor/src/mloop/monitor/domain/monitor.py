"""One :class:`VersionMonitor` watches one (model, version).

* **Reference.** The training-data profile from ``model-registered``, or,
  without one, a profile of the version's first ``reference_size``
  predictions.
* **Windows.** Traffic is counted into the reference's bins pane by pane
  (see ``windows.py``); tumbling or sliding, by row count or event time.
  When a pane closes, the window it completes is evaluated.
* **Verdicts** per window (``verdicts.py``): data drift and prediction drift
  (``mloop.stats`` tests with correction and an effect-size floor), data
  quality (missing rates, NaN/inf, type errors, out-of-range values, unseen
  categories, schema skew); per window of joined labels: performance against
  the registered metrics plus a Page-Hinkley detector on the loss
  (``performance.py``).
* **Incidents** (``incidents.py``): one opens (one event) on the first
  alarming window and resolves after ``resolve_after_windows`` clean windows.

Every decision depends only on the records and their order, never on the
wall clock or on how the records were batched, so replaying from stored
offsets reproduces it exactly.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from mloop.contracts.payloads import (
    DataQualityViolated,
    PerformanceDegraded,
    ReferenceInfo,
    Window,
)
from mloop.monitor.domain.config import MonitorConfig, PerformanceSettings
from mloop.monitor.domain.incidents import Incident, track
from mloop.monitor.domain.performance import (
    compute_metrics,
    loss_of,
    loss_scale,
    mae_cusum,
    score_of,
    task_of,
)
from mloop.monitor.domain.records import (
    PREDICTION,
    Emission,
    LabelledPrediction,
    Outcome,
    PredictionBatch,
    ReferenceSource,
    WindowResult,
    as_datetime,
    reference_kinds,
)
from mloop.monitor.domain.verdicts import (
    degraded_metrics,
    drift_event,
    performance_severity,
    quality_severity,
    quality_violations,
)
from mloop.monitor.domain.windows import (
    CategoricalCounts,
    NumericColumn,
    NumericCounts,
    Pane,
    merge_panes,
    numeric_column,
    numeric_columns,
    window_profile,
)
from mloop.stats.changepoint import Cusum, PageHinkley
from mloop.stats.drift import FeatureDrift, detect_drift, drift_severity
from mloop.stats.profile import CategoricalProfile, NumericProfile, ReferenceProfile

__all__ = ["VersionMonitor"]

_NO_PRIORITIES = np.empty(0)


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
    mae_cusum: Cusum | None = None
    mae_cap: float | None = None
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
        numeric = [nm for nm, ref in self.reference.features.items() if isinstance(ref, NumericProfile)]
        columns = _exact_columns(batch.features, names, numeric) if required <= set(names) else None
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
            raws = list(zip(*(tuple(map(f.get, names)) for f in batch.features), strict=True)) if names else []
            columns = dict(zip(names, raws, strict=True))
        for i, (name, ref) in enumerate(self.reference.features.items()):
            raw = columns[name]
            counts = pane.features[name]
            if isinstance(ref, NumericProfile) and isinstance(counts, NumericCounts):
                counts.add(ref, raw if isinstance(raw, NumericColumn) else numeric_column(raw),
                           pane.priorities(i, n) if q else _NO_PRIORITIES, q, config.quality.range_margin)
            elif (isinstance(ref, CategoricalProfile) and isinstance(counts, CategoricalCounts)
                  and not isinstance(raw, NumericColumn)):
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
        span = Window(start=as_datetime(window.start), end=as_datetime(window.end), size=window.rows)
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
                                             drift_event(self.model, self.version, self._reference_info(), r, c,
                                                         rep, iid)))
        violations = quality_violations(self.reference, window, config.quality)
        q_severity = quality_severity(violations, window.rows) if violations else None
        q_result = WindowResult("quality", self.window_no, span, bool(violations), q_severity,
                                {"violations": [v.model_dump() for v in violations], "rows": window.rows,
                                 "serving_errors": window.serving_errors})
        out.results.append(q_result)
        out.emissions.extend(self._track(q_result, config, lambda iid: DataQualityViolated(
            model=self.model, version=self.version, severity=q_severity or "low", window=span,
            violations=violations, incident_id=iid)))
        return out

    def _reference_info(self) -> ReferenceInfo:
        assert self.reference is not None
        return ReferenceInfo(kind=self.reference_source, size=self.reference.row_count)

    def _track(self, result: WindowResult, config: MonitorConfig, make_event: Any) -> list[Emission]:
        return track(self.incidents, self.model, self.version, result, config.resolve_after_windows, make_event)

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
        ph_alarm = cusum_alarm = False
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
            if t == "regression":
                cusum_alarm = self._update_mae_cusum(labelled, ps)
        times = [ts for _, _, ts in pairs]
        span = Window(start=as_datetime(min(times)), end=as_datetime(max(times)), size=len(pairs))
        errors = ([float(s) - float(y) for s, y in labelled if not isinstance(s, str) and not isinstance(y, str)]
                  if task == "regression" else [])
        degraded = degraded_metrics(self.metrics, values, errors, ps)
        if self.page_hinkley is None:
            self.page_hinkley = PageHinkley(delta=ps.page_hinkley_delta, threshold=ps.page_hinkley_threshold,
                                            min_samples=ps.page_hinkley_min_samples, direction="increase")
        ph = self.page_hinkley
        alarm = bool(degraded) or ph_alarm or cusum_alarm
        worst = max(degraded, key=lambda d: d["drop"]) if degraded else None
        severity = performance_severity(worst, ph_alarm or cusum_alarm)
        evidence = {"task": task, "metrics": values, "baseline": dict(self.metrics), "degraded": degraded,
                    "page_hinkley": {"statistic": ph.statistic, "threshold": ph.threshold, "alarm": ph_alarm,
                                     "alarms": ph.alarms}}
        cusum = self.mae_cusum
        if cusum is not None:
            cusum_evidence: dict[str, Any] = {"statistic": cusum.statistic, "threshold": cusum.h,
                                              "alarm": cusum_alarm, "alarms": cusum.alarms,
                                              "target": cusum.target, "cap": self.mae_cap}
            evidence["cusum"] = cusum_evidence
        result = WindowResult("performance", self.perf_window_no, span, alarm, severity, evidence)

        def event(iid: str) -> PerformanceDegraded:
            if worst is not None:
                return PerformanceDegraded(
                    model=self.model, version=self.version, metric=worst["metric"], value=worst["value"],
                    baseline=worst["baseline"], threshold=worst["threshold"], severity=severity or "low",
                    window=span, detector="threshold", incident_id=iid)
            metric = "error_rate" if task != "regression" else "mae"
            by_cusum = cusum_alarm and not ph_alarm and cusum is not None
            return PerformanceDegraded(
                model=self.model, version=self.version, metric=metric, value=values.get(metric, math.nan),
                baseline=self.metrics.get(metric), threshold=cusum.h if by_cusum and cusum else ph.threshold,
                severity=severity or "medium", window=span, detector="cusum" if by_cusum else "page-hinkley",
                incident_id=iid)

        return Outcome([result], self._track(result, config, event))

    def _update_mae_cusum(self, labelled: Sequence[tuple[Any, Any]], ps: PerformanceSettings) -> bool:
        # Built once, at the first window, from the registered metrics (no registered mae: no CUSUM).
        errors = [float(s) - float(y) for s, y in labelled if not isinstance(s, str) and not isinstance(y, str)]
        if self.mae_cusum is None:
            built = mae_cusum(self.metrics, errors, tolerance=ps.tolerance, clip=ps.regression_cusum_clip,
                              threshold=ps.regression_cusum_threshold)
            if built is None:
                return False
            self.mae_cusum, self.mae_cap = built
        cap = self.mae_cap if self.mae_cap is not None else math.inf
        update = self.mae_cusum.update
        alarm = False
        for e in errors:
            a = abs(e)
            alarm |= update(a if a < cap else cap)
        return alarm

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
            "mae_cusum": self.mae_cusum.to_dict() if self.mae_cusum is not None else None,
            "mae_cap": self.mae_cap,
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
        m.mae_cusum = Cusum.from_dict(state["mae_cusum"]) if state.get("mae_cusum") else None
        m.mae_cap = state.get("mae_cap")
        m.window_signature = state.get("window_signature", "")
        return m


# --------------------------------------------------------------------------- helpers

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


def _exact_columns(
    features: Sequence[Mapping[str, Any]], names: Sequence[str], numeric: Sequence[str]
) -> dict[str, NumericColumn | Sequence[Any]] | None:
    """Each name's column when every record serves exactly ``names``, else None.

    Records with as many keys as ``names`` and every one of them have no
    other key: nothing unexpected, nothing absent. The ``numeric`` names come
    as float columns in one pass (:func:`numeric_columns`) where every value
    of theirs is a finite number; the others (and numeric ones with a missing,
    non-finite or wrong-typed value) as the served values. The check and the
    transpositions run as C-level loops.
    """
    if not names or not features or set(map(len, features)) != {len(names)}:
        return None
    fast = numeric_columns(features, numeric) if numeric else None
    out: dict[str, NumericColumn | Sequence[Any]] = {}
    if fast is not None:
        out.update((nm, col) for nm, col in zip(numeric, fast, strict=True) if col is not None)
    rest = [nm for nm in names if nm not in out]
    try:
        if len(rest) == 1:
            out[rest[0]] = tuple(map(operator.itemgetter(rest[0]), features))
        elif rest:
            out.update(zip(rest, zip(*map(operator.itemgetter(*rest), features), strict=True), strict=True))
    except KeyError:
        return None
    return out


def _distributions(window: Pane) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for name, c in window.features.items():
        out[name] = c.counts.tolist() + ([c.other] if isinstance(c, CategoricalCounts) else [])
    if window.prediction is not None:
        c = window.prediction
        out[PREDICTION] = c.counts.tolist() + ([c.other] if isinstance(c, CategoricalCounts) else [])
    return out
