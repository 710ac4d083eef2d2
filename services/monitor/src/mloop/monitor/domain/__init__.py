"""The monitor's decisions, pure: no Kafka, no SQL.

* ``config.py`` — a model's :class:`MonitorConfig` (windows, drift tests, thresholds).
* ``records.py`` — what the decisions take in (batches, labelled predictions)
  and give out (window results, events to publish).
* ``windows.py`` — panes and windows: traffic counted into the reference's bins.
* ``verdicts.py`` — drift events, data-quality violations, degraded metrics of one window.
* ``performance.py`` — metrics and per-prediction losses from (prediction, label) pairs.
* ``incidents.py`` — hysteresis: when an alarm opens an incident and when it resolves.
* ``monitor.py`` — :class:`VersionMonitor`, one (model, version), tying these together.
"""

from mloop.monitor.domain.config import (
    MAX_PANES,
    DriftSettings,
    MonitorConfig,
    PerformanceSettings,
    QualitySettings,
    WindowSettings,
)
from mloop.monitor.domain.monitor import VersionMonitor
from mloop.monitor.domain.records import (
    Emission,
    LabelledPrediction,
    Outcome,
    PredictionBatch,
    ReferenceSource,
    Signal,
    WindowResult,
    reference_kinds,
)

__all__ = [
    "MAX_PANES",
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
