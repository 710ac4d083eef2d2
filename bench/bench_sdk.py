"""SDK ``PredictionLogger``: records delivered per second and the cost of ``log()``.

Against a real Kafka (``EphemeralStack``), a ``PredictionLogger`` logs
``n`` predictions (5 features each) as fast as one coroutine can call it and
flushes; the rate counts from the first ``log()`` to the last record
acknowledged (``acks=all``, idempotent producer). ``log()`` is timed call by
call; the median and the 99th percentile are reported. Next to it, in the
same run, a raw ``AIOKafkaProducer`` with the same settings sends the same
number of records, pre-encoded as messages of the same size and batch
length, to the same topic: the ceiling the logger is compared with.

A third figure checks the promise made to serving code: with the broker
unreachable and the buffer full, no ``log()`` call takes longer than
``max_block_ms`` (plus scheduling noise).

Both clients first run one untimed warm-up pass: the broker's first large
writes of a run (its JIT compiling the produce path, new log segments) cost
whichever client comes first up to a third of its rate, and a serving
process logs for hours, not for its first second. Then logger and raw
producer alternate, three timed passes each (one with ``--quick``); the
figures are the medians of the passes, every pass is listed in the detail,
and so is the warm-up pass's rate.

``python bench/bench_sdk.py [--quick]`` prints a table.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaProducer

from mloop.client import PredictionLogger
from mloop.devstack import create_topics
from mloop.devstack.testing import EphemeralStack

FEATURES = {"age": 41.0, "annual_income": 52000.0, "region": "north", "purpose": "car", "term_months": 36.0}
BATCH = 1000
IN_FLIGHT = 16  # the logger's max_in_flight default


async def _logger(bootstrap: str, prefix: str, n: int) -> dict[str, Any]:
    # The serving code has its request ids already: formatting them is not the logger's cost.
    ids = [f"b-{i:07d}" for i in range(n)]
    logger = PredictionLogger(bootstrap, "bench-logger", batch_size=BATCH, topic_prefix=prefix,
                              buffer_capacity=max(100_000, n))
    await logger.start()
    # Connected before the clock starts: the raw producer's start is not timed either.
    await logger.log("warm-up", version="1", features=FEATURES, prediction=0.31)
    await logger.flush(60)
    calls: list[float] = []
    clock = time.perf_counter
    began = clock()
    for i, request_id in enumerate(ids):
        t0 = clock()
        await logger.log(request_id, version="1", features=FEATURES, prediction=0.31, latency_ms=2.0)
        calls.append(clock() - t0)
        if i & 255 == 255:
            await asyncio.sleep(0)  # a server yields between requests; so does this loop
    ok = await logger.flush(300)
    elapsed = clock() - began
    stats = await logger.close()
    calls.sort()
    return {"rate": n / elapsed, "median_us": statistics.median(calls) * 1e6,
            "p99_us": calls[int(len(calls) * 0.99)] * 1e6, "flushed": ok, "stats": stats.as_dict()}


async def _raw(bootstrap: str, topic: str, n: int, message_bytes: int) -> float:
    # The logger's producer settings (see PredictionLogger._new_producer) and as many messages in flight.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=0,
                                max_batch_size=4 << 20, max_request_size=16 << 20)
    await producer.start()
    value = b"x" * message_bytes
    try:
        await producer.send_and_wait(topic, value, key=b"bench-logger")
        began = time.perf_counter()
        futures = []
        for _ in range(n // BATCH):
            futures.append(await producer.send(topic, value, key=b"bench-logger"))
            if len(futures) >= IN_FLIGHT:  # as many in flight as the logger allows
                await futures.pop(0)
        await asyncio.gather(*futures)
        return n / (time.perf_counter() - began)
    finally:
        await producer.stop()


async def _outage(max_block_ms: float, calls: int) -> dict[str, float]:
    # Nothing listens on this port: the broker is down for the whole run.
    logger = PredictionLogger("127.0.0.1:1", "bench-logger", max_block_ms=max_block_ms, buffer_capacity=1000)
    await logger.start()
    worst = 0.0
    clock = time.perf_counter
    try:
        for i in range(calls):
            t0 = clock()
            await logger.log(f"o-{i}", version="1", features=FEATURES, prediction=0.31)
            worst = max(worst, clock() - t0)
    finally:
        stats = await logger.close(timeout_s=0.5)
    return {"worst_ms": worst * 1e3, "dropped": float(stats.dropped)}


async def _bench(stack: EphemeralStack, quick: bool) -> list[dict[str, Any]]:
    n = 40_000 if quick else 200_000
    passes = 1 if quick else 3
    prefix = f"s{uuid.uuid4().hex[:8]}."
    await create_topics(stack.bootstrap_servers, prefix=prefix)
    topic = prefix + "prediction-logged"
    # The raw producer sends messages as large as the logger's (about 230 bytes a record).
    per_record = 230
    warm = await _logger(stack.bootstrap_servers, prefix, n // 2)
    await _raw(stack.bootstrap_servers, topic, n // 2, per_record * BATCH)
    runs: list[dict[str, Any]] = []
    raws: list[float] = []
    for _ in range(passes):
        runs.append(await _logger(stack.bootstrap_servers, prefix, n))
        raws.append(await _raw(stack.bootstrap_servers, topic, n, per_record * BATCH))
    outage = await _outage(5.0, 20_000 if quick else 100_000)
    rate = statistics.median(r["rate"] for r in runs)
    raw = statistics.median(raws)
    median_us = statistics.median(r["median_us"] for r in runs)
    p99_us = statistics.median(r["p99_us"] for r in runs)
    flushed = all(r["flushed"] for r in runs)
    stats = runs[-1]["stats"]
    rates = ", ".join(f"{r['rate']:,.0f}" for r in runs)
    raw_rates = ", ".join(f"{r:,.0f}" for r in raws)
    medians = ", ".join(f"{r['median_us']:.2f}" for r in runs)
    return [
        {"name": "PredictionLogger delivered (acks=all, idempotent)", "value": round(rate),
         "unit": "records/s", "target": ">= 200000 and >= 0.5x raw",
         "detail": f"median of {passes} passes of {n} records, batches of {BATCH}: "
                   f"{rates}; {rate / raw:.2f}x the raw producer; "
                   f"untimed warm-up pass {warm['rate']:,.0f}; flushed={flushed}; last pass {stats}"},
        {"name": "raw aiokafka producer, same topic and settings", "value": round(raw), "unit": "records/s",
         "target": None, "detail": f"median of {passes} passes alternating with the logger's: "
                                   f"{raw_rates}; pre-encoded {BATCH}-record messages "
                                   f"of {per_record * BATCH} bytes; the ceiling"},
        {"name": "PredictionLogger log() median", "value": round(median_us, 2), "unit": "us/call",
         "target": "<= 2", "detail": f"median of the passes' medians: "
                                     f"{medians}; p99 {p99_us:.2f} us; "
                                     "validation and buffering on the caller's path"},
        {"name": "PredictionLogger log() worst, broker down", "value": round(outage["worst_ms"], 2), "unit": "ms",
         "target": "<= max_block_ms (5) + scheduling", "detail": f"buffer of 1,000 full; {outage['dropped']:.0f} "
                                                                 "records dropped and counted"},
    ]


def run(quick: bool = False, stack: EphemeralStack | None = None) -> list[dict[str, Any]]:
    if stack is not None:
        return asyncio.run(_bench(stack, quick))
    with EphemeralStack() as own:
        return asyncio.run(_bench(own, quick))


if __name__ == "__main__":
    results = run(quick="--quick" in sys.argv)
    width = max(len(r["name"]) for r in results)
    for r in results:
        print(f"{r['name']:<{width}}  {r['value']:>12,} {r['unit']:<10} {r['detail']}")
