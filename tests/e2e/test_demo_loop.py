"""The whole loop, end to end, at reduced size: both demo scenarios against a private platform.

Kafka, Postgres and the five services run as real processes on free ports;
the demo's serving simulator and trainer are real processes too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from rich.console import Console

from mloop.demo.config import SIZES
from mloop.demo.report import build_report, write_html
from mloop.demo.run import DemoResult, run_demo
from mloop.demo.sandbox import Platform, private_platform
from mloop.devstack import repo_root

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    with private_platform() as p:
        yield p


def _run(platform: Platform, scenario: str, tmp_path: Path) -> DemoResult:
    return asyncio.run(
        run_demo(
            platform.stack,
            scenario=scenario,
            size="small",
            repo=repo_root(),
            work_root=tmp_path / "demo",
            console=Console(width=120),
            live=False,
        )
    )


def test_drift_is_detected_retrained_reviewed_and_rolled_out_to_a_new_champion(
    platform: Platform, tmp_path: Path
) -> None:
    result = _run(platform, "happy", tmp_path)
    assert result.outcome == "completed"
    assert result.candidate is not None and result.candidate != result.champion_before
    assert result.champion_after == result.candidate

    report = build_report(result)
    cycle = report["cycle"]
    assert cycle["cycle_seconds"] > 0
    assert [s["name"] for s in cycle["steps"]] == ["scheduling", "training", "validation", "review", "rollout"]
    assert cycle["scheduler_recorded"]["outcome"] == "completed"
    assert 0 <= cycle["platform_overhead_seconds"] < cycle["cycle_seconds"]
    assert any(f["drifted"] for f in report["drift"]["features"])
    # The retrained version was registered with full lineage for the job that asked for it.
    trained = report["training"]["job"]
    assert len(trained["dataset_sha256"]) == 64
    assert trained["validation_passed"]
    # The new champion is better on the drifted population than the old one.
    offline = report["quality"]["offline"]
    assert offline[result.candidate]["after_drift"]["auc"] > offline[result.champion_before]["after_drift"]["auc"]
    # The retrain waited for the new world: the job's window holds the rows made after the
    # first signal, and the trainer trained on rows from that window only.
    job = report["training"]["scheduler_job"]
    wait = job["data_wait"]
    assert wait["outcome"] == "enough-data" and wait["rows"] >= wait["min_rows"] > 0, wait
    signal_at = datetime.fromisoformat(job["first_signal_at"])
    start, end = (datetime.fromisoformat(job["data_window"][k]) for k in ("start", "end"))
    assert start == signal_at < end and end == datetime.fromisoformat(wait["ended_at"])
    first_row, last_row = (datetime.fromisoformat(trained[k]) for k in ("first_row_at", "last_row_at"))
    assert signal_at <= first_row and last_row < end and last_row > signal_at
    assert cycle["data_wait_seconds"] > 0
    # The steady state: the drifted world kept being served and the loop stayed quiet.
    steady = report["steady_state"]
    assert steady["settle_seconds"] > 0 and steady["champion"] == result.candidate
    assert steady["drift_signals_champion"] == 0, steady["signals"]
    assert steady["retrain_jobs"] == 0 and steady["retrain_requested"] == 0, steady
    assert report["audit"]["ok"], report["audit"]
    assert report["audit"]["events_recorded"] == report["audit"]["events_expected"] > 10
    page = write_html(report, tmp_path / "reports")
    html = page.read_text()
    assert "<svg" in html and "Cycle time" in html and "Audit verification" in html
    assert "Steady state" in html and "retrain job(s) were created" in html


def test_a_bad_retrained_model_is_rolled_back_automatically_and_the_champion_stays(
    platform: Platform, tmp_path: Path
) -> None:
    result = _run(platform, "rollback", tmp_path)
    assert result.outcome == "rolled-back"
    assert result.champion_after == result.champion_before
    report = build_report(result)
    assert report["cycle"]["cycle_seconds"] > 0
    assert report["cycle"]["scheduler_recorded"]["outcome"] == "rolled-back"
    # Rolled back within the first canary step: no rollout-advanced past it.
    advanced = [h for h in report["rollout"]["history"] if h["kind"] == "rollout-advanced"]
    first_step = SIZES["small"].steps[0]
    assert all((h["weight"] or 0) <= first_step for h in advanced), advanced
    assert any(g["outcome"] == "fail" for a in report["rollout"]["analyses"] for g in a["gates"]) or any(
        g.get("outcome") == "fail" for g in report["rollout"]["final_gates"]
    )
    assert report["audit"]["ok"], report["audit"]
