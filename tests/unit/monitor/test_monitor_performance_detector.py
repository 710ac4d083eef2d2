"""Calibration of the Page-Hinkley defaults on the per-prediction loss.

Clean traffic must not alarm, a real accuracy drop must. Both properties are
checked on seeded simulations with the default ``PerformanceSettings`` and
the same unit (``loss_scale``) and detector the monitor uses.
"""

from __future__ import annotations

import numpy as np
import pytest

from mloop.contracts.payloads import PerformanceDegraded
from mloop.monitor.domain import LabelledPrediction, MonitorConfig, PerformanceSettings, VersionMonitor
from mloop.monitor.domain.performance import (
    MIN_ERROR_SD,
    compute_metrics,
    loss_scale,
    mae_cusum,
    window_standard_errors,
)
from mloop.monitor.domain.verdicts import degraded_metrics
from mloop.stats.changepoint import PageHinkley

STREAMS = 200
CLEAN_LABELS = 5000
WARM_UP = 1000  # clean labels before the drop
DETECT_WITHIN = 800  # labels after the drop (four windows of 200)


def _detector(settings: PerformanceSettings) -> PageHinkley:
    return PageHinkley(delta=settings.page_hinkley_delta, threshold=settings.page_hinkley_threshold,
                       min_samples=settings.page_hinkley_min_samples, direction="increase")


def _first_alarm(errors: np.ndarray, metrics: dict[str, float], settings: PerformanceSettings) -> int | None:
    """Index of the label at which the detector first alarms, as the monitor feeds it."""
    losses = errors.astype(np.float64).tolist()
    unit = loss_scale("binary", losses[: settings.window_labels], metrics)
    ph = _detector(settings)
    for i, x in enumerate(losses):
        if ph.update(x / unit):
            return i
    return None


@pytest.mark.parametrize("metrics", [{}, {"accuracy": 0.85}], ids=["unit-from-first-window", "registered"])
def test_clean_traffic_rarely_alarms(metrics: dict[str, float]) -> None:
    settings = PerformanceSettings()
    rng = np.random.default_rng(20261126)
    alarms = sum(_first_alarm(rng.random(CLEAN_LABELS) < 0.15, metrics, settings) is not None
                 for _ in range(STREAMS))
    assert alarms / STREAMS <= 0.05


@pytest.mark.parametrize("error_rate", [0.02, 0.3, 0.45])
def test_clean_traffic_rarely_alarms_at_other_error_rates(error_rate: float) -> None:
    settings = PerformanceSettings()
    rng = np.random.default_rng(7)
    alarms = sum(_first_alarm(rng.random(CLEAN_LABELS) < error_rate, {}, settings) is not None
                 for _ in range(STREAMS))
    assert alarms / STREAMS <= 0.05


@pytest.mark.parametrize("metrics", [{}, {"accuracy": 0.85}], ids=["unit-from-first-window", "registered"])
def test_an_accuracy_drop_from_085_to_075_is_caught_within_800_labels(metrics: dict[str, float]) -> None:
    settings = PerformanceSettings()
    rng = np.random.default_rng(11)
    caught = early = 0
    for _ in range(STREAMS):
        errors = np.concatenate([rng.random(WARM_UP) < 0.15, rng.random(DETECT_WITHIN) < 0.25])
        at = _first_alarm(errors, metrics, settings)
        early += at is not None and at < WARM_UP
        caught += at is not None and at >= WARM_UP
    assert caught / STREAMS >= 0.95
    assert early / STREAMS <= 0.05


def test_the_loss_unit_comes_from_registered_metrics_or_the_first_window() -> None:
    assert loss_scale("binary", [], {"accuracy": 0.95}) == 1.0  # rare errors: the 0/1 loss as it is
    assert loss_scale("binary", [], {"error_rate": 0.5}) == pytest.approx(0.5 / MIN_ERROR_SD)
    assert loss_scale("classification", [1.0, 0.0] * 50, {}) == pytest.approx(0.5 / MIN_ERROR_SD)
    assert loss_scale("regression", [], {"rmse": 5.0, "mae": 4.0}) == pytest.approx(3.0 / MIN_ERROR_SD)
    assert loss_scale("regression", [2.0, 4.0] * 10, {}) == pytest.approx(1.0 / MIN_ERROR_SD)
    assert loss_scale("regression", [0.0] * 10, {}) == 1.0


