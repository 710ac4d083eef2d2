"""Drift evaluation speed: profiling, verdicts, merging and serialising profiles.

Throughput is in cells (rows x 23 features) per second, for the whole
``detect_drift`` call on raw columns: conversion, binning with the
reference's cuts, moments, the tests (omnibus per numeric feature and the
score, chi-squared per categorical feature, missing shares) and the
correction. Shown next to scipy's ``ks_2samp`` run per numeric feature on
the same window in the same run.
Every figure is the best of several repeats (the least disturbed by other
load on the machine); the median is in the detail.

``python bench/bench_drift_speed.py [--quick]`` prints a table.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import stats as sps

from mloop.stats import ReferenceProfile, detect_drift
from mloop.stats.synthetic import synthetic_table

FEATURES = 23


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Best and median wall time of ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times), statistics.median(times)


def as_json_lists(columns: dict[str, Any]) -> dict[str, list[Any]]:
    """The columns as a JSON decoder would hand them over: Python lists, None for missing."""
    out: dict[str, list[Any]] = {}
    for name, col in columns.items():
        values = col.tolist()
        out[name] = [None if isinstance(v, float) and v != v else v for v in values]
    return out


def run(quick: bool = False) -> list[dict[str, Any]]:
    repeats = 3 if quick else 9
    rng = np.random.default_rng(7)
    ref_table = synthetic_table(rng, 5_000)
    reference = ReferenceProfile.from_columns(ref_table.columns, prediction=ref_table.prediction)
    rows: list[dict[str, Any]] = []

    best, median = timed(
        lambda: ReferenceProfile.from_columns(ref_table.columns, prediction=ref_table.prediction), repeats
    )
    rows.append(
        {
            "name": "reference profile build, 5,000 x 23",
            "value": best * 1e3,
            "unit": "ms",
            "target": "< 200",
            "detail": f"quantile cuts, counts, moments, reservoirs; median {median * 1e3:.1f} ms",
        }
    )

    for window_rows in (2_000, 100_000):
        window = synthetic_table(rng, window_rows)
        best, median = timed(
            lambda w=window: detect_drift(reference, w.columns, prediction=w.prediction),  # type: ignore[misc]
            repeats if window_rows < 100_000 else max(repeats // 2, 2),
        )
        cells = window_rows * FEATURES
        rows.append(
            {
                "name": f"detect_drift throughput, {window_rows:,} x 23 numpy",
                "value": cells / best,
                "unit": "cells/s",
                "target": ">= 1e6",
                "detail": f"{best * 1e3:.1f} ms per verdict (median {median * 1e3:.1f} ms), raw numpy columns",
            }
        )

    window = synthetic_table(rng, 2_000)
    numeric = [name for name, col in ref_table.columns.items() if col.dtype.kind == "f"]

    def ks_per_feature() -> None:
        # The textbook alternative on the same data: scipy's exact-or-asymptotic KS per numeric column.
        for name in numeric:
            a, b = ref_table.columns[name], window.columns[name]
            sps.ks_2samp(a[np.isfinite(a)], b[np.isfinite(b)])

    best, median = timed(ks_per_feature, repeats)
    rows.append(
        {
            "name": "scipy ks_2samp per numeric feature, 2,000 x 23",
            "value": 2_000 * FEATURES / best,
            "unit": "cells/s",
            "target": None,
            "detail": f"{best * 1e3:.1f} ms for the {len(numeric)} numeric columns alone (median "
            f"{median * 1e3:.1f} ms), raw values against the 5,000-row reference; for comparison",
        }
    )
    lists = as_json_lists(window.columns)
    pred = window.prediction.tolist()
    best, median = timed(lambda: detect_drift(reference, lists, prediction=pred), repeats)
    rows.append(
        {
            "name": "detect_drift throughput, 2,000 x 23 JSON lists",
            "value": 2_000 * FEATURES / best,
            "unit": "cells/s",
            "target": ">= 1e6",
            "detail": f"{best * 1e3:.1f} ms per verdict (median {median * 1e3:.1f} ms), "
            "Python lists with None, as decoded from events",
        }
    )

    big = synthetic_table(rng, 100_000)
    best, median = timed(lambda: reference.counts_like(big.columns, prediction=big.prediction), max(repeats // 2, 2))
    rows.append(
        {
            "name": "window profiling (counts_like), 100,000 x 23",
            "value": 100_000 * FEATURES / best,
            "unit": "cells/s",
            "target": None,
            "detail": f"{best * 1e3:.1f} ms (median {median * 1e3:.1f} ms): bins, moments, reservoir per column",
        }
    )
    window_profile = reference.counts_like(big.columns, prediction=big.prediction)
    best, median = timed(lambda: detect_drift(reference, window_profile), repeats)
    rows.append(
        {
            "name": "detect_drift on a window profile",
            "value": best * 1e3,
            "unit": "ms",
            "target": "< 50",
            "detail": f"median {median * 1e3:.1f} ms; independent of window size (counts and reservoirs only)",
        }
    )
    best, median = timed(lambda: reference.merge(window_profile), repeats)
    rows.append(
        {
            "name": "profile merge, 23 features + score",
            "value": best * 1e3,
            "unit": "ms",
            "target": None,
            "detail": f"median {median * 1e3:.2f} ms; counts, Chan moments, hypergeometric reservoir merge",
        }
    )

    text = json.dumps(reference.to_dict())
    best, median = timed(lambda: json.dumps(reference.to_dict()), repeats)
    rows.append(
        {
            "name": "profile to_dict + json.dumps",
            "value": best * 1e3,
            "unit": "ms",
            "target": None,
            "detail": f"median {median * 1e3:.1f} ms",
        }
    )
    best, median = timed(lambda: ReferenceProfile.from_dict(json.loads(text)), repeats)
    rows.append(
        {
            "name": "profile json.loads + from_dict (validated)",
            "value": best * 1e3,
            "unit": "ms",
            "target": None,
            "detail": f"median {median * 1e3:.1f} ms",
        }
    )
    rows.append(
        {
            "name": "profile JSON size, 21 numeric + 3 categorical",
            "value": len(text) / 1024,
            "unit": "KiB",
            "target": "< 1024",
            "detail": "reservoir of 1,000 values per numeric column (7 significant digits) dominates; "
            "about 11 KiB per numeric column",
        }
    )
    return rows


if __name__ == "__main__":
    results = run(quick="--quick" in sys.argv)
    width = max(len(r["name"]) for r in results)
    for r in results:
        print(f"{r['name']:<{width}}  {r['value']:>12,.4g} {r['unit']:<8} {r['target'] or '':<8} {r['detail']}")
