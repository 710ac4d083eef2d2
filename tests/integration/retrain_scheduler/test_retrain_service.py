"""The retrain scheduler on the real Kafka and Postgres, with a real HTTP
server as the training pipeline's webhook."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from mloop.contracts.payloads import (
    DriftDetected,
    Lineage,
    ModelRegistered,
    RetrainCompleted,
    RetrainFailed,
    RolloutCompleted,
    Window,
)
from mloop.retrain_scheduler.dispatch import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from mloop.retrain_scheduler.main import create_app
from mloop.retrain_scheduler.settings import RetrainSchedulerSettings
from mloop.runtime.testing import EventCollector, EventPublisher, auth_headers, running_app

from .webhook import dead_url, training_webhook

pytestmark = pytest.mark.integration

SECRET = "trainer-signing-secret-0123456789"
FAST_DISPATCH = {
    "max_attempts": 3,
    "backoff_initial": "PT0.1S",
    "backoff_max": "PT0.3S",
    "request_timeout": "PT2S",
}
# These tests are about dispatch: a drift-triggered job goes out at once
# instead of waiting for post-signal data (test_retrain_convergence covers that).
NO_DATA_WAIT = {"post_signal_data": {"enabled": False}}
OUR_TOPICS = ["retrain-requested", "retrain-job-changed", "retrain-failed", "cycle-time-recorded", "retrain-completed"]


def _settings(infra: Any, **kw: Any) -> RetrainSchedulerSettings:
    return RetrainSchedulerSettings(
        **infra.settings_kwargs(
            dispatch_poll_interval_s=0.1,
            dispatch_lease_margin_s=0.3,
            webhook_secrets={"trainer": SECRET},
            **kw,
        )
    )


class Kafka(EventPublisher):
    """Publishes events the way the other services do."""

    def __init__(self, infra: Any) -> None:
        super().__init__(infra.bootstrap_servers, infra.topic_prefix)


def drift(model: str, severity: str = "high") -> DriftDetected:
    now = datetime.now(UTC)
    return DriftDetected(
        model=model,
        version="3",
        kind="data",
        severity=severity,
        window=Window(start=now - timedelta(hours=1), end=now, size=1000),
        features=[],
    )


async def eventually(check: Callable[[], Awaitable[Any]], timeout_s: float = 20.0) -> Any:
    """The first truthy result of ``check``, polling."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.1)


async def jobs_of(client: httpx.AsyncClient, headers: dict[str, str], model: str) -> list[dict[str, Any]]:
    r = await client.get("/jobs", params={"model": model}, headers=headers)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def set_webhook(client: httpx.AsyncClient, headers: dict[str, str], model: str, url: str) -> None:
    r = await client.put(
        f"/models/{model}/policy",
        json={"webhook": {"url": url, "secret_ref": "trainer"}, "dispatch": FAST_DISPATCH, **NO_DATA_WAIT},
        headers=headers,
    )
    assert r.status_code == 200, r.text


async def test_a_drift_signal_dispatches_a_signed_webhook(infra: Any) -> None:
    settings = _settings(infra)
    op = auth_headers(settings, "olga", "operator")
    async with (
        training_webhook(200) as hook,
        running_app(create_app(settings)) as client,
        Kafka(infra) as kafka,
        EventCollector(infra.bootstrap_servers, infra.topic_prefix, OUR_TOPICS) as seen,
    ):
        await set_webhook(client, op, "credit-risk", hook.url)
        signal_id = await kafka.send("drift-detected", drift("credit-risk"), source="monitor")

        await asyncio.wait_for(hook.arrived.wait(), 20)
        req = hook.received[0]
        assert verify(req.body, req.headers[SIGNATURE_HEADER.lower()], SECRET)
        assert not verify(req.body, req.headers[SIGNATURE_HEADER.lower()], "another-secret")
        assert abs(int(req.headers[TIMESTAMP_HEADER.lower()]) - datetime.now(UTC).timestamp()) < 60
        body = json.loads(req.body)
        assert req.headers["idempotency-key"] == body["job_id"]
        assert body["model"] == "credit-risk" and body["trigger_event_ids"] == [signal_id]
        assert body["policy"]["webhook"]["secret_ref"] == "trainer"

        requested = await seen.wait_for("retrain-requested", 1)
        assert requested[0].data.job_id == body["job_id"]
        assert requested[0].id == req.headers["x-mloop-event-id"]
        changes = await seen.wait_for("retrain-job-changed", 2)
        assert [(e.data.previous_state, e.data.state) for e in changes] == [
            (None, "requested"),
            ("requested", "dispatched"),
        ]

        job = await eventually(lambda: _job_if(client, op, body["job_id"], delivery="delivered"))
        assert job["attempts"] == 1 and job["state"] == "dispatched"


