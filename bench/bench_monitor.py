"""Monitor throughput: prediction events per second end to end through the real Kafka.

A model with 20 numeric and 3 categorical features is registered with a
5,000-row training profile; a stream of plain-JSON predictions is written
to ``prediction-logged`` first, then the monitor (in this process, against
a real Kafka and Postgres) consumes it: decode, validate, count into the
windows' bins, evaluate every full window (2,000 rows), store the
predictions, and commit state with the offsets. The rate is measured from
the first counted record to the last. Next to each figure, a raw aiokafka
consumer reads the same topic (fetch only, no decoding) as the ceiling.

The monitor runs in this process, so the process's garbage collector is
set as a service process sets its own at start (``runtime.service.tune_gc``).

Scenarios: 100 records per message and 1 record per message, as plain
JSON (the external contract; the envelope derives each event id) and with
CloudEvents headers (as the SDK sends them), and 100 per message with the
prediction store off.

``python bench/bench_monitor.py [--quick]`` prints a table.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from mloop.contracts.envelope import encode, new_event
from mloop.contracts.payloads import FeatureSchema, FeatureSpec, Lineage, ModelRegistered, PredictionLogged
from mloop.devstack import create_topics
from mloop.devstack.testing import EphemeralStack
from mloop.monitor.main import create_app
from mloop.monitor.settings import MonitorSettings
from mloop.runtime.service import tune_gc
from mloop.runtime.testing import auth_headers, running_app
from mloop.stats.profile import ReferenceProfile

JWT = "bench-secret-that-is-long-enough-for-hs256-0123456789"
NUMERIC = [f"num_{i:02d}" for i in range(20)]
CATEGORICAL = [f"cat_{i:02d}" for i in range(3)]
LEVELS = ["a", "b", "c", "d", "e"]
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
MODEL = "bench-model"


def _columns(rng: np.random.Generator, n: int) -> dict[str, np.ndarray[Any, Any]]:
    cols: dict[str, np.ndarray[Any, Any]] = {name: rng.normal(i, 1 + i / 10, n) for i, name in enumerate(NUMERIC)}
    for name in CATEGORICAL:
        cols[name] = rng.choice(LEVELS, n, p=[0.4, 0.25, 0.15, 0.12, 0.08])
    return cols


def _registration(rng: np.random.Generator) -> ModelRegistered:
    cols = _columns(rng, 5000)
    profile = ReferenceProfile.from_columns(cols, dict.fromkeys(CATEGORICAL, "categorical"),
                                            prediction=rng.uniform(0, 1, 5000))
    schema = [FeatureSpec(name=n, type="number") for n in NUMERIC] + [
        FeatureSpec(name=n, type="category") for n in CATEGORICAL]
    return ModelRegistered(model=MODEL, version="1", seq=1, artifact_uri="s3://bench/model",
                           lineage=Lineage(features=FeatureSchema(schema=schema)), metrics={"auc": 0.9},
                           training_profile=profile.to_dict(), registered_by="user:bench", created_at=T0)


Message = tuple[bytes, list[tuple[str, bytes]]]


def _messages(rng: np.random.Generator, records: int, per_message: int, cloudevents: bool) -> list[Message]:
    cols = _columns(rng, records)
    numeric = np.column_stack([cols[n] for n in NUMERIC]).round(4).tolist()
    cats = np.column_stack([cols[n] for n in CATEGORICAL]).tolist()
    preds = rng.uniform(0, 1, records).round(4).tolist()
    out = []
    for start in range(0, records, per_message):
        recs = []
        for i in range(start, min(start + per_message, records)):
            feats: dict[str, Any] = dict(zip(NUMERIC, numeric[i], strict=True))
            feats.update(zip(CATEGORICAL, cats[i], strict=True))
            recs.append({"request_id": f"b-{i}", "version": "1",
                         "timestamp": (T0 + timedelta(milliseconds=i)).isoformat().replace("+00:00", "Z"),
                         "features": feats, "prediction": preds[i]})
        value = json.dumps({"model": MODEL, "records": recs}, separators=(",", ":")).encode()
        headers: list[tuple[str, bytes]] = []
        if cloudevents:
            event = new_event("prediction-logged", PredictionLogged.model_validate_json(value), source="serving")
            rec = encode(event)
            value, headers = rec.value, rec.headers
        out.append((value, headers))
    return out


async def _produce(bootstrap: str, topic: str, messages: list[Message]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                linger_ms=20, max_batch_size=1 << 20, max_request_size=16 << 20)
    await producer.start()
    try:
        for i, (value, headers) in enumerate(messages):
            # Spread over four partitions, as four serving replicas keyed by replica would.
            await producer.send(topic, value, partition=i % 4, headers=headers)
        await producer.flush()
    finally:
        await producer.stop()


async def _raw_consume(bootstrap: str, topic: str, expected_messages: int) -> float:
    """Seconds a bare aiokafka consumer needs to fetch every message of ``topic``."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False, max_partition_fetch_bytes=1 << 20)
    await consumer.start()
    try:
        seen, started = 0, None
        while seen < expected_messages:
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            for msgs in batches.values():
                if msgs and started is None:
                    started = time.perf_counter()
                seen += len(msgs)
        assert started is not None
        return time.perf_counter() - started
    finally:
        await consumer.stop()


