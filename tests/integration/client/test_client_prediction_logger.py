"""PredictionLogger against a real Kafka: exactly-once delivery, and a broker outage.

The outage test runs its own private broker (``LocalKafka``) so it can stop and
restart it without disturbing the session's stack.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
import tracemalloc
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from mloop.client import PredictionLogger, SyncPredictionLogger
from mloop.contracts.topics import spec_for
from mloop.devstack import LocalKafka, StackPaths, create_topics, find_free_ports
from mloop.devstack.testing import EphemeralStack

pytestmark = pytest.mark.integration

TOPIC = "prediction-logged"


async def _read_all(bootstrap: str, topic: str, expect: int, timeout_s: float = 60.0) -> Counter[str]:
    """Request ids of every record on ``topic`` (read from the beginning), with multiplicity."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=16 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    seen: Counter[str] = Counter()
    try:
        tps = [TopicPartition(topic, p) for p in range(spec_for(TOPIC).partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for records in batch.values():
                for rec in records:
                    assert rec.value is not None
                    for r in json.loads(rec.value)["records"]:
                        seen[r["request_id"]] += 1
            positions = [await consumer.position(tp) for tp in tps]
            if sum(seen.values()) >= expect and all(p >= ends[tp] for p, tp in zip(positions, tps, strict=True)):
                # Everything that was there is read; one more poll catches stragglers.
                batch = await consumer.getmany(timeout_ms=300)
                for records in batch.values():
                    for rec in records:
                        for r in json.loads(rec.value or b"{}").get("records", []):
                            seen[r["request_id"]] += 1
                break
    finally:
        await consumer.stop()
    return seen


@pytest.fixture
async def topic_prefix(stack: EphemeralStack) -> str:
    prefix = f"c{uuid.uuid4().hex[:8]}."
    await create_topics(stack.bootstrap_servers, [spec_for(TOPIC), spec_for("ground-truth-logged")], prefix=prefix)
    return prefix


async def test_100k_predictions_logged_arrive_exactly_once(stack: EphemeralStack, topic_prefix: str) -> None:
    n = 100_000
    features = {"age": 41, "income": 52000.0, "region": "north", "term": 36, "purpose": "car"}
    logger = PredictionLogger(stack.bootstrap_servers, "credit-risk", topic_prefix=topic_prefix, batch_size=1000)
    await logger.start()
    began = time.perf_counter()
    for i in range(n):
        await logger.log(f"r-{i:06d}", version="1", features=features, prediction=0.25, latency_ms=1.5)
    assert await logger.flush(120)
    elapsed = time.perf_counter() - began
    stats = await logger.close()
    print(f"\nlogged and delivered {n} predictions in {elapsed:.2f}s = {n / elapsed:,.0f} records/s")
    assert stats.delivered == n
    assert stats.dropped == 0
    seen = await _read_all(stack.bootstrap_servers, topic_prefix + TOPIC, n)
    assert len(seen) == n  # every request id arrived ...
    assert sum(seen.values()) == n  # ... exactly once
    assert max(seen.values()) == 1


def test_the_sync_logger_delivers_from_many_threads_exactly_once(stack: EphemeralStack) -> None:
    prefix = f"c{uuid.uuid4().hex[:8]}."
    asyncio.run(create_topics(stack.bootstrap_servers, [spec_for(TOPIC)], prefix=prefix))
    import concurrent.futures

    with SyncPredictionLogger(stack.bootstrap_servers, "credit-risk", topic_prefix=prefix) as logger:

        def serve(worker: int) -> None:
            for i in range(5_000):
                logger.log(f"w{worker}-{i}", version="1", features={"x": i}, prediction=0.5)

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(serve, range(4)))
        assert logger.flush(60)
        assert logger.stats.delivered == 20_000
    seen = asyncio.run(_read_all(stack.bootstrap_servers, prefix + TOPIC, 20_000))
    assert len(seen) == 20_000
    assert sum(seen.values()) == 20_000


@pytest.fixture
def private_kafka() -> Iterator[LocalKafka]:
    root = Path(tempfile.mkdtemp(prefix="mloop-kafka-"))
    port, controller = find_free_ports(2)
    kafka = LocalKafka(StackPaths(root), port, controller)
    kafka.start()
    try:
        kafka.wait_ready(90)
        yield kafka
    finally:
        kafka.stop(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def outage_logger(private_kafka: LocalKafka) -> AsyncIterator[PredictionLogger]:
    await create_topics(private_kafka.bootstrap_servers, [spec_for(TOPIC)])
    logger = PredictionLogger(
        private_kafka.bootstrap_servers,
        "credit-risk",
        batch_size=200,
        linger_ms=20,
        buffer_capacity=5_000,
        max_block_ms=5,
        request_timeout_ms=3_000,
    )
    await logger.start()
    yield logger
    await logger.close(timeout_s=5)


async def _log_range(logger: PredictionLogger, lo: int, hi: int) -> list[float]:
    """Log r-lo..r-hi; return each call's duration in seconds."""
    took = []
    for i in range(lo, hi):
        began = time.perf_counter()
        await logger.log(f"r-{i:06d}", version="1", features={"x": float(i), "c": "a"}, prediction=0.5)
        took.append(time.perf_counter() - began)
        if i % 500 == 0:
            await asyncio.sleep(0)  # a serving loop yields between requests
    return took


async def test_with_the_broker_down_log_stays_within_its_bound_and_memory_is_bounded_then_delivery_resumes(
    private_kafka: LocalKafka, outage_logger: PredictionLogger
) -> None:
    logger = outage_logger
    await _log_range(logger, 0, 1_000)
    assert await logger.flush(30)
    assert logger.stats.delivered == 1_000

    await asyncio.to_thread(private_kafka.stop, 10)
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    took = sorted(await _log_range(logger, 1_000, 21_000))  # 20,000 during the outage, 4x the buffer
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    p999, worst = took[int(len(took) * 0.999)], took[-1]
    print(f"\nlog() with the broker down: p99.9 {p999 * 1000:.2f} ms, max {worst * 1000:.1f} ms")
    # The bound is max_block_ms (5); asyncio is cooperative, so allow for the scheduler of a busy machine.
    assert p999 < 0.015, f"p99.9 of log() was {p999 * 1000:.1f} ms with the broker down"
    in_memory_bound = logger._buffer.capacity + logger.max_in_flight * logger.batch_size
    assert logger.pending <= in_memory_bound
    assert peak - base < 40 * 1024 * 1024, f"{(peak - base) / 2**20:.1f} MiB held during the outage"
    stats = logger.stats
    assert stats.dropped >= 20_000 - in_memory_bound
    assert stats.accepted == 21_000

    await asyncio.to_thread(private_kafka.start)
    await private_kafka.wait_ready_async(90)
    assert await logger.flush(90), f"still pending after the broker came back: {logger.stats}"
    stats = await logger.close()
    assert stats.pending == 0
    assert stats.accepted == stats.delivered + stats.dropped  # nothing lost silently

    seen = await _read_all(private_kafka.bootstrap_servers, TOPIC, stats.delivered)
    assert sum(seen.values()) >= stats.delivered
    assert len(seen) == stats.delivered  # what the counters say arrived, arrived
    assert all(f"r-{i:06d}" in seen for i in range(1_000))
    # drop-oldest: the newest records of the outage were kept and delivered.
    assert all(f"r-{i:06d}" in seen for i in range(21_000 - logger._buffer.capacity, 21_000))


async def test_an_outage_shorter_than_the_buffer_loses_nothing(
    private_kafka: LocalKafka, outage_logger: PredictionLogger
) -> None:
    logger = outage_logger
    await asyncio.to_thread(private_kafka.stop, 10)
    await _log_range(logger, 0, 3_000)  # fits in the buffer
    assert logger.stats.delivered == 0
    await asyncio.to_thread(private_kafka.start)
    await private_kafka.wait_ready_async(90)
    assert await logger.flush(90)
    stats = await logger.close()
    assert (stats.delivered, stats.dropped) == (3_000, 0)
    seen = await _read_all(private_kafka.bootstrap_servers, TOPIC, 3_000)
    assert len(seen) == 3_000
    assert sum(seen.values()) == 3_000