async def _job_if(client: httpx.AsyncClient, headers: dict[str, str], job_id: str, **want: Any) -> Any:
    r = await client.get(f"/jobs/{job_id}", headers=headers)
    if r.status_code != 200:
        return None
    job = r.json()
    return job if all(job.get(k) == v for k, v in want.items()) else None


async def test_an_endpoint_answering_500_then_200_is_retried_and_the_job_dispatched_once(infra: Any) -> None:
    settings = _settings(infra)
    op = auth_headers(settings, "olga", "operator")
    async with (
        training_webhook(500, 200) as hook,
        running_app(create_app(settings)) as client,
        Kafka(infra) as kafka,
        EventCollector(infra.bootstrap_servers, infra.topic_prefix, OUR_TOPICS) as seen,
    ):
        await set_webhook(client, op, "churn", hook.url)
        await kafka.send("drift-detected", drift("churn"), source="monitor")

        (job,) = await eventually(lambda: jobs_of(client, op, "churn"))
        done = await eventually(lambda: _job_if(client, op, job["id"], delivery="delivered"))
        assert done["attempts"] == 2 and done["state"] == "dispatched"
        assert [r.headers["x-mloop-attempt"] for r in hook.received] == ["1", "2"]
        assert {r.headers["idempotency-key"] for r in hook.received} == {job["id"]}
        assert hook.received[0].body == hook.received[1].body

        await seen.wait_for("retrain-requested", 1)
        await asyncio.sleep(1.0)
        await seen.poll(0.5)
        assert len(seen.of("retrain-requested")) == 1
        assert [t["state"] for t in done["transitions"]] == ["requested", "dispatched"]
        assert len(hook.received) == 2


async def test_a_dead_endpoint_fails_the_job_after_its_retries_and_emits_retrain_failed(infra: Any) -> None:
    settings = _settings(infra)
    op = auth_headers(settings, "olga", "operator")
    async with (
        running_app(create_app(settings)) as client,
        Kafka(infra) as kafka,
        EventCollector(infra.bootstrap_servers, infra.topic_prefix, OUR_TOPICS) as seen,
    ):
        await set_webhook(client, op, "fraud", dead_url())
        await kafka.send("drift-detected", drift("fraud"), source="monitor")

        (job,) = await eventually(lambda: jobs_of(client, op, "fraud"))
        failed = await eventually(lambda: _job_if(client, op, job["id"], state="failed"))
        assert failed["attempts"] == 3 and failed["delivery"] == "gave-up"
        assert "3 attempt(s)" in failed["detail"]

        (event,) = await seen.wait_for("retrain-failed", 1)
        assert event.data.job_id == job["id"] and "gave up" in event.data.reason
        changes = await seen.wait_for("retrain-job-changed", 3)
        assert [e.data.state for e in changes] == ["requested", "dispatched", "failed"]


