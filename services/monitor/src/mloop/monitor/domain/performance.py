"""Model performance from joined ground truth: the metrics a version is compared on.

Pure numpy/scipy. The metrics a version is compared on are the ones it was
registered with (``model-registered`` ``metrics``) that can be computed
from (prediction, label) pairs by ``mloop.stats.metrics``: accuracy,
error rate, precision, recall, f1, ROC AUC and log-loss for
classification; RMSE, MSE, MAE and R² for regression.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from scipy.stats import rankdata

from mloop.stats import StatsError, classification_metrics, higher_is_better, regression_metrics
from mloop.stats.changepoint import Cusum
from mloop.stats.metrics import LOG_LOSS_EPS

__all__ = [
    "Task",
    "compute_metrics",
    "direction",
    "loss_of",
    "loss_scale",
    "mae_cusum",
    "regression_standard_error",
    "score_of",
    "window_standard_errors",
]

Task = Literal["binary", "classification", "regression"]


def score_of(prediction: Any) -> float | str | None:
    """A prediction as one number (score or value) or a class label.

    Class probabilities become the positive-class probability (two classes)
    or the index of the most probable class as a label.
    """
    if prediction is None:
        return None
    if isinstance(prediction, list):
        if not prediction:
            return None
        if len(prediction) == 2:
            return float(prediction[1])
        return str(int(np.argmax(np.asarray(prediction, dtype=np.float64))))
    if isinstance(prediction, bool):
        return float(prediction)
    if isinstance(prediction, int | float):
        return float(prediction) if math.isfinite(prediction) else None
    return str(prediction)


def _label_value(label: Any) -> float | str:
    if isinstance(label, bool):
        return float(label)
    if isinstance(label, int | float):
        return float(label)
    return str(label)


def task_of(scores: Sequence[float | str], labels: Sequence[float | str]) -> Task:
    """Binary when numeric scores in [0, 1] meet 0/1 labels; classification for labels
    that are classes; regression otherwise."""
    if any(isinstance(s, str) for s in scores) or any(isinstance(y, str) for y in labels):
        return "classification"
    ys = {float(y) for y in labels}
    arr = np.asarray(scores, dtype=np.float64)
    if ys <= {0.0, 1.0} and arr.size and float(arr.min()) >= 0.0 and float(arr.max()) <= 1.0:
        return "binary"
    return "regression"


def loss_of(task: Task, score: float | str, label: float | str) -> float:
    """One observation's loss for the sequential detector: 0/1 error, or absolute error."""
    if task == "regression":
        return abs(float(score) - float(label))
    if task == "binary":
        return float((float(score) >= 0.5) != (float(label) >= 0.5))
    return float(str(score) != str(_class(label)))


# The standard deviation of a 0/1 loss at a 14% error rate: the spread the
# detector's delta and threshold are calibrated for.
MIN_ERROR_SD = 0.35


def loss_scale(task: Task, losses: Sequence[float], metrics: Mapping[str, float]) -> float:
    """What the per-prediction loss is divided by before the sequential detector sees it.

    A 0/1 loss is used as it is up to a 14% error rate (standard deviation
    :data:`MIN_ERROR_SD`); at higher error rates, and for absolute errors,
    the loss is rescaled to that spread, so one delta and threshold fit
    every model. The in-control spread comes from the registered metrics
    when they give it (``error_rate`` or ``accuracy``; ``rmse`` with ``mae``,
    as ``sqrt(rmse² - mae²)``), otherwise from ``losses``, the first window
    of joined labels.
    """
    if task == "regression":
        rmse, mae = metrics.get("rmse"), metrics.get("mae")
        sd = math.nan
        if rmse is not None and mae is not None and math.isfinite(rmse) and math.isfinite(mae) and rmse > mae >= 0:
            sd = math.sqrt(rmse * rmse - mae * mae)
        elif losses:
            sd = float(np.std(np.asarray(losses, dtype=np.float64)))
        return sd / MIN_ERROR_SD if math.isfinite(sd) and sd > 0 else 1.0
    p = math.nan
    if "error_rate" in metrics:
        p = metrics["error_rate"]
    elif "accuracy" in metrics:
        p = 1.0 - metrics["accuracy"]
    if not (math.isfinite(p) and 0.0 <= p <= 1.0):
        p = math.fsum(losses) / len(losses) if losses else 0.0
    return max(math.sqrt(p * (1.0 - p)) / MIN_ERROR_SD, 1.0)