async def _counted(conn: asyncpg.Connection) -> int:
    n = await conn.fetchval("SELECT COALESCE(sum((state->>'predictions_seen')::bigint), 0) FROM monitor.monitor_state")
    return int(n)


async def _scenario(stack: EphemeralStack, records: int, per_message: int, store: str,
                    cloudevents: bool = False) -> dict[str, Any]:
    prefix = f"b{uuid.uuid4().hex[:8]}."
    await create_topics(stack.bootstrap_servers, prefix=prefix)
    database_url = stack.new_database()
    rng = np.random.default_rng(20261126)
    settings = MonitorSettings(
        environment="test", kafka_bootstrap_servers=stack.bootstrap_servers, database_url=database_url,
        topic_prefix=prefix, jwt_secret=JWT, log_json=False, log_level="WARNING", prediction_store=store,
    )
    topic = prefix + "prediction-logged"
    reg = encode(new_event("model-registered", _registration(rng), source="bench"), topic_prefix=prefix)
    messages = _messages(rng, records, per_message, cloudevents)
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap_servers)
    await producer.start()
    await producer.send_and_wait(reg.topic, reg.value, key=reg.key, headers=reg.headers)
    await producer.stop()

    conn = await asyncpg.connect(database_url)
    try:
        # Registered before any prediction is consumed: otherwise the first
        # predictions of an unknown model are dead-lettered and never counted.
        async with running_app(create_app(settings)) as client:
            config = {"window": {"size": 2000}}
            r = await client.put(f"/models/{MODEL}/config", json=config,
                                 headers=auth_headers(settings, "bench", "operator"))
            assert r.status_code == 200, r.text
            deadline = time.perf_counter() + 120
            while not await conn.fetchval(
                    "SELECT count(*) FROM monitor.model_versions WHERE model = $1 AND registered", MODEL):
                if time.perf_counter() > deadline:
                    raise TimeoutError("model-registered was not applied")
                await asyncio.sleep(0.05)
        produced_at = time.perf_counter()
        await _produce(stack.bootstrap_servers, topic, messages)
        produce_s = time.perf_counter() - produced_at
        async with running_app(create_app(settings)):
            first_at, first_n, first_cpu = None, 0, 0.0
            deadline = time.perf_counter() + 600
            while True:
                n = await _counted(conn)
                now = time.perf_counter()
                if first_at is None and n > 0:
                    first_at, first_n, first_cpu = now, n, time.process_time()
                if n >= records:
                    cpu_s = time.process_time() - first_cpu
                    break
                if now > deadline:
                    raise TimeoutError(f"monitor counted {n} of {records}")
                await asyncio.sleep(0.02)
            assert first_at is not None
            elapsed = max(now - first_at, 1e-6)
            await asyncio.sleep(1.0)
            final = await _counted(conn)
            windows = await conn.fetchval("SELECT count(*) FROM monitor.window_results WHERE signal = 'data'")
            stored = await conn.fetchval("SELECT count(*) FROM monitor.predictions")
    finally:
        await conn.close()
    raw_s = await _raw_consume(stack.bootstrap_servers, topic, len(messages))
    monitor_rate = (records - first_n) / elapsed
    raw_rate = records / max(raw_s, 1e-6)
    return {"records": records, "messages": len(messages), "monitor_rate": monitor_rate, "raw_rate": raw_rate,
            "windows": int(windows), "stored": int(stored), "produce_s": produce_s, "counted": final,
            "cpu_us": cpu_s / max(records - first_n, 1) * 1e6}