async def test_a_failing_endpoint_does_not_hold_up_another_models_dispatch(infra: Any) -> None:
    settings = _settings(infra)
    op = auth_headers(settings, "olga", "operator")
    async with (
        training_webhook(0) as slow,
        training_webhook(200) as fast,
        running_app(create_app(settings)) as client,
        Kafka(infra) as kafka,
    ):
        await set_webhook(client, op, "slow-model", slow.url)
        await set_webhook(client, op, "fast-model", fast.url)
        await kafka.send("drift-detected", drift("slow-model"), source="monitor")
        await asyncio.wait_for(slow.arrived.wait(), 20)
        await kafka.send("drift-detected", drift("fast-model"), source="monitor")
        (job,) = await eventually(lambda: jobs_of(client, op, "fast-model"))
        await eventually(lambda: _job_if(client, op, job["id"], delivery="delivered"))
        # The fast model was delivered while the slow model's first call was still held open.
        assert len(fast.received) == 1
        (slow_job,) = await jobs_of(client, op, "slow-model")
        assert slow_job["delivery"] == "pending", slow_job


async def test_a_scheduler_restarted_mid_dispatch_neither_loses_nor_duplicates_the_job(infra: Any) -> None:
    settings = _settings(infra)
    op = auth_headers(settings, "olga", "operator")
    async with (
        training_webhook(0, 200) as hook,
        Kafka(infra) as kafka,
        EventCollector(infra.bootstrap_servers, infra.topic_prefix, OUR_TOPICS) as seen,
    ):
        async with running_app(create_app(settings)) as first:
            await set_webhook(first, op, "credit-risk", hook.url)
            await kafka.send("drift-detected", drift("credit-risk"), source="monitor")
            await asyncio.wait_for(hook.arrived.wait(), 20)
            # The scheduler stops while the webhook call is in flight.
        hook.release.set()

        async with running_app(create_app(settings)) as second:
            (job,) = await jobs_of(second, op, "credit-risk")
            done = await eventually(lambda: _job_if(second, op, job["id"], delivery="delivered"))
            assert done["state"] == "dispatched" and done["attempts"] == 2
            assert len(await jobs_of(second, op, "credit-risk")) == 1

        assert {r.headers["idempotency-key"] for r in hook.received} == {job["id"]}
        await seen.wait_for("retrain-requested", 1)
        await asyncio.sleep(1.0)
        await seen.poll(0.5)
        # A process killed between publishing and marking the outbox row sent
        # republishes the same event (same ce_id), which consumers drop: the
        # job was requested once.
        assert len({e.id for e in seen.of("retrain-requested")}) == 1


async def test_a_storm_of_signals_creates_one_job(infra: Any) -> None:
    settings = _settings(infra)
    op = auth_headers(settings, "olga", "operator")
    async with running_app(create_app(settings)) as client, Kafka(infra) as kafka:
        for _ in range(30):
            await kafka.send("drift-detected", drift("storm"), source="monitor")
        await kafka.send("drift-detected", drift("calm", severity="low"), source="monitor")
        await kafka.send("drift-detected", drift("other"), source="monitor")
        await eventually(lambda: jobs_of(client, op, "other"))
        await asyncio.sleep(1.0)
        assert len(await jobs_of(client, op, "storm")) == 1
        assert await jobs_of(client, op, "calm") == []

        async def storm_signals() -> Any:
            r = await client.get("/signals", params={"model": "storm", "page_size": 100}, headers=op)
            items = r.json()["items"]
            return items if len(items) == 30 else None

        decisions = [s["decision"] for s in await eventually(storm_signals)]
        assert decisions.count("created") == 1 and decisions.count("ignored") == 29
        # Every storm signal has now been handled: still one job.
        assert len(await jobs_of(client, op, "storm")) == 1

        async def calm_signals() -> Any:
            r = await client.get("/signals", params={"model": "calm"}, headers=op)
            return r.json()["items"]

        # The low-severity signal was received and ignored, not merely not yet read.
        (calm,) = await eventually(calm_signals)
        assert calm["decision"] == "ignored" and "below" in calm["reason"], calm
        assert await jobs_of(client, op, "calm") == []
        r = await client.get("/metrics")
        assert 'mloop_retrain_signals_total{decision="ignore",signal="drift-detected"}' in r.text


