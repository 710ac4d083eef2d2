"""Model performance from joined ground truth: the metrics a version is compared on.

Pure numpy/scipy. The metrics a version is compared on are the ones it was
registered with (``model-registered`` ``metrics``) that can be computed
from (prediction, label) pairs: accuracy, precision, recall, f1, auc,
log_loss for classification, rmse, mae for regression.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from scipy import stats as sps

__all__ = [
    "HIGHER_IS_BETTER",
    "LOWER_IS_BETTER",
    "Task",
    "compute_metrics",
    "loss_of",
    "score_of",
]

Task = Literal["binary", "classification", "regression"]

HIGHER_IS_BETTER = frozenset({"accuracy", "precision", "recall", "f1", "auc", "roc_auc"})
LOWER_IS_BETTER = frozenset({"log_loss", "logloss", "rmse", "mae", "mse", "error_rate"})


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


def _class(label: float | str) -> str:
    if isinstance(label, float) and label.is_integer():
        return str(int(label))
    return str(label)


def compute_metrics(pairs: Sequence[tuple[Any, Any]]) -> tuple[Task, dict[str, float]]:
    """Metrics of (prediction, label) pairs; metrics undefined for the data are left out."""
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
    out: dict[str, float] = {}
    if task == "regression":
        err = np.asarray(scores, dtype=np.float64) - np.asarray(labels, dtype=np.float64)
        out["rmse"] = float(np.sqrt(np.mean(err * err)))
        out["mae"] = float(np.mean(np.abs(err)))
        out["mse"] = float(np.mean(err * err))
        return task, out
    if task == "classification":
        hit = np.asarray([str(s) == _class(y) for s, y in zip(scores, labels, strict=True)])
        out["accuracy"] = float(hit.mean())
        out["error_rate"] = 1.0 - out["accuracy"]
        return task, out
    sc = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64) >= 0.5
    pred = sc >= 0.5
    tp = int(np.count_nonzero(pred & y))
    fp = int(np.count_nonzero(pred & ~y))
    fn = int(np.count_nonzero(~pred & y))
    out["accuracy"] = float(np.mean(pred == y))
    out["error_rate"] = 1.0 - out["accuracy"]
    if tp + fp:
        out["precision"] = tp / (tp + fp)
    if tp + fn:
        out["recall"] = tp / (tp + fn)
    if "precision" in out and "recall" in out and out["precision"] + out["recall"] > 0:
        out["f1"] = 2 * out["precision"] * out["recall"] / (out["precision"] + out["recall"])
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos and n_neg:
        ranks = sps.rankdata(sc)
        out["auc"] = float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
        out["roc_auc"] = out["auc"]
    clipped = np.clip(sc, 1e-15, 1 - 1e-15)
    out["log_loss"] = float(-np.mean(np.where(y, np.log(clipped), np.log1p(-clipped))))
    out["logloss"] = out["log_loss"]
    return task, out
