"""Registry benchmarks.

* Gates: pure ``validate`` calls per second (lineage, metrics against a
  champion, segment bounds, feature schema).
* On a real Kafka + Postgres (an ephemeral stack), the registry in-process:
  - registration (HTTP 201 with every gate's result), sequential, p50/p90;
  - concurrent registrations of one model per second, and whether the
    numbers came out 1..N without gap or duplicate;
  - registration -> ``model-validated`` on Kafka (outbox relay), p50;
  - approval -> ``model-promoted`` on Kafka, p50.
"""

from __future__ import annotations

import asyncio
import copy
import statistics
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer

from mloop.contracts.envelope import decode
from mloop.contracts.payloads import FeatureSchema, Lineage
from mloop.devstack import create_topics
from mloop.devstack.testing import EphemeralStack
from mloop.registry.domain import Champion, Policy, SegmentBound, validate
from mloop.registry.main import create_app
from mloop.registry.schemas import REGISTRATION_EXAMPLE
from mloop.registry.settings import RegistrySettings
from mloop.runtime.testing import auth_headers, running_app

JWT = "bench-secret-that-is-long-enough-for-hs256-0123456789"


def _pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def bench_gates(quick: bool) -> dict[str, Any]:
    n = 5_000 if quick else 50_000
    lineage = Lineage.model_validate(REGISTRATION_EXAMPLE["lineage"])
    champion = Champion("3", {"auc": 0.91, "log_loss": 0.32}, FeatureSchema.model_validate(
        REGISTRATION_EXAMPLE["lineage"]["features"]))
    policy = Policy(segment_bounds={"recall": SegmentBound(min=0.6, max_gap=0.1)})
    segments = {"north": {"recall": 0.8}, "south": {"recall": 0.78}}
    passed = 0
    started = time.perf_counter()
    for i in range(n):
        metrics = {"auc": 0.88 + (i % 7) * 0.01, "log_loss": 0.32}
        passed += validate(lineage=lineage, metrics=metrics, segment_metrics=segments, champion=champion,
                           policy=policy).passed
    elapsed = time.perf_counter() - started
    return {
        "name": "validation gates per second (pure validate)",
        "value": round(n / elapsed),
        "unit": "validations/s",
        "target": 5_000,
        "detail": f"{n} candidates, 5 checks each; {passed} passed",
    }


async def bench_service(stack: EphemeralStack, quick: bool) -> list[dict[str, Any]]:
    sequential = 30 if quick else 200
    concurrent = 50 if quick else 200
    promotions = 5 if quick else 20
    prefix = f"b{uuid.uuid4().hex[:8]}."
    await create_topics(stack.bootstrap_servers, prefix=prefix)
    settings = RegistrySettings(
        environment="test", kafka_bootstrap_servers=stack.bootstrap_servers, database_url=stack.new_database(),
        topic_prefix=prefix, jwt_secret=JWT, outbox_poll_interval_s=0.2, log_json=False, log_level="WARNING",
        db_pool_max=20,
    )
    pipeline = auth_headers(settings, "trainer", "service")
    ds = auth_headers(settings, "dana", "data-scientist")
    reviewer = auth_headers(settings, "rita", "reviewer")
    body = copy.deepcopy(REGISTRATION_EXAMPLE)
    arrivals: dict[tuple[str, str, str], float] = {}
    watcher = AIOKafkaConsumer(prefix + "model-validated", prefix + "model-promoted",
                               bootstrap_servers=stack.bootstrap_servers, group_id=None,
                               auto_offset_reset="earliest", fetch_max_wait_ms=10)
    await watcher.start()

    async def watch() -> None:
        while True:
            batch = await watcher.getmany(timeout_ms=50)
            now = time.perf_counter()
            for _tp, msgs in batch.items():
                for m in msgs:
                    topic = m.topic[len(prefix):]
                    e = decode(topic, m.key, m.value, m.headers)
                    arrivals.setdefault((topic, e.data.model, e.data.version), now)

    watching = asyncio.create_task(watch())
    try:
        async with running_app(create_app(settings)) as client:
            await client.post("/models", json={"name": "seq"}, headers=ds)
            await client.post("/models", json={"name": "conc"}, headers=ds)
            latencies: list[float] = []
            sent: dict[str, float] = {}
            for _ in range(sequential):
                t = time.perf_counter()
                r = await client.post("/models/seq/versions", json=body, headers=pipeline)
                latencies.append((time.perf_counter() - t) * 1000)
                sent[r.json()["version"]] = t
            t = time.perf_counter()
            results = await asyncio.gather(*(
                client.post("/models/conc/versions", json=body, headers=pipeline) for _ in range(concurrent)))
            conc_s = time.perf_counter() - t
            numbers = sorted(int(r.json()["version"]) for r in results if r.status_code == 201)
            gapless = numbers == list(range(1, concurrent + 1))
            approved: dict[str, float] = {}
            for v in range(1, promotions + 1):
                r = await client.post(f"/models/seq/versions/{v}/promotion-requests", json={}, headers=ds)
                rid = r.json()["id"]
                approved[str(v)] = time.perf_counter()
                await client.post(f"/promotion-requests/{rid}/approve", json={}, headers=reviewer)
            for _ in range(300):  # up to 30 s for the last events to arrive
                if (sum(1 for k in arrivals if k[0] == "model-promoted") >= promotions
                        and sum(1 for k in arrivals if k[0] == "model-validated" and k[1] == "seq") >= sequential):
                    break
                await asyncio.sleep(0.1)
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        await watcher.stop()
    to_validated = [(arrivals[("model-validated", "seq", v)] - t) * 1000 for v, t in sent.items()
                    if ("model-validated", "seq", v) in arrivals]
    to_promoted = [(arrivals[("model-promoted", "seq", v)] - t) * 1000 for v, t in approved.items()
                   if ("model-promoted", "seq", v) in arrivals]
    return [
        {"name": "registration (HTTP, all gates), p50", "value": round(statistics.median(latencies), 1),
         "unit": "ms", "target": 50, "detail": f"{sequential} sequential registrations with full lineage"},
        {"name": "registration (HTTP, all gates), p90", "value": round(_pct(latencies, 90), 1), "unit": "ms",
         "target": 100, "detail": "version number, gates, version row and two outbox events in one transaction"},
        {"name": "concurrent registrations of one model", "value": round(concurrent / conc_s), "unit": "versions/s",
         "target": 50, "detail": f"{concurrent} at once; numbers 1..{concurrent} without gap: {gapless}"},
        {"name": "registration -> model-validated on Kafka, p50", "value": round(_pct(to_validated, 50)),
         "unit": "ms", "target": 300, "detail": f"{len(to_validated)}/{sequential} seen; outbox relay on NOTIFY"},
        {"name": "approval -> model-promoted on Kafka, p50", "value": round(_pct(to_promoted, 50)), "unit": "ms",
         "target": 300, "detail": f"{len(to_promoted)}/{promotions} seen"},
    ]


def run(quick: bool = False) -> list[dict[str, Any]]:
    with EphemeralStack() as stack:  # started outside the event loop
        return [bench_gates(quick), *asyncio.run(bench_service(stack, quick))]


if __name__ == "__main__":
    for row in run(quick=True):
        print(row)
