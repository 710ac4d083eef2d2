"""The monitor's decisions, without Kafka or Postgres."""

from __future__ import annotations

import json
import math
import zlib
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from mloop.monitor.domain import (
    LabelledPrediction,
    MonitorConfig,
    Outcome,
    PredictionBatch,
    VersionMonitor,
    WindowSettings,
)
from mloop.monitor.domain.windows import (
    NumericColumn,
    NumericCounts,
    Pane,
    numeric_column,
    numeric_columns,
    request_hashes,
)
from mloop.stats.profile import ReferenceProfile

SCHEMA: list[dict[str, Any]] = [
    {"name": "x", "type": "number"}, {"name": "y", "type": "number"}, {"name": "c", "type": "category"},
    {"name": "opt", "type": "number", "optional": True},
]


def _columns(rng: np.random.Generator, n: int, shift: float = 0.0, mass: float = 0.0) -> dict[str, Any]:
    p = np.array([0.5, 0.3, 0.2]) + np.array([-mass, mass / 2, mass / 2])
    return {"x": rng.normal(shift, 1, n), "y": rng.uniform(0, 1, n),
            "c": rng.choice(["a", "b", "c"], n, p=p)}


def _reference(seed: int = 0) -> ReferenceProfile:
    rng = np.random.default_rng(seed)
    cols = _columns(rng, 5000)
    return ReferenceProfile.from_columns(cols, {"c": "categorical"}, prediction=rng.uniform(0, 1, 5000))


def _batch(rng: np.random.Generator, n: int, start: int = 0, shift: float = 0.0, mass: float = 0.0,
           pred_shift: float = 0.0, step_s: float = 1.0) -> PredictionBatch:
    cols = _columns(rng, n, shift, mass)
    feats = [{"x": float(cols["x"][i]), "y": float(cols["y"][i]), "c": str(cols["c"][i])} for i in range(n)]
    preds = np.clip(rng.uniform(0, 1, n) + pred_shift, 0, 1).tolist()
    times = (start + np.arange(n, dtype=np.float64)) * step_s
    return PredictionBatch([f"r{start + i}" for i in range(n)], times.astype(np.float64), feats, preds)


def _config(**window: Any) -> MonitorConfig:
    return MonitorConfig.model_validate({"window": {"size": 500, **window}, "reference_size": 500,
                                         "performance": {"window_labels": 100}})


def _monitor(profile: bool = True) -> VersionMonitor:
    return VersionMonitor("m", "1", schema=[dict(f) for f in SCHEMA], metrics={"accuracy": 0.9},
                          reference=_reference() if profile else None,
                          reference_source="training-profile" if profile else "first-predictions")


def _feed(m: VersionMonitor, batch: PredictionBatch, config: MonitorConfig, size: int) -> Outcome:
    out = Outcome()
    for i in range(0, len(batch), size):
        out.extend(m.observe(batch.slice(i, i + size), config))
    return out


def _rounded(x: Any) -> Any:
    """Moments merged from differently sized batches differ in the last bits of a float."""
    if isinstance(x, float):
        return float(f"{x:.10g}")
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    return x


def _verdicts(out: Outcome) -> list[tuple[Any, ...]]:
    return [(r.signal, r.window_no, r.window.size, r.alarm, r.severity,
             json.dumps(_rounded(r.evidence), sort_keys=True)) for r in out.results]


def test_tumbling_count_windows_do_not_depend_on_how_traffic_was_batched() -> None:
    config = _config()
    stream = _batch(np.random.default_rng(1), 2300, shift=0.0)
    outs = []
    for size in (1, 37, 500, 2300):
        m = _monitor()
        outs.append((_verdicts(_feed(m, stream, config, size)), json.dumps(_rounded(m.to_state()), sort_keys=True)))
    assert all(o == outs[0] for o in outs[1:])
    assert [v[1] for v in outs[0][0] if v[0] == "data"] == [1, 2, 3, 4]
    assert all(v[2] == 500 for v in outs[0][0])


