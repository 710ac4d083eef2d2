"""What the resilience tests share: a private stack per test, a writer that keeps
writing through the probe service, and queries over what was committed, published
and applied."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from mloop.contracts.envelope import encode, new_event
from mloop.contracts.payloads import AliasChanged
from mloop.devstack.testing import EphemeralStack

JWT_SECRET = "resilience-secret-that-is-long-enough-for-hs256-0123"
SCHEMA = "probe"


@dataclass
class PrivateStack:
    """A Kafka and a Postgres that belong to one test, so it may stop and start them."""

    stack: EphemeralStack
    database_url: str
    topic_prefix: str

    @property
    def bootstrap_servers(self) -> str:
        return self.stack.bootstrap_servers

    def settings_kwargs(self, **overrides: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "environment": "test",
            "kafka_bootstrap_servers": self.bootstrap_servers,
            "database_url": self.database_url,
            "topic_prefix": self.topic_prefix,
            "jwt_secret": JWT_SECRET,
            "outbox_poll_interval_s": 0.2,
            "log_json": False,
        }
        base.update(overrides)
        return base

    def env(self, port: int) -> dict[str, str]:
        """Environment of the service run as a separate process."""
        return {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "DATABASE_URL": self.database_url,
            "MLOOP_TOPIC_PREFIX": self.topic_prefix,
            "MLOOP_HTTP_PORT": str(port),
            "MLOOP_JWT_SECRET": JWT_SECRET,
            "MLOOP_ENVIRONMENT": "test",
            "MLOOP_LOG_JSON": "false",
            "MLOOP_LOG_LEVEL": "WARNING",
            "MLOOP_OUTBOX_POLL_INTERVAL_S": "0.2",
        }

    # -- outages -------------------------------------------------------------------------
    async def stop_kafka(self) -> None:
        assert self.stack.kafka is not None
        await asyncio.to_thread(self.stack.kafka.stop, 30)

    async def start_kafka(self) -> None:
        assert self.stack.kafka is not None
        await asyncio.to_thread(self.stack.kafka.start)
        await self.stack.kafka.wait_ready_async(60)

    async def stop_postgres(self) -> None:
        assert self.stack.postgres is not None
        await asyncio.to_thread(self.stack.postgres.stop, 30)

    async def start_postgres(self) -> None:
        assert self.stack.postgres is not None
        await asyncio.to_thread(self.stack.postgres.start, 60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the writer --------------------------------------------------------------------------


@dataclass
class WriteLog:
    """What a writer saw: the event id of every write that got a 2xx, and the rest."""

    committed: dict[str, int] = field(default_factory=dict)  # event id -> HTTP status
    failures: list[tuple[int | str, str]] = field(default_factory=list)  # (status or error, body)
    attempts: int = 0

    def statuses(self) -> set[int | str]:
        return {s for s, _ in self.failures}


async def keep_writing(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    log: WriteLog,
    stop: asyncio.Event,
    *,
    tag: str,
    interval_s: float = 0.02,
    concurrency: int = 1,
) -> None:
    """POST /aliases until ``stop`` is set; every write moves a new alias, so it makes one event."""

    async def one_worker(worker: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            log.attempts += 1
            body = {"model": "m", "alias": f"{tag}-{worker}-{n}", "version": str(n)}
            try:
                r = await client.post("/aliases", json=body, headers=headers)
            except (httpx.TransportError, OSError) as exc:
                log.failures.append((type(exc).__name__, str(exc)))
            else:
                if 200 <= r.status_code < 300:
                    log.committed[r.json()["event_id"]] = r.status_code
                else:
                    log.failures.append((r.status_code, r.text))
            await asyncio.sleep(interval_s)

    await asyncio.gather(*(one_worker(i) for i in range(concurrency)))


async def keep_publishing(bootstrap: str, prefix: str, sent: list[str], stop: asyncio.Event) -> None:
    """Events from elsewhere, straight onto the topic the probe consumes."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        n = 0
        while not stop.is_set():
            n += 1
            event = new_event(
                "model-alias-changed", AliasChanged(model="ext", alias=f"x-{n}", version=str(n), seq=1), source="test"
            )
            rec = encode(event, topic_prefix=prefix)
            await producer.send_and_wait(rec.topic, rec.value, key=rec.key, headers=rec.headers)
            sent.append(event.id)
            await asyncio.sleep(0.02)
    finally:
        await producer.stop()


async def keep_predicting(bootstrap: str, prefix: str, sent: list[int], stop: asyncio.Event) -> None:
    """High-volume input for the probe's offsets-with-state consumer: 10 records a message."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        n = 0
        while not stop.is_set():
            n += 1
            payload = {
                "model": "m",
                "records": [
                    {
                        "request_id": f"p{n}-{j}",
                        "version": "1",
                        "timestamp": "2026-11-26T14:00:00Z",
                        "features": {"x": j},
                    }
                    for j in range(10)
                ],
            }
            await producer.send_and_wait(
                prefix + "prediction-logged", json.dumps(payload).encode(), key=b"m", partition=n % 3
            )
            sent.append(n)
            await asyncio.sleep(0.01)
    finally:
        await producer.stop()


async def prediction_counts(url: str) -> tuple[int, int]:
    """(records, messages) the probe's batch consumer counted."""
    rows = await query(url, f"SELECT records, messages FROM {SCHEMA}.probe_counts")
    return (int(rows[0]["records"]), int(rows[0]["messages"])) if rows else (0, 0)


# -- what the database and the topic hold ------------------------------------------------


async def query(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def outbox_ids(url: str) -> set[str]:
    """Event ids of every committed write (the outbox row is in the write's transaction)."""
    return {r["event_id"] for r in await query(url, f"SELECT event_id FROM {SCHEMA}.outbox")}


async def unsent(url: str) -> int:
    rows = await query(url, f"SELECT count(*) AS n FROM {SCHEMA}.outbox WHERE sent_at IS NULL")
    return int(rows[0]["n"])


async def effects(url: str) -> list[str]:
    """The event id of every effect the probe's consumer applied (duplicates included)."""
    return [r["event_id"] for r in await query(url, f"SELECT event_id FROM {SCHEMA}.probe_effects")]


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], *, timeout_s: float, what: str, every_s: float = 0.2
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            if await predicate():
                return
        if loop.time() > deadline:
            raise TimeoutError(f"not reached in {timeout_s:.0f}s: {what}")
        await asyncio.sleep(every_s)


async def topic_event_ids(bootstrap: str, topic: str) -> list[str]:
    """Every ``ce_id`` on ``topic`` from the beginning to its end now (duplicates included)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        for _ in range(100):  # without a group, every partition is assigned once metadata is in
            if consumer.assignment():
                break
            await asyncio.sleep(0.1)
        tps = sorted(consumer.assignment())
        assert tps, f"no partitions for {topic}"
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        ids: list[str] = []
        remaining = {tp for tp in tps if end[tp] > 0}
        while remaining:
            batches = await consumer.getmany(timeout_ms=1000)
            for tp, msgs in batches.items():
                for m in msgs:
                    for k, v in m.headers or ():
                        if k == "ce_id":
                            ids.append(v.decode())
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
        return ids
    finally:
        await consumer.stop()


@contextlib.asynccontextmanager
async def background(coro: Awaitable[None], *, finish_s: float = 15.0) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``coro`` meanwhile. On a normal exit it may finish (its stop event is set by
    then), so a request in flight is not cut off after the server committed it."""
    task = asyncio.ensure_future(coro)
    try:
        yield task
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), finish_s)
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
