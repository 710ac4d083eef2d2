"""Consumers: at-least-once delivery made exactly-once in effect.

Two modes, both in the service's consumer group:

* :class:`InboxConsumer` — for governance events. Each event is applied in
  its own transaction together with an insert into ``inbox``; a redelivered
  event finds its id there and is skipped. Kafka offsets are committed only
  after the transaction commits.
* :class:`OffsetConsumer` — for high volume. A batch per partition is applied
  in one transaction that also stores the next offset in ``consumer_offsets``;
  on assignment the consumer seeks to the stored offsets.

In both, a message that cannot be decoded or validated, or whose handler
raises :class:`PermanentError`, goes to ``dead-letter`` with the reason and
the consumer carries on. Other handler errors are retried with backoff; an
event that keeps failing is dead-lettered after ``max_attempts``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord
from opentelemetry import trace

from mloop.contracts.envelope import EnvelopeError, Event, decode
from mloop.runtime.db import is_connection_error
from mloop.runtime.deadletter import DeadLetterPublisher
from mloop.runtime.errors import PermanentError
from mloop.runtime.kafka import create_consumer, start_with_retry
from mloop.runtime.metrics import ServiceMetrics
from mloop.runtime.settings import ServiceSettings
from mloop.runtime.telemetry import extract_context, tracer

__all__ = ["BatchHandler", "Handler", "InboxConsumer", "OffsetConsumer", "RawDecoder"]

log = logging.getLogger(__name__)

Handler = Callable[[Event[Any], asyncpg.Connection], Awaitable[None]]
BatchHandler = Callable[[Sequence[Any], asyncpg.Connection], Awaitable[None]]
RawDecoder = Callable[[str, ConsumerRecord[bytes, bytes]], Any]
"""(logical topic, raw record) -> the handler's item. The item has ``id``, ``topic``,
``partition`` and ``offset``; an undecodable record raises an ``EnvelopeError``."""

# Offsets only move forward: a stale re-fetched batch never rewinds them.
_STORE_OFFSET = (
    "INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET "
    "next_offset = GREATEST(consumer_offsets.next_offset, EXCLUDED.next_offset), updated_at = now()"
)

_TRANSIENT = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.DeadlockDetectedError,
              asyncpg.SerializationError, asyncpg.TooManyConnectionsError)
_MAX_TRANSIENT_DELAY_S = 2.0


def _transient(exc: BaseException) -> bool:
    """Failures that say nothing about the event: retried forever, never dead-lettered.

    A database restart shows up as several of these (refused connections, "the
    database system is shutting down / starting up", a connection terminated in
    the middle of the handler), none of which may cost an event.
    """
    return isinstance(exc, _TRANSIENT) or is_connection_error(exc)


def _headers_dict(msg: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    out = {}
    for k, v in msg.headers or ():
        with contextlib.suppress(UnicodeDecodeError):
            out[k] = v.decode()
    return out


class _Base(abc.ABC):
    def __init__(
        self,
        settings: ServiceSettings,
        pool: asyncpg.Pool,
        dead_letters: DeadLetterPublisher,
        topics: Sequence[str],
        *,
        metrics: ServiceMetrics | None = None,
        max_attempts: int = 5,
        retry_delay_s: float = 0.5,
        max_records: int = 500,
        consumer_overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.dead_letters = dead_letters
        self.topics = list(topics)
        self.metrics = metrics
        self.max_attempts = max_attempts
        self.retry_delay_s = retry_delay_s
        self.max_records = max_records
        self._overrides = dict(consumer_overrides or {})
        self._consumer: AIOKafkaConsumer | None = None
        self.group_id = str(self._overrides.get("group_id", settings.group_id))
        self.ready = asyncio.Event()

    def _logical(self, topic: str) -> str:
        p = self.settings.topic_prefix
        return topic[len(p) :] if p and topic.startswith(p) else topic

    def _decode(self, msg: ConsumerRecord[bytes, bytes]) -> Event[Any]:
        topic = self._logical(msg.topic)
        ev = decode(topic, msg.key, msg.value, msg.headers)
        return ev.with_position(msg.partition, msg.offset)

    async def _dead_letter(self, msg: ConsumerRecord[bytes, bytes], reason: str, error_type: str) -> None:
        await self.dead_letters.publish(msg, reason, error_type)
        if self.metrics is not None:
            self.metrics.events_dead_lettered.labels(topic=self._logical(msg.topic)).inc()

    def _listener(self) -> ConsumerRebalanceListener | None:
        return None

    async def start(self) -> None:
        self._consumer = create_consumer(self.settings, **self._overrides)
        self._consumer.subscribe(
            [self.settings.topic(t) for t in self.topics], listener=self._listener()
        )
        await start_with_retry(self._consumer)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def run(self) -> None:
        await self.start()
        assert self._consumer is not None
        consumer = self._consumer
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=self.max_records)
                if consumer.assignment():
                    self.ready.set()
                for tp, msgs in batches.items():
                    await self._process_partition(consumer, tp, msgs)
                if self.metrics is not None:
                    self._record_lag(consumer)
        finally:
            await self.stop()

    def _record_lag(self, consumer: AIOKafkaConsumer) -> None:
        assert self.metrics is not None
        for tp in consumer.assignment():
            hw = consumer.highwater(tp)
            pos = consumer.last_stable_offset(tp)
            if hw is not None and pos is not None:
                with contextlib.suppress(Exception):
                    self.metrics.consumer_lag.labels(topic=self._logical(tp.topic), partition=tp.partition).set(
                        max(0, hw - pos)
                    )

    @abc.abstractmethod
    async def _process_partition(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, msgs: list[ConsumerRecord[bytes, bytes]]
    ) -> None:
        """Apply one fetched batch of one partition."""

    async def _retrying(self, what: str, fn: Callable[[], Awaitable[None]]) -> Exception | None:
        """Run ``fn``; retry transient failures forever and others ``max_attempts`` times.

        Returns the last error when it gave up, None on success.
        """
        attempt = 0
        delay = self.retry_delay_s
        while True:
            attempt += 1
            try:
                await fn()
                return None
            except PermanentError:
                raise
            except Exception as exc:
                if _transient(exc):
                    log.warning("%s failed transiently (%r); retrying", what, exc)
                    attempt -= 1  # does not count against the event
                    await asyncio.sleep(min(delay, _MAX_TRANSIENT_DELAY_S))
                    delay = min(delay * 2, _MAX_TRANSIENT_DELAY_S)
                    continue
                if attempt >= self.max_attempts:
                    log.exception("%s failed %d times; giving up", what, attempt)
                    return exc
                log.warning("%s failed (%r); attempt %d of %d", what, exc, attempt, self.max_attempts)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


class InboxConsumer(_Base):
    """Applies each event once, in a transaction with the inbox insert."""

    def __init__(
        self,
        settings: ServiceSettings,
        pool: asyncpg.Pool,
        dead_letters: DeadLetterPublisher,
        handlers: Mapping[str, Handler],
        **kwargs: Any,
    ) -> None:
        super().__init__(settings, pool, dead_letters, list(handlers), **kwargs)
        self.handlers = dict(handlers)

    async def _apply(self, event: Event[Any]) -> None:
        handler = self.handlers[event.topic]
        async with self.pool.acquire() as conn, conn.transaction():
            fresh = await conn.fetchval(
                "INSERT INTO inbox (consumer_group, event_id, topic) VALUES ($1, $2, $3) "
                "ON CONFLICT DO NOTHING RETURNING true",
                self.group_id,
                event.id,
                event.topic,
            )
            if not fresh:
                if self.metrics is not None:
                    self.metrics.events_duplicate.labels(topic=event.topic).inc()
                return
            await handler(event, conn)
        if self.metrics is not None:
            self.metrics.events_consumed.labels(topic=event.topic).inc()

    async def _process_partition(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, msgs: list[ConsumerRecord[bytes, bytes]]
    ) -> None:
        for msg in msgs:
            try:
                event = self._decode(msg)
            except EnvelopeError as exc:
                await self._dead_letter(msg, exc.reason, type(exc).__name__)
                continue
            ctx = extract_context(_headers_dict(msg))
            with tracer().start_as_current_span(
                f"{event.topic} process", context=ctx, kind=trace.SpanKind.CONSUMER,
                attributes={"messaging.system": "kafka", "messaging.destination.name": event.topic,
                            "messaging.message.id": event.id, "messaging.kafka.offset": msg.offset},
            ):
                async def apply_event(e: Event[Any] = event) -> None:
                    await self._apply(e)

                try:
                    failed = await self._retrying(f"{event.topic} {event.id}", apply_event)
                except PermanentError as exc:
                    await self._dead_letter(msg, str(exc), type(exc).__name__)
                    failed = None
                if failed is not None:
                    await self._dead_letter(msg, f"handler kept failing: {failed!r}", type(failed).__name__)
        await consumer.commit({tp: msgs[-1].offset + 1})


class _SeekToStored(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: OffsetConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Wait for the batch in flight so its offsets are stored before others take over.
        async with self.owner.processing:
            return None

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        async with self.owner.processing:
            await self.owner.seek_to_stored(assigned)


class OffsetConsumer(_Base):
    """Applies batches with their offsets stored in the same transaction."""

    def __init__(
        self,
        settings: ServiceSettings,
        pool: asyncpg.Pool,
        dead_letters: DeadLetterPublisher,
        topics: Sequence[str],
        handler: BatchHandler,
        *,
        decoders: Mapping[str, RawDecoder] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(settings, pool, dead_letters, topics, **kwargs)
        self.handler = handler
        self.decoders = dict(decoders or {})
        self.processing = asyncio.Lock()
        # Next offset known to be stored per (logical topic, partition): messages
        # below it were handled (applied or dead-lettered) before a redelivery.
        self._stored: dict[tuple[str, int], int] = {}

    def _listener(self) -> ConsumerRebalanceListener:
        return _SeekToStored(self)

    async def seek_to_stored(self, assigned: Sequence[TopicPartition]) -> None:
        assert self._consumer is not None
        if not assigned:
            return
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT topic, partition, next_offset FROM consumer_offsets WHERE consumer_group = $1",
                self.group_id,
            )
        stored = {(r["topic"], r["partition"]): r["next_offset"] for r in rows}
        for tp in assigned:
            key = (self._logical(tp.topic), tp.partition)
            offset = stored.get(key)
            if offset is None:
                self._stored.pop(key, None)
                await self._consumer.seek_to_beginning(tp)
            else:
                self._stored[key] = offset
                self._consumer.seek(tp, offset)

    async def _process_partition(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, msgs: list[ConsumerRecord[bytes, bytes]]
    ) -> None:
        async with self.processing:
            await self._process_locked(consumer, tp, msgs)

    async def _stored_offset(self, conn: asyncpg.Connection, topic: str, partition: int) -> int:
        stored = await conn.fetchval(
            "SELECT next_offset FROM consumer_offsets WHERE consumer_group = $1 AND topic = $2 "
            "AND partition = $3 FOR UPDATE",
            self.group_id, topic, partition,
        )
        return -1 if stored is None else int(stored)

    async def _process_locked(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, msgs: list[ConsumerRecord[bytes, bytes]]
    ) -> None:
        topic = self._logical(tp.topic)
        already = self._stored.get((topic, tp.partition), -1)
        msgs = [m for m in msgs if m.offset >= already]
        if not msgs:
            return
        events: list[Any] = []
        decoder = self.decoders.get(topic)
        for msg in msgs:
            try:
                events.append(decoder(topic, msg) if decoder is not None else self._decode(msg))
            except EnvelopeError as exc:
                await self._dead_letter(msg, exc.reason, type(exc).__name__)
        next_offset = msgs[-1].offset + 1

        async def apply() -> None:
            async with self.pool.acquire() as conn, conn.transaction():
                # Events before the stored offset were applied already (a redelivery
                # after a rebalance or a crash): the stored offset is the truth.
                stored = await self._stored_offset(conn, topic, tp.partition)
                fresh = [e for e in events if (e.offset or 0) >= stored]
                if fresh:
                    await self.handler(fresh, conn)
                await conn.execute(
                    _STORE_OFFSET,
                    self.group_id,
                    topic,
                    tp.partition,
                    next_offset,
                )

        try:
            failed = await self._retrying(f"{topic}[{tp.partition}] batch", apply)
        except PermanentError as exc:
            failed = exc
        if failed is not None:
            # Fall back to one event at a time so one bad event does not sink the batch.
            await self._apply_one_by_one(events, msgs, tp, topic)
        self._stored[(topic, tp.partition)] = next_offset
        if self.metrics is not None:
            self.metrics.events_consumed.labels(topic=topic).inc(len(events))
        with contextlib.suppress(Exception):
            await consumer.commit({tp: next_offset})  # for lag visibility only

    async def _apply_one_by_one(
        self,
        events: list[Any],
        msgs: list[ConsumerRecord[bytes, bytes]],
        tp: TopicPartition,
        topic: str,
    ) -> None:
        by_offset = {m.offset: m for m in msgs}
        for event in events:
            async def apply_single(e: Any = event) -> None:
                async with self.pool.acquire() as conn, conn.transaction():
                    if (e.offset or 0) < await self._stored_offset(conn, topic, tp.partition):
                        return
                    await self.handler([e], conn)
                    await conn.execute(
                        _STORE_OFFSET,
                        self.group_id, topic, tp.partition, (e.offset or 0) + 1,
                    )
            try:
                failed = await self._retrying(f"{topic} {event.id}", apply_single)
            except PermanentError as exc:
                failed = exc
            if failed is not None:
                assert event.offset is not None
                await self._dead_letter(by_offset[event.offset], str(failed), type(failed).__name__)
        async with self.pool.acquire() as conn:
            await conn.execute(
                _STORE_OFFSET,
                self.group_id, topic, tp.partition, msgs[-1].offset + 1,
            )