def test_the_state_round_trips_through_json_mid_window_and_continues_identically() -> None:
    config = _config()
    stream = _batch(np.random.default_rng(2), 1700, shift=0.4)
    whole = _monitor()
    expected = _verdicts(_feed(whole, stream, config, 100))
    m = _monitor()
    out = _feed(m, stream.slice(0, 730), config, 100)
    state = json.loads(json.dumps(m.to_state()))
    resumed = VersionMonitor.from_state("m", "1", state, reference=_reference(), reference_source="training-profile",
                                        schema=[dict(f) for f in SCHEMA], metrics={"accuracy": 0.9})
    out.extend(_feed(resumed, stream.slice(730, 1700), config, 100))
    assert _verdicts(out) == expected


def test_identical_data_raises_no_alarm() -> None:
    m, config = _monitor(), _config()
    out = _feed(m, _batch(np.random.default_rng(3), 5000), config, 250)
    assert len([r for r in out.results if r.signal == "data"]) == 10
    assert out.emissions == []


def test_a_drift_opens_one_incident_which_resolves_after_two_clean_windows() -> None:
    m, config = _monitor(), _config()
    rng = np.random.default_rng(4)
    out = _feed(m, _batch(rng, 1000), config, 250)
    out.extend(_feed(m, _batch(rng, 1500, start=1000, shift=1.0), config, 250))
    out.extend(_feed(m, _batch(rng, 1000, start=2500), config, 250))
    data = [r for r in out.results if r.signal == "data"]
    assert [r.alarm for r in data] == [False, False, True, True, True, False, False]
    topics = [e.topic for e in out.emissions]
    assert topics == ["drift-detected", "incident-resolved"]
    opened, resolved = out.emissions[0].payload, out.emissions[1].payload
    assert opened.kind == "data" and opened.window.size == 500  # type: ignore[attr-defined]
    drifted = [f for f in opened.features if f.drifted]  # type: ignore[attr-defined]
    assert [f.name for f in drifted] == ["x"] and drifted[0].p_value is not None
    assert drifted[0].effect_size is not None and drifted[0].effect_size > 0.02
    assert resolved.incident_id == opened.incident_id  # type: ignore[attr-defined]
    assert m.incidents == {}
    # A new drift is a new incident.
    again = _feed(m, _batch(rng, 500, start=3500, shift=1.0), config, 500)
    assert [e.topic for e in again.emissions] == ["drift-detected"]
    assert again.emissions[0].payload.incident_id != opened.incident_id  # type: ignore[attr-defined]


def test_a_single_clean_window_between_drifted_ones_does_not_resolve_the_incident() -> None:
    m, config = _monitor(), _config()
    rng = np.random.default_rng(5)
    out = _feed(m, _batch(rng, 500, shift=1.0), config, 500)
    out.extend(_feed(m, _batch(rng, 500, start=500), config, 500))
    out.extend(_feed(m, _batch(rng, 500, start=1000, shift=1.0), config, 500))
    assert [e.topic for e in out.emissions] == ["drift-detected"]


def test_moving_categorical_mass_is_detected_and_prediction_drift_is_its_own_kind() -> None:
    m, config = _monitor(), _config()
    rng = np.random.default_rng(6)
    out = _feed(m, _batch(rng, 2000, mass=0.15, pred_shift=0.3), config, 500)
    kinds = sorted(e.payload.kind for e in out.emissions if e.topic == "drift-detected")  # type: ignore[attr-defined]
    assert kinds == ["data", "prediction"]
    data = next(e.payload for e in out.emissions if getattr(e.payload, "kind", None) == "data")
    assert [f.name for f in data.features if f.drifted] == ["c"]  # type: ignore[attr-defined]


