"""A model's monitoring configuration: windows, drift tests, quality and performance thresholds.

One :class:`MonitorConfig` per model (every version). Validation here is
what the configuration API answers 422 with; nothing here does I/O.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mloop.monitor.domain.records import PREDICTION
from mloop.stats.drift import Correction, DriftConfig, Method

__all__ = [
    "MAX_PANES",
    "DriftSettings",
    "MonitorConfig",
    "PerformanceSettings",
    "QualitySettings",
    "WindowSettings",
]


#: A sliding window is cut into at most this many panes: each row lands in every pane's window.
MAX_PANES = 100
_MAX_SECONDS = 30 * 86400.0


class WindowSettings(BaseModel):
    """How traffic is cut into windows (at most ``MAX_PANES`` panes per sliding window)."""

    # A number from a request is finite: Infinity or NaN would silence a detector without saying so.
    model_config = ConfigDict(allow_inf_nan=False)

    mode: Literal["tumbling", "sliding"] = "tumbling"
    by: Literal["count", "time"] = "count"
    size: int = Field(2000, ge=10, le=1_000_000, description="Rows per window (by count)")
    slide: int | None = Field(None, ge=1, le=1_000_000,
                              description="Rows per step of a sliding window; divides size")
    seconds: float = Field(3600.0, gt=0, le=_MAX_SECONDS, description="Event-time span of a window (by time)")
    slide_seconds: float | None = Field(None, gt=0, le=_MAX_SECONDS,
                                        description="Step of a sliding time window; divides seconds")
    min_rows: int = Field(100, ge=2, le=1_000_000, description="A time window with fewer rows is not evaluated")
    # Records of one partition arrive nearly in event-time order (each serving process logs in
    # order; several of them sharing a partition interleave by their flush delay, seconds at most).
    # Ten seconds absorbs that and delays an hourly window's verdict by under 0.3 %.
    allowed_lateness: float = Field(10.0, ge=0, le=_MAX_SECONDS,
                                    description="Seconds of event time a time pane stays open after its end: "
                                    "it closes once every partition carrying the model's traffic has passed "
                                    "end + allowed_lateness; a record read after its pane ended (plus this) on "
                                    "its own partition is counted late, not windowed")

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

    model_config = ConfigDict(allow_inf_nan=False)

    alpha: float = Field(0.01, gt=0, lt=1, description="Family-wise false-alarm rate of one window")
    correction: Correction = "bh"
    methods: dict[str, Method] = Field(
        default_factory=dict, description="Per feature, a drift method of mloop.stats.drift (default: omnibus)")
    min_shift: float = Field(0.05, ge=0, le=10,
                             description="Effect floor: location shift in reference standard deviations")
    min_log_scale: float = Field(0.05, ge=0, le=10, description="Effect floor: |log| of the standard-deviation ratio")
    min_mass: float = Field(0.025, ge=0, le=1, description="Effect floor: share of probability mass moved")
    min_missing: float = Field(0.01, ge=0, le=1, description="Effect floor: change of the missing share")
    min_psi: float = Field(0.02, ge=0, le=100, description="Effect floor of the psi and js methods")
    min_wasserstein: float = Field(0.1, ge=0, le=1e12)
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

    model_config = ConfigDict(allow_inf_nan=False)

    max_missing_increase: float = Field(0.1, ge=0, le=1, description="Over the reference's missing rate")
    max_invalid_rate: float = Field(0.01, ge=0, le=1, description="NaN/inf values")
    max_type_error_rate: float = Field(0.01, ge=0, le=1)
    max_out_of_range_rate: float = Field(0.05, ge=0, le=1)
    range_margin: float = Field(0.1, ge=0, le=1000, description="Share of the reference range tolerated outside it")
    max_unseen_increase: float = Field(0.1, ge=0, le=1, description="Over the reference's 'other' share")
    max_schema_mismatch_rate: float = Field(0.01, ge=0, le=1)


class PerformanceSettings(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)

    window_labels: int = Field(200, ge=10, le=1_000_000, description="Joined labels per performance window")
    tolerance: float = Field(0.1, ge=0, le=100, description="Relative degradation of a registered metric that alarms")
    label_horizon_s: float = Field(7 * 86400.0, gt=0, le=366 * 86400.0,
                                   description="How late a label may arrive and still join")
    # Page-Hinkley works on the per-prediction loss (0/1 error, or absolute
    # error), rescaled to the spread of a 0/1 error at a 14% error rate when
    # its in-control spread is wider (``performance.loss_scale``). Calibrated
    # by simulation: on clean traffic under 5% of streams of 5,000 labels
    # alarm, and an accuracy drop from 0.85 to 0.75 is caught within 800
    # labels in more than 95% of streams.
    page_hinkley_delta: float = Field(0.025, ge=0, le=1e6, description="Tolerated increase of the loss (0/1 error, or "
                                      "absolute error rescaled to the spread of a 0/1 error)")
    page_hinkley_threshold: float = Field(20.0, gt=0, le=1e9, description="Alarm level of the cumulative increase")
    page_hinkley_min_samples: int = Field(200, ge=1, le=1_000_000_000,
                                          description="Labels before the detector may alarm")
    # Regression errors can be heavy-tailed: one huge error would move a detector on the raw
    # absolute error as much as a real degradation. Capping them at a few in-control medians keeps
    # nearly all the information about a change of scale (a 20 % rise of the mean absolute error moves
    # the capped loss by 0.18 standard deviations for Student-t(3) errors, against 0.17 uncapped) and
    # bounds what one error can do. Two sequential detectors watch the capped errors and share the
    # false-alarm budget: Page-Hinkley against the version's own earlier errors (self-starting, so
    # it needs no registered metric), and, when an mae is registered, a one-sided CUSUM against it
    # with the tolerance as slack. Page-Hinkley alone cannot do both jobs: its running mean absorbs
    # a change, and on 1,000 clean labels before a change the best threshold measured held 1 % false
    # alarms with about 92 % of 20 % rises caught. The registered mae is what the CUSUM adds.
    # Calibrated by simulation on Student-t(3) errors (1,000 streams): 0.2 % of clean streams of
    # 5,000 labels alarm, a 20 % rise of the mean absolute error after 1,000 clean labels is caught
    # within 2,000 labels in 99 % (the CUSUM alone 97 %, Page-Hinkley alone 88 %).
    regression_clip: float = Field(3.0, gt=0, le=1e6, description="Absolute errors are capped at this multiple of the "
                                   "first window's median absolute error before the sequential detector")
    regression_page_hinkley_delta: float = Field(0.0125, ge=0, le=1e6, description="Page-Hinkley delta for regression")
    regression_page_hinkley_threshold: float = Field(38.0, gt=0, le=1e9, description="Page-Hinkley threshold for "
                                                     "regression")
    regression_cusum_threshold: float = Field(35.0, gt=0, le=1e9, description="Decision interval of the CUSUM of "
                                              "absolute errors against the registered mae, in in-control "
                                              "standard deviations of the absolute error")
    regression_cusum_clip: float = Field(3.0, gt=0, le=1e6, description="Absolute errors enter that CUSUM capped at "
                                         "the registered mae plus this many in-control standard deviations")
    # A window's metric is an estimate from window_labels labels: at 300 labels the log-loss of a
    # calibrated credit-risk scorer (log-loss 0.3) has a standard error near 11 % of its value, so a
    # 15 % tolerance alone is crossed by chance in one window in ten even against an exact baseline
    # (3,000 simulated windows). Three standard errors more hold that to about one in a thousand per
    # metric (one-sided normal tail; none of those 3,000); the price is that a window must be past
    # the tolerance clearly (log-loss about 1.45 times the baseline at 300 labels, less in larger
    # windows) to alarm on its own, and Page-Hinkley watches the 0/1 loss for smaller sustained drops.
    significance_z: float = Field(3.0, ge=0, le=100,
                                  description="A registered metric alarms only when its window is past the "
                                  "tolerance by this many of the window's own standard errors as well "
                                  "(regression mae/mse/rmse; log_loss, roc_auc/auc, accuracy, error_rate, "
                                  "precision, recall; others: the tolerance alone). 0: the tolerance alone")


class MonitorConfig(BaseModel):
    """Thresholds and windows of one model (every version)."""

    model_config = ConfigDict(allow_inf_nan=False)

    window: WindowSettings = Field(default_factory=WindowSettings)
    reference_size: int = Field(1000, ge=50, le=100_000, description="First predictions taken as the "
                                "reference when no training profile was registered")
    drift: DriftSettings = Field(default_factory=DriftSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    performance: PerformanceSettings = Field(default_factory=PerformanceSettings)
    resolve_after_windows: int = Field(2, ge=1, le=1000,
                                       description="Clean windows in a row that resolve an incident")
