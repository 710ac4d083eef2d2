"""Train a version and register it with full lineage and a training profile.

Used by the trainer process for retraining jobs and by the demo for the first
champion. Lineage is real: the dataset file's SHA-256, the repository's git
commit (when there is one), the lock file's hash as the environment.
"""

from __future__ import annotations

import csv
import hashlib
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mloop.client import RegistryClient, build_training_profile
from mloop.demo.model import LogisticModel, fit, score_metrics
from mloop.demo.world import CATEGORICAL, FEATURES, NUMERIC, feature_schema

__all__ = [
    "CV_FOLDS",
    "TrainedVersion",
    "cross_validated",
    "export_with_bug",
    "lineage_environment",
    "train_and_register",
    "write_dataset",
]

FEATURE_SET_VERSION = "credit-features-v3"


@dataclass(frozen=True)
class TrainedVersion:
    version: str
    validation_passed: bool
    checks: list[dict[str, Any]]
    metrics: dict[str, float]
    artifact: Path
    dataset: Path
    dataset_sha256: str
    rows: int
    train_seconds: float
    registration: dict[str, Any]


def write_dataset(columns: Mapping[str, Any], labels: npt.ArrayLike, path: Path) -> str:
    """Write the table as CSV; return its SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    y = np.asarray(labels).tolist()
    cols = [np.asarray(columns[f]).tolist() for f in FEATURES]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*FEATURES, "default"])
        for i, label in enumerate(y):
            w.writerow([*(c[i] for c in cols), label])
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _git(repo: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def lineage_environment(repo: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(code, environment)`` lineage: git remote and commit, the lock file's hash."""
    commit = _git(repo, "rev-parse", "HEAD")
    remote = _git(repo, "config", "--get", "remote.origin.url") or f"file://{repo.resolve()}"
    lock = repo / "uv.lock"
    lock_hash = hashlib.sha256(lock.read_bytes()).hexdigest() if lock.is_file() else None
    return (
        {"repo": remote, "commit": commit},
        {"image": "local-python-3.11", "lock_hash": f"sha256:{lock_hash}" if lock_hash else None},
    )


def export_with_bug(model: LogisticModel) -> LogisticModel:
    """The artifact a buggy exporter writes: the intercept is lost and the last category of
    ``purpose`` is dropped (with its weight), so those requests fail and the rest are miscalibrated."""
    enc = model.encoder
    cats = dict(enc.categories)
    offset = len(enc.numeric)
    drop_index = None
    for name, values in enc.categories.items():
        if name == "purpose":
            drop_index = offset + len(values) - 1
            cats[name] = values[:-1]
        offset += len(values)
    weights = tuple(w for i, w in enumerate(model.weights) if i != drop_index)
    buggy_encoder = type(enc)(enc.numeric, enc.means, enc.scales, cats)
    return LogisticModel(buggy_encoder, weights, 0.0, dict(model.params))


#: Folds of the cross-validation that estimates a version's metrics.
CV_FOLDS = 5


def _folds(n: int, seed: int, k: int = CV_FOLDS) -> list[npt.NDArray[np.int64]]:
    """``k`` disjoint test folds that cover ``range(n)``, shuffled by ``seed``."""
    idx = np.random.default_rng(seed).permutation(n)
    return [np.sort(f) for f in np.array_split(idx, k)]