def test_sliding_count_windows_evaluate_every_slide_once_the_window_is_full() -> None:
    m, config = _monitor(), _config(mode="sliding", slide=100)
    out = _feed(m, _batch(np.random.default_rng(7), 1000), config, 33)
    data = [r for r in out.results if r.signal == "data"]
    assert [r.window.size for r in data] == [500] * 6
    assert [r.window.start.timestamp() for r in data] == [0.0, 100.0, 200.0, 300.0, 400.0, 500.0]


def test_time_windows_close_when_event_time_passes_their_end() -> None:
    m, config = _monitor(), _config(by="time", seconds=600.0, min_rows=100)
    out = _feed(m, _batch(np.random.default_rng(8), 3000, step_s=1.0), config, 128)
    data = [r for r in out.results if r.signal == "data"]
    assert [r.window.size for r in data] == [600] * 4
    assert [r.window.start.timestamp() for r in data] == [0.0, 600.0, 1200.0, 1800.0]
    sliding = _monitor()
    out = _feed(sliding, _batch(np.random.default_rng(8), 1500), _config(
        by="time", mode="sliding", seconds=600.0, slide_seconds=300.0, min_rows=100), 500)
    assert [r.window.size for r in out.results if r.signal == "data"] == [300, 600, 600, 600]


def test_without_a_training_profile_the_first_predictions_become_the_reference() -> None:
    m, config = _monitor(profile=False), _config()
    rng = np.random.default_rng(9)
    out = _feed(m, _batch(rng, 700), config, 300)
    assert m.reference is not None and m.reference.row_count == 500 and m.reference_changed
    assert m.reference_source == "first-predictions"
    assert m.reference.kinds == {"x": "numeric", "y": "numeric", "c": "categorical", "opt": "numeric"}
    assert out.results == [] and m.open_pane is not None and m.open_pane.rows == 200
    out = _feed(m, _batch(rng, 300, start=700), config, 300)
    assert [r.alarm for r in out.results if r.signal == "data"] == [False]


def test_quality_violations_name_the_feature_and_the_kind() -> None:
    m, config = _monitor(), _config()
    batch = _batch(np.random.default_rng(10), 500)
    for i, f in enumerate(batch.features):
        if i % 10 == 0:
            f["x"] = float("nan")
        elif i % 10 == 1:
            f["y"] = "seven"
        elif i % 10 in (2, 6):
            f["c"] = "brand-new"
        elif i % 10 == 3:
            f["extra"] = 1
        elif i % 10 == 4:
            del f["y"]
        elif i % 10 == 5:
            f["x"] = 1e9
    out = m.observe(batch, config)
    q = next(e.payload for e in out.emissions if e.topic == "data-quality-violated")
    found = {(v.kind, v.feature) for v in q.violations}  # type: ignore[attr-defined]
    assert found >= {("invalid-value", "x"), ("type-error", "y"), ("unseen-category", "c"),
                     ("schema-mismatch", "extra"), ("schema-mismatch", "y"), ("out-of-range", "x")}
    assert ("missing-rate", "x") not in found


def test_performance_below_the_registered_metric_alarms_once() -> None:
    m, config = _monitor(), _config()
    rng = np.random.default_rng(11)
    scores = rng.uniform(0, 1, 400)
    good = [LabelledPrediction(f"r{i}", float(s), int(s >= 0.5), float(i), float(i) + 60) for i, s in enumerate(scores)]
    out = m.observe_labels(good[:200], config)
    assert [r.alarm for r in out.results] == [False, False] and out.emissions == []
    bad = [LabelledPrediction(p.request_id, p.prediction, 1 - p.label if i % 2 else p.label, p.predicted_at,
                              p.labelled_at) for i, p in enumerate(good[200:])]
    out = m.observe_labels(bad, config)
    assert [r.alarm for r in out.results] == [True, True]
    (event,) = [e.payload for e in out.emissions]
    assert event.metric == "accuracy" and event.baseline == 0.9  # type: ignore[attr-defined]
    assert event.value < event.threshold and event.window.size == 100  # type: ignore[attr-defined]


