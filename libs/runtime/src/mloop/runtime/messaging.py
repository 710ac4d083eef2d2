"""The Kafka side of a service, on FastStream.

A service declares one :class:`ServiceRouter` (a FastStream ``KafkaRouter``)
with its subscribers; the runtime's lifespan binds them to the service's
context and starts the ``KafkaBroker`` next to FastAPI. Two kinds of
subscriber carry the delivery guarantees, both with manual
acknowledgement (``AckPolicy.MANUAL``, auto-commit off):

* :meth:`ServiceRouter.inbox` — governance events, one at a time. Each is
  applied in its own transaction together with an insert into ``inbox``; a
  redelivered event finds its id there and is skipped. The Kafka offset is
  committed only after the transaction commits.
* :meth:`ServiceRouter.stored_offsets` — high volume, a batch subscriber. The
  records of one partition are applied in one transaction that also stores
  the partition's next offset in ``consumer_offsets`` (offsets only move
  forward); the rebalance ``listener`` seeks to the stored offsets on
  assignment, so the stored offsets, not Kafka's, decide what is redelivered.

In both, a message that cannot be decoded or validated, or whose handler
raises :class:`PermanentError`, goes to ``dead-letter`` with its original
bytes, headers and the reason, and the subscriber carries on. Other handler
errors are retried with backoff; an event that keeps failing is
dead-lettered after ``max_attempts``; connection losses are retried forever.
When a record's handling still fails past all that (the broker refuses its
dead letter, the database drops out while the offset is stored), the
subscriber seeks the partition back to that record and fetches it again: a
record is never skipped because the fetch position moved past it.

The custom ``parser``/``decoder`` hand the raw aiokafka records to these
subscribers untouched (no per-record JSON decoding by the framework): the
envelope is decoded by :mod:`mloop.contracts.envelope`, and a stored-offsets
handler may take the raw records instead (``raw=True``) to decode them its
own way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
import stamina
from aiokafka import AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import ConsumerRecord
from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.kafka.message import KafkaAckableMessage
from faststream.message import StreamMessage
from faststream.middlewares import AckPolicy, BaseMiddleware
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from opentelemetry import trace

from mloop.contracts.envelope import EnvelopeError, Event, decode, encode, new_event
from mloop.contracts.payloads import DeadLetter
from mloop.runtime.db import is_connection_error
from mloop.runtime.errors import PermanentError
from mloop.runtime.metrics import ServiceMetrics
from mloop.runtime.settings import ServiceSettings
from mloop.runtime.telemetry import extract_context, tracer

if TYPE_CHECKING:
    from faststream.kafka.subscriber.usecase import LogicSubscriber

__all__ = [
    "MAX_MESSAGE_BYTES",
    "asyncapi_document",
    "BatchHandler",
    "Handler",
    "RawBatchHandler",
    "Record",
    "ServiceRouter",
    "StoredOffsetsSubscription",
    "InboxSubscription",
    "KafkaBindings",
    "TraceMiddleware",
    "connect_broker",
    "create_broker",
    "decode_record",
    "kafka_producer",
]

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 16 * 1024 * 1024

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"
Handler = Callable[[Event[Any], asyncpg.Connection], Awaitable[None]]
BatchHandler = Callable[[Sequence[Event[Any]], asyncpg.Connection], Awaitable[None]]
#: Takes the raw records of one partition (value bytes, headers, partition, offset).
RawBatchHandler = Callable[[Sequence[Record], asyncpg.Connection], Awaitable[None]]

# Offsets only move forward: a stale re-fetched batch never rewinds them.
_STORE_OFFSET = (
    "INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET "
    "next_offset = GREATEST(consumer_offsets.next_offset, EXCLUDED.next_offset), updated_at = now()"
)

_TRANSIENT = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.DeadlockDetectedError,
              asyncpg.SerializationError, asyncpg.TooManyConnectionsError)
_MAX_TRANSIENT_DELAY_S = 2.0
# The rebalance callback holds the group's coordination: never wait long in it.
_LISTENER_DB_TIMEOUT_S = 5.0

# Consumer options shared by every subscriber: offsets are committed by the
# runtime (manual ack policy), never automatically; only committed outbox
# writes are read.
_CONSUMER_OPTIONS: dict[str, Any] = {
    "auto_offset_reset": "earliest",
    "max_partition_fetch_bytes": MAX_MESSAGE_BYTES,
    "fetch_max_bytes": 4 * MAX_MESSAGE_BYTES,
    "session_timeout_ms": 10_000,
    "heartbeat_interval_ms": 1_000,
    "isolation_level": "read_committed",
    # Governance events are rare and latency matters for the loop's cycle time.
    "fetch_max_wait_ms": 100,
}


def _transient(exc: BaseException) -> bool:
    """Failures that say nothing about the event: retried forever, never dead-lettered.

    A database restart shows up as several of these (refused connections, "the
    database system is shutting down / starting up", a connection terminated in
    the middle of the handler), none of which may cost an event.
    """
    return isinstance(exc, _TRANSIENT) or is_connection_error(exc)


def _text_headers(headers: Sequence[tuple[str, bytes]] | None) -> dict[str, str]:
    """Headers that are text; a binary header never stops a message from being dead-lettered."""
    out = {}
    for k, v in headers or ():
        with contextlib.suppress(UnicodeDecodeError):
            out[k] = v.decode()
    return out


def _security(settings: ServiceSettings) -> BaseSecurity | None:
    opts = settings.kafka_client_options()
    protocol = opts.get("security_protocol", "PLAINTEXT")
    ssl_context = opts.get("ssl_context")
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return BaseSecurity(ssl_context=ssl_context, use_ssl=True)
    use_ssl = protocol == "SASL_SSL"
    user = opts.get("sasl_plain_username") or ""
    password = opts.get("sasl_plain_password") or ""
    mechanism = opts.get("sasl_mechanism") or "PLAIN"
    kinds: dict[str, type[SASLPlaintext] | type[SASLScram256] | type[SASLScram512]] = {
        "PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512,
    }
    if mechanism not in kinds:
        raise ValueError(f"unsupported SASL mechanism {mechanism!r}")
    return kinds[mechanism](user, password, ssl_context=ssl_context, use_ssl=use_ssl)


def create_broker(settings: ServiceSettings, metrics: ServiceMetrics | None = None) -> KafkaBroker:
    """The service's broker; its producer is idempotent with ``acks=all``.

    The outbox relay and the dead-letter path publish through that producer,
    so a retried send is never written twice. Nothing connects until
    :func:`connect_broker`.
    """
    middlewares: list[Any] = [TraceMiddleware]
    if metrics is not None:
        from faststream.kafka.prometheus import KafkaPrometheusMiddleware

        middlewares.append(KafkaPrometheusMiddleware(registry=metrics.registry,
                                                     app_name=f"mloop-{settings.service_name}"))
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        security=_security(settings),
        client_id=f"mloop-{settings.service_name}",
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_request_size=MAX_MESSAGE_BYTES,
        request_timeout_ms=30_000,
        # Topics come from the registry (devstack, deploy/); a subscriber never creates one.
        allow_auto_create_topics=False,
        middlewares=middlewares,
        # Handlers get the raw records; no dependency injection or body validation in between.
        apply_types=False,
        # Per-message framework logs at DEBUG: the hot path must not format a line per batch.
        log_level=logging.DEBUG,
        graceful_timeout=5.0,
        description=f"mloop {settings.service_name}",
    )


async def connect_broker(broker: KafkaBroker, wait_s: float = 60.0) -> None:
    """Connect the broker's producer, retrying while Kafka is not reachable yet."""
    async for attempt in stamina.retry_context(
        on=KafkaConnectionError, attempts=None, timeout=wait_s, wait_initial=0.2, wait_max=2.0, wait_jitter=0.2
    ):
        with attempt:
            try:
                await broker.connect()
                return
            except KafkaConnectionError:
                log.warning("kafka not reachable yet; retrying")
                with contextlib.suppress(Exception):
                    await broker.stop()
                raise


