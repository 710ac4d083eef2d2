"""L2-regularised logistic regression in numpy/scipy, its artifact format and metrics.

Numeric features are standardised, categorical ones one-hot encoded with the
categories seen in training. Serving is strict: a category the artifact does
not know is an error (``unknown-category``), as a real feature pipeline would
refuse it rather than guess.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize
from scipy.special import expit

__all__ = ["Encoder", "LogisticModel", "ServingError", "auc", "evaluate", "fit", "log_loss", "score_metrics"]

FloatArray = npt.NDArray[np.float64]


class ServingError(Exception):
    """A request the model cannot score; ``code`` is the short error code logged with it."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(detail or code)
        self.code = code


@dataclass(frozen=True)
class Encoder:
    numeric: tuple[str, ...]
    means: tuple[float, ...]
    scales: tuple[float, ...]
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def fit(
        cls,
        columns: Mapping[str, Any],
        numeric: Sequence[str],
        categorical: Sequence[str],
        categories: Mapping[str, Sequence[str]] | None = None,
    ) -> Encoder:
        """Standardise ``numeric``; one-hot ``categorical`` with ``categories`` (default: those seen in ``columns``)."""
        means, scales = [], []
        for name in numeric:
            col = np.asarray(columns[name], dtype=float)
            means.append(float(np.mean(col)))
            scales.append(float(np.std(col)) or 1.0)
        cats = {
            name: tuple(categories[name]) if categories and name in categories else tuple(
                sorted({str(v) for v in columns[name]}))
            for name in categorical
        }
        return cls(tuple(numeric), tuple(means), tuple(scales), cats)

    @property
    def width(self) -> int:
        return len(self.numeric) + sum(len(c) for c in self.categories.values())

    def transform(self, columns: Mapping[str, Any]) -> FloatArray:
        """The design matrix; raises :class:`ServingError` on an unknown category or missing feature."""
        parts: list[FloatArray] = []
        try:
            x = np.column_stack([np.asarray(columns[n], dtype=float) for n in self.numeric])
        except KeyError as exc:
            raise ServingError("missing-feature", f"missing feature {exc.args[0]}") from exc
        parts.append((x - np.asarray(self.means)) / np.asarray(self.scales))
        for name, cats in self.categories.items():
            if name not in columns:
                raise ServingError("missing-feature", f"missing feature {name}")
            values = np.asarray(columns[name]).astype(str)
            onehot = values[:, None] == np.asarray(cats)[None, :]
            unknown = ~onehot.any(axis=1)
            if unknown.any():
                raise ServingError("unknown-category", f"{name}={values[unknown][0]!r} is not a known category")
            parts.append(onehot.astype(float))
        return np.hstack(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "numeric": list(self.numeric),
            "means": list(self.means),
            "scales": list(self.scales),
            "categories": {k: list(v) for k, v in self.categories.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Encoder:
        return cls(
            tuple(d["numeric"]),
            tuple(d["means"]),
            tuple(d["scales"]),
            {k: tuple(v) for k, v in d["categories"].items()},
        )


@dataclass(frozen=True)
class LogisticModel:
    encoder: Encoder
    weights: tuple[float, ...]
    bias: float
    params: dict[str, Any] = field(default_factory=dict)

    def predict_proba(self, columns: Mapping[str, Any]) -> FloatArray:
        """P(default) per row; raises :class:`ServingError` for rows it cannot score."""
        x = self.encoder.transform(columns)
        return np.asarray(expit(x @ np.asarray(self.weights) + self.bias), dtype=float)

    def predict_row(self, row: Mapping[str, Any]) -> float:
        return float(self.predict_proba({k: [v] for k, v in row.items()})[0])

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "mloop-demo.logistic/v1",
            "encoder": self.encoder.to_dict(),
            "weights": list(self.weights),
            "bias": self.bias,
            "params": self.params,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LogisticModel:
        return cls(Encoder.from_dict(d["encoder"]), tuple(d["weights"]), float(d["bias"]), dict(d.get("params", {})))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: Path) -> LogisticModel:
        return cls.from_dict(json.loads(path.read_text()))


def fit(
    columns: Mapping[str, Any],
    labels: npt.ArrayLike,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    c: float = 1.0,
    categories: Mapping[str, Sequence[str]] | None = None,
) -> LogisticModel:
    """Fit by L-BFGS on the mean log-loss plus ``||w||^2 / (2 C n)`` (the bias is not penalised).

    ``categories`` fixes the one-hot columns per categorical feature (default:
    the categories seen in ``columns``).
    """
    y = np.asarray(labels, dtype=float)
    enc = Encoder.fit(columns, numeric, categorical, categories)
    x = enc.transform(columns)
    n, d = x.shape
    lam = 1.0 / (c * n)

    def loss(theta: FloatArray) -> tuple[float, FloatArray]:
        w, b = theta[:d], theta[d]
        z = x @ w + b
        # log(1 + e^z) - y z, computed stably
        value = float(np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * lam * (w @ w))
        r = (expit(z) - y) / n
        grad = np.concatenate([x.T @ r + lam * w, [r.sum()]])
        return value, grad

    result = minimize(loss, np.zeros(d + 1), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    theta = result.x
    return LogisticModel(enc, tuple(float(v) for v in theta[:d]), float(theta[d]), {"C": c, "solver": "L-BFGS-B"})


def auc(y: npt.ArrayLike, score: npt.ArrayLike) -> float:
    """Area under the ROC curve (Mann-Whitney U with tie handling)."""
    from scipy.stats import rankdata

    yy = np.asarray(y, dtype=bool)
    s = np.asarray(score, dtype=float)
    pos, neg = int(yy.sum()), int((~yy).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[yy].sum() - pos * (pos + 1) / 2) / (pos * neg))


def log_loss(y: npt.ArrayLike, p: npt.ArrayLike) -> float:
    yy = np.asarray(y, dtype=float)
    pp = np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)
    return float(-np.mean(yy * np.log(pp) + (1 - yy) * np.log(1 - pp)))


def evaluate(model: LogisticModel, columns: Mapping[str, Any], labels: npt.ArrayLike) -> dict[str, float]:
    """AUC, log-loss, accuracy at 0.5 and Brier score of ``model`` on a labelled table."""
    return score_metrics(labels, model.predict_proba(columns))


def score_metrics(labels: npt.ArrayLike, scores: npt.ArrayLike) -> dict[str, float]:
    """AUC, log-loss, accuracy at 0.5 and Brier score of P(default) ``scores`` against ``labels``."""
    p = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=float)
    return {
        "auc": round(auc(y, p), 4),
        "log_loss": round(log_loss(y, p), 4),
        "accuracy": round(float(np.mean((p >= 0.5) == (y == 1))), 4),
        "brier": round(float(np.mean((p - y) ** 2)), 4),
    }