async def test_signal_to_rollout_records_a_queryable_cycle_time(infra: Any) -> None:
    settings = _settings(infra)
    op = auth_headers(settings, "olga", "operator")
    async with (
        running_app(create_app(settings)) as client,
        Kafka(infra) as kafka,
        EventCollector(infra.bootstrap_servers, infra.topic_prefix, OUR_TOPICS) as seen,
    ):
        r = await client.put("/models/credit-risk/policy", json=NO_DATA_WAIT, headers=op)
        assert r.status_code == 200, r.text
        t0 = datetime.now(UTC)
        await kafka.send("drift-detected", drift("credit-risk"), source="monitor", at=t0)
        (job,) = await eventually(lambda: jobs_of(client, op, "credit-risk"))
        assert job["state"] == "dispatched"

        registered = ModelRegistered(
            model="credit-risk",
            version="4",
            seq=0,
            artifact_uri="s3://models/credit-risk/4",
            lineage=Lineage(retrain_job_id=job["id"]),
            registered_by="service:trainer",
            created_at=datetime.now(UTC),
        )
        await kafka.send("model-registered", registered, source="registry")
        await eventually(lambda: _job_if(client, op, job["id"], state="completed", produced_version="4"))

        done = RolloutCompleted(
            model="credit-risk",
            rollout_id="r-1",
            seq=5,
            version="4",
            baseline_version="3",
            strategy="canary",
            phase="completed",
            step_index=3,
            weight=1.0,
        )
        await kafka.send("rollout-completed", done, source="rollout")

        async def stats() -> Any:
            r = await client.get("/models/credit-risk/cycle-time", headers=op)
            return r.json() if r.status_code == 200 and r.json()["cycles"] == 1 else None

        s = await eventually(stats)
        assert s["p50_seconds"] > 0 and s["p90_seconds"] >= s["p50_seconds"]
        assert s["cycles_by_outcome"] == {"completed": 1}
        assert s["jobs_by_state"] == {"completed": 1}
        assert set(s["mean_shares"]) == {
            "signal-to-job",
            "job-to-dispatched",
            "dispatched-to-registered",
            "registered-to-rollout",
        }
        (recorded,) = await seen.wait_for("cycle-time-recorded", 1)
        assert recorded.data.job_id == job["id"] and recorded.data.version == "4"
        assert recorded.data.outcome == "completed" and not recorded.data.sla_breached
        detail = (await client.get(f"/jobs/{job['id']}", headers=op)).json()
        assert detail["cycle_time"]["seconds"] == pytest.approx(s["p50_seconds"])


async def test_manual_trigger_confirmation_and_the_pipeline_callback(infra: Any) -> None:
    settings = _settings(infra)
    op = auth_headers(settings, "olga", "operator")
    reviewer = auth_headers(settings, "rita", "reviewer")
    pipeline = auth_headers(settings, "trainer", "service")
    viewer = auth_headers(settings, "vic", "viewer")
    async with (
        running_app(create_app(settings)) as client,
        EventCollector(infra.bootstrap_servers, infra.topic_prefix, OUR_TOPICS) as seen,
    ):
        r = await client.put("/models/churn/policy", json={"require_confirmation": True}, headers=op)
        assert r.status_code == 200
        assert (await client.post("/jobs", json={"model": "churn"}, headers=viewer)).status_code == 403
        r = await client.post("/jobs", json={"model": "churn", "reason": "new features"}, headers=op)
        assert r.status_code == 201, r.text
        job = r.json()
        assert job["state"] == "awaiting-confirmation" and job["trigger"] == "manual"
        assert (await client.post("/jobs", json={"model": "churn"}, headers=op)).status_code == 409

        r = await client.post(f"/jobs/{job['id']}/confirm", headers=reviewer)
        assert r.status_code == 200 and r.json()["state"] == "dispatched"
        assert r.json()["confirmed_by"] == "user:rita"
        r = await client.post(f"/jobs/{job['id']}/status", json={"state": "running"}, headers=pipeline)
        assert r.status_code == 200 and r.json()["state"] == "running"
        r = await client.post(
            f"/jobs/{job['id']}/status", json={"state": "completed", "version": "9"}, headers=pipeline
        )
        assert r.status_code == 200 and r.json()["produced_version"] == "9"

        (completed,) = await seen.wait_for("retrain-completed", 1)
        assert completed.data.version == "9" and completed.actor == "service:trainer"
        await seen.wait_for("retrain-job-changed", 4)
        await asyncio.sleep(0.5)
        final = (await client.get(f"/jobs/{job['id']}", headers=op)).json()
        assert [t["state"] for t in final["transitions"]] == [
            "awaiting-confirmation",
            "dispatched",
            "running",
            "completed",
        ]