def kafka_producer(broker: KafkaBroker) -> AIOKafkaProducer:
    """The broker's aiokafka producer (idempotent, ``acks=all``); only after :func:`connect_broker`.

    The outbox relay publishes each row exactly as it was written in the
    state change's transaction (value, key and header list); FastStream's
    ``publish`` always adds headers of its own (a fresh ``correlation_id``),
    so the relay sends through this producer, the broker's own.
    """
    state: Any = getattr(broker.config.producer, "_producer", None)
    try:
        producer = state.producer
    except Exception:  # FastStream's "connect broker first"
        producer = None
    if not isinstance(producer, AIOKafkaProducer):
        raise RuntimeError("the broker is not connected (or is a test broker): no Kafka producer")
    return producer


class TraceMiddleware(BaseMiddleware):
    """Continues the producer's trace (W3C ``traceparent``) in a consumer span per event.

    The span is named ``<topic> process`` after the logical topic (without the
    deployment's prefix), so traces read the same in every environment.
    Batches of the stored-offsets subscribers are not traced per record.
    """

    async def consume_scope(self, call_next: Callable[[Any], Awaitable[Any]], msg: StreamMessage[Any]) -> Any:
        raw = msg.raw_message
        if not isinstance(raw, ConsumerRecord):
            return await call_next(msg)
        topic = _logical(raw.topic, msg.headers.get("ce_type", ""))
        with tracer().start_as_current_span(
            f"{topic} process", context=extract_context(msg.headers), kind=trace.SpanKind.CONSUMER,
            attributes={"messaging.system": "kafka", "messaging.destination.name": topic,
                        "messaging.message.id": msg.headers.get("ce_id", ""),
                        "messaging.kafka.offset": raw.offset},
        ):
            return await call_next(msg)


