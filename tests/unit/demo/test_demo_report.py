"""The demo report's drift bars show evidence against the threshold the test really used."""

from __future__ import annotations

import re

from mloop.demo.report import svg_feature_bars


def _ratios(svg: str) -> dict[str, float]:
    names = re.findall(r'text-anchor="end" font-size="12">([^<]+)</text>', svg)
    values = [float(v) for v in re.findall(r"chi2 ([0-9.]+)x", svg)]
    return dict(zip(names, values, strict=True))


def test_a_feature_with_a_large_p_value_stays_below_its_threshold_and_a_drifted_one_passes_it() -> None:
    features = [
        {"name": "age", "method": "chi2", "statistic": 18.8, "p_value": 0.468, "threshold": 0.0133, "drifted": False},
        {"name": "income", "method": "chi2", "statistic": 150.6, "p_value": 1.6e-22, "threshold": 0.0133,
         "drifted": True},
        {"name": "edge", "method": "chi2", "statistic": 30.0, "p_value": 0.0133, "threshold": 0.0133,
         "drifted": False},
    ]
    ratios = _ratios(svg_feature_bars(features))
    assert ratios["age"] < 0.25
    assert ratios["income"] > 10
    assert ratios["edge"] == 1.0
