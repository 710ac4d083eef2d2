"""What the console's pages make of the services' answers (pure shaping)."""

from __future__ import annotations

import math

from mloop.console import fmt, plots, views


def _status(*versions: dict[str, object]) -> dict[str, object]:
    return {"model": "m", "versions": list(versions)}


def test_a_model_row_shows_champion_split_drift_and_incidents() -> None:
    model = {"name": "m", "aliases": {"champion": "1", "challenger": "3"}, "latest_version": "3"}
    status = _status(
        {"version": "1", "traffic_weight": 1.0, "shadow": False, "open_incidents": [{"id": "i"}],
         "last_windows": {"data": {"alarm": True, "severity": "high"}}},
        {"version": "3", "traffic_weight": None, "open_incidents": [], "last_windows": {}},
    )
    row = views.model_row(model, status, None, {"state": "running"})
    assert row["champion"] == "1" and row["challengers"] == ["3"]
    assert row["split"] == {"1": 100.0} and row["shadows"] == []
    assert row["incidents"] == 1
    assert (row["drift"], row["drift_tone"]) == ("drifted (data, high)", "bad")
    assert row["rollout"] is None and row["job"] == {"state": "running"}


def test_a_running_rollout_sets_the_split_and_adds_its_candidate() -> None:
    model = {"name": "m", "aliases": {"champion": "1"}}
    rollout = {"id": "r", "phase": "progressing", "candidate": "2", "routes": [
        {"version": "1", "weight": 0.75, "shadow": False}, {"version": "2", "weight": 0.25, "shadow": False}]}
    row = views.model_row(model, None, rollout, None)
    assert row["split"] == {"1": 75.0, "2": 25.0} and row["challengers"] == ["2"] and row["rollout"] is rollout
    assert row["drift"] == "not monitored"
    ended = views.model_row(model, None, {**rollout, "phase": "completed"}, None)
    assert ended["rollout"] is None and ended["split"] == {"1": 100.0}


def test_drift_of_versions_not_serving_does_not_colour_the_model() -> None:
    status = _status(
        {"version": "1", "last_windows": {"data": {"alarm": False}}},
        {"version": "9", "last_windows": {"data": {"alarm": True}}},
    )
    assert views.drift_verdict(status, ["1"]) == ("no drift", "ok")
    assert views.drift_verdict(status, ["1", "9"])[1] == "bad"
    assert views.drift_verdict(_status({"version": "1", "last_windows": {}}), ["1"]) == ("no window yet", "muted")


def test_traffic_series_follow_the_split_changes_and_extend_to_now() -> None:
    history = [
        {"kind": "rollout-started", "at": "2026-01-01T00:00:00Z", "data": {}},
        {"kind": "traffic-split-changed", "at": "2026-01-01T00:00:00Z",
         "data": {"routes": [{"version": "1", "weight": 1.0}, {"version": "2", "weight": 1.0, "shadow": True}]}},
        {"kind": "traffic-split-changed", "at": "2026-01-01T00:01:00Z",
         "data": {"routes": [{"version": "1", "weight": 0.9}, {"version": "2", "weight": 0.1}]}},
    ]
    t0 = views.parse_time("2026-01-01T00:00:00Z")
    assert t0 is not None
    series = views.traffic_series(history, until=t0 + 120)
    assert series["v1"] == [(t0, 100.0), (t0 + 60, 90.0), (t0 + 120, 90.0)]
    assert series["v2 (shadow)"] == [(t0, 100.0), (t0 + 60, 0.0), (t0 + 120, 0.0)]
    assert series["v2"] == [(t0 + 60, 10.0), (t0 + 120, 10.0)]


def test_drift_plots_draw_p_values_on_a_log_scale_against_their_threshold() -> None:
    windows = [
        {"id": i, "version": "1", "kind": "data", "window_no": i, "drifted": i == 2,
         "window": {"start": f"2026-01-01T0{i}:00:00Z", "end": f"2026-01-01T0{i}:30:00Z", "size": 500},
         "features": [{"name": "income", "method": "ks", "statistic": 0.1, "p_value": p, "threshold": 0.01,
                       "drifted": p < 0.01}]}
        for i, p in ((2, 1e-6), (1, 0.5))
    ]
    plot = views.drift_plots(windows)["1/data"]
    values = [v for _, v in plot["series"]["income"]]
    assert values == [-math.log10(0.5), 6.0]  # oldest first, whatever the API's order
    assert plot["threshold_lines"] == {"threshold": 2.0}
    assert plot["latest"]["window_no"] == 2


def test_svg_plots_escape_labels_and_say_what_they_show() -> None:
    svg = plots.svg_lines({"<script>": [(0.0, 1.0), (60.0, 2.0)]}, title="a & b", y_label="y",
                          thresholds={"limit": 1.5})
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert 'role="img"' in svg and "<title>a &amp; b</title>" in svg and "stroke-dasharray" in svg
    assert "no data yet" in plots.svg_lines({}, title="t", y_label="y")
    bar = plots.svg_split_bar({"1": 90.0, "2": 10.0}, title="split")
    assert bar.count("<rect") == 2 and "v2: 10%" in bar


def test_formatting_of_times_durations_and_numbers() -> None:
    assert fmt.when("2026-12-03T08:09:11.5+01:00") == "2026-12-03 07:09:11Z"
    assert fmt.when(None) == "" and fmt.when("soon") == "soon"
    assert [fmt.seconds(x) for x in (None, 42.14, 600, 7200 * 2, 86400 * 3)] == ["-", "42.1 s", "10.0 min",
                                                                              "4.0 h", "3.0 d"]
    assert [fmt.number(x) for x in (None, 0.123456, 1e-6, True, "x")] == ["-", "0.1235", "1e-06", "True", "x"]