def _logical(physical: str, ce_type: str) -> str:
    """The registry topic of a prefixed topic name; the CloudEvents type names it (dev.mloop.<topic>.vN)."""
    parts = ce_type.split(".")
    if len(parts) >= 4 and physical.endswith(parts[2]):
        return parts[2]
    return physical


@dataclass
class KafkaBindings:
    """What subscribers need at run time; bound by the lifespan before the broker starts."""

    settings: ServiceSettings
    pool: asyncpg.Pool
    broker: KafkaBroker
    metrics: ServiceMetrics | None = None


class _Subscription:
    """The body of one FastStream subscriber: retries, dead-lettering, readiness, lag."""

    def __init__(
        self, topics: Sequence[str], *, group_suffix: str = "", max_attempts: int = 5, retry_delay_s: float = 0.5
    ) -> None:
        self.topics = list(topics)
        self.group_suffix = group_suffix
        self.max_attempts = max_attempts
        self.retry_delay_s = retry_delay_s
        self.ready = asyncio.Event()
        self.subscriber: LogicSubscriber[Any] | None = None
        self._bound: KafkaBindings | None = None

    # -- wiring ---------------------------------------------------------------

    def bind(self, bindings: KafkaBindings) -> None:
        self._bound = bindings

    @property
    def bound(self) -> KafkaBindings:
        if self._bound is None:
            raise RuntimeError("subscription used before the service's lifespan bound it")
        return self._bound

    def group_id(self, settings: ServiceSettings) -> str:
        return settings.group_id + self.group_suffix

    @property
    def consumer(self) -> Any:
        return None if self.subscriber is None else self.subscriber.consumer

    def _logical(self, topic: str) -> str:
        p = self.bound.settings.topic_prefix
        return topic[len(p):] if p and topic.startswith(p) else topic

    # -- parser / decoder: the raw records, untouched ---------------------------

    async def parse(self, raw: Record | tuple[Record, ...]) -> StreamMessage[Any]:
        first = raw[0] if isinstance(raw, tuple) else raw
        headers = _text_headers(first.headers) if not isinstance(raw, tuple) else {}
        return KafkaAckableMessage(
            body=b"",
            headers=headers,
            raw_message=raw,
            message_id=f"{first.topic}-{first.partition}-{first.offset}",
            consumer=_NoCommit(),  # the runtime commits explicitly, per partition
        )

    async def decode(self, msg: StreamMessage[Any]) -> Any:
        return msg.raw_message

    # -- shared behaviour ----------------------------------------------------

    def listener(self) -> ConsumerRebalanceListener:
        return _ReadyListener(self)

    async def on_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        if assigned:
            self.ready.set()

    async def on_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        return None

    async def dead_letter(self, msg: Record, reason: str, error_type: str) -> None:
        """Send the original bytes and headers with ``reason``; waits for the broker's ack."""
        await publish_dead_letter(self.bound, msg, reason, error_type, group_id=self.group_id(self.bound.settings))
        if self.bound.metrics is not None:
            self.bound.metrics.events_dead_lettered.labels(topic=self._logical(msg.topic)).inc()

    def record_lag(self) -> None:
        consumer = self.consumer
        metrics = self.bound.metrics
        if consumer is None or metrics is None:
            return
        with contextlib.suppress(Exception):
            for tp in consumer.assignment():
                hw = consumer.highwater(tp)
                pos = consumer.last_stable_offset(tp)
                if hw is not None and pos is not None:
                    metrics.consumer_lag.labels(topic=self._logical(tp.topic), partition=tp.partition).set(
                        max(0, hw - pos))

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit ``offsets`` to Kafka; a commit refused by a rebalance is logged, not raised.

        The partition's next owner starts from the last committed (or stored)
        offset, and redeliveries are dropped by the inbox or the stored offset.
        """
        consumer = self.consumer
        if consumer is not None and offsets:
            try:
                await consumer.commit(dict(offsets))
            except Exception as exc:  # CommitFailedError after a rebalance, a broker gone meanwhile
                log.info("offset commit not taken (%r); the partition's next owner redelivers", exc)

    async def rewind(self, tp: TopicPartition, offset: int, exc: BaseException) -> None:
        """Fetch ``tp`` again from ``offset`` after its handling failed past the retries.

        The fetch position has already moved past the failed records; without
        the seek they would be skipped until the next rebalance. Waits a retry
        delay so a lasting outage does not spin. A partition no longer assigned
        needs nothing: its next owner starts from the stored or committed offset.
        """
        log.warning("%s[%d]@%d not handled (%r); fetching it again", self._logical(tp.topic), tp.partition,
                    offset, exc, exc_info=exc)
        consumer = self.consumer
        if consumer is not None:
            with contextlib.suppress(Exception):  # IllegalStateError: revoked meanwhile
                consumer.seek(tp, offset)
        await asyncio.sleep(self.retry_delay_s)

    async def retrying(self, what: str, fn: Callable[[], Awaitable[None]]) -> Exception | None:
        """Run ``fn``; retry transient failures forever and others ``max_attempts`` times.

        Returns the last error when it gave up, None on success.
        """
        counted = 0

        def retry_on(exc: BaseException) -> bool:
            nonlocal counted
            if not isinstance(exc, Exception) or isinstance(exc, (PermanentError, EnvelopeError)):
                return False
            if _transient(exc):
                log.warning("%s failed transiently (%r); retrying", what, exc)
                return True  # does not count against the event
            counted += 1
            if counted >= self.max_attempts:
                return False
            log.warning("%s failed (%r); attempt %d of %d", what, exc, counted, self.max_attempts)
            return True

        try:
            async for attempt in stamina.retry_context(
                on=retry_on, attempts=None, timeout=None, wait_initial=self.retry_delay_s,
                wait_max=_MAX_TRANSIENT_DELAY_S, wait_jitter=self.retry_delay_s,
            ):
                with attempt:
                    await fn()
        except (PermanentError, EnvelopeError):
            raise
        except Exception as exc:
            log.exception("%s failed %d times; giving up", what, counted)
            return exc
        return None

    def decode_event(self, msg: Record) -> Event[Any]:
        return decode_record(msg, self.bound.settings.topic_prefix)


def decode_record(msg: Record, topic_prefix: str = "") -> Event[Any]:
    """The CloudEvent of a raw record, with its partition and offset.

    Raises :class:`EnvelopeError` (its ``reason`` names what is wrong) for a
    record that is not a valid event of its topic; a stored-offsets handler
    taking raw records lets it propagate and the record is dead-lettered.
    """
    p = topic_prefix
    topic = msg.topic[len(p):] if p and msg.topic.startswith(p) else msg.topic
    return decode(topic, msg.key, msg.value, msg.headers, partition=msg.partition, offset=msg.offset)


class _NoCommit:
    """The message's own ``ack`` commits nothing: offsets are committed per partition by the runtime."""

    async def commit(self) -> None:
        return None

    def seek(self, partition: TopicPartition, offset: int) -> None:
        return None


