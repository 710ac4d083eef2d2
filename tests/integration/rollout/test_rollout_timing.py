"""Steps advance when they are due, not at the next analysis tick (real Kafka and Postgres).

The plan's analysis interval and the loop's fallback poll are both far longer
than the steps here: only the scheduling of the due moment and the wake-up on
evidence can advance these rollouts in time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from mloop.rollout.main import create_app
from mloop.rollout.settings import RolloutSettings
from mloop.runtime.testing import EventCollector, auth_headers, running_app

from .test_rollout_service import OUR_TOPICS, Kafka, eventually, live_traffic, of_model

pytestmark = pytest.mark.integration

INTERVAL_S = 120.0  # neither the plan's interval nor the fallback poll comes round during a test
PLAN: dict[str, Any] = {
    "strategy": "canary",
    "steps": [0.5],
    "step_min_duration_s": 2.0,
    "step_min_samples": 30,
    "analysis_interval_s": INTERVAL_S,
    "failure_threshold": 2,
    "inconclusive_timeout_s": 600,
    "progress_deadline_s": 600,
    "gates": [{"metric": "error-rate", "sequential": "guard", "min_samples": 30}],
}


def _settings(infra: Any) -> RolloutSettings:
    return RolloutSettings(**infra.settings_kwargs(analysis_tick_s=INTERVAL_S))


async def test_a_step_advances_at_its_minimum_duration_and_a_zero_hold_completes_at_once(infra: Any) -> None:
    settings = _settings(infra)
    op = auth_headers(settings, "olga", "operator")
    m = "on-time"
    async with (
        running_app(create_app(settings)) as client,
        Kafka(infra) as kafka,
        EventCollector(infra.bootstrap_servers, infra.topic_prefix, OUR_TOPICS) as seen,
    ):
        r = await client.put(f"/models/{m}/plan", json=PLAN, headers=op)
        assert r.status_code == 200, r.text
        async with live_traffic(kafka, m, {"1": (40, 0.0), "2": (40, 0.0)}):
            await kafka.promote(m, "2", previous="1")
            (started,) = await seen.wait_for("rollout-started", where=of_model(m))
            (done,) = await seen.wait_for("rollout-completed", where=of_model(m), timeout_s=INTERVAL_S / 2)
        (advanced,) = [e for e in seen.of("rollout-advanced") if e.data.model == m]
        rollouts = (await client.get("/rollouts", params={"model": m}, headers=op)).json()["items"]
        detail = (await client.get(f"/rollouts/{rollouts[0]['id']}", headers=op)).json()
        history = [(h["at"], h["kind"], h["data"].get("reason")) for h in detail["history"]]
        # The step is timed by the service's own records of it: an event's time is stamped
        # when the event is built, a few milliseconds after the state it reports.
        first = {kind: datetime.fromisoformat(at) for at, kind, _ in reversed(history)}
        step = (first["rollout-advanced"] - first["rollout-started"]).total_seconds()
        # Due at 2 s; an analysis at the next interval would have come at 120 s
        # (the margin is for a loaded machine, where evidence can lag by seconds).
        assert PLAN["step_min_duration_s"] <= step < INTERVAL_S / 2, (started.time, history)
        assert advanced.data.phase == "promoting"
        # The promotion hold is zero: completed right after, not one interval later.
        assert (done.time - advanced.time).total_seconds() < INTERVAL_S / 2


async def test_a_due_step_short_of_samples_advances_as_soon_as_they_arrive(infra: Any) -> None:
    settings = _settings(infra)
    op = auth_headers(settings, "olga", "operator")
    m = "samples"
    async with (
        running_app(create_app(settings)) as client,
        Kafka(infra) as kafka,
        EventCollector(infra.bootstrap_servers, infra.topic_prefix, OUR_TOPICS) as seen,
    ):
        r = await client.put(
            f"/models/{m}/plan", json={**PLAN, "step_min_duration_s": 1.0, "step_min_samples": 300}, headers=op
        )
        assert r.status_code == 200, r.text
        await kafka.promote(m, "2", previous="1")
        await seen.wait_for("rollout-started", where=of_model(m))

        async def analysed_short() -> Any:
            rollouts = (await client.get("/rollouts", params={"model": m}, headers=op)).json()["items"]
            detail = (await client.get(f"/rollouts/{rollouts[0]['id']}", headers=op)).json()
            return [a for a in detail["analyses"] if "candidate requests" in a["data"]["reason"]]

        # Some traffic, too little: the step is analysed when due and waits for samples.
        await kafka.predictions(m, {"1": (100, 0.0), "2": (100, 0.0)})
        await eventually(analysed_short, timeout_s=INTERVAL_S / 2)
        assert seen.of("rollout-advanced") == []
        # The rest of the samples: the step advances on their arrival, not at the next interval.
        await kafka.predictions(m, {"1": (300, 0.0), "2": (300, 0.0)})
        (advanced,) = await seen.wait_for("rollout-advanced", where=of_model(m), timeout_s=INTERVAL_S / 2)
        assert advanced.data.phase == "promoting"