async def test_bad_input_gets_a_problem_document(infra: Any) -> None:
    settings = _settings(infra)
    op = auth_headers(settings, "olga", "operator")
    async with running_app(create_app(settings)) as client:
        r = await client.get("/jobs/no-such-job", headers=op)
        assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")

        r = await client.put("/models/m/policy", json={"consecutive_signals": 0}, headers=op)
        assert r.status_code == 422
        assert r.json()["errors"][0]["field"] == "body.consecutive_signals"
        assert "consecutive_signals" in r.json()["detail"]
        r = await client.put("/models/m/policy", json={"cooldwon": "PT1H"}, headers=op)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.cooldwon"
        r = await client.put(
            "/default-policy",
            json={"quiet_hours": [{"start": "22:00", "end": "06:00", "timezone": "Nowhere/Land"}]},
            headers=op,
        )
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.quiet_hours.0.timezone"
        r = await client.put(
            "/models/m/policy", json={"webhook": {"url": "http://x", "secret_ref": "nope"}}, headers=op
        )
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.webhook.secret_ref"

        r = await client.post("/jobs", json={"model": "m"}, headers=op)
        job_id = r.json()["id"]
        assert (await client.post(f"/jobs/{job_id}/cancel", headers=op)).status_code == 200
        r = await client.post(f"/jobs/{job_id}/cancel", headers=op)
        assert r.status_code == 409
        assert "cancelled" in r.json()["detail"] and r.json()["state"] == "cancelled"
        r = await client.post(f"/jobs/{job_id}/confirm", headers=op)
        assert r.status_code == 409

        r = await client.get("/jobs", params={"page_token": "%%%"}, headers=op)
        assert r.status_code == 400


async def test_jobs_are_listed_newest_first_with_cursor_pagination(infra: Any) -> None:
    settings = _settings(infra)
    op = auth_headers(settings, "olga", "operator")
    async with running_app(create_app(settings)) as client:
        await client.put("/default-policy", json={"cooldown": "PT0S", "max_concurrent_jobs": 10}, headers=op)
        ids = [(await client.post("/jobs", json={"model": "m"}, headers=op)).json()["id"] for _ in range(5)]
        seen: list[str] = []
        token = None
        while True:
            params: dict[str, Any] = {"page_size": 2, "model": "m"}
            if token:
                params["page_token"] = token
            page = (await client.get("/jobs", params=params, headers=op)).json()
            seen += [j["id"] for j in page["items"]]
            token = page["next_page_token"]
            if not token:
                break
        assert seen == list(reversed(ids))
        r = await client.get("/jobs", params={"state": "dispatched", "model": "m"}, headers=op)
        assert len(r.json()["items"]) == 5
        r = await client.get("/jobs", params={"state": "completed"}, headers=op)
        assert r.json()["items"] == []