class _ReadyListener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: _Subscription) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        await self.owner.on_revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        await self.owner.on_assigned(list(assigned))


async def publish_dead_letter(
    bound: KafkaBindings, msg: Record, reason: str, error_type: str, *, group_id: str
) -> None:
    """Publish ``msg`` (original key, bytes and headers, base64) to ``dead-letter`` through the broker."""
    import base64
    from datetime import UTC, datetime

    settings = bound.settings
    prefix = settings.topic_prefix
    topic = msg.topic[len(prefix):] if prefix and msg.topic.startswith(prefix) else msg.topic
    payload = DeadLetter(
        topic=topic,
        partition=msg.partition,
        offset=msg.offset,
        key_b64=base64.b64encode(msg.key).decode() if msg.key is not None else None,
        value_b64=base64.b64encode(msg.value or b"").decode(),
        headers=[(k, base64.b64encode(v).decode()) for k, v in (msg.headers or ())],
        reason=reason[:2000],
        error_type=error_type,
        service=settings.service_name,
        consumer_group=group_id,
        failed_at=datetime.now(UTC),
    )
    event = new_event("dead-letter", payload, source=settings.service_name, actor=f"service:{settings.service_name}")
    rec = encode(event, topic_prefix=prefix)
    await bound.broker.publish(rec.value, rec.topic, key=rec.key, headers={k: v.decode() for k, v in rec.headers})
    log.warning(
        "dead-lettered %s[%d]@%d: %s", topic, msg.partition, msg.offset, reason[:300],
        extra={"ctx_topic": topic, "ctx_error_type": error_type},
    )