def regression_standard_error(metric: str, value: float, errors: Sequence[float]) -> float:
    """The standard error of a regression metric computed on one window of ``errors`` (prediction - label).

    ``mae``: sd(|e|) / sqrt(n); ``mse``: sd(e²) / sqrt(n); ``rmse``: that over
    ``2 * rmse`` (delta method). Estimated from the window itself, so a
    heavy-tailed window that owes its high value to a few huge errors also
    has a large standard error. 0 for any other metric or fewer than two errors.
    """
    n = len(errors)
    if n < 2 or metric not in ("mae", "mse", "rmse"):
        return 0.0
    e = np.asarray(errors, dtype=np.float64)
    if metric == "mae":
        return float(np.std(np.abs(e), ddof=1)) / math.sqrt(n)
    se_mse = float(np.std(e * e, ddof=1)) / math.sqrt(n)
    if metric == "mse":
        return se_mse
    return se_mse / (2.0 * value) if value > 0 else 0.0


def window_standard_errors(task: Task, values: Mapping[str, float],
                           labelled: Sequence[tuple[float | str, float | str]]) -> dict[str, float]:
    """The standard error of each metric in ``values``, a window's metrics computed from ``labelled``.

    ``labelled`` holds the window's (score, label) pairs (:func:`score_of`
    scores). A metric's value on one window of labels is an estimate: a few
    hundred labels put a log-loss several percent either side of the
    version's true value by chance alone. Covered, estimated from the window
    itself: regression ``mae``/``mse``/``rmse`` (:func:`regression_standard_error`);
    binary ``log_loss`` (the spread of the per-row log-loss over ``sqrt(n)``),
    ``roc_auc`` (DeLong, 1988), ``precision`` and ``recall``
    (binomial, over the predicted and actual positives); ``accuracy`` and
    ``error_rate`` (binomial) for any classification. Aliases (``auc``,
    ``logloss``) get their metric's error. Metrics not covered (``f1``, R²,
    macro averages) are left out: they are held to the tolerance alone.
    """
    out: dict[str, float] = {}
    n = len(labelled)
    if n < 2:
        return out
    if task == "regression":
        errors = [float(s) - float(y) for s, y in labelled]
        for metric in ("mae", "mse", "rmse"):
            if metric in values:
                out[metric] = regression_standard_error(metric, values[metric], errors)
        return out
    for metric in ("accuracy", "error_rate"):
        if metric in values:
            out[metric] = _binomial_se(values[metric], n)
    if task == "binary":
        scores = np.asarray([float(s) for s, _ in labelled], dtype=np.float64)
        positive = np.asarray([float(y) >= 0.5 for _, y in labelled], dtype=bool)
        if "log_loss" in values:
            p = np.clip(scores, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
            per_row = -np.where(positive, np.log(p), np.log1p(-p))
            out["log_loss"] = float(np.std(per_row, ddof=1)) / math.sqrt(n)
        n_pos = int(positive.sum())
        if "roc_auc" in values:
            out["roc_auc"] = _auc_se(scores, positive)
        if "recall" in values:
            out["recall"] = _binomial_se(values["recall"], n_pos)
        if "precision" in values:
            out["precision"] = _binomial_se(values["precision"], int((scores >= 0.5).sum()))
    for alias, name in (("auc", "roc_auc"), ("logloss", "log_loss")):
        if alias in values and name in out:
            out[alias] = out[name]
    return out


def _binomial_se(rate: float, n: int) -> float:
    return math.sqrt(max(rate * (1.0 - rate), 0.0) / n) if n > 0 else 0.0


def _auc_se(scores: np.ndarray[Any, np.dtype[np.float64]], positive: np.ndarray[Any, np.dtype[np.bool_]]) -> float:
    """DeLong's standard error of the AUC of ``scores`` for ``positive`` (0 without both classes).

    From the placement values: the share of negatives each positive outscores
    and of positives each negative is outscored by (ties count half).
    """
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos < 2 or n_neg < 2:
        return 0.0
    ranks = rankdata(scores)
    pos, neg = scores[positive], scores[~positive]
    v10 = (ranks[positive] - rankdata(pos)) / n_neg
    v01 = 1.0 - (ranks[~positive] - rankdata(neg)) / n_pos
    return math.sqrt(float(np.var(v10, ddof=1)) / n_pos + float(np.var(v01, ddof=1)) / n_neg)


def mae_cusum(
    metrics: Mapping[str, float],
    first_errors: Sequence[float],
    *,
    tolerance: float,
    clip: float,
    threshold: float,
) -> tuple[Cusum, float] | None:
    """A one-sided CUSUM of absolute errors against the registered MAE, and the cap on each error.

    Returns ``(cusum, cap)``: feed it ``min(|error|, cap)``. ``None`` when no
    usable ``mae`` is registered. In units of the in-control spread of the
    absolute error (``sqrt(rmse² - mae²)`` from the registered metrics, or
    the standard deviation of ``first_errors``, the first window's absolute
    errors, when ``rmse``/``mse`` is not registered): target the registered
    MAE, slack ``tolerance * mae`` (a rise within the tolerance the threshold
    detector also allows accumulates nothing), decision interval
    ``threshold``. Errors are capped at ``mae + clip * spread``: a single huge
    error of a heavy-tailed model moves the sum by at most ``clip``, and the
    cap only lowers the in-control mean, so it never adds false alarms.
    """
    mae = metrics.get("mae")
    if mae is None or not (math.isfinite(mae) and mae > 0):
        return None
    rmse = metrics.get("rmse")
    if rmse is None and metrics.get("mse") is not None and metrics["mse"] >= 0:
        rmse = math.sqrt(metrics["mse"])
    spread = math.nan
    if rmse is not None and math.isfinite(rmse) and rmse > mae:
        spread = math.sqrt(rmse * rmse - mae * mae)
    elif len(first_errors) >= 2:
        spread = float(np.std(np.abs(np.asarray(first_errors, dtype=np.float64)), ddof=1))
    if not (math.isfinite(spread) and spread > 0):
        return None
    cusum = Cusum(target=float(mae), sigma=spread, k=tolerance * mae / spread, h=threshold, warmup=2,
                  direction="increase")
    return cusum, mae + clip * spread


def _class(label: float | str) -> str:
    if isinstance(label, float) and label.is_integer():
        return str(int(label))
    return str(label)


def compute_metrics(pairs: Sequence[tuple[Any, Any]]) -> tuple[Task, dict[str, float]]:
    """Metrics of (prediction, label) pairs (``mloop.stats.metrics``); undefined ones are left out.

    Registered metric names are matched under their usual aliases too
    (``auc`` for ``roc_auc``, ``logloss`` for ``log_loss``).
    """
    scores: list[float | str] = []
    labels: list[float | str] = []
    for p, y in pairs:
        s = score_of(p)
        if s is None or y is None:
            continue
        scores.append(s)
        labels.append(_label_value(y))
    if not scores:
        return "regression", {}
    task = task_of(scores, labels)
    raw: dict[str, float | None]
    try:
        if task == "regression":
            raw = dict(regression_metrics(np.asarray(labels, dtype=np.float64), np.asarray(scores, dtype=np.float64)))
        elif task == "binary":
            raw = dict(classification_metrics(np.asarray(labels, dtype=np.float64).astype(np.int64),
                                              y_score=np.asarray(scores, dtype=np.float64)))
        else:
            raw = dict(classification_metrics([_class(y) for y in labels], y_pred=[str(s) for s in scores]))
    except StatsError:
        return task, {}
    out = {k: float(v) for k, v in raw.items() if v is not None and k != "n" and math.isfinite(float(v))}
    for alias, name in (("auc", "roc_auc"), ("logloss", "log_loss"), ("f1_score", "f1")):
        if name in out:
            out[alias] = out[name]
    return task, out


def direction(metric: str) -> bool | None:
    """True if higher is better, False if lower is, None for a metric we do not know."""
    try:
        return higher_is_better(metric)
    except StatsError:
        return None