def _labelled(rng: np.random.Generator, start: int, n: int, error_rate: float) -> list[LabelledPrediction]:
    labels = rng.integers(0, 2, n)
    wrong = rng.random(n) < error_rate
    scores = np.where(labels == 1, 0.8, 0.2)
    scores = np.where(wrong, 1.0 - scores, scores)
    return [LabelledPrediction(f"r{start + i}", float(scores[i]), int(labels[i]), float(start + i),
                               float(start + i) + 60) for i in range(n)]


def test_the_monitor_stays_quiet_on_clean_labels_and_flags_the_drop() -> None:
    """The same defaults wired through the monitor (no registered metric, so only Page-Hinkley can alarm)."""
    config, rng = MonitorConfig(), np.random.default_rng(5)
    m = VersionMonitor("m", "1")
    out = m.observe_labels(_labelled(rng, 0, CLEAN_LABELS, 0.15), config)
    assert len(out.results) == CLEAN_LABELS // config.performance.window_labels
    assert not any(r.alarm for r in out.results) and out.emissions == []
    out = m.observe_labels(_labelled(rng, CLEAN_LABELS, DETECT_WITHIN, 0.25), config)
    assert any(r.evidence["page_hinkley"]["alarm"] for r in out.results)
    assert out.emissions[0].topic == "performance-degraded"
    event = out.emissions[0].payload
    assert event.detector == "page-hinkley" and event.metric == "error_rate"  # type: ignore[attr-defined]
    restored = VersionMonitor.from_state("m", "1", m.to_state(), reference=None,
                                         reference_source="first-predictions", schema=[], metrics={})
    assert m.loss_unit is not None and restored.loss_unit == m.loss_unit


# --------------------------------------------------------------------------- heavy-tailed regression

HEAVY_STREAMS = 60
MAE_T3 = 2 * np.sqrt(3) / np.pi  # mean absolute value of a Student-t(3) error
RMSE_T3 = np.sqrt(3.0)


def _regression(rng: np.random.Generator, start: int, n: int, scale: float) -> list[LabelledPrediction]:
    y = rng.normal(10.0, 3.0, n)
    pred = y + scale * rng.standard_t(3, n)
    return [LabelledPrediction(f"r{start + i}", float(pred[i]), float(y[i]), float(start + i),
                               float(start + i) + 60) for i in range(n)]


@pytest.mark.parametrize("metrics", [{}, {"mae": MAE_T3, "rmse": RMSE_T3}], ids=["unregistered", "registered"])
def test_heavy_tailed_regression_errors_do_not_alarm_on_clean_streams(metrics: dict[str, float]) -> None:
    config, rng = MonitorConfig(), np.random.default_rng(20261203)
    alarms = 0
    for _ in range(HEAVY_STREAMS):
        m = VersionMonitor("m", "1", metrics=dict(metrics))
        out = m.observe_labels(_regression(rng, 0, CLEAN_LABELS, 1.0), config)
        alarms += any(r.alarm for r in out.results)
        assert m.loss_cap is not None and m.loss_cap < 10  # capped near three median absolute errors
    assert alarms <= 1  # <= 1.7 %; the benchmark measures 200 streams


@pytest.mark.parametrize("metrics", [{}, {"mae": MAE_T3, "rmse": RMSE_T3}], ids=["unregistered", "registered"])
def test_a_20_percent_rise_of_heavy_tailed_errors_is_caught_within_2000_labels(metrics: dict[str, float]) -> None:
    config, rng = MonitorConfig(), np.random.default_rng(20261204)
    caught = 0
    for _ in range(HEAVY_STREAMS):
        m = VersionMonitor("m", "1", metrics=dict(metrics))
        before = m.observe_labels(_regression(rng, 0, WARM_UP, 1.0), config)
        after = m.observe_labels(_regression(rng, WARM_UP, 2_000, 1.2), config)
        caught += not any(r.alarm for r in before.results) and any(r.alarm for r in after.results)
    assert caught / HEAVY_STREAMS >= 0.9