class InboxSubscription(_Subscription):
    """Applies each event once, in a transaction with the inbox insert."""

    def __init__(self, handlers: Mapping[str, Handler], **kwargs: Any) -> None:
        super().__init__(list(handlers), **kwargs)
        self.handlers = dict(handlers)

    async def _apply(self, event: Event[Any]) -> None:
        bound = self.bound
        handler = self.handlers[event.topic]
        async with bound.pool.acquire() as conn, conn.transaction():
            fresh = await conn.fetchval(
                "INSERT INTO inbox (consumer_group, event_id, topic) VALUES ($1, $2, $3) "
                "ON CONFLICT DO NOTHING RETURNING true",
                self.group_id(bound.settings), event.id, event.topic,
            )
            if not fresh:
                if bound.metrics is not None:
                    bound.metrics.events_duplicate.labels(topic=event.topic).inc()
                return
            await handler(event, conn)
        if bound.metrics is not None:
            bound.metrics.events_consumed.labels(topic=event.topic).inc()

    async def __call__(self, msg: Record) -> None:
        """The subscriber's handler: one record, applied or dead-lettered, then its offset committed."""
        tp = TopicPartition(msg.topic, msg.partition)
        try:
            await self._handle(msg)
        except Exception as exc:
            await self.rewind(tp, msg.offset, exc)
            return
        await self.commit({tp: msg.offset + 1})
        self.record_lag()

    async def _handle(self, msg: Record) -> None:
        try:
            event = self.decode_event(msg)
        except EnvelopeError as exc:
            await self.dead_letter(msg, exc.reason, type(exc).__name__)
        else:
            async def apply_event() -> None:
                await self._apply(event)

            try:
                failed = await self.retrying(f"{event.topic} {event.id}", apply_event)
            except PermanentError as exc:
                await self.dead_letter(msg, str(exc), type(exc).__name__)
                failed = None
            if failed is not None:
                await self.dead_letter(msg, f"handler kept failing: {failed!r}", type(failed).__name__)


