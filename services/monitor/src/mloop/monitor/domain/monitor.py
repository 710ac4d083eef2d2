"""One :class:`VersionMonitor` watches one (model, version).

* **Reference.** The training-data profile from ``model-registered``, or,
  without one, a profile of the version's first ``reference_size``
  predictions.
* **Windows.** Traffic is counted into the reference's bins pane by pane
  (see ``windows.py``); tumbling or sliding, by row count or event time.
  When a pane closes, the window it completes is evaluated. Count panes
  are cut in the order records are counted. Time panes close on an
  event-time watermark: each partition carrying the model's traffic has
  one (the latest event time read from it), and a pane closes once every
  one of them has passed its end plus ``allowed_lateness``. A record whose
  pane had already ended (plus the lateness) on its *own* partition when it
  was read is late: counted in ``late_rows``, never in a window. Both rules
  depend only on each partition's own sequence of records, so a time
  window holds the same rows whatever order the partitions are read in.
* **Verdicts** per window (``verdicts.py``): data drift and prediction drift
  (``mloop.stats`` tests with correction and an effect-size floor), data
  quality (missing rates, NaN/inf, type errors, out-of-range values, unseen
  categories, schema skew); per window of joined labels: performance against
  the registered metrics plus a Page-Hinkley detector on the loss
  (``performance.py``).
* **Incidents** (``incidents.py``): one opens (one event) on the first
  alarming window and resolves after ``resolve_after_windows`` clean windows.

Every decision depends only on the records and their order within each
partition, never on the wall clock or on how the records were batched, so
replaying from stored offsets reproduces it exactly.
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
    window_standard_errors,
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
    FloatArray,
    NumericColumn,
    NumericCounts,
    Pane,
    finite_columns,
    merge_panes,
    numeric_block,
    numeric_column,
    request_hashes,
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
    """The pane being filled (count windows)."""
    open_panes: dict[int, Pane] = field(default_factory=dict)
    """Time panes not closed yet, by pane key."""
    watermarks: dict[int, float] = field(default_factory=dict)
    """Per partition: the latest event time read from it (time windows)."""
    partitions: list[int] = field(default_factory=list)
    """The partitions carrying this version's traffic: a time pane closes once all their watermarks pass it."""
    closed_key: int | None = None
    """The key of the last time pane closed: a record of it or an earlier one is late."""
    late_rows: int = 0
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
        self.panes, self.open_pane, self.open_panes = [], None, {}

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
        """Count a batch of predictions (of one partition); evaluate every window it completes."""
        self._apply_window_settings(config)
        out = Outcome()
        self.predictions_seen += len(batch)
        self.serving_errors += batch.errors
        pos, n = 0, len(batch)
        if self.reference is None and n:
            pos = min(n, config.reference_size - self.bootstrap_rows)
            self._collect_bootstrap(batch.slice(0, pos))
            if self.bootstrap_rows >= config.reference_size:
                self._build_reference_from_bootstrap()
        if config.window.by == "time":
            return self._observe_time(batch, pos, config)
        while pos < n:
            pane = self._current_pane(config)
            take = min(n - pos, config.window.pane_rows - pane.rows)
            self._add(pane, batch.slice(pos, pos + take), config)
            pos += take
            if pane.rows >= config.window.pane_rows:
                out.extend(self._close_pane(config))
        return out

    def _observe_time(self, batch: PredictionBatch, start: int, config: MonitorConfig) -> Outcome:
        """Time panes: count the rows that are not late, then close every pane the watermark has passed."""
        n = len(batch)
        if not n:
            return Outcome()
        seconds, lateness = config.window.pane_seconds, config.window.allowed_lateness
        part = batch.partition
        known = set(self.partitions)
        if not known.issuperset(batch.partitions or (part,)):
            self.partitions = sorted(known.union(batch.partitions or (part,)))
        ts = batch.timestamps
        mark = self.watermarks.get(part, -math.inf)
        # The partition's watermark as each row was read: the latest event time before it.
        before = np.empty(n, dtype=np.float64)
        before[0] = mark
        if n > 1:
            np.maximum(np.maximum.accumulate(ts[:-1]), mark, out=before[1:])
        keys = np.floor(ts / seconds).astype(np.int64)
        late = before >= (keys + 1) * seconds + lateness
        if self.closed_key is not None:
            late |= keys <= self.closed_key
        late[:start] = False
        self.watermarks[part] = max(mark, float(ts.max()))
        if self.reference is None:
            return Outcome()
        late_at = np.nonzero(late)[0]
        if late_at.size:
            self.late_rows += int(late_at.size)
            # Reported with the pane its partition had reached when it was read: a pane still
            # open then, and the same one whatever the batching or the other partitions did.
            reached = np.floor(before[late_at] / seconds)
            floor_key = self.closed_key + 1 if self.closed_key is not None else None
            for key, count in zip(*np.unique(reached, return_counts=True), strict=True):
                k = int(key) if math.isfinite(key) else floor_key
                if k is None:
                    continue
                if floor_key is not None:
                    k = max(k, floor_key)
                self._open_time_pane(k).late += int(count)
        counted = np.nonzero(~late)[0]
        counted = counted[counted >= start]
        if counted.size:
            pane_keys, inverse = np.unique(keys[counted], return_inverse=True)
            if pane_keys.size == 1 and counted.size == n - start:  # the common batch: one pane, none late
                self._add(self._open_time_pane(int(pane_keys[0])), batch.slice(start, n), config)
            else:
                for j, key in enumerate(pane_keys.tolist()):
                    self._add(self._open_time_pane(key), batch.take(counted[inverse == j]), config)
        out = Outcome()
        watermark = min(self.watermarks.get(p, -math.inf) for p in self.partitions)
        for key in sorted(self.open_panes):
            if watermark < (key + 1) * seconds + lateness:
                break
            out.extend(self._close_time_pane(key, config))
        return out

    def _apply_window_settings(self, config: MonitorConfig) -> None:
        # The lateness only moves when panes close: changing it keeps the windows.
        signature = config.window.model_dump_json(exclude={"allowed_lateness"})
        if signature != self.window_signature:
            # Windows cut another way cannot continue the old ones.
            self.panes, self.open_pane, self.open_panes = [], None, {}
            self.watermarks, self.partitions, self.closed_key = {}, [], None
            self.window_signature = signature

    def _current_pane(self, config: MonitorConfig) -> Pane:
        if self.open_pane is None:
            assert self.reference is not None
            number = self.panes[-1].number + 1 if self.panes else 0
            self.open_pane = Pane.open(number, self.reference)
        return self.open_pane

    def _add(self, pane: Pane, batch: PredictionBatch, config: MonitorConfig) -> None:
        assert self.reference is not None
        n = len(batch)
        q = config.drift.samples_needed(config.window) // max(config.window.panes_per_window, 1)
        names = list(self.reference.features)
        required = {str(f["name"]) for f in self.schema if not f.get("optional")}
        numeric = [nm for nm, ref in self.reference.features.items() if isinstance(ref, NumericProfile)]
        hashes = request_hashes(batch.request_ids) if q else None
        exact = _exact_columns(batch.features, names, numeric) if required <= set(names) else None
        columns: Mapping[str, NumericColumn | Sequence[Any]]
        if exact is None:
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
            block = None
        else:
            columns, block = exact
        if block is not None:
            # Every numeric value of the batch is a finite number: those features are counted together.
            index = [i for i, nm in enumerate(names) if nm in columns and isinstance(columns[nm], NumericColumn)]
            NumericCounts.add_finite_block(
                [pane.features[names[i]] for i in index],  # type: ignore[misc]
                [self.reference.features[names[i]] for i in index],  # type: ignore[misc]
                block, Pane.priorities_block(hashes, index) if hashes is not None else None, q,
                config.quality.range_margin)
        for i, (name, ref) in enumerate(self.reference.features.items()):
            raw = columns[name]
            counts = pane.features[name]
            if isinstance(ref, NumericProfile) and isinstance(counts, NumericCounts):
                if block is None:
                    counts.add(ref, raw if isinstance(raw, NumericColumn) else numeric_column(raw),
                               Pane.priorities(hashes, i) if hashes is not None else _NO_PRIORITIES, q,
                               config.quality.range_margin)
            elif (isinstance(ref, CategoricalProfile) and isinstance(counts, CategoricalCounts)
                  and not isinstance(raw, NumericColumn)):
                counts.add(_category_index(ref), raw)
        rp, pc = self.reference.prediction, pane.prediction
        if rp is not None and pc is not None:
            scores = [p if type(p) is float else score_of(p) for p in batch.predictions]
            if isinstance(rp, NumericProfile) and isinstance(pc, NumericCounts):
                pc.add(rp, numeric_column(scores),
                       Pane.priorities(hashes, len(names)) if hashes is not None else _NO_PRIORITIES, q,
                       config.quality.range_margin)
            elif isinstance(rp, CategoricalProfile) and isinstance(pc, CategoricalCounts):
                pc.add(_category_index(rp), scores)
        lo, hi = float(batch.timestamps.min()), float(batch.timestamps.max())
        pane.start = lo if pane.start is None else min(pane.start, lo)
        pane.end = hi if pane.end is None else max(pane.end, hi)
        pane.rows += n
        pane.serving_errors += batch.errors

    def _close_pane(self, config: MonitorConfig) -> Outcome:
        assert self.open_pane is not None
        closed = self.open_pane
        self.panes.append(closed)
        self.open_pane = None
        k = config.window.panes_per_window
        members = self.panes[-k:]
        self.panes = members[-(k - 1):] if k > 1 else []
        if len(members) < k:
            return Outcome()
        self.window_no += 1
        return self._evaluate(merge_panes(members), config)

    def _open_time_pane(self, key: int) -> Pane:
        pane = self.open_panes.get(key)
        if pane is None:
            assert self.reference is not None
            pane = self.open_panes[key] = Pane.open(0, self.reference, key)
        return pane

    def _close_time_pane(self, key: int, config: MonitorConfig) -> Outcome:
        closed = self.open_panes.pop(key)
        closed.number = self.panes[-1].number + 1 if self.panes else 0
        self.closed_key = key
        self.panes.append(closed)
        k = config.window.panes_per_window
        members = [p for p in self.panes if p.key is not None and p.key > key - k]
        # What the next window (ending one pane later) still needs.
        self.panes = [p for p in members if p.key is not None and p.key > key + 1 - k]
        if sum(p.rows for p in members) < config.window.min_rows:
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
                                 "serving_errors": window.serving_errors,
                                 "late_rows": window.late})
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
        standard_errors = window_standard_errors(task, values, labelled) if values else {}
        degraded = degraded_metrics(self.metrics, values, standard_errors, ps)
        if self.page_hinkley is None:
            self.page_hinkley = PageHinkley(delta=ps.page_hinkley_delta, threshold=ps.page_hinkley_threshold,
                                            min_samples=ps.page_hinkley_min_samples, direction="increase")
        ph = self.page_hinkley
        alarm = bool(degraded) or ph_alarm or cusum_alarm
        worst = max(degraded, key=lambda d: d["drop"]) if degraded else None
        severity = performance_severity(worst, ph_alarm or cusum_alarm)
        evidence = {"task": task, "metrics": values, "standard_errors": standard_errors,
                    "baseline": dict(self.metrics), "degraded": degraded,
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
            "open_panes": [p.to_dict() for _, p in sorted(self.open_panes.items())],
            "watermarks": {str(p): w for p, w in sorted(self.watermarks.items())},
            "partitions": self.partitions,
            "closed_key": self.closed_key,
            "late_rows": self.late_rows,
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
        m.open_panes = {int(d["key"]): Pane.from_dict(d) for d in state.get("open_panes", [])}
        m.closed_key = state.get("closed_key")
        if m.open_pane is not None and m.open_pane.key is not None:
            # A state written before time panes closed on watermarks: one open time pane,
            # every earlier one closed.
            m.open_panes[m.open_pane.key] = m.open_pane
            m.closed_key = m.open_pane.key - 1
            m.open_pane = None
        m.watermarks = {int(p): float(w) for p, w in state.get("watermarks", {}).items()}
        m.partitions = [int(p) for p in state.get("partitions", [])]
        m.late_rows = state.get("late_rows", 0)
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
) -> tuple[dict[str, NumericColumn | Sequence[Any]], FloatArray | None] | None:
    """Each name's column when every record serves exactly ``names``, else None.

    Records with as many keys as ``names`` and every one of them have no
    other key: nothing unexpected, nothing absent. The ``numeric`` names come
    as float columns in one pass (:func:`numeric_block`) where every value of
    theirs is a finite number; the others (and numeric ones with a missing,
    non-finite or wrong-typed value) as the served values. The second item is
    the ``numeric`` block itself (a row per name, in order) when every one of
    its values is finite, else None. The check and the transpositions run as
    C-level loops.
    """
    if not names or not features or set(map(len, features)) != {len(names)}:
        return None
    block = numeric_block(features, numeric) if numeric else None
    out: dict[str, NumericColumn | Sequence[Any]] = {}
    whole: FloatArray | None = None
    if block is not None:
        columns = finite_columns(block)
        out.update((nm, col) for nm, col in zip(numeric, columns, strict=True) if col is not None)
        whole = block if len(out) == len(numeric) else None
    rest = [nm for nm in names if nm not in out]
    try:
        if len(rest) == 1:
            out[rest[0]] = tuple(map(operator.itemgetter(rest[0]), features))
        elif rest:
            out.update(zip(rest, zip(*map(operator.itemgetter(*rest), features), strict=True), strict=True))
    except KeyError:
        return None
    return out, whole


def _distributions(window: Pane) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for name, c in window.features.items():
        out[name] = c.counts.tolist() + ([c.other] if isinstance(c, CategoricalCounts) else [])
    if window.prediction is not None:
        c = window.prediction
        out[PREDICTION] = c.counts.tolist() + ([c.other] if isinstance(c, CategoricalCounts) else [])
    return out