def test_a_regression_window_past_its_tolerance_by_chance_alone_does_not_alarm() -> None:
    # rmse of Student-t(3) errors often exceeds its registered value by 10 % in a window of 200;
    # the standard error of that window keeps it from alarming, a real doubling still does.
    config = MonitorConfig()
    m = VersionMonitor("m", "1", metrics={"rmse": RMSE_T3})
    rng = np.random.default_rng(3)
    noisy = 0
    for w in range(30):
        out = m.observe_labels(_regression(rng, w * 200, 200, 1.0), config)
        value = out.results[0].evidence["metrics"]["rmse"]
        noisy += value > 1.1 * RMSE_T3
        assert out.results[0].evidence["degraded"] == []
    assert noisy >= 3  # the tolerance alone would have alarmed
    out = m.observe_labels(_regression(rng, 6000, 200, 3.0), config)
    assert [d["metric"] for d in out.results[0].evidence["degraded"]] == ["rmse"]


# --------------------------------------------------------------------------- CUSUM against the registered mae


def test_the_mae_cusum_needs_a_registered_mae_and_takes_its_spread_from_rmse() -> None:
    assert mae_cusum({}, [1.0, -2.0], tolerance=0.1, clip=3.0, threshold=35.0) is None
    assert mae_cusum({"rmse": RMSE_T3}, [1.0, -2.0], tolerance=0.1, clip=3.0, threshold=35.0) is None
    built = mae_cusum({"mae": MAE_T3, "rmse": RMSE_T3}, [], tolerance=0.1, clip=3.0, threshold=35.0)
    assert built is not None
    cusum, cap = built
    spread = float(np.sqrt(RMSE_T3**2 - MAE_T3**2))
    assert cusum.target == MAE_T3 and cusum.sigma == pytest.approx(spread)
    assert cusum.k == pytest.approx(0.1 * MAE_T3 / spread) and cusum.direction == "increase"
    assert cap == pytest.approx(MAE_T3 + 3 * spread)
    # Without rmse the first window's absolute errors give the spread.
    fallback = mae_cusum({"mae": 1.0}, [1.0, -3.0, 2.0], tolerance=0.1, clip=3.0, threshold=35.0)
    assert fallback is not None and fallback[0].sigma == pytest.approx(float(np.std([1.0, 3.0, 2.0], ddof=1)))


def test_a_rise_of_heavy_tailed_errors_is_caught_by_the_cusum_against_the_registered_mae() -> None:
    config, rng = MonitorConfig(), np.random.default_rng(20261205)
    m = VersionMonitor("m", "1", metrics={"mae": MAE_T3, "rmse": RMSE_T3})
    before = m.observe_labels(_regression(rng, 0, WARM_UP, 1.0), config)
    assert not any(r.alarm for r in before.results)
    after = m.observe_labels(_regression(rng, WARM_UP, 2_000, 1.3), config)
    alarms = [r for r in after.results if r.alarm]
    assert alarms and alarms[0].evidence["cusum"]["alarm"]
    events = [e.payload for e in after.emissions if isinstance(e.payload, PerformanceDegraded)]
    assert events and events[0].detector in ("cusum", "page-hinkley")


def test_one_enormous_error_moves_the_cusum_by_the_cap_only() -> None:
    config, rng = MonitorConfig(), np.random.default_rng(20261206)
    m = VersionMonitor("m", "1", metrics={"mae": MAE_T3, "rmse": RMSE_T3})
    m.observe_labels(_regression(rng, 0, 1_000, 1.0), config)
    assert m.mae_cusum is not None
    before = m.mae_cusum.statistic
    batch = _regression(rng, 1_000, 200, 1.0)
    batch[0] = LabelledPrediction("huge", 1e9, 0.0, 1_000.0, 1_060.0)
    out = m.observe_labels(batch, config)
    assert not out.results[0].evidence["cusum"]["alarm"]
    assert m.mae_cusum.statistic <= before + 200 * config.performance.regression_cusum_clip