def test_regression_performance_is_tracked_with_rmse() -> None:
    m = VersionMonitor("m", "1", metrics={"rmse": 1.0}, reference=_reference(), reference_source="training-profile")
    rng = np.random.default_rng(12)
    y = rng.normal(10, 3, 300)
    pairs = [LabelledPrediction(f"r{i}", float(y[i] + rng.normal(0, 3)), float(y[i]), float(i), float(i))
             for i in range(300)]
    out = m.observe_labels(pairs, _config())
    assert all(r.alarm for r in out.results) and out.results[0].evidence["task"] == "regression"
    assert [e.payload.metric for e in out.emissions] == ["rmse"]  # type: ignore[attr-defined]


def test_sliding_windows_need_a_slide_that_divides_the_size() -> None:
    with pytest.raises(ValidationError, match="slide must divide size"):
        WindowSettings(mode="sliding", size=1000, slide=300)
    assert WindowSettings(mode="sliding", size=1000, slide=250).panes_per_window == 4


def test_served_values_are_told_apart_as_missing_invalid_or_wrong_type() -> None:
    col = numeric_column([1, 2.5, None, float("nan"), float("inf"), "3.5", "abc", True])
    assert col.missing == 1 and col.invalid == 2 and col.type_errors == 1
    assert col.values[5] == 3.5 and math.isnan(col.values[6]) and col.values[7] == 1.0


def test_the_one_pass_numeric_columns_equal_the_column_by_column_conversion() -> None:
    values = [1, 2.5, float("nan"), float("inf"), "3.5", True, -0.0]
    features = [{"x": v, "y": float(i), "c": "a"} for i, v in enumerate(values)]
    fast = numeric_columns(features, ["y", "x"])
    assert fast is not None and fast[0] is not None
    slow = numeric_column([f["y"] for f in features])
    assert (fast[0].missing, fast[0].invalid, fast[0].type_errors) == (0, 0, 0) == (
        slow.missing, slow.invalid, slow.type_errors)
    np.testing.assert_array_equal(fast[0].values, slow.values)
    clean = [f for f in features if f["x"] not in (values[2], values[3])]
    x = numeric_columns(clean, ["x"])
    assert x is not None and x[0] is not None
    np.testing.assert_array_equal(x[0].values, numeric_column([f["x"] for f in clean]).values)
    # What only the general way tells apart: a missing value (read as NaN here), NaN/inf, a wrong type,
    # a missing key.
    assert fast[1] is None
    with_none = numeric_columns([*clean, {"x": None, "y": 1.0, "c": "a"}], ["x", "y"])
    assert with_none is not None and with_none[0] is None and with_none[1] is not None
    assert numeric_columns([*features, {"x": "abc", "y": 1.0, "c": "a"}], ["x", "y"]) is None
    assert numeric_columns([*features, {"y": 1.0, "c": "a", "z": 2.0}], ["x", "y"]) is None


def test_a_batch_counts_the_same_through_the_fast_and_the_general_way() -> None:
    rng = np.random.default_rng(21)
    batch = _batch(rng, 650, shift=0.5)
    batch.features[3]["x"], batch.features[4]["x"], batch.features[7]["y"] = None, float("nan"), float("inf")
    batch.features[8]["y"] = "0.25"
    odd = [dict(f) for f in batch.features]
    odd[5]["opt"] = 1.0  # an optional feature served: the general way, record by record
    fast_m, slow_m = _monitor(), _monitor()
    fast = fast_m.observe(batch, _config(size=200))
    slow = slow_m.observe(type(batch)(batch.request_ids, batch.timestamps, odd, batch.predictions, batch.errors),
                          _config(size=200))
    assert len(fast.results) == len(slow.results) > 0
    assert [(r.signal, r.alarm, r.evidence) for r in fast.results] == [
        (r.signal, r.alarm, r.evidence) for r in slow.results]
    fast_state, slow_state = fast_m.to_state(), slow_m.to_state()
    assert fast_state["predictions_seen"] == 650 and fast_m.open_pane is not None
    assert json.dumps(fast_state, sort_keys=True) == json.dumps(slow_state, sort_keys=True)


