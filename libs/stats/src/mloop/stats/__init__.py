"""Statistics for mloop: pure numpy/scipy functions, no I/O.

* :mod:`~mloop.stats.profile` — mergeable, JSON-safe reference profiles;
* :mod:`~mloop.stats.drift` — per-feature drift tests and the window verdict;
* :mod:`~mloop.stats.metrics` — classification and regression metrics;
* :mod:`~mloop.stats.changepoint` — Page-Hinkley and CUSUM detectors;
* :mod:`~mloop.stats.synthetic` — seeded synthetic tables for calibration;
* ``mloop.stats.sequential`` — always-valid sequential tests for rollouts.

Errors derive from :class:`StatsError` (see ``_exceptions``).
"""

from mloop.stats._exceptions import (
    IncompatibleProfilesError,
    InvalidConfigError,
    InvalidInputError,
    ProfileFormatError,
    StatsError,
    UndefinedMetricError,
)
from mloop.stats.changepoint import Cusum, PageHinkley
from mloop.stats.drift import (
    DriftConfig,
    DriftReport,
    FeatureDrift,
    chi2_homogeneity,
    cvm_test,
    detect_drift,
    jensen_shannon,
    ks_test,
    psi,
    wasserstein,
)
from mloop.stats.metrics import (
    accuracy,
    classification_metrics,
    higher_is_better,
    log_loss,
    mae,
    precision_recall_f1,
    regression_metrics,
    rmse,
    roc_auc,
)
from mloop.stats.profile import (
    CategoricalProfile,
    NumericProfile,
    ReferenceProfile,
    columns_from_rows,
    counts_like,
)

__all__ = [
    "CategoricalProfile",
    "Cusum",
    "DriftConfig",
    "DriftReport",
    "FeatureDrift",
    "IncompatibleProfilesError",
    "InvalidConfigError",
    "InvalidInputError",
    "NumericProfile",
    "PageHinkley",
    "ProfileFormatError",
    "ReferenceProfile",
    "StatsError",
    "UndefinedMetricError",
    "accuracy",
    "chi2_homogeneity",
    "classification_metrics",
    "columns_from_rows",
    "counts_like",
    "cvm_test",
    "detect_drift",
    "higher_is_better",
    "jensen_shannon",
    "ks_test",
    "log_loss",
    "mae",
    "precision_recall_f1",
    "psi",
    "regression_metrics",
    "rmse",
    "roc_auc",
    "wasserstein",
]