def test_better_than_registered_errors_never_alarm_the_cusum() -> None:
    config, rng = MonitorConfig(), np.random.default_rng(20261207)
    m = VersionMonitor("m", "1", metrics={"mae": MAE_T3, "rmse": RMSE_T3})
    out = m.observe_labels(_regression(rng, 0, 5_000, 0.7), config)
    assert not any(r.evidence["cusum"]["alarm"] for r in out.results)
    # A few large errors lift the sum for a moment; the slack drains it again.
    assert m.mae_cusum is not None and m.mae_cusum.alarms == 0
    assert m.mae_cusum.statistic < config.performance.regression_cusum_threshold / 3


def test_the_cusum_state_survives_a_restart() -> None:
    config, rng = MonitorConfig(), np.random.default_rng(20261208)
    m = VersionMonitor("m", "1", metrics={"mae": MAE_T3, "rmse": RMSE_T3})
    m.observe_labels(_regression(rng, 0, 1_000, 1.15), config)
    assert m.mae_cusum is not None
    restored = VersionMonitor.from_state("m", "1", m.to_state(), reference=None,
                                         reference_source="first-predictions", schema=[],
                                         metrics={"mae": MAE_T3, "rmse": RMSE_T3})
    assert restored.mae_cusum == m.mae_cusum and restored.mae_cap == m.mae_cap


# --------------------------------------------------------------------------- sampling error of classification windows

# A calibrated credit-risk-like scorer: about 14 % positives, log-loss near 0.3, AUC near 0.9.
_INTERCEPT, _SPREAD = -2.6, 1.8


def _binary(rng: np.random.Generator, start: int, n: int, shift: float = 0.0) -> list[LabelledPrediction]:
    """Labels drawn from the true probabilities; the model scores them with its logit moved by ``shift``."""
    z = _INTERCEPT + _SPREAD * rng.standard_normal(n)
    y = rng.random(n) < 1.0 / (1.0 + np.exp(-z))
    scores = 1.0 / (1.0 + np.exp(-(z + shift)))
    return [LabelledPrediction(f"r{start + i}", float(scores[i]), int(y[i]), float(start + i),
                               float(start + i) + 60) for i in range(n)]


def _true_metrics(rng: np.random.Generator) -> dict[str, float]:
    """What a version trained on plenty of data would register: its metrics on 200,000 labels."""
    big = _binary(rng, 0, 200_000)
    _, values = compute_metrics([(p.prediction, p.label) for p in big])
    return {k: values[k] for k in ("log_loss", "auc", "accuracy")}


def _demo_config(**performance: float) -> MonitorConfig:
    # The demo's settings: 300 labels per window, 15 % tolerance.
    return MonitorConfig.model_validate({"performance": {"window_labels": 300, "tolerance": 0.15, **performance}})


def test_a_classification_window_past_its_tolerance_by_chance_alone_does_not_alarm() -> None:
    # The log-loss of 300 labels is over 15 % above the version's true value in several windows
    # of forty; the window's standard error keeps them from alarming, a miscalibrated model still does.
    rng = np.random.default_rng(20261203)
    metrics = _true_metrics(rng)
    m = VersionMonitor("m", "2", metrics=dict(metrics))
    config = _demo_config()
    noisy = 0
    for w in range(40):
        out = m.observe_labels(_binary(rng, w * 300, 300), config)
        [result] = out.results
        noisy += result.evidence["metrics"]["log_loss"] > 1.15 * metrics["log_loss"]
        assert result.evidence["degraded"] == [], result.evidence["metrics"]
        assert result.evidence["standard_errors"]["log_loss"] > 0
    assert noisy >= 2  # the tolerance alone would have alarmed
    # An exporter that lost the intercept: every score far too high.
    out = m.observe_labels(_binary(rng, 12_000, 300, shift=2.0), config)
    degraded = {d["metric"]: d for d in out.results[0].evidence["degraded"]}
    assert "log_loss" in degraded and degraded["log_loss"]["standard_error"] > 0
    assert isinstance(out.emissions[0].payload, PerformanceDegraded)