def test_small_windows_are_tested_on_counts_by_default_and_keep_no_samples() -> None:
    small = _config(size=200)
    m = _monitor()
    out = _feed(m, _batch(np.random.default_rng(13), 400, shift=1.0), small, 64)
    data = [r for r in out.results if r.signal == "data"]
    x = next(f for f in data[0].evidence["features"] if f["name"] == "x")
    assert x["method"] == "omnibus" and x["drifted"] and x["detail"]["effect_kind"] == "shift"
    assert 0.5 < x["effect_size"] < 1.5  # a shift of one reference standard deviation, estimated from counts
    m.observe(_batch(np.random.default_rng(14), 50), small)
    assert m.open_pane is not None
    counts = m.open_pane.features["x"]
    assert isinstance(counts, NumericCounts) and counts.moments.n > 0 and counts.sample_values.size == 0


def test_small_windows_keep_samples_and_use_ks_when_a_small_window_size_is_configured() -> None:
    small = MonitorConfig.model_validate({"window": {"size": 200}, "reference_size": 500,
                                          "drift": {"small_window_rows": 500}})
    m = _monitor()
    out = _feed(m, _batch(np.random.default_rng(13), 400, shift=1.0), small, 64)
    data = [r for r in out.results if r.signal == "data"]
    x = next(f for f in data[0].evidence["features"] if f["name"] == "x")
    assert x["method"] == "ks" and x["drifted"] and x["detail"]["current_sample"] == 200
    large = _monitor()
    large.observe(_batch(np.random.default_rng(14), 300), _config())
    assert large.open_pane is not None
    counts = large.open_pane.features["x"]
    assert isinstance(counts, NumericCounts) and counts.sample_values.size == 0


def test_a_training_profile_registered_late_replaces_the_first_predictions_reference_and_restarts_windows() -> None:
    m, config = _monitor(profile=False), _config()
    m.observe(_batch(np.random.default_rng(15), 800), config)
    assert m.reference_source == "first-predictions" and m.open_pane is not None
    m.set_training_profile(_reference())
    assert str(m.reference_source) == "training-profile" and m.reference_changed
    assert m.open_pane is None and m.panes == [] and m.predictions_seen == 800
    out = m.observe(_batch(np.random.default_rng(16), 500), config)
    assert [r.window.size for r in out.results if r.signal == "data"] == [500]


# --------------------------------------------------------------------------- partition independence


def _shuffled(batch: PredictionBatch, order: np.ndarray[Any, np.dtype[np.int64]]) -> PredictionBatch:
    return batch.take(order)


def _sampled_config(**window: Any) -> MonitorConfig:
    # A small-window size above the window keeps a bottom-k sample per numeric feature.
    return MonitorConfig.model_validate({"window": {"size": 500, **window}, "reference_size": 500,
                                         "drift": {"small_window_rows": 100_000, "sample_size": 200}})


