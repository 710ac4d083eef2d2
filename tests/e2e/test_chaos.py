"""The loop under faults, bounded: one seed of ``make chaos`` on a private platform, every invariant checked.

Kafka, Postgres and the five services are real processes on free ports; the
schedule kills each service, the broker and Postgres, pauses one service past
its session timeout and spoils webhook deliveries, while the demo's loop runs.
``MLOOP_CHAOS_SEED`` picks another seed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mloop.chaos.run import run_chaos
from mloop.chaos.schedule import SERVICE_NAMES
from mloop.devstack import repo_root

pytestmark = [pytest.mark.e2e, pytest.mark.chaos, pytest.mark.timeout(600)]


def test_the_loop_keeps_every_invariant_under_a_seeded_fault_schedule(tmp_path: Path) -> None:
    seed = int(os.environ.get("MLOOP_CHAOS_SEED", "7"))
    lines: list[str] = []
    report = run_chaos(seed, span_s=40.0, work_root=tmp_path / "chaos", repo=repo_root(), deadline_s=240.0,
                       say=lines.append)
    report.write(tmp_path / "reports")
    text = report.render()
    assert report.error is None, text
    # Every planned fault was injected, each kind at least once, every service killed.
    assert report.history is not None
    injected = report.injected()
    assert injected["kill-service"] == len(SERVICE_NAMES), text
    assert injected["kill-kafka"] == injected["restart-postgres"] == injected["pause-service"] == 1, text
    assert injected["webhook-failing"] + injected["webhook-slow"] == 1, text
    assert sorted(f.target for f in report.history.faults if f.kind == "kill-service") == sorted(SERVICE_NAMES)
    assert report.loop is not None and report.loop.outcome in ("completed", "rolled-back"), text
    failed = [v.invariant for v in report.verdicts if not v.ok]
    assert failed == [], text
    assert report.ok
