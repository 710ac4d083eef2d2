"""Verdicts on one window: drift events, data-quality violations, degraded metrics.

Each function takes a window's figures and the model's thresholds and says
whether, and how badly, they alarm; none keeps state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from mloop.contracts.payloads import (
    DriftDetected,
    FeatureDriftResult,
    QualityViolation,
    ReferenceInfo,
    Severity,
)
from mloop.monitor.domain.config import PerformanceSettings, QualitySettings
from mloop.monitor.domain.performance import direction
from mloop.monitor.domain.records import PREDICTION, WindowResult
from mloop.monitor.domain.windows import NumericCounts, Pane
from mloop.stats.drift import DriftReport, FeatureDrift
from mloop.stats.profile import CategoricalProfile, ReferenceProfile

__all__ = ["degraded_metrics", "drift_event", "performance_severity", "quality_severity", "quality_violations"]

_QUALITY_DETAIL = {
    "missing-rate": "more values missing than in the reference",
    "invalid-value": "NaN or infinite values",
    "type-error": "values of the wrong type (text where a number is expected)",
    "out-of-range": "values outside the reference's range",
    "unseen-category": "categories the reference does not know",
}


def drift_event(model: str, version: str, reference: ReferenceInfo, result: WindowResult,
                cols: Sequence[FeatureDrift], report: DriftReport, incident_id: str) -> DriftDetected:
    """The ``drift-detected`` payload of an alarming data or prediction window."""
    return DriftDetected(
        model=model,
        version=version,
        kind=result.signal,
        severity=result.severity or "low",
        window=result.window,
        reference=reference,
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


def quality_violations(reference: ReferenceProfile, window: Pane, qs: QualitySettings) -> list[QualityViolation]:
    """Every rate of ``window`` past its threshold (empty: the window is clean)."""
    rows = max(window.rows, 1)
    found: list[QualityViolation] = []
    for name, ref in reference.features.items():
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


def quality_severity(violations: Sequence[QualityViolation], rows: int) -> Severity:
    """How bad a window's violations are, by the worst rate."""
    worst = max((v.value or 0.0) for v in violations)
    return "high" if worst >= 0.5 else "medium" if worst >= 0.1 else "low"


def degraded_metrics(baselines: Mapping[str, float], values: Mapping[str, float],
                     standard_errors: Mapping[str, float], ps: PerformanceSettings) -> list[dict[str, Any]]:
    """The registered metrics a window of labels is worse on than tolerated, with how far (``drop``).

    A metric is degraded when its window value is past the relative
    ``tolerance`` and past it by ``significance_z`` of the window's
    ``standard_errors`` as well (a metric without one: the tolerance alone).
    """
    degraded: list[dict[str, Any]] = []
    for metric, baseline in baselines.items():
        value = values.get(metric)
        if value is None or not math.isfinite(baseline):
            continue
        margin = ps.tolerance * (abs(baseline) if baseline else 1.0)
        higher = direction(metric)
        # A noisy window past the threshold by chance is not a degradation.
        se = standard_errors.get(metric, 0.0)
        margin += ps.significance_z * (se if math.isfinite(se) else 0.0)
        if higher is True and value < baseline - margin:
            degraded.append({"metric": metric, "value": value, "baseline": baseline, "standard_error": se,
                             "threshold": baseline - margin, "drop": (baseline - value) / max(margin, 1e-12)})
        elif higher is False and value > baseline + margin:
            degraded.append({"metric": metric, "value": value, "baseline": baseline, "standard_error": se,
                             "threshold": baseline + margin, "drop": (value - baseline) / max(margin, 1e-12)})
    return degraded


def performance_severity(worst: Mapping[str, Any] | None, sequential_alarm: bool) -> Severity | None:
    """Severity of a performance window: by the worst drop, else medium for a sequential alarm alone."""
    if worst is not None:
        return "high" if worst["drop"] >= 3 else "medium" if worst["drop"] >= 2 else "low"
    if sequential_alarm:
        return "medium"
    return None


def _finite(x: float) -> float:
    return float(x) if math.isfinite(x) else 1e308