def test_a_panes_sample_depends_on_its_rows_not_on_their_order_or_batching() -> None:
    config = _sampled_config(size=2000)
    stream = _batch(np.random.default_rng(21), 1500)
    order = np.random.default_rng(22).permutation(1500)
    a, b = _monitor(), _monitor()
    _feed(a, stream, config, 1500)
    _feed(b, _shuffled(stream, order), config, 37)
    assert a.open_pane is not None and b.open_pane is not None
    pa, pb = a.open_pane.to_dict(), b.open_pane.to_dict()
    for name in ("x", "y", "prediction"):
        fa = pa["features"][name] if name != "prediction" else pa["prediction"]
        fb = pb["features"][name] if name != "prediction" else pb["prediction"]
        assert fa["sp"] == fb["sp"] and fa["sv"] == fb["sv"]  # the same sample, stored the same way
        assert fa["counts"] == fb["counts"]
        assert fa["moments"][0] == fb["moments"][0]
        assert fa["moments"][1:] == pytest.approx(fb["moments"][1:], rel=1e-12)  # summation order
    assert pa["features"]["c"] == pb["features"]["c"] and pa["rows"] == pb["rows"] == 1500
    counts = a.open_pane.features["x"]
    assert isinstance(counts, NumericCounts) and counts.sample_values.size == 200
    # Uniform: the kept rows' priorities are the 200 lowest of 1,500 uniform draws.
    assert counts.sample_priority.max() < 0.25


def test_equal_priorities_keep_the_smaller_values_whatever_the_order() -> None:
    config = _sampled_config(size=2000)
    stream = _batch(np.random.default_rng(23), 600)
    twice = PredictionBatch(stream.request_ids * 2, np.concatenate([stream.timestamps] * 2),
                            stream.features + [{**f, "x": f["x"] + 1.0} for f in stream.features],
                            stream.predictions * 2)
    a, b = _monitor(), _monitor()
    a.observe(twice, config)
    b.observe(twice.take(np.arange(1199, -1, -1)), config)
    assert a.open_pane is not None and b.open_pane is not None
    assert a.open_pane.to_dict()["features"]["x"]["sv"] == b.open_pane.to_dict()["features"]["x"]["sv"]


def _partitioned(stream: PredictionBatch, parts: int, chunk: int) -> list[list[PredictionBatch]]:
    """The stream cut into chunks of ``chunk`` records, each chunk to a partition by its first request id."""
    out: list[list[PredictionBatch]] = [[] for _ in range(parts)]
    for i in range(0, len(stream), chunk):
        p = zlib.crc32(stream.request_ids[i].encode()) % parts
        piece = stream.slice(i, i + chunk)
        out[p].append(PredictionBatch(piece.request_ids, piece.timestamps, piece.features, piece.predictions,
                                      0, p, tuple(range(parts))))
    return out


def _drift_figures(out: Outcome) -> list[tuple[Any, ...]]:
    rows = []
    for r in out.results:
        feats = r.evidence.get("features", [])
        rows.append((r.signal, r.window_no, r.window.size, r.alarm, r.window.start, r.window.end,
                     [(f["name"], f["statistic"], f["p_value"], f["drifted"]) for f in feats]))
    return rows


@pytest.mark.parametrize("mode", ["tumbling", "sliding"])
def test_time_windows_hold_the_same_rows_whatever_order_the_partitions_are_read_in(mode: str) -> None:
    window = {"by": "time", "mode": mode, "seconds": 600.0, "min_rows": 100, "allowed_lateness": 5.0}
    if mode == "sliding":
        window["slide_seconds"] = 200.0
    config = MonitorConfig.model_validate({"window": window, "reference_size": 500,
                                           "drift": {"small_window_rows": 100_000, "sample_size": 300}})
    rng = np.random.default_rng(24)
    clean, drifted = _batch(rng, 2400), _batch(rng, 2400, start=2400, shift=0.8)
    stream = PredictionBatch(clean.request_ids + drifted.request_ids,
                             np.concatenate([clean.timestamps, drifted.timestamps]),
                             clean.features + drifted.features, clean.predictions + drifted.predictions)
    parts = _partitioned(stream, 4, 20)
    # One partition after the other, each read to its end before the next.
    one_by_one, a = Outcome(), _monitor()
    for batches in parts:
        for b in batches:
            one_by_one.extend(a.observe(b, config))
    # Round robin over the partitions, last partition first, three chunks at a time.
    interleaved, m = Outcome(), _monitor()
    cursors = [0] * len(parts)
    while any(c < len(p) for c, p in zip(cursors, parts, strict=True)):
        for i in reversed(range(len(parts))):
            for b in parts[i][cursors[i]:cursors[i] + 3]:
                interleaved.extend(m.observe(b, config))
            cursors[i] += 3
    assert _drift_figures(one_by_one) == _drift_figures(interleaved)
    assert a.late_rows == m.late_rows == 0
    data = [r for r in interleaved.results if r.signal == "data"]
    open_rows = sum(p.rows for p in m.open_panes.values())
    if mode == "tumbling":
        # The last window stays open: no partition has read past its end.
        assert [r.window.size for r in data] == [600] * 7
        assert sum(r.window.size for r in data) + open_rows == len(stream)
        assert [r.alarm for r in data] == [False] * 4 + [True] * 3
    else:
        assert [r.window.size for r in data][:3] == [200, 400, 600] and len(data) == 23  # 24 panes, the last open


