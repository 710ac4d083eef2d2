"""The demo report: the policy's data wait is not platform overhead, and the steady state is shown."""

from __future__ import annotations

from pathlib import Path

from mloop.demo.config import SIZES
from mloop.demo.report import build_report, write_html
from mloop.demo.run import DemoResult


def _result(steady: dict[str, object]) -> DemoResult:
    prof = SIZES["small"]
    r = DemoResult("happy", "small", "m", Path("."), champion_before="1", profile=prof, started=0.0)
    r.candidate = r.champion_after = "2"
    r.outcome = "completed"
    r.marks = {
        "drift_injected": 0.0,
        "first_signal": 5.0,
        "drift_detected": 5.0,
        "retrain_requested": 12.0,
        "registered": 16.0,
        "validated": 16.0,
        "promotion_requested": 16.1,
        "promoted": 16.3,
        "rollout_started": 16.4,
        "rollout_finished": 16.4 + prof.shadow_s + prof.step_min_s * len(prof.steps) + 0.5,
    }
    r.trainer = [{"event": "trained", "job_seconds": 4.0, "version": "2", "metrics": {}}]
    r.job = {
        "id": "j",
        "trigger": "drift-detected",
        "first_signal_at": "2026-12-01T10:00:00+00:00",
        "data_window": {"start": "2026-12-01T10:00:00+00:00", "end": "2026-12-01T10:00:07+00:00"},
        "data_wait": {
            "since": "2026-12-01T10:00:00+00:00",
            "ended_at": "2026-12-01T10:00:07+00:00",
            "rows": 800,
            "min_rows": 800,
            "outcome": "enough-data",
        },
    }
    r.steady = steady
    return r


def test_the_data_wait_is_configured_time_not_overhead() -> None:
    report = build_report(_result({}))
    cyc = report["cycle"]
    assert cyc["data_wait_seconds"] == 7.0
    # cycle = wait 7 + training 4 + observation + the 0.5 s (and 0.1 s of scheduling) the platform added
    expected = cyc["cycle_seconds"] - 7.0 - 4.0 - cyc["observation_seconds"]
    assert cyc["platform_overhead_seconds"] == round(expected, 3)
    assert 0 < cyc["platform_overhead_seconds"] < 1.0


def test_the_steady_state_section_shows_what_happened_after_completion(tmp_path: Path) -> None:
    quiet = {
        "settle_seconds": 10.0,
        "champion": "2",
        "drift_signals": 0,
        "drift_signals_champion": 0,
        "performance_signals": 0,
        "retrain_jobs": 0,
        "retrain_requested": 0,
        "signals": [],
    }
    report = build_report(_result(quiet))
    assert report["steady_state"] == quiet
    html = write_html(report, tmp_path).read_text()
    assert "Steady state" in html and "<b>0</b> retrain job(s) were created" in html
    assert "#59a14f" in html.split("<h2>Steady state</h2>")[1].split("<h2>")[0]
    noisy = {
        **quiet,
        "drift_signals": 1,
        "drift_signals_champion": 1,
        "retrain_jobs": 1,
        "signals": [{"t": 3.2, "topic": "drift-detected", "detail": "data drift on v2"}],
    }
    html = write_html(build_report(_result(noisy)), tmp_path).read_text()
    section = html.split("<h2>Steady state</h2>")[1].split("<h2>")[0]
    assert "#e15759" in section and "#59a14f" not in section  # shown as a problem
    assert "<b>1</b> retrain job(s) were created" in html and "data drift on v2" in html
