"""The retrain scheduler on the real Kafka and Postgres: drift jobs wait for
post-signal data, and signals the platform causes itself start no job."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from mloop.contracts.payloads import (
    DriftDetected,
    FeatureDriftResult,
    GroundTruthLogged,
    Lineage,
    ModelRegistered,
    PerformanceDegraded,
    PredictionLogged,
    RolloutCompleted,
    RolloutEvent,
    RolloutRolledBack,
    RolloutStarted,
    Window,
)
from mloop.retrain_scheduler.main import create_app
from mloop.retrain_scheduler.settings import RetrainSchedulerSettings
from mloop.runtime.testing import EventCollector, EventPublisher, auth_headers, running_app

from .test_retrain_service import eventually, jobs_of

pytestmark = pytest.mark.integration


def _settings(infra: Any) -> RetrainSchedulerSettings:
    return RetrainSchedulerSettings(**infra.settings_kwargs(dispatch_poll_interval_s=0.1))


def drift(model: str, version: str, *features: str) -> DriftDetected:
    now = datetime.now(UTC)
    return DriftDetected(
        model=model,
        version=version,
        kind="data",
        severity="high",
        window=Window(start=now - timedelta(minutes=1), end=now, size=2000),
        features=[
            FeatureDriftResult(name=f, method="chi2", statistic=80.0, p_value=1e-12, threshold=0.01, drifted=True)
            for f in features
        ],
    )


def predictions(model: str, ids: list[str], at: datetime) -> PredictionLogged:
    return PredictionLogged.model_validate(
        {
            "model": model,
            "records": [
                {
                    "request_id": i,
                    "version": "1",
                    "timestamp": at.isoformat(),
                    "features": {"x": 1.0},
                    "prediction": 0.3,
                }
                for i in ids
            ],
        }
    )


def labels(model: str, ids: list[str]) -> GroundTruthLogged:
    now = datetime.now(UTC).isoformat()
    return GroundTruthLogged.model_validate(
        {"model": model, "records": [{"request_id": i, "label": 1, "timestamp": now} for i in ids]}
    )


def rollout(kind: type[RolloutEvent], model: str, rid: str, version: str, base: str) -> Any:
    return kind(
        model=model,
        rollout_id=rid,
        seq=1,
        version=version,
        baseline_version=base,
        strategy="canary",
        phase="shadowing" if kind is RolloutStarted else "completed",
        step_index=0,
        weight=0.0 if kind is RolloutStarted else 1.0,
    )


async def get_job(client: httpx.AsyncClient, op: dict[str, str], job_id: str) -> dict[str, Any]:
    r = await client.get(f"/jobs/{job_id}", headers=op)
    assert r.status_code == 200, r.text
    job: dict[str, Any] = r.json()
    return job


async def test_a_drift_job_waits_for_post_signal_rows_and_labels_then_asks_for_a_window_holding_them(
    infra: Any,
) -> None:
    settings = _settings(infra)
    op = auth_headers(settings, "olga", "operator")
    model = "credit-risk"
    async with (
        running_app(create_app(settings)) as client,
        EventPublisher(infra.bootstrap_servers, infra.topic_prefix) as kafka,
        EventCollector(infra.bootstrap_servers, infra.topic_prefix, ["retrain-requested"]) as seen,
    ):
        r = await client.put(
            f"/models/{model}/policy",
            json={
                "data_window": "PT1H",
                "post_signal_data": {"min_rows": 300, "min_labelled_rows": 100, "max_wait": "PT10M"},
            },
            headers=op,
        )
        assert r.status_code == 200, r.text
        t0 = datetime.now(UTC)
        await kafka.send("drift-detected", drift(model, "1", "income"), source="monitor", at=t0)
        (job,) = await eventually(lambda: jobs_of(client, op, model))
        assert job["state"] == "requested"
        assert job["data_wait"]["since"].startswith(t0.isoformat()[:19])
        assert job["data_wait"]["outcome"] is None and job["subjects"] == ["income"]

        before = [f"old-{i}" for i in range(200)]
        after = [f"new-{i}" for i in range(300)]
        await kafka.send("prediction-logged", predictions(model, before, t0 - timedelta(seconds=30)), source="serving")
        # Served just after the signal (serving timestamps precede their arrival here, as in production).
        after_at = t0 + timedelta(milliseconds=1)
        await kafka.send("prediction-logged", predictions(model, after, after_at), source="serving")
        await kafka.send("prediction-logged", predictions("another-model", after, t0), source="serving")

        async def counted() -> Any:
            j = await get_job(client, op, job["id"])
            return j if j["data_wait"]["rows"] >= 300 else None

        waiting = await eventually(counted)
        # Only the post-signal predictions of this model count; without labels the job still waits.
        assert waiting["data_wait"]["rows"] == 300 and waiting["data_wait"]["labelled_rows"] == 0
        assert waiting["state"] == "requested"
        assert seen.of("retrain-requested") == []

        # Labels of pre-signal predictions do not count; 100 of post-signal ones end the wait.
        await kafka.send("ground-truth-logged", labels(model, before), source="serving")
        await kafka.send("ground-truth-logged", labels(model, after[:99]), source="serving")
        await kafka.send("ground-truth-logged", labels(model, after[99:100]), source="serving")
        (requested,) = await seen.wait_for("retrain-requested", 1, timeout_s=30)
        done = await get_job(client, op, job["id"])
        wait = done["data_wait"]
        assert wait["outcome"] == "enough-data" and wait["labelled_rows"] == 100 and wait["rows"] == 300
        window = requested.data.data_window
        ended = datetime.fromisoformat(wait["ended_at"])
        # The requested window holds the post-signal rows that ended the wait.
        assert window.end == ended and window.end > after_at
        assert window.start == window.end - timedelta(hours=1)
        assert (
            done["data_window"]["end"] == wait["ended_at"]
            or datetime.fromisoformat(done["data_window"]["end"]) == window.end
        )
        assert done["state"] == "dispatched"


async def test_a_job_short_of_data_goes_ahead_after_its_maximum_wait(infra: Any) -> None:
    settings = _settings(infra)
    op = auth_headers(settings, "olga", "operator")
    async with (
        running_app(create_app(settings)) as client,
        EventPublisher(infra.bootstrap_servers, infra.topic_prefix) as kafka,
    ):
        await client.put(
            "/models/quiet/policy",
            json={"post_signal_data": {"min_rows": 10_000, "max_wait": "PT1S", "window_start": "signal"}},
            headers=op,
        )
        t0 = datetime.now(UTC)
        await kafka.send("drift-detected", drift("quiet", "1", "income"), source="monitor", at=t0)
        (job,) = await eventually(lambda: jobs_of(client, op, "quiet"))

        async def dispatched() -> Any:
            j = await get_job(client, op, job["id"])
            return j if j["state"] == "dispatched" else None

        done = await eventually(dispatched)
        assert done["data_wait"]["outcome"] == "max-wait" and done["data_wait"]["rows"] == 0
        # 'signal': the window starts at the signal and ends when the wait did.
        assert datetime.fromisoformat(done["data_window"]["start"]) == datetime.fromisoformat(
            done["data_wait"]["since"]
        )
        assert datetime.fromisoformat(done["data_window"]["end"]) >= t0 + timedelta(seconds=1)


async def test_signals_on_shadow_or_canary_versions_start_no_job_and_the_loop_does_not_storm(infra: Any) -> None:
    """Drift on a candidate being rolled out, on the champion while its retrained
    successor rolls out, and on a replaced version: one job in all."""
    settings = _settings(infra)
    op = auth_headers(settings, "olga", "operator")
    model = "storm-guard"
    async with (
        running_app(create_app(settings)) as client,
        EventPublisher(infra.bootstrap_servers, infra.topic_prefix) as kafka,
    ):
        r = await client.put(
            f"/models/{model}/policy",
            json={"cooldown": "PT0S", "post_signal_data": {"enabled": False}},
            headers=op,
        )
        assert r.status_code == 200, r.text

        async def rollout_seen(rid: str, state: str) -> None:
            # Topics are not ordered among themselves: a test signal must not overtake the rollout event.
            conn = await asyncpg.connect(infra.database_url)
            try:
                query = f"SELECT state FROM {settings.schema_name}.rollouts WHERE rollout_id = $1"

                async def check() -> bool:
                    return bool(await conn.fetchval(query, rid) == state)

                await eventually(check)
            finally:
                await conn.close()

        async def decision(payload: Any, topic: str = "drift-detected") -> dict[str, Any]:
            event_id = await kafka.send(topic, payload, source="monitor")

            async def check() -> Any:
                r = await client.get("/signals", params={"model": model, "page_size": 100}, headers=op)
                return next((s for s in r.json()["items"] if s["event_id"] == event_id), None)

            found: dict[str, Any] = await eventually(check)
            return found

        # v1 is the champion; a hand-registered v2 starts shadowing, then canaries.
        await kafka.send("rollout-completed", rollout(RolloutCompleted, model, "r1", "1", "0"), source="rollout")
        await kafka.send("rollout-started", rollout(RolloutStarted, model, "r2", "2", "1"), source="rollout")
        await rollout_seen("r2", "in-rollout")
        for _ in range(3):
            shadow = await decision(drift(model, "2", "income"))
            assert shadow["decision"] == "ignored", shadow
            assert "not-serving" in shadow["reason"] and "shadow or canary" in shadow["reason"], shadow
        assert await jobs_of(client, op, model) == []
        await kafka.send("rollout-rolled-back", rollout(RolloutRolledBack, model, "r2", "2", "1"), source="rollout")
        await rollout_seen("r2", "rolled-back")

        # The champion drifts: one job. A signal about the same features joins it.
        first = await decision(drift(model, "1", "income", "loan_amount"))
        assert first["decision"] == "created"
        (job,) = await jobs_of(client, op, model)
        joined = await decision(drift(model, "1", "income", "utilisation"))
        assert joined["decision"] == "joined" and joined["job_id"] == job["id"], joined
        assert (await get_job(client, op, job["id"]))["subjects"] == ["income", "loan_amount", "utilisation"]

        # The job produces v3; while v3 waits for and goes through its rollout,
        # neither its signals nor the champion's other troubles start another job.
        registered = ModelRegistered(
            model=model,
            version="3",
            seq=0,
            artifact_uri="s3://m/3",
            lineage=Lineage(retrain_job_id=job["id"]),
            registered_by="service:trainer",
            created_at=datetime.now(UTC),
        )
        await kafka.send("model-registered", registered, source="registry")

        async def completed() -> Any:
            j = await get_job(client, op, job["id"])
            return j if j["state"] == "completed" else None

        await eventually(completed)
        early = await decision(drift(model, "3", "income"))
        assert early["decision"] == "ignored" and "not finished a rollout" in early["reason"], early
        await kafka.send("rollout-started", rollout(RolloutStarted, model, "r3", "3", "1"), source="rollout")
        await rollout_seen("r3", "in-rollout")
        canary = await decision(drift(model, "3", "income"))
        assert canary["decision"] == "ignored" and "shadow or canary" in canary["reason"], canary
        perf = PerformanceDegraded(
            model=model,
            version="1",
            metric="accuracy",
            value=0.6,
            severity="high",
            window=Window(start=datetime.now(UTC), end=datetime.now(UTC), size=500),
        )
        other = await decision(perf, "performance-degraded")
        assert other["decision"] == "ignored" and "max-concurrency" in other["reason"], other
        assert "in flight" in other["reason"]

        # v3 completes: the old champion's late signals are about a replaced version.
        await kafka.send("rollout-completed", rollout(RolloutCompleted, model, "r3", "3", "1"), source="rollout")
        await rollout_seen("r3", "completed")
        late = await decision(drift(model, "1", "income"))
        assert late["decision"] == "ignored" and "replaced" in late["reason"], late
        assert len(await jobs_of(client, op, model)) == 1

        # The guard is not a mute button: the new champion's own drift is a new incident.
        fresh = await decision(drift(model, "3", "age"))
        assert fresh["decision"] == "created", fresh
        assert len(await jobs_of(client, op, model)) == 2