def cross_validated(
    columns: Mapping[str, Any], labels: npt.ArrayLike, *, c: float = 1.0, seed: int = 0, k: int = CV_FOLDS
) -> tuple[LogisticModel, dict[str, float]]:
    """The model fitted on every row, and its metrics estimated by ``k``-fold cross-validation.

    Each row is scored by the model of the folds that did not see it and the
    metrics are computed once on all those out-of-fold scores: an honest
    held-out estimate whose sampling error is that of ``n`` rows, not of a
    quarter of them. A fixed 75/25 split of a small post-drift table
    registered metrics from ~200 rows, so a version's own baseline was off by
    more than a live window's tolerance often enough to raise false
    ``performance-degraded`` signals. The estimate is slightly pessimistic
    (each fold model sees ``(k-1)/k`` of the rows the registered model sees).
    Raises ``ValueError`` for fewer than ``2 * k`` rows.
    """
    y = np.asarray(labels)
    n = int(y.size)
    if n < 2 * k:
        raise ValueError(f"{n} rows are too few for {k}-fold cross-validation")
    # Every fold encodes the categories of the whole table: a category a fold's training rows
    # lack gets an all-zero column (weight 0 under L2) rather than failing that fold's scoring.
    categories = {name: sorted({str(v) for v in columns[name]}) for name in CATEGORICAL}
    scores = np.empty(n, dtype=np.float64)
    everything = np.arange(n)
    for test in _folds(n, seed, k):
        train = np.setdiff1d(everything, test, assume_unique=True)
        fold = fit(_rows(columns, train), y[train], numeric=NUMERIC, categorical=CATEGORICAL, c=c,
                   categories=categories)
        scores[test] = fold.predict_proba(_rows(columns, test))
    model = fit(columns, y, numeric=NUMERIC, categorical=CATEGORICAL, c=c)
    return model, score_metrics(y, scores)


def _rows(columns: Mapping[str, Any], idx: npt.NDArray[np.int64]) -> dict[str, Any]:
    return {k: np.asarray(v)[idx] for k, v in columns.items()}


async def train_and_register(
    registry: RegistryClient,
    model_name: str,
    columns: Mapping[str, Any],
    labels: npt.ArrayLike,
    *,
    work_dir: Path,
    repo: Path,
    dataset_version: str,
    retrain_job_id: str | None = None,
    exporter_bug: bool = False,
    c: float = 1.0,
    seed: int = 0,
    description: str = "",
) -> TrainedVersion:
    """Fit on the whole table, estimate its metrics by cross-validation, write the artifact and register it.

    The registered metrics are out-of-fold (:func:`cross_validated`): they are
    what the monitor holds the version's live performance to.
    """
    y = np.asarray(labels)
    n = int(y.size)
    dataset = work_dir / "datasets" / f"{model_name}-{dataset_version}.csv"
    sha = write_dataset(columns, y, dataset)
    began = time.perf_counter()
    model, metrics = cross_validated(columns, y, c=c, seed=seed)
    profile = build_training_profile(
        {k: np.asarray(columns[k]) for k in FEATURES},
        {**{k: "numeric" for k in NUMERIC}, **{k: "categorical" for k in CATEGORICAL}},
        prediction=model.predict_proba(columns),
    )
    train_seconds = time.perf_counter() - began

    artifact = work_dir / "artifacts" / model_name / f"{dataset_version}.json"
    (export_with_bug(model) if exporter_bug else model).save(artifact)
    code, environment = lineage_environment(repo)
    lineage = {
        "code": code,
        "dataset": {"uri": dataset.resolve().as_uri(), "version": dataset_version, "sha256": sha},
        "features": {"version": FEATURE_SET_VERSION, "schema": feature_schema()},
        "environment": environment,
        "params": {**model.params, "rows": n, "evaluation": f"{CV_FOLDS}-fold cross-validation"},
        "retrain_job_id": retrain_job_id,
    }
    result = await registry.register_version(
        model_name,
        artifact_uri=artifact.resolve().as_uri(),
        lineage=lineage,
        metrics={"auc": metrics["auc"], "log_loss": metrics["log_loss"], "accuracy": metrics["accuracy"]},
        training_profile=profile,
        description=description or f"logistic regression (L2, C={c}) on {n} rows",
        tags={"trainer": "mloop-demo", "dataset_version": dataset_version},
        idempotency_key=f"{model_name}:{dataset_version}",
    )
    validation = result.get("validation") or {}
    return TrainedVersion(
        version=str(result["version"]),
        validation_passed=bool(validation.get("passed", result.get("validation_passed"))),
        checks=list(validation.get("checks", [])),
        metrics=metrics,
        artifact=artifact,
        dataset=dataset,
        dataset_sha256=sha,
        rows=n,
        train_seconds=train_seconds,
        registration=result,
    )
