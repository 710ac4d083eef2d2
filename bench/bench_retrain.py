"""Retrain-scheduler benchmarks.

* Decisions: pure ``decide`` calls per second (a storm over many models).
* On a real Kafka + Postgres (an ephemeral stack), the scheduler in-process:
  - signal -> ``retrain-requested`` on Kafka, per new job (p50/p90);
  - signal -> training webhook called (a local HTTP server), per new job;
  - a storm of drift signals for one model: signals applied per second
    through the inbox consumer, and the number of jobs it created (must be 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from mloop.contracts.envelope import decode, encode, new_event
from mloop.contracts.payloads import DriftDetected, Window
from mloop.devstack import create_topics
from mloop.devstack.testing import EphemeralStack
from mloop.retrain_scheduler.domain import (
    CreateJob,
    DeferJob,
    ModelState,
    RetrainPolicy,
    Signal,
    decide,
    percentile,
)
from mloop.retrain_scheduler.main import create_app
from mloop.retrain_scheduler.settings import RetrainSchedulerSettings
from mloop.runtime.testing import auth_headers, running_app

JWT = "bench-secret-that-is-long-enough-for-hs256-0123456789"


def _drift(model: str, now: datetime) -> DriftDetected:
    return DriftDetected(
        model=model,
        version="1",
        kind="data",
        severity="high",
        window=Window(start=now - timedelta(hours=1), end=now, size=1000),
        features=[],
    )


def bench_decide(quick: bool) -> dict[str, Any]:
    n = 20_000 if quick else 200_000
    models = [f"m{i}" for i in range(100)]
    policy = RetrainPolicy()
    states = {m: ModelState(m) for m in models}
    t0 = datetime(2026, 11, 26, tzinfo=UTC)
    payloads = {m: _drift(m, t0) for m in models}
    jobs = 0
    started = time.perf_counter()
    for i in range(n):
        m = models[i % len(models)]
        at = t0 + timedelta(milliseconds=i)
        d = decide(policy, states[m], Signal.from_payload(str(i), at, payloads[m]), at)
        if isinstance(d, CreateJob | DeferJob):
            jobs += 1
            states[m] = replace(states[m], active_jobs=1, last_job_at=at)
    elapsed = time.perf_counter() - started
    return {
        "name": "retrain decisions per second (pure decide)",
        "value": round(n / elapsed),
        "unit": "decisions/s",
        "target": 20_000,
        "detail": f"{n} drift signals over {len(models)} models -> {jobs} jobs (one per model)",
    }


class _Hook:
    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            head = await reader.readuntil(b"\r\n\r\n")
            headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if ": " in line)
            await reader.readexactly(int(headers.get("content-length", headers.get("Content-Length", "0"))))
            job = headers.get("idempotency-key") or headers.get("Idempotency-Key") or ""
            self.arrivals.setdefault(job, time.perf_counter())
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        writer.close()


async def bench_loop(stack: EphemeralStack, quick: bool) -> list[dict[str, Any]]:
    jobs_n = 20 if quick else 100
    storm_n = 300 if quick else 3000
    if True:
        prefix = f"b{uuid.uuid4().hex[:8]}."
        await create_topics(stack.bootstrap_servers, prefix=prefix)
        db = stack.new_database()
        settings = RetrainSchedulerSettings(
            environment="test",
            kafka_bootstrap_servers=stack.bootstrap_servers,
            database_url=db,
            topic_prefix=prefix,
            jwt_secret=JWT,
            outbox_poll_interval_s=0.2,
            log_json=False,
            log_level="WARNING",
            dispatch_poll_interval_s=0.1,
        )
        op = auth_headers(settings, "bench", "operator")
        hook = _Hook()
        server = await asyncio.start_server(hook.handle, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/train"
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap_servers, linger_ms=5)
        await producer.start()
        try:
            watcher = AIOKafkaConsumer(
                prefix + "retrain-requested",
                bootstrap_servers=stack.bootstrap_servers,
                group_id=None,
                auto_offset_reset="earliest",
                fetch_max_wait_ms=10,
            )
            await watcher.start()
            async with running_app(create_app(settings)) as client:
                # Dispatch latency: the jobs go out at once instead of waiting for post-signal data.
                r = await client.put(
                    "/default-policy",
                    json={"webhook": {"url": url}, "post_signal_data": {"enabled": False}},
                    headers=op,
                )
                assert r.status_code == 200, r.text
                sent: dict[str, float] = {}
                sent_wall: dict[str, float] = {}
                for i in range(jobs_n):
                    model = f"latency-{i}"
                    rec = encode(
                        new_event("drift-detected", _drift(model, datetime.now(UTC)), source="monitor"),
                        topic_prefix=prefix,
                    )
                    sent[model] = time.perf_counter()
                    sent_wall[model] = time.time()
                    await producer.send_and_wait(rec.topic, rec.value, key=rec.key, headers=rec.headers)
                    await asyncio.sleep(0.05)
                requested: dict[str, float] = {}
                model_of: dict[str, str] = {}
                deadline = time.perf_counter() + 60
                while time.perf_counter() < deadline and (len(requested) < jobs_n or len(hook.arrivals) < jobs_n):
                    batches = await watcher.getmany(timeout_ms=20)
                    for msgs in batches.values():
                        for m in msgs:
                            e = decode("retrain-requested", m.key, m.value, m.headers)
                            # The broker's append time (CreateTime of the relay's send).
                            requested.setdefault(e.data.model, m.timestamp / 1000)
                            model_of[e.data.job_id] = e.data.model
                    if not batches:
                        await asyncio.sleep(0.01)
                await watcher.stop()
                to_kafka = [(requested[m] - sent_wall[m]) * 1000 for m in sent if m in requested]
                to_hook = [(at - sent[model_of[job]]) * 1000 for job, at in hook.arrivals.items() if job in model_of]

                storm_started = time.perf_counter()
                now = datetime.now(UTC)
                for _ in range(storm_n):
                    rec = encode(
                        new_event("drift-detected", _drift("storm", now), source="monitor"), topic_prefix=prefix
                    )
                    await producer.send(rec.topic, rec.value, key=rec.key, headers=rec.headers)
                await producer.flush()
                conn = await asyncpg.connect(db)
                try:
                    while True:
                        applied = await conn.fetchval(
                            "SELECT count(*) FROM retrain_scheduler.signals WHERE model = 'storm'"
                        )
                        if applied >= storm_n or time.perf_counter() - storm_started > 120:
                            break
                        await asyncio.sleep(0.05)
                    storm_s = time.perf_counter() - storm_started
                    storm_jobs = await conn.fetchval(
                        "SELECT count(*) FROM retrain_scheduler.jobs WHERE model = 'storm'"
                    )
                finally:
                    await conn.close()
        finally:
            await producer.stop()
            server.close()
    return [
        {
            "name": "signal -> retrain-requested on Kafka, p50",
            "value": round(percentile(to_kafka, 50) or 0),
            "unit": "ms",
            "target": 1000,
            "detail": f"{len(to_kafka)}/{jobs_n} new jobs observed",
        },
        {
            "name": "signal -> retrain-requested on Kafka, p90",
            "value": round(percentile(to_kafka, 90) or 0),
            "unit": "ms",
            "target": 2000,
            "detail": "inbox consumer, job + outbox row in one transaction, relay woken by NOTIFY",
        },
        {
            "name": "signal -> training webhook called, p50",
            "value": round(percentile(to_hook, 50) or 0),
            "unit": "ms",
            "target": 1000,
            "detail": f"{len(to_hook)}/{jobs_n}; dispatcher polls every 100 ms",
        },
        {
            "name": "signal -> training webhook called, p90",
            "value": round(percentile(to_hook, 90) or 0),
            "unit": "ms",
            "target": 2000,
            "detail": "signed request, one attempt",
        },
        {
            "name": "storm: drift signals applied per second (one model)",
            "value": round(applied / storm_s),
            "unit": "signals/s",
            "target": 200,
            "detail": f"{applied}/{storm_n} applied in {storm_s:.1f}s; jobs created: {storm_jobs} (expected 1)",
        },
    ]


def run(quick: bool) -> list[dict[str, Any]]:
    with EphemeralStack() as stack:  # started outside the event loop
        return [bench_decide(quick), *asyncio.run(bench_loop(stack, quick))]


if __name__ == "__main__":
    for row in run(quick=True):
        print(row)
