"""Performance metrics against hand-computed values and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from mloop.stats import (
    InvalidInputError,
    UndefinedMetricError,
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

Y_TRUE = [1, 0, 1, 1, 0, 0, 1, 0]
Y_PRED = [1, 0, 0, 1, 1, 0, 1, 0]  # tp 3, fp 1, fn 1, tn 3


def test_accuracy_precision_recall_f1_of_a_known_confusion_matrix() -> None:
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(6 / 8)
    assert precision_recall_f1(Y_TRUE, Y_PRED) == pytest.approx((0.75, 0.75, 0.75))
    assert precision_recall_f1(Y_TRUE, Y_PRED, positive_label=0) == pytest.approx((0.75, 0.75, 0.75))


def test_macro_average_is_the_mean_of_per_class_scores() -> None:
    y_true = ["a", "a", "b", "c", "c", "c"]
    y_pred = ["a", "b", "b", "c", "c", "a"]
    # a: p 1/2 r 1/2 ; b: p 1/2 r 1 ; c: p 1 r 2/3
    f1 = [0.5, 2 * 0.5 * 1 / 1.5, 2 * 1 * (2 / 3) / (5 / 3)]
    p, r, f = precision_recall_f1(y_true, y_pred, average="macro")
    assert (p, r, f) == pytest.approx((2 / 3, (0.5 + 1 + 2 / 3) / 3, sum(f1) / 3))


def test_no_predicted_positives_gives_zero_precision_not_an_error() -> None:
    assert precision_recall_f1([1, 0], [0, 0]) == (0.0, 0.0, 0.0)


def test_labels_from_different_producers_are_the_same_class() -> None:
    assert accuracy([1, 0, 1, 0], [1.0, "0", True, False]) == 1.0
    assert accuracy(["1", "0"], np.array([1, 0])) == 1.0


def test_roc_auc_is_the_mann_whitney_probability_with_ties_counted_half() -> None:
    y = [0, 0, 1, 1]
    assert roc_auc(y, [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert roc_auc(y, [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.5)
    assert roc_auc(y, [0.1, 0.2, 0.2, 0.9]) == pytest.approx(0.875)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 20)), min_size=2, max_size=200))
def test_roc_auc_agrees_with_scipy_mann_whitney(rows: list[tuple[bool, int]]) -> None:
    y = np.array([r[0] for r in rows])
    s = np.array([r[1] for r in rows], dtype=float)
    if y.all() or not y.any():
        with pytest.raises(UndefinedMetricError):
            roc_auc(y.astype(int), s)
        return
    u = sps.mannwhitneyu(s[y], s[~y]).statistic
    assert roc_auc(y.astype(int), s) == pytest.approx(u / (y.sum() * (~y).sum()))


def test_log_loss_is_clipped_and_matches_the_definition() -> None:
    y, p = [1, 0, 1], [0.9, 0.2, 0.6]
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.6)) / 3
    assert log_loss(y, p) == pytest.approx(expected)
    assert math.isfinite(log_loss([1], [0.0]))
    assert log_loss([1], [0.0]) == pytest.approx(-math.log(1e-15))


def test_multiclass_log_loss_reads_the_true_class_column() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    assert log_loss([0, 1, 2], probs) == pytest.approx(-np.mean(np.log([0.7, 0.8, 0.6])))
    assert log_loss(["x", "y", "z"], probs, classes=["x", "y", "z"]) == pytest.approx(log_loss([0, 1, 2], probs))
    with pytest.raises(UndefinedMetricError):
        log_loss([0, 1, 5], probs)


def test_classification_metrics_from_scores_threshold_them_and_add_auc_and_log_loss() -> None:
    y = [0, 1, 1, 0, 1]
    s = [0.1, 0.8, 0.4, 0.3, 0.9]
    m = classification_metrics(y, y_score=s)
    assert m["n"] == 5
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["error_rate"] == pytest.approx(0.2)
    assert (m["precision"], m["recall"]) == pytest.approx((1.0, 2 / 3))
    assert m["roc_auc"] == pytest.approx(1.0)
    assert m["log_loss"] == pytest.approx(log_loss(y, s))
    assert classification_metrics(y, y_score=s, threshold=0.35)["recall"] == pytest.approx(1.0)


def test_classification_metrics_mark_undefined_auc_as_none() -> None:
    m = classification_metrics([1, 1, 1], y_score=[0.2, 0.7, 0.9])
    assert m["roc_auc"] is None and m["accuracy"] == pytest.approx(2 / 3)


def test_classification_metrics_with_string_labels_are_macro_averaged() -> None:
    m = classification_metrics(["cat", "dog", "dog"], y_pred=["cat", "dog", "cat"])
    assert set(m) == {"n", "accuracy", "error_rate", "precision_macro", "recall_macro", "f1_macro"}
    assert m["accuracy"] == pytest.approx(2 / 3)


def test_classification_metrics_from_class_probabilities() -> None:
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.5, 0.4, 0.1]])
    m = classification_metrics([0, 1, 2, 1], y_score=probs)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["roc_auc"] == pytest.approx(1.0)
    assert "f1_macro" in m and "f1" not in m


def test_rows_missing_a_label_or_score_are_dropped() -> None:
    m = classification_metrics([1, None, 0, 1], y_score=[0.9, 0.5, math.nan, 0.2])
    assert m["n"] == 2


def test_classification_input_errors() -> None:
    with pytest.raises(InvalidInputError):
        classification_metrics([1, 0])
    with pytest.raises(InvalidInputError):
        accuracy([1, 0], [1])
    with pytest.raises(UndefinedMetricError):
        accuracy([None], [1])


def test_regression_metrics_of_known_errors() -> None:
    m = regression_metrics([1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 2.0, 4.0])
    assert m["rmse"] == pytest.approx(math.sqrt(0.5))
    assert m["mse"] == pytest.approx(0.5)
    assert m["mae"] == pytest.approx(0.5)
    assert m["r2"] == pytest.approx(1 - 2.0 / 5.0)
    assert m["mean_error"] == pytest.approx(0.0)
    assert rmse([0, 0], [3, 4]) == pytest.approx(math.sqrt(12.5))
    assert mae([0, None, 0], [3, 1, -4]) == pytest.approx(3.5)
    assert regression_metrics([2.0, 2.0], [1.0, 3.0])["r2"] is None


@pytest.mark.parametrize(
    ("name", "better_high"),
    [("accuracy", True), ("auc", True), ("roc_auc", True), ("f1_macro", True), ("r2", True),
     ("log_loss", False), ("RMSE", False), ("mae", False), ("error_rate", False)],
)  # fmt: skip
def test_metric_directions(name: str, better_high: bool) -> None:
    assert higher_is_better(name) is better_high


def test_unknown_metric_direction_is_an_error_not_a_guess() -> None:
    with pytest.raises(InvalidInputError):
        higher_is_better("vibes")
