"""The end-to-end loop benchmark, and the SDK logger's throughput.

Runs the demo's happy scenario on a private platform (Kafka, Postgres and the
five services as real processes on free ports) and reports:

* the cycle time: from the first signal the retrain scheduler counted to the
  retrained version serving 100 % (``rollout-completed``);
* the platform overhead: the cycle time minus the training job (label wait,
  fit, registration) minus the rollout's configured observation windows
  (shadow duration plus each canary step's minimum duration) - the time the
  platform itself adds to closing the loop;
* the detection delay from drift injection to the first signal;
* ``PredictionLogger`` throughput: 100,000 predictions (20,000 quick) logged
  and delivered to ``prediction-logged`` with acks=all.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from mloop.client import PredictionLogger
from mloop.demo.report import build_report
from mloop.demo.run import run_demo
from mloop.demo.sandbox import private_platform
from mloop.devstack import repo_root


async def _logger_throughput(bootstrap: str, n: int) -> tuple[float, float, dict[str, Any]]:
    """(records/s logged and delivered, mean µs per log() call, final counters)."""
    features = {"age": 41.0, "annual_income": 52000.0, "region": "north", "purpose": "car", "term_months": 36.0}
    logger = PredictionLogger(bootstrap, "bench-logger", batch_size=1000, topic_prefix="")
    await logger.start()
    began = time.perf_counter()
    in_log = 0.0
    for i in range(n):
        t0 = time.perf_counter()
        await logger.log(f"b-{i:07d}", version="1", features=features, prediction=0.31, latency_ms=2.0)
        in_log += time.perf_counter() - t0
    await logger.flush(300)
    elapsed = time.perf_counter() - began
    stats = await logger.close()
    return n / elapsed, in_log / n * 1e6, stats.as_dict()


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
        n = 20_000 if quick else 100_000
        rate, per_call_us, stats = asyncio.run(_logger_throughput(platform.stack.bootstrap_servers, n))
        rows += [
            {
                "name": "PredictionLogger throughput",
                "value": round(rate),
                "unit": "records/s",
                "target": None,
                "detail": f"{n} records logged and delivered (acks=all, idempotent), batches of 1000; {stats}",
            },
            {
                "name": "PredictionLogger log() cost",
                "value": round(per_call_us, 1),
                "unit": "us/call",
                "target": None,
                "detail": "validation and buffering on the caller's path",
            },
        ]
    return rows


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
