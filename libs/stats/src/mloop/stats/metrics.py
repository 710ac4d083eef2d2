"""Model performance metrics from predictions joined with ground truth.

Single metrics (:func:`accuracy`, :func:`precision_recall_f1`,
:func:`roc_auc`, :func:`log_loss`, :func:`rmse`, :func:`mae`) and two
bundles, :func:`classification_metrics` and :func:`regression_metrics`, that
return plain JSON-safe dicts (``None`` where a metric is undefined, e.g. AUC
with one class). :func:`higher_is_better` says which way a metric improves.

Labels are compared by name (``_coerce.category_name``): integral floats
are written as integers and booleans as 0/1, so ``1``, ``1.0``, ``"1"`` and
``True`` are the same class. Rows whose label
or score is missing (``None``, NaN) are dropped; the bundles report how many
rows were used as ``n``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from mloop.stats._coerce import Column, FloatArray, StrArray, as_float_array, category_name, category_names
from mloop.stats._exceptions import InvalidConfigError, InvalidInputError, UndefinedMetricError

__all__ = [
    "METRIC_DIRECTIONS",
    "Average",
    "accuracy",
    "classification_metrics",
    "higher_is_better",
    "log_loss",
    "mae",
    "precision_recall_f1",
    "regression_metrics",
    "rmse",
    "roc_auc",
]

Average = Literal["binary", "macro"]
LOG_LOSS_EPS = 1e-15

METRIC_DIRECTIONS: dict[str, bool] = {
    "accuracy": True,
    "precision": True,
    "recall": True,
    "f1": True,
    "precision_macro": True,
    "recall_macro": True,
    "f1_macro": True,
    "roc_auc": True,
    "r2": True,
    "error_rate": False,
    "log_loss": False,
    "rmse": False,
    "mse": False,
    "mae": False,
}
_ALIASES = {"auc": "roc_auc", "logloss": "log_loss", "f1_score": "f1", "error": "error_rate"}


def higher_is_better(name: str) -> bool:
    """Whether a larger value of metric ``name`` is better (``auc`` → True, ``rmse`` → False).

    Accepts the names the bundles return plus the aliases ``auc``,
    ``logloss``, ``f1_score`` and ``error``. Raises InvalidInputError for an
    unknown metric, so a gate never guesses a direction.
    """
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    try:
        return METRIC_DIRECTIONS[key]
    except KeyError:
        raise InvalidInputError(f"unknown metric {name!r}; known: {sorted(METRIC_DIRECTIONS)}") from None


# --------------------------------------------------------------------------- input handling


def _labels(values: Column, what: str) -> tuple[StrArray, npt.NDArray[np.bool_]]:
    """Labels as strings (missing as ""), plus a mask of present ones."""
    named = category_names(values, what, bools_as_ints=True)
    present = np.array([n is not None for n in named], dtype=np.bool_)
    return np.array([n or "" for n in named], dtype=np.str_).reshape(-1), present


def _label(value: object) -> str:
    name = category_name(value, bools_as_ints=True)
    if name is None:
        raise InvalidConfigError("positive_label must not be missing")
    return name


def _same_length(*arrays: npt.NDArray[np.generic]) -> None:
    sizes = {a.size for a in arrays}
    if len(sizes) > 1:
        raise InvalidInputError(f"inputs differ in length: {sorted(sizes)}")


def _pairs(y_true: Column, y_pred: Column) -> tuple[StrArray, StrArray]:
    t, t_ok = _labels(y_true, "y_true")
    p, p_ok = _labels(y_pred, "y_pred")
    _same_length(t, p)
    keep = t_ok & p_ok
    if not keep.any():
        raise UndefinedMetricError("no rows with both a label and a prediction")
    return t[keep], p[keep]


def _scored(y_true: Column, y_score: Column, positive_label: object) -> tuple[npt.NDArray[np.bool_], FloatArray]:
    t, t_ok = _labels(y_true, "y_true")
    s = as_float_array(y_score, "y_score")
    _same_length(t, s)
    keep = t_ok & np.isfinite(s)
    if not keep.any():
        raise UndefinedMetricError("no rows with both a label and a finite score")
    return t[keep] == _label(positive_label), s[keep]


# --------------------------------------------------------------------------- classification


def accuracy(y_true: Column, y_pred: Column) -> float:
    """Share of rows where the predicted label equals the true one.

    Raises InvalidInputError for different lengths, UndefinedMetricError if
    no row has both values.
    """
    t, p = _pairs(y_true, y_pred)
    return float(np.mean(t == p))


def precision_recall_f1(
    y_true: Column,
    y_pred: Column,
    *,
    average: Average = "binary",
    positive_label: object = 1,
) -> tuple[float, float, float]:
    """Precision, recall and F1 of predicted labels.

    ``binary`` scores the ``positive_label`` class; ``macro`` averages the
    per-class scores over every class seen in either input. A ratio with a
    zero denominator (no predicted or no actual positives) counts as 0.
    """
    t, p = _pairs(y_true, y_pred)
    if average == "binary":
        classes = [_label(positive_label)]
    elif average == "macro":
        classes = sorted(set(t.tolist()) | set(p.tolist()))
    else:
        raise InvalidConfigError(f"unknown average {average!r}")
    scores = np.array([_prf(t == c, p == c) for c in classes])
    return tuple(float(v) for v in scores.mean(axis=0))  # type: ignore[return-value]


def _prf(actual: npt.NDArray[np.bool_], predicted: npt.NDArray[np.bool_]) -> tuple[float, float, float]:
    tp = int(np.sum(actual & predicted))
    n_pred, n_true = int(predicted.sum()), int(actual.sum())
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2 * tp / (n_pred + n_true) if n_pred + n_true else 0.0
    return precision, recall, f1


def roc_auc(y_true: Column, y_score: Column, *, positive_label: object = 1) -> float:
    """Area under the ROC curve from ranks (Mann-Whitney U); tied scores count half.

    Raises UndefinedMetricError unless both classes are present.
    """
    positive, s = _scored(y_true, y_score, positive_label)
    return _auc(positive, s)


def _auc(positive: npt.NDArray[np.bool_], scores: FloatArray) -> float:
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise UndefinedMetricError("ROC AUC needs both positive and negative examples")
    ranks = sps.rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(
    y_true: Column,
    y_prob: Column,
    *,
    positive_label: object = 1,
    classes: Sequence[object] | None = None,
    eps: float = LOG_LOSS_EPS,
) -> float:
    """Mean negative log-likelihood, probabilities clipped to ``[eps, 1 - eps]``.

    ``y_prob`` is either the probability of ``positive_label`` (1-D) or one
    column per class (2-D; ``classes`` names the columns, default 0..k-1).
    Raises UndefinedMetricError if a true label is not among ``classes``.
    """
    probs = np.asarray(y_prob, dtype=np.float64)
    if probs.ndim == 1:
        positive, s = _scored(y_true, probs, positive_label)
        s = np.clip(s, eps, 1 - eps)
        return float(-np.mean(np.where(positive, np.log(s), np.log1p(-s))))
    t, rows = _multiclass_rows(y_true, probs, classes)
    picked = np.clip(rows[np.arange(t.size), t], eps, 1 - eps)
    return float(-np.mean(np.log(picked)))


def _multiclass_rows(
    y_true: Column, probs: FloatArray, classes: Sequence[object] | None
) -> tuple[npt.NDArray[np.intp], FloatArray]:
    if probs.ndim != 2:
        raise InvalidInputError("class probabilities must be 1-D or 2-D")
    names = [_label(c) for c in (classes if classes is not None else range(probs.shape[1]))]
    if len(names) != probs.shape[1]:
        raise InvalidInputError(f"{probs.shape[1]} probability columns but {len(names)} classes")
    t, t_ok = _labels(y_true, "y_true")
    if t.size != probs.shape[0]:
        raise InvalidInputError(f"inputs differ in length: {t.size} labels, {probs.shape[0]} rows")
    keep = t_ok & np.all(np.isfinite(probs), axis=1)
    index = {name: i for i, name in enumerate(names)}
    unknown = set(t[keep].tolist()) - set(index)
    if unknown:
        raise UndefinedMetricError(f"labels {sorted(unknown)} are not among the classes {names}")
    if not keep.any():
        raise UndefinedMetricError("no rows with both a label and finite probabilities")
    idx = np.array([index[v] for v in t[keep].tolist()], dtype=np.intp)
    return idx, probs[keep]


def classification_metrics(
    y_true: Column,
    *,
    y_score: Column | None = None,
    y_pred: Column | None = None,
    threshold: float = 0.5,
    positive_label: object = 1,
    classes: Sequence[object] | None = None,
) -> dict[str, float | None]:
    """All classification metrics that the inputs allow, as a JSON-safe dict.

    Give ``y_score`` (probability of ``positive_label``, 1-D; or one column
    per class, 2-D, named by ``classes``, default 0..k-1) and/or ``y_pred``
    (labels). Without labels, predictions are ``score >= threshold`` (1-D)
    or the most probable class (2-D). Binary problems (at most two labels,
    one of them possibly ``positive_label``) get ``precision``/``recall``/``f1``
    of the positive class, others their ``*_macro`` averages. ``roc_auc``
    (macro one-vs-rest for 2-D scores) and ``log_loss`` need scores.
    Undefined metrics are ``None``; ``n`` is the number of rows used for the
    label metrics. Raises InvalidInputError for mismatched lengths or when
    neither scores nor labels are given, UndefinedMetricError when no row is
    usable.
    """
    if y_score is None and y_pred is None:
        raise InvalidInputError("give y_score, y_pred or both")
    pos = _label(positive_label)
    out: dict[str, float | None] = {}
    label_true: Column = y_true
    label_pred: Column | None = y_pred
    force_macro = False
    if y_score is not None:
        scores = np.asarray(y_score, dtype=np.float64)
        if scores.ndim == 2:
            force_macro = True
            idx, rows = _multiclass_rows(y_true, scores, classes)
            picked = np.clip(rows[np.arange(idx.size), idx], LOG_LOSS_EPS, 1.0)
            out["log_loss"] = float(-np.mean(np.log(picked)))
            aucs = []
            for j in range(rows.shape[1]):
                try:
                    aucs.append(_auc(idx == j, rows[:, j]))
                except UndefinedMetricError:
                    continue
            out["roc_auc"] = float(np.mean(aucs)) if aucs else None
            if label_pred is None:
                names = [_label(c) for c in (classes if classes is not None else range(scores.shape[1]))]
                label_true = np.asarray(names)[idx]
                label_pred = np.asarray(names)[np.argmax(rows, axis=1)]
        else:
            positive, s = _scored(y_true, scores, positive_label)
            clipped = np.clip(s, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
            out["log_loss"] = float(-np.mean(np.where(positive, np.log(clipped), np.log1p(-clipped))))
            try:
                out["roc_auc"] = _auc(positive, s)
            except UndefinedMetricError:
                out["roc_auc"] = None
            if label_pred is None:
                return _binary(positive, s >= threshold) | out
    assert label_pred is not None
    t, p = _pairs(label_true, label_pred)
    if force_macro or len(set(t.tolist()) | set(p.tolist()) | {pos}) > 2:
        acc = float(np.mean(t == p))
        seen = sorted(set(t.tolist()) | set(p.tolist()))
        prf = np.array([_prf(t == c, p == c) for c in seen]).mean(axis=0)
        macro: dict[str, float | None] = {
            "n": t.size,
            "accuracy": acc,
            "error_rate": 1.0 - acc,
            "precision_macro": float(prf[0]),
            "recall_macro": float(prf[1]),
            "f1_macro": float(prf[2]),
        }
        return macro | out
    return _binary(t == pos, p == pos) | out


def _binary(actual: npt.NDArray[np.bool_], predicted: npt.NDArray[np.bool_]) -> dict[str, float | None]:
    acc = float(np.mean(actual == predicted))
    precision, recall, f1 = _prf(actual, predicted)
    return {
        "n": actual.size,
        "accuracy": acc,
        "error_rate": 1.0 - acc,
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


# --------------------------------------------------------------------------- regression


def _regression_pairs(y_true: Column, y_pred: Column) -> tuple[FloatArray, FloatArray]:
    t = as_float_array(y_true, "y_true")
    p = as_float_array(y_pred, "y_pred")
    _same_length(t, p)
    keep = np.isfinite(t) & np.isfinite(p)
    if not keep.any():
        raise UndefinedMetricError("no rows with both a finite target and prediction")
    return t[keep], p[keep]


def rmse(y_true: Column, y_pred: Column) -> float:
    """Root mean squared error over rows where both values are finite."""
    t, p = _regression_pairs(y_true, y_pred)
    return math.sqrt(float(np.mean((p - t) ** 2)))


def mae(y_true: Column, y_pred: Column) -> float:
    """Mean absolute error over rows where both values are finite."""
    t, p = _regression_pairs(y_true, y_pred)
    return float(np.mean(np.abs(p - t)))


def regression_metrics(y_true: Column, y_pred: Column) -> dict[str, float | None]:
    """``n``, ``rmse``, ``mse``, ``mae``, ``r2`` (``None`` for a constant target) and
    ``mean_error`` (prediction minus target: positive means over-prediction).

    Raises InvalidInputError for different lengths, UndefinedMetricError if
    no row has two finite values.
    """
    t, p = _regression_pairs(y_true, y_pred)
    err = p - t
    mse = float(np.mean(err**2))
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    return {
        "n": t.size,
        "rmse": math.sqrt(mse),
        "mse": mse,
        "mae": float(np.mean(np.abs(err))),
        "r2": 1.0 - float(np.sum(err**2)) / ss_tot if ss_tot > 0 else None,
        "mean_error": float(err.mean()),
    }
