"""Drift reports: the JSON shape and a self-contained HTML page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from mloop.monitor.report import build_report, render_html
from mloop.stats.profile import ReferenceProfile

T0 = datetime(2026, 11, 26, tzinfo=UTC)


def _window(no: int, drifted: bool) -> dict[str, Any]:
    return {
        "signal": "data", "window_no": no, "window_start": T0 + timedelta(hours=no),
        "window_end": T0 + timedelta(hours=no + 1), "size": 500, "alarm": drifted,
        "severity": "high" if drifted else None,
        "evidence": {
            "features": [
                {"name": "x", "method": "chi2", "statistic": 90.0 if drifted else 12.0,
                 "p_value": 1e-9 if drifted else 0.6, "threshold": 0.01, "effect_size": 0.4 if drifted else 0.0,
                 "drifted": drifted, "detail": {"effect_floor": 0.02}},
                {"name": "c", "method": "chi2", "statistic": 1.0, "p_value": 0.9, "threshold": 0.01,
                 "effect_size": 0.0, "drifted": False, "detail": {"effect_floor": 0.02}},
            ],
            "distributions": {"x": [50, 50, 100, 300, 0], "c": [200, 200, 100]},
        },
    }


def _reference() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return ReferenceProfile.from_columns(
        {"x": rng.normal(0, 1, 400), "c": rng.choice(["a", "b"], 400)}, {"c": "categorical"}, n_bins=4,
    ).to_dict()


def test_the_report_gives_distributions_of_drifted_features_and_their_history() -> None:
    windows = [_window(3, True), _window(2, False), _window(1, False)]  # newest first
    report = build_report("credit", "3", _reference(), "training-profile", windows)
    assert report["latest"]["data"]["window_no"] == 3 and report["latest"]["data"]["drifted"] is True
    (x,) = report["drifted_features"]
    assert x["name"] == "x" and len(x["bins"]) == len(x["reference"]) == len(x["current"]) == 5
    assert abs(sum(x["reference"]) - 1) < 1e-9 and x["current"][3] == 0.6
    assert [p["window_no"] for p in report["history"]["x"]] == [1, 2, 3]
    assert [p["drifted"] for p in report["history"]["x"]] == [False, False, True]


def test_the_html_page_is_self_contained_with_inline_svg_plots() -> None:
    windows = [_window(2, True), _window(1, False)]
    page = render_html(build_report("credit", "3", _reference(), "training-profile", windows,
                                    [{"id": "i-1", "signal": "data", "opened_at": "t", "resolved_at": None}]))
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg") == 3  # one distribution, two histories
    for external in ("<script", "<link", "src=", "@import", "url("):
        assert external not in page
    assert "i-1" in page and "credit" in page


def test_values_from_traffic_are_escaped_in_the_page() -> None:
    w = _window(1, True)
    w["evidence"]["features"][0]["name"] = "<img onerror=x>"
    w["evidence"]["distributions"]["<img onerror=x>"] = [1, 2, 3, 4, 5]
    page = render_html(build_report("m", "1", None, None, [w]))
    assert "<img" not in page and "&lt;img onerror=x&gt;" in page