class StoredOffsetsSubscription(_Subscription):
    """Applies the records of each partition in one transaction that also stores the next offset."""

    def __init__(
        self,
        topics: Sequence[str],
        handler: BatchHandler | RawBatchHandler,
        *,
        raw: bool = False,
        max_records: int = 2000,
        **kwargs: Any,
    ) -> None:
        super().__init__(topics, **kwargs)
        self.handler = handler
        self.raw = raw
        self.max_records = max_records
        self.processing = asyncio.Lock()
        # Next offset known to be stored per (logical topic, partition): records
        # below it were handled (applied or dead-lettered) before a redelivery.
        self._stored: dict[tuple[str, int], int] = {}

    def listener(self) -> ConsumerRebalanceListener:
        return _ReadyListener(self)

    async def on_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        # Wait for the batch in flight so its offsets are stored before others take over.
        async with self.processing:
            return None

    async def on_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        async with self.processing:
            await self.seek_to_stored(assigned)
        await super().on_assigned(assigned)

    async def seek_to_stored(self, assigned: Sequence[TopicPartition]) -> None:
        """Seek each assigned partition to the offset stored with the state (offset 0 if none).

        Runs inside aiokafka's rebalance callback, which blocks the group's
        coordination (no heartbeats, no coordinator lookup) until it returns,
        so it never waits on the consumer: ``seek`` only sets the position.
        ``seek_to_beginning`` would wait for the fetcher, and the fetcher
        waits for the committed offsets of the other new partitions, which
        need a coordinator that only the blocked coordination can find again
        if the broker went away meanwhile: the group would hang for good.
        Offset 0 below the log start is reset to the earliest offset by the
        fetcher (``auto_offset_reset="earliest"``). If the stored offsets
        cannot be read in time, the positions come from the offsets
        committed to Kafka, which never pass the stored ones; the stored
        offset checked in every transaction drops what was applied already.
        """
        consumer = self.consumer
        if not assigned or consumer is None:
            return
        bound = self.bound
        try:
            async with asyncio.timeout(_LISTENER_DB_TIMEOUT_S), bound.pool.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT topic, partition, next_offset FROM consumer_offsets WHERE consumer_group = $1",
                    self.group_id(bound.settings),
                )
        except Exception as exc:
            log.warning("stored offsets unreadable on assignment (%r); starting from the committed ones", exc)
            return
        stored = {(r["topic"], r["partition"]): r["next_offset"] for r in rows}
        for tp in assigned:
            key = (self._logical(tp.topic), tp.partition)
            offset = stored.get(key)
            if offset is None:
                self._stored.pop(key, None)
            else:
                self._stored[key] = offset
            consumer.seek(tp, 0 if offset is None else offset)

    async def __call__(self, records: tuple[Record, ...]) -> None:
        """The subscriber's handler: the fetched records, split by partition, each applied with its offset."""
        by_partition: dict[tuple[str, int], list[Record]] = {}
        for r in records:
            by_partition.setdefault((r.topic, r.partition), []).append(r)
        for (topic, partition), msgs in by_partition.items():
            tp = TopicPartition(topic, partition)
            try:
                async with self.processing:
                    await self._process_locked(tp, msgs)
            except Exception as exc:
                # Records before the first one here are stored; the rest is fetched again.
                await self.rewind(tp, msgs[0].offset, exc)
        self.record_lag()

    async def _stored_offset(self, conn: asyncpg.Connection, topic: str, partition: int) -> int:
        stored = await conn.fetchval(
            "SELECT next_offset FROM consumer_offsets WHERE consumer_group = $1 AND topic = $2 "
            "AND partition = $3 FOR UPDATE",
            self.group_id(self.bound.settings), topic, partition,
        )
        return -1 if stored is None else int(stored)

    async def _process_locked(self, tp: TopicPartition, msgs: list[Record]) -> None:
        bound = self.bound
        group = self.group_id(bound.settings)
        topic = self._logical(tp.topic)
        already = self._stored.get((topic, tp.partition), -1)
        msgs = [m for m in msgs if m.offset >= already]
        if not msgs:
            return
        items: list[Any]
        if self.raw:
            items = msgs
        else:
            items = []
            for msg in msgs:
                try:
                    items.append(self.decode_event(msg))
                except EnvelopeError as exc:
                    await self.dead_letter(msg, exc.reason, type(exc).__name__)
        next_offset = msgs[-1].offset + 1

        async def apply() -> None:
            async with bound.pool.acquire() as conn, conn.transaction():
                # Records before the stored offset were applied already (a redelivery
                # after a rebalance or a crash): the stored offset is the truth.
                stored = await self._stored_offset(conn, topic, tp.partition)
                fresh = [e for e in items if _offset(e) >= stored]
                if fresh:
                    await self.handler(fresh, conn)
                await conn.execute(_STORE_OFFSET, group, topic, tp.partition, next_offset)

        try:
            failed = await self.retrying(f"{topic}[{tp.partition}] batch", apply)
        except (PermanentError, EnvelopeError) as exc:
            failed = exc
        if failed is not None:
            # Fall back to one record at a time so one bad record does not sink the batch.
            await self._apply_one_by_one(items, msgs, tp, topic)
        self._stored[(topic, tp.partition)] = next_offset
        if bound.metrics is not None:
            bound.metrics.events_consumed.labels(topic=topic).inc(len(items))
        await self.commit({tp: next_offset})  # for lag visibility only

    async def _apply_one_by_one(self, items: list[Any], msgs: list[Record], tp: TopicPartition, topic: str) -> None:
        bound = self.bound
        group = self.group_id(bound.settings)
        by_offset = {m.offset: m for m in msgs}
        for item in items:
            async def apply_single(e: Any = item) -> None:
                async with bound.pool.acquire() as conn, conn.transaction():
                    if _offset(e) < await self._stored_offset(conn, topic, tp.partition):
                        return
                    await self.handler([e], conn)
                    await conn.execute(_STORE_OFFSET, group, topic, tp.partition, _offset(e) + 1)

            try:
                failed = await self.retrying(f"{topic}[{tp.partition}]@{_offset(item)}", apply_single)
            except (PermanentError, EnvelopeError) as exc:
                failed = exc
            if failed is not None:
                reason = failed.reason if isinstance(failed, EnvelopeError) else str(failed)
                await self.dead_letter(by_offset[_offset(item)], reason, type(failed).__name__)
        async def store_offset() -> None:
            async with bound.pool.acquire() as conn:
                await conn.execute(_STORE_OFFSET, group, topic, tp.partition, msgs[-1].offset + 1)

        failed = await self.retrying(f"{topic}[{tp.partition}] offset", store_offset)
        if failed is not None:
            raise failed