def _row(name: str, value: float, detail: str, target: str | None = None, unit: str = "records/s") -> dict[str, Any]:
    return {"name": name, "value": round(value, 2 if unit == "x raw" else 1), "unit": unit, "target": target,
            "detail": detail}


async def _bench(stack: EphemeralStack, quick: bool) -> list[dict[str, Any]]:
    batched_n = 20_000 if quick else 200_000
    single_n = 4_000 if quick else 40_000
    rows: list[dict[str, Any]] = []
    for label, n, per_message, store, cloudevents, floor in (
        ("100 records/message, plain JSON", batched_n, 100, "full", False, ">= 100000 (store on)"),
        ("1 record/message, plain JSON", single_n, 1, "full", False, None),
        ("100 records/message, CloudEvents headers", batched_n, 100, "full", True, ">= 100000"),
        ("1 record/message, CloudEvents headers", single_n, 1, "full", True, None),
        ("100 records/message, plain JSON, prediction store off", batched_n, 100, "off", False, ">= 200000"),
    ):
        res = await _scenario(stack, n, per_message, store, cloudevents)
        ratio = res["monitor_rate"] / max(res["raw_rate"], 1e-9)
        detail = (f"{res['records']} records in {res['messages']} messages, 23 features; "
                  f"{res['windows']} windows of 2,000 rows evaluated; {res['stored']} predictions stored; "
                  f"counted {res['counted']} (exactly once: {'yes' if res['counted'] == n else 'NO'}); "
                  f"{ratio:.2f}x the raw consumer of the same run ({res['raw_rate']:,.0f} records/s); "
                  f"{res['cpu_us']:.1f} µs CPU per record in the monitor's process")
        rows.append(_row(f"monitor end to end, {label}", res["monitor_rate"], detail, floor))
        rows.append(_row(f"raw aiokafka consumer, same topic ({label})", res["raw_rate"],
                         "fetch only, no decoding; the ceiling the monitor is compared with"))
        rows.append(_row(f"monitor / raw consumer ({label})", ratio, "same topic, same run", ">= 0.5", "x raw"))
    return rows


def run(quick: bool = False, stack: EphemeralStack | None = None) -> list[dict[str, Any]]:
    thresholds = gc.get_threshold()
    tune_gc(MonitorSettings.model_fields["gc_gen0_threshold"].default)
    try:
        if stack is not None:
            return asyncio.run(_bench(stack, quick))
        with EphemeralStack() as own:  # started outside the event loop
            return asyncio.run(_bench(own, quick))
    finally:  # the other benchmarks of a `make bench` run keep Python's defaults
        gc.set_threshold(*thresholds)
        gc.unfreeze()


if __name__ == "__main__":
    results = run(quick="--quick" in sys.argv)
    width = max(len(r["name"]) for r in results)
    for r in results:
        print(f"{r['name']:<{width}}  {r['value']:>12,.1f} {r['unit']:<10} {r['detail']}")