async def test_a_scheduler_killed_mid_dispatch_neither_loses_nor_duplicates_the_job(
    infra: Any,
) -> None:
    """kill -9 of a real scheduler process while the webhook call is in flight."""
    settings = _settings(infra)
    op = auth_headers(settings, "olga", "operator")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kw = infra.settings_kwargs()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
        "DATABASE_URL": infra.database_url,
        "MLOOP_TOPIC_PREFIX": infra.topic_prefix,
        "MLOOP_HTTP_PORT": str(port),
        "MLOOP_JWT_SECRET": kw["jwt_secret"],
        "MLOOP_ENVIRONMENT": "test",
        "MLOOP_LOG_JSON": "false",
        "MLOOP_WEBHOOK_SECRETS": json.dumps({"trainer": SECRET}),
        "MLOOP_DISPATCH_POLL_INTERVAL_S": "0.1",
        "MLOOP_DISPATCH_LEASE_MARGIN_S": "0.3",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mloop.retrain_scheduler",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with (
            training_webhook(0, 200) as hook,
            Kafka(infra) as kafka,
            EventCollector(infra.bootstrap_servers, infra.topic_prefix, OUR_TOPICS) as seen,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as remote,
        ):

            async def ready() -> bool:
                try:
                    r = await remote.get("/readyz")
                except httpx.TransportError:
                    return False
                return r.status_code == 200 and r.json()["checks"]["consumers_assigned"] is True

            await eventually(ready, timeout_s=60)
            await set_webhook(remote, op, "credit-risk", hook.url)
            await kafka.send("drift-detected", drift("credit-risk"), source="monitor")
            await asyncio.wait_for(hook.arrived.wait(), 20)
            proc.kill()
            await proc.wait()
            hook.release.set()

            async with running_app(create_app(settings)) as client:
                (job,) = await jobs_of(client, op, "credit-risk")
                done = await eventually(lambda: _job_if(client, op, job["id"], delivery="delivered"))
                assert done["attempts"] == 2
                assert len(await jobs_of(client, op, "credit-risk")) == 1
            assert len(hook.received) == 2
            assert {r.headers["idempotency-key"] for r in hook.received} == {job["id"]}
            await seen.wait_for("retrain-requested", 1)
            await asyncio.sleep(1.0)
            await seen.poll(0.5)
            # A process killed between publishing and marking the outbox row sent
            # republishes the same event (same ce_id), which consumers drop: the
            # job was requested once.
            assert len({e.id for e in seen.of("retrain-requested")}) == 1
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_job_without_a_result_times_out_and_its_cycle_is_recorded_as_failed(
    infra: Any,
) -> None:
    settings = _settings(infra)
    op = auth_headers(settings, "olga", "operator")
    async with (
        running_app(create_app(settings)) as client,
        EventCollector(infra.bootstrap_servers, infra.topic_prefix, OUR_TOPICS) as seen,
    ):
        await client.put("/models/slow/policy", json={"job_timeout": "PT1S"}, headers=op)
        job = (await client.post("/jobs", json={"model": "slow"}, headers=op)).json()
        done = await eventually(lambda: _job_if(client, op, job["id"], state="timed-out"))
        assert done["cycle_time"]["outcome"] == "failed"
        (cycle,) = await seen.wait_for("cycle-time-recorded", 1)
        assert cycle.data.outcome == "failed" and cycle.data.job_id == job["id"]
        s = (await client.get("/models/slow/cycle-time", headers=op)).json()
        assert s["p50_seconds"] is None and s["cycles_by_outcome"] == {"failed": 1}


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def test_a_job_created_in_quiet_hours_is_dispatched_when_they_end(infra: Any) -> None:
    settings = _settings(infra)
    op = auth_headers(settings, "olga", "operator")
    clock = FakeClock(datetime(2026, 11, 26, 23, 0, tzinfo=UTC))
    async with running_app(create_app(settings, clock=clock)) as client, Kafka(infra) as kafka:
        r = await client.put(
            "/models/nightly/policy",
            json={"quiet_hours": [{"start": "22:00", "end": "06:00", "timezone": "UTC"}], **NO_DATA_WAIT},
            headers=op,
        )
        assert r.status_code == 200
        await kafka.send("drift-detected", drift("nightly"), source="monitor")
        (job,) = await eventually(lambda: jobs_of(client, op, "nightly"))
        assert job["state"] == "requested"
        assert job["dispatch_not_before"].startswith("2026-11-27T06:00:00")
        await asyncio.sleep(0.5)
        assert (await jobs_of(client, op, "nightly"))[0]["state"] == "requested"

        clock.now = datetime(2026, 11, 27, 6, 0, 1, tzinfo=UTC)
        await eventually(lambda: _job_if(client, op, job["id"], state="dispatched"))