def _offset(item: Event[Any] | Record) -> int:
    return int(item.offset or 0)


def _named(sub: Callable[[Any], Awaitable[None]], name: str) -> Callable[[Any], Awaitable[None]]:
    """A plain coroutine function for FastStream to wrap (it reads names and signatures)."""

    async def handle(records: Any) -> None:
        await sub(records)

    handle.__name__ = handle.__qualname__ = name
    return handle


class ServiceRouter(KafkaRouter):
    """A service's Kafka side: a FastStream ``KafkaRouter`` whose subscribers carry the guarantees.

    Declare it in the composition root (``kafka=lambda ctx: build_router(...)``);
    the runtime binds the subscriptions and includes the router in the broker.
    Plain FastStream subscribers and publishers may be added to it as usual.
    """

    def __init__(self, settings: ServiceSettings, **kwargs: Any) -> None:
        super().__init__(prefix=settings.topic_prefix, **kwargs)
        self.settings = settings
        self.subscriptions: list[_Subscription] = []

    def inbox(self, handlers: Mapping[str, Handler], *, group_suffix: str = "",
              max_attempts: int = 5) -> InboxSubscription:
        """One subscriber for ``handlers``' topics; each event applied once (the inbox), then committed."""
        sub = InboxSubscription(handlers, group_suffix=group_suffix, max_attempts=max_attempts)
        sub.subscriber = self.subscriber(
            *sub.topics,
            group_id=sub.group_id(self.settings),
            ack_policy=AckPolicy.MANUAL,
            listener=sub.listener(),
            parser=sub.parse,
            decoder=sub.decode,
            title=f"{self.settings.service_name}-inbox",
            **_CONSUMER_OPTIONS,
        )
        sub.subscriber(_named(sub, "inbox"))
        self.subscriptions.append(sub)
        return sub

    def stored_offsets(
        self,
        topics: Sequence[str],
        handler: BatchHandler | RawBatchHandler,
        *,
        group_suffix: str = "",
        max_records: int = 2000,
        raw: bool = False,
        max_attempts: int = 5,
    ) -> StoredOffsetsSubscription:
        """A batch subscriber whose offsets are stored with the state ``handler`` writes.

        ``handler(items, conn)`` runs inside the transaction that stores the
        partition's next offset; ``items`` are the decoded events of one
        partition, or its raw records with ``raw=True``.
        """
        sub = StoredOffsetsSubscription(topics, handler, raw=raw, max_records=max_records,
                                        group_suffix=group_suffix, max_attempts=max_attempts)
        sub.subscriber = self.subscriber(
            *sub.topics,
            batch=True,
            max_records=max_records,
            batch_timeout_ms=500,
            group_id=sub.group_id(self.settings),
            ack_policy=AckPolicy.MANUAL,
            listener=sub.listener(),
            parser=sub.parse,
            decoder=sub.decode,
            title=f"{self.settings.service_name}{group_suffix or '-offsets'}",
            **_CONSUMER_OPTIONS,
        )
        sub.subscriber(_named(sub, "stored_offsets"))
        self.subscriptions.append(sub)
        return sub


def asyncapi_document(router: ServiceRouter, *, title: str, produces: Sequence[str] = ()) -> dict[str, Any]:
    """The service's AsyncAPI 3.0 document, generated by FastStream from its router.

    Every subscriber of ``router`` is a receive operation on its topic. Events a
    service produces go out through the outbox relay, not a FastStream
    publisher; ``produces`` (the topic registry's ``produced_by``) declares them
    as documented publishers with their payload model, so the send side is in
    the document too. Nothing connects.
    """
    from faststream.specification import AsyncAPI

    from mloop.contracts.topics import TOPICS

    broker = KafkaBroker(apply_types=False, description=title)
    broker.include_router(router)
    for topic in produces:
        spec = TOPICS[topic]
        broker.publisher(router.settings.topic_prefix + topic, schema=spec.payload, title=f"{topic}:publish",
                         description=spec.description)
    doc: dict[str, Any] = AsyncAPI(broker, title=title, version="1.0.0",
                                   schema_version="3.0.0").to_specification().to_jsonable()
    return doc
