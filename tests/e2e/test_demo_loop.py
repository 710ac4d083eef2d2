"""The whole loop, end to end, at reduced size: both demo scenarios against a private platform.

Kafka, Postgres and the five services run as real processes on free ports;
the demo's serving simulator and trainer are real processes too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

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
    assert report["audit"]["ok"], report["audit"]
    assert report["audit"]["events_recorded"] == report["audit"]["events_expected"] > 10
    page = write_html(report, tmp_path / "reports")
    html = page.read_text()
    assert "<svg" in html and "Cycle time" in html and "Audit verification" in html


def test_a_bad_retrained_model_is_rolled_back_automatically_and_the_champion_stays(
    platform: Platform, tmp_path: Path
) -> None:
    result = _run(platform, "rollback", tmp_path)
    assert result.outcome == "rolled-back"
    assert result.champion_after == result.champion_before
    report = build_report(result)
    assert report["cycle"]["cycle_seconds"] > 0
    assert report["cycle"]["scheduler_recorded"]["outcome"] == "rolled-back"
    assert any(g["outcome"] == "fail" for a in report["rollout"]["analyses"] for g in a["gates"]) or any(
        g.get("outcome") == "fail" for g in report["rollout"]["final_gates"]
    )
    assert report["audit"]["ok"], report["audit"]