def test_without_the_standard_error_the_same_windows_alarm_on_the_tolerance_alone() -> None:
    rng = np.random.default_rng(20261203)
    metrics = _true_metrics(rng)
    m = VersionMonitor("m", "2", metrics=dict(metrics))
    config = _demo_config(significance_z=0.0)
    degraded = [m.observe_labels(_binary(rng, w * 300, 300), config).results[0].evidence["degraded"]
                for w in range(40)]
    assert sum(1 for d in degraded if d) >= 2
    assert all(d[0]["threshold"] == pytest.approx(1.15 * metrics["log_loss"]) for d in degraded if d)


def test_a_log_loss_rise_well_past_the_tolerance_is_caught_in_nearly_every_window() -> None:
    # Scores off by 2 on the logit (a lost intercept): log-loss about 1.8 times the registered value,
    # AUC unchanged. The tolerance plus three standard errors of 300 labels sits near 1.45 times.
    rng = np.random.default_rng(11)
    metrics = _true_metrics(rng)
    m = VersionMonitor("m", "2", metrics=dict(metrics))
    caught = sum(any(d["metric"] == "log_loss" for d in m.observe_labels(
        _binary(rng, w * 300, 300, shift=2.0), _demo_config()).results[0].evidence["degraded"]) for w in range(40))
    assert caught >= 38


@pytest.mark.parametrize("metric", ["log_loss", "roc_auc", "accuracy", "precision", "recall"])
def test_the_standard_error_of_a_classification_metric_matches_its_spread_over_windows(metric: str) -> None:
    rng = np.random.default_rng(5)
    values, estimates = [], []
    for w in range(400):
        window = [(p.prediction, p.label) for p in _binary(rng, w * 300, 300)]
        task, got = compute_metrics(window)
        assert task == "binary"
        values.append(got[metric])
        estimates.append(window_standard_errors(task, got, window)[metric])
    assert np.mean(estimates) == pytest.approx(np.std(values, ddof=1), rel=0.15)


def test_standard_errors_cover_aliases_and_leave_out_metrics_they_cannot_estimate() -> None:
    window = [(p.prediction, p.label) for p in _binary(np.random.default_rng(1), 0, 300)]
    task, values = compute_metrics(window)
    se = window_standard_errors(task, values, window)
    assert se["auc"] == se["roc_auc"] > 0 and se["logloss"] == se["log_loss"] > 0
    assert se["error_rate"] == se["accuracy"] > 0
    assert "f1" not in se  # held to the tolerance alone
    assert window_standard_errors(task, values, window[:1]) == {}
    classes = [("a", "a"), ("b", "a"), ("a", "a"), ("c", "c")]
    task, values = compute_metrics(classes)
    assert task == "classification"
    assert window_standard_errors(task, values, classes) == {
        "accuracy": pytest.approx(np.sqrt(0.75 * 0.25 / 4)), "error_rate": pytest.approx(np.sqrt(0.75 * 0.25 / 4))}


def test_a_metric_without_a_standard_error_is_held_to_the_tolerance_alone() -> None:
    ps = PerformanceSettings(tolerance=0.1)
    [d] = degraded_metrics({"f1": 0.8, "log_loss": 0.3}, {"f1": 0.71, "log_loss": 0.34},
                           {"log_loss": 0.02}, ps)
    assert d["metric"] == "f1" and d["threshold"] == pytest.approx(0.72) and d["standard_error"] == 0.0
    # log_loss 0.34 is past 0.33 but not past 0.33 + 3 x 0.02.
    assert degraded_metrics({"log_loss": 0.3}, {"log_loss": 0.40}, {"log_loss": 0.02}, ps)[0]["threshold"] == (
        pytest.approx(0.39))