def test_a_record_read_after_its_pane_closed_is_counted_late_not_windowed() -> None:
    config = _config(by="time", seconds=600.0, min_rows=100, allowed_lateness=10.0)
    rng = np.random.default_rng(25)
    m = _monitor()
    out = m.observe(_batch(rng, 700), config)  # 0..699 s: the first pane closes at 610 s
    assert [r.window.size for r in out.results if r.signal == "data"] == [600]
    # Within the lateness on its own partition: still counted, in the open pane.
    m.observe(_batch(rng, 5, start=695), config)
    assert m.late_rows == 0 and m.open_panes[1].rows == 105
    # Of the closed pane: late, counted as such, no pane opened for it.
    m.observe(_batch(rng, 3, start=100), config)
    assert m.late_rows == 3 and sorted(m.open_panes) == [1]
    out = m.observe(_batch(rng, 600, start=700), config)
    quality = [r for r in out.results if r.signal == "quality"]
    assert quality[0].evidence["late_rows"] == 3 and quality[0].window.size == 600 + 105 - 100
    state = json.loads(json.dumps(m.to_state()))
    assert state["late_rows"] == 3 and state["watermarks"] == {"0": 1299.0}
    # Read in one batch, the same records are late and reported with the same window.
    rng = np.random.default_rng(25)
    parts = [_batch(rng, 700), _batch(rng, 5, start=695), _batch(rng, 3, start=100), _batch(rng, 600, start=700)]
    whole = PredictionBatch([r for b in parts for r in b.request_ids], np.concatenate([b.timestamps for b in parts]),
                            [f for b in parts for f in b.features], [p for b in parts for p in b.predictions])
    one = _monitor()
    again = [r for r in one.observe(whole, config).results if r.signal == "quality"]
    assert [(r.window_no, r.window.size, r.evidence["late_rows"]) for r in again] == [(1, 600, 0), (2, 605, 3)]
    assert one.late_rows == 3


def test_a_time_pane_waits_for_every_partition_carrying_the_traffic() -> None:
    config = _config(by="time", seconds=600.0, min_rows=100, allowed_lateness=0.0)
    rng = np.random.default_rng(26)
    m = _monitor()
    first = _batch(rng, 1000)
    out = m.observe(PredictionBatch(first.request_ids, first.timestamps, first.features, first.predictions,
                                    0, 0, (0, 1)), config)
    assert out.results == [] and m.watermarks == {0: 999.0}  # partition 1 has not passed 600 s yet
    second = _batch(rng, 10, start=600)
    out = m.observe(PredictionBatch(second.request_ids, second.timestamps, second.features, second.predictions,
                                    0, 1, (0, 1)), config)
    assert [r.window.size for r in out.results if r.signal == "data"] == [600]