async def test_pipeline_reports_over_kafka_move_the_job_and_unknown_jobs_are_dead_lettered(
    infra: Any,
) -> None:
    settings = _settings(infra)
    op = auth_headers(settings, "olga", "operator")
    async with (
        running_app(create_app(settings)) as client,
        Kafka(infra) as kafka,
        EventCollector(infra.bootstrap_servers, infra.topic_prefix, ["dead-letter"]) as seen,
    ):
        job = (await client.post("/jobs", json={"model": "credit-risk"}, headers=op)).json()
        assert job["state"] == "dispatched"
        now = datetime.now(UTC)
        await kafka.send(
            "retrain-completed",
            RetrainCompleted(job_id=job["id"], model="credit-risk", version="7", finished_at=now),
            source="trainer",
        )
        done = await eventually(lambda: _job_if(client, op, job["id"], state="completed"))
        assert done["produced_version"] == "7"

        await kafka.send(
            "retrain-failed",
            RetrainFailed(job_id="no-such-job", model="credit-risk", reason="oom", finished_at=now),
            source="trainer",
        )
        (dead,) = await seen.wait_for("dead-letter", 1)
        assert dead.data.topic.endswith("retrain-failed") and "no-such-job" in dead.data.reason


async def test_each_models_last_job_for_a_page_of_models_in_one_call(infra: Any) -> None:
    settings = _settings(infra)
    op = auth_headers(settings, "olga", "operator")
    viewer = auth_headers(settings, "vic", "viewer")
    async with running_app(create_app(settings)) as client:
        for name in ("alpha", "bravo", "charlie"):
            r = await client.put(f"/models/{name}/policy", json={"require_confirmation": True}, headers=op)
            assert r.status_code == 200, r.text
        ids: dict[str, list[str]] = {}
        for name in ("alpha", "bravo", "alpha", "charlie", "alpha"):
            for earlier in ids.get(name, []):  # one open job per model: cancel the previous one first
                await client.post(f"/jobs/{earlier}/cancel", json={"reason": "superseded"}, headers=op)
            r = await client.post("/jobs", json={"model": name, "reason": "test"}, headers=op)
            assert r.status_code == 201, r.text
            ids.setdefault(name, []).append(r.json()["id"])

        latest = await client.get("/jobs", params={"model": ["alpha", "bravo", "nobody"], "latest_per_model": "true"},
                                  headers=viewer)
        assert latest.status_code == 200, latest.text
        # Newest first, one per model: alpha's third job (newer than bravo's only one); charlie not asked for.
        assert [(j["model"], j["id"]) for j in latest.json()["items"]] == [("alpha", ids["alpha"][2]),
                                                                           ("bravo", ids["bravo"][0])]
        both = await client.get("/jobs", params={"model": ["alpha", "bravo"]}, headers=viewer)
        assert sorted(j["id"] for j in both.json()["items"]) == sorted(ids["alpha"] + ids["bravo"])
        # Paged like any list: one model per page, every model's newest job exactly once.
        seen, token = [], None
        while True:
            params: dict[str, Any] = {"latest_per_model": "true", "page_size": 1}
            if token:
                params["page_token"] = token
            page = (await client.get("/jobs", params=params, headers=viewer)).json()
            seen += [(j["model"], j["id"]) for j in page["items"]]
            token = page["next_page_token"]
            if not token:
                break
        assert seen == [("alpha", ids["alpha"][2]), ("charlie", ids["charlie"][0]), ("bravo", ids["bravo"][0])]
        # The states filter applies before "newest": alpha's newest cancelled job is its second.
        cancelled = await client.get("/jobs", params={"model": "alpha", "state": "cancelled",
                                                      "latest_per_model": "true"}, headers=viewer)
        assert [j["id"] for j in cancelled.json()["items"]] == [ids["alpha"][1]]

        bad = await client.get("/jobs", params={"model": ["ok", "../etc"]}, headers=viewer)
        assert bad.status_code == 422 and "model" in bad.text
        assert bad.headers["content-type"] == "application/problem+json"
        too_many = await client.get("/jobs", params={"model": [f"m{i}" for i in range(201)]}, headers=viewer)
        assert too_many.status_code == 422
        assert (await client.get("/jobs", params={"latest_per_model": "true"})).status_code == 401
