"""The demo trainer's registered metrics: out-of-fold, from every row, honest about the new world."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mloop.demo.model import evaluate, fit, log_loss
from mloop.demo.training import CV_FOLDS, cross_validated, train_and_register
from mloop.demo.world import CATEGORICAL, NUMERIC, CreditRiskWorld

POST_DRIFT_ROWS = 900  # what a retraining job of the small demo gets


def test_the_model_is_fitted_on_every_row_and_its_metrics_come_from_rows_it_did_not_see() -> None:
    table = CreditRiskWorld(3).sample(POST_DRIFT_ROWS, drifted=True)
    model, metrics = cross_validated(table.columns, table.labels, seed=1)
    everything = fit(table.columns, table.labels, numeric=NUMERIC, categorical=CATEGORICAL)
    assert model.weights == pytest.approx(everything.weights) and model.bias == pytest.approx(everything.bias)
    in_sample = evaluate(model, table.columns, table.labels)
    # Scored on its own training rows the model looks better than it is; out of fold it does not.
    assert metrics["log_loss"] > in_sample["log_loss"] + 0.005
    assert set(metrics) == {"auc", "log_loss", "accuracy", "brier"}


def test_the_registered_log_loss_is_close_to_the_models_log_loss_on_new_traffic() -> None:
    # The baseline the monitor holds a version to: it must not sit apart from what the version
    # actually does on the drifted world, neither on average nor by much in any one run.
    gaps = []
    for seed in range(6):
        world = CreditRiskWorld(100 + seed)
        table = world.sample(POST_DRIFT_ROWS, drifted=True)
        model, metrics = cross_validated(table.columns, table.labels, seed=seed)
        live = world.sample(20_000, drifted=True)
        gaps.append(metrics["log_loss"] - log_loss(live.labels, model.predict_proba(live.columns)))
    assert abs(float(np.mean(gaps))) < 0.02
    assert max(abs(g) for g in gaps) < 0.05  # the demo's tolerance of a 0.3 log-loss is 0.045


def test_a_category_some_folds_never_trained_on_is_still_scored() -> None:
    table = CreditRiskWorld(4).sample(200, drifted=True)
    purpose = np.asarray(table.columns["purpose"]).copy()
    purpose[17] = "wedding"  # one row: the fold that holds it never trained on it
    columns = {**table.columns, "purpose": purpose}
    model, metrics = cross_validated(columns, table.labels)
    assert "wedding" in model.encoder.categories["purpose"]
    assert 0.5 < metrics["auc"] <= 1.0


def test_too_few_rows_for_the_folds_are_refused() -> None:
    table = CreditRiskWorld(5).sample(2 * CV_FOLDS - 1)
    with pytest.raises(ValueError, match="too few"):
        cross_validated(table.columns, table.labels)


class _Registry:
    def __init__(self) -> None:
        self.registered: dict[str, Any] = {}

    async def register_version(self, model: str, **kwargs: Any) -> dict[str, Any]:
        self.registered = {"model": model, **kwargs}
        return {"version": "2", "validation": {"passed": True, "checks": []}}


def test_the_version_is_registered_with_the_cross_validated_metrics_of_all_its_rows(tmp_path: Path) -> None:
    table = CreditRiskWorld(6).sample(400, drifted=True)
    registry = _Registry()
    trained = asyncio.run(train_and_register(
        registry, "m", table.columns, table.labels, work_dir=tmp_path, repo=tmp_path,  # type: ignore[arg-type]
        dataset_version="job-1", seed=2))
    _, expected = cross_validated(table.columns, table.labels, seed=2)
    assert trained.metrics == expected and trained.rows == 400
    assert registry.registered["metrics"] == {k: expected[k] for k in ("auc", "log_loss", "accuracy")}
    params = registry.registered["lineage"]["params"]
    assert params["rows"] == 400 and params["evaluation"] == f"{CV_FOLDS}-fold cross-validation"