def test_a_state_written_before_watermarks_loads_and_goes_on() -> None:
    config = _config(by="time", seconds=600.0, min_rows=100)
    m = _monitor()
    m.observe(_batch(np.random.default_rng(27), 900), config)
    state = json.loads(json.dumps(m.to_state()))
    # The shape states had before: one open time pane, no watermarks, no late count.
    pane = state.pop("open_panes")[0]
    for k in ("watermarks", "partitions", "closed_key", "late_rows"):
        state.pop(k)
    state["open_pane"] = pane
    state["window_signature"] = config.window.model_dump_json(exclude={"allowed_lateness"})
    old = VersionMonitor.from_state("m", "1", state, reference=m.reference, reference_source="training-profile",
                                    schema=[dict(f) for f in SCHEMA], metrics={})
    assert old.open_pane is None and sorted(old.open_panes) == [1] and old.open_panes[1].rows == 300
    assert old.closed_key == 0 and old.late_rows == 0
    out = old.observe(_batch(np.random.default_rng(28), 400, start=900), config)
    assert [r.window.size for r in out.results if r.signal == "data"] == [600]


def test_allowed_lateness_is_bounded_and_finite() -> None:
    for bad in (-1.0, float("inf"), 31 * 86400.0):
        with pytest.raises(ValidationError, match="allowed_lateness"):
            WindowSettings(by="time", allowed_lateness=bad)
    assert WindowSettings().allowed_lateness == 10.0


def _counts_state(c: NumericCounts) -> tuple[Any, ...]:
    return (c.counts.tolist(), c.missing, c.invalid, c.type_errors, c.out_of_range, c.moments,
            c.sample_priority.tolist(), c.sample_values.tolist())


@pytest.mark.parametrize(("rows", "sample", "uneven", "tie"), [
    (300, 100, False, False),  # more rows than the sample keeps
    (40, 100, False, False),  # fewer: everything kept, sorted
    (300, 100, True, False),  # earlier samples of different sizes
    (300, 100, False, True),  # a request id served twice: tied priorities
    (300, 0, False, False),  # no sample
])
def test_features_counted_together_end_exactly_as_counted_one_by_one(
        rows: int, sample: int, uneven: bool, tie: bool) -> None:
    ref = _reference(3)
    refs = [ref.features["x"], ref.features["y"], ref.prediction]
    rng = np.random.default_rng(rows + sample)
    one = [NumericCounts.empty(r) for r in refs]  # type: ignore[arg-type]
    together = [NumericCounts.empty(r) for r in refs]  # type: ignore[arg-type]
    for step in range(3):
        n = rows + (7 * step if uneven else 0)
        block = np.vstack([rng.normal(0, 1, n), rng.uniform(-0.5, 1.5, n), rng.uniform(0, 1, n)])
        ids = [f"r-{step}-{i}" for i in range(n)]
        if tie and step == 0:
            ids = ["the-same-request"] * n  # every priority tied: the values decide
        hashes = request_hashes(ids)
        prio = Pane.priorities_block(hashes, [0, 1, 2])
        for j, (c, r) in enumerate(zip(one, refs, strict=True)):
            np.testing.assert_array_equal(prio[j], Pane.priorities(hashes, j))
            c.add(r, NumericColumn(block[j].copy(), 0, 0, 0), prio[j], sample, 0.1)  # type: ignore[arg-type]
        NumericCounts.add_finite_block(together, refs, block, prio if sample else None,  # type: ignore[arg-type]
                                       sample, 0.1)
        if uneven and step == 1:
            # As if one value of the first feature had not been finite: its sample is one shorter.
            for c in (one[0], together[0]):
                c.sample_priority, c.sample_values = c.sample_priority[1:], c.sample_values[1:]
        for a, b in zip(one, together, strict=True):
            assert _counts_state(a) == _counts_state(b), f"after batch {step}"
    assert one[1].out_of_range > 0  # the range check was exercised
    if sample:
        assert one[1].sample_values.size == min(sample, sum(rows + (7 * s if uneven else 0) for s in range(3)))
