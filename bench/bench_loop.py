"""The end-to-end loop benchmark, and the SDK logger's throughput.

Runs the demo's happy scenario on a private platform (Kafka, Postgres and the
five services as real processes on free ports) and reports:

* the cycle time: from the first signal the retrain scheduler counted to the
  retrained version serving 100 % (``rollout-completed``);
* the platform overhead: the cycle time minus the training job (label wait,
  fit, registration) minus the rollout's configured observation windows
  (shadow duration plus each canary step's minimum duration) - the time the
  platform itself adds to closing the loop;
* the detection delay from drift injection to the first signal.

The SDK logger's throughput is measured in ``bench_sdk.py``.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

from mloop.demo.report import build_report
from mloop.demo.run import run_demo
from mloop.demo.sandbox import private_platform
from mloop.devstack import repo_root


def run(quick: bool) -> list[dict[str, Any]]:
    size = "small" if quick else "default"
    rows: list[dict[str, Any]] = []
    with private_platform() as platform, tempfile.TemporaryDirectory(prefix="mloop-bench-loop-") as tmp:
        result = asyncio.run(
            run_demo(
                platform.stack,
                scenario="happy",
                size=size,
                repo=repo_root(),
                work_root=Path(tmp),
                console=Console(quiet=True),
                live=False,
            )
        )
        report = build_report(result)
        cyc = report["cycle"]
        shares = ", ".join(f"{s['name']} {s['seconds']:.1f}s" for s in cyc["steps"])
        rows += [
            {
                "name": f"loop cycle time ({size})",
                "value": cyc["cycle_seconds"],
                "unit": "s",
                "target": None,
                "detail": f"signal -> retrained version at 100%: {shares}",
            },
            {
                "name": f"loop platform overhead ({size})",
                "value": cyc["platform_overhead_seconds"],
                "unit": "s",
                "target": 15.0,
                "detail": f"cycle {cyc['cycle_seconds']}s - training job {cyc['training_seconds']}s - configured "
                f"observation {cyc['observation_seconds']}s",
            },
            {
                "name": f"drift injection -> first signal ({size})",
                "value": cyc["detection_seconds"],
                "unit": "s",
                "target": None,
                "detail": f"monitor window {result.profile.monitor_window if result.profile else '?'} predictions",
            },
            {
                "name": "platform startup (Kafka, Postgres, 5 services)",
                "value": round(platform.startup_seconds, 1),
                "unit": "s",
                "target": None,
                "detail": "private stack on free ports",
            },
        ]
    return rows


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
