"""The transactional outbox and its relay.

A service never publishes from a request handler: it calls :func:`enqueue`
inside the transaction that changes its state. The :class:`OutboxRelay`
publishes unsent rows in order with the idempotent producer and marks them
sent. A crash between publishing and marking causes a redelivery, which
consumers drop through their inbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from mloop.contracts.envelope import Event, encode
from mloop.runtime.db import is_connection_error
from mloop.runtime.metrics import ServiceMetrics
from mloop.runtime.telemetry import current_trace_headers

__all__ = ["OutboxRelay", "enqueue", "notify_channel"]

log = logging.getLogger(__name__)


def notify_channel(schema: str) -> str:
    return f"{schema}_outbox"


async def enqueue(conn: asyncpg.Connection, *events: Event[Any]) -> None:
    """Write ``events`` to the outbox within the caller's transaction.

    The current trace context is captured so the trace continues in consumers.
    """
    if not conn.is_in_transaction():
        raise RuntimeError("outbox.enqueue must run inside the transaction of the state change")
    trace_headers = current_trace_headers()
    rows = []
    for event in events:
        if trace_headers and not event.traceparent:
            from dataclasses import replace

            event = replace(
                event,
                traceparent=trace_headers.get("traceparent"),
                tracestate=trace_headers.get("tracestate") or None,
            )
        rec = encode(event)
        rows.append(
            (event.id, rec.topic, rec.key, rec.value, [[k, v.decode()] for k, v in rec.headers])
        )
    await conn.executemany(
        "INSERT INTO outbox (event_id, topic, key, value, headers) VALUES ($1, $2, $3, $4, $5)",
        rows,
    )
    schema = await conn.fetchval("SELECT current_schema()")
    await conn.execute("SELECT pg_notify($1, '')", notify_channel(schema))


AfterPublish = Callable[[Sequence[asyncpg.Record]], Awaitable[None]]


class OutboxRelay:
    """Publishes outbox rows in order; one relay at a time per schema publishes.

    ``after_publish`` is a seam for failure tests: it runs after the broker
    acknowledged a batch and before the rows are marked sent.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        *,
        schema: str,
        topic_prefix: str = "",
        batch_size: int = 500,
        poll_interval_s: float = 0.5,
        metrics: ServiceMetrics | None = None,
        after_publish: AfterPublish | None = None,
        keep_sent_s: float = 24 * 3600,
    ) -> None:
        self._pool = pool
        self._producer = producer
        self._schema = schema
        self._prefix = topic_prefix
        self._batch_size = batch_size
        self._poll = poll_interval_s
        self._metrics = metrics
        self._after_publish = after_publish
        self._keep_sent_s = keep_sent_s
        self._wakeup = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        self._polling_only = False

    async def publish_pending(self) -> int:
        """Publish one batch of unsent rows; return how many were published."""
        async with self._pool.acquire() as conn, conn.transaction():
            # FOR UPDATE (not SKIP LOCKED): a second relay waits, so order is kept.
            rows = await conn.fetch(
                "SELECT id, topic, key, value, headers FROM outbox WHERE sent_at IS NULL "
                "ORDER BY id LIMIT $1 FOR UPDATE",
                self._batch_size,
            )
            if not rows:
                return 0
            futures = []
            for r in rows:
                headers = [(k, v.encode()) for k, v in r["headers"]]
                futures.append(
                    await self._producer.send(
                        self._prefix + r["topic"], value=r["value"], key=r["key"], headers=headers
                    )
                )
            await asyncio.gather(*futures)
            if self._after_publish is not None:
                await self._after_publish(rows)
            await conn.execute(
                "UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])", [r["id"] for r in rows]
            )
            if self._metrics is not None:
                for r in rows:
                    self._metrics.events_published.labels(topic=r["topic"]).inc()
            return len(rows)

    @property
    def listening(self) -> bool:
        """True while the relay holds a live connection that LISTENs for new rows."""
        conn = self._listener
        if conn is None:
            return False
        try:
            return not conn.is_closed()
        except asyncpg.InterfaceError:
            # asyncpg hands a connection that died back to the pool by itself,
            # which detaches our handle from it.
            return False

    async def _ensure_listening(self) -> None:
        """LISTEN on a connection of its own; again on a new one after the old one died.

        A database restart closes the LISTEN connection. Until it is replaced the relay
        only polls, so it re-establishes it at every turn of its loop.
        """
        if self.listening or self._polling_only:
            return
        await self._drop_listener()
        conn = await self._pool.acquire()
        try:
            await conn.add_listener(notify_channel(self._schema), self._on_notify)
            conn.add_termination_listener(self._on_listener_lost)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await self._pool.release(conn)
            if isinstance(exc, asyncpg.PostgresError) and not is_connection_error(exc):
                log.warning("outbox relay could not LISTEN (%s); polling only", exc)
                self._polling_only = True
                return
            raise
        self._listener = conn
        self._wakeup.set()  # rows enqueued while nobody listened

    async def _drop_listener(self) -> None:
        conn, self._listener = self._listener, None
        if conn is None:
            return
        # Each step fails harmlessly on a connection that died or was detached.
        with contextlib.suppress(Exception):
            conn.remove_termination_listener(self._on_listener_lost)
        with contextlib.suppress(Exception):
            if not conn.is_closed():
                await conn.remove_listener(notify_channel(self._schema), self._on_notify)
        with contextlib.suppress(Exception):
            await self._pool.release(conn)

    def _on_notify(self, *_: Any) -> None:
        self._wakeup.set()

    def _on_listener_lost(self, *_: Any) -> None:
        # Wake the loop so it notices at once, not at the next poll.
        self._wakeup.set()

    async def run(self) -> None:
        """Publish until cancelled; woken by NOTIFY, polling as a fallback.

        Failures (database or broker away) are retried forever: rows stay in the
        outbox until the broker acknowledged them.
        """
        last_cleanup = 0.0
        loop = asyncio.get_running_loop()
        degraded = False
        try:
            while True:
                try:
                    await self._ensure_listening()
                    n = await self.publish_pending()
                    if self._metrics is not None and n == 0:
                        async with self._pool.acquire() as conn:
                            pending = await conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
                        self._metrics.outbox_pending.set(pending)
                    if loop.time() - last_cleanup > 300:
                        last_cleanup = loop.time()
                        async with self._pool.acquire() as conn:
                            await conn.execute(
                                "DELETE FROM outbox WHERE sent_at < now() - make_interval(secs => $1)",
                                self._keep_sent_s,
                            )
                    if degraded:
                        log.info("outbox relay recovered")
                        degraded = False
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if is_connection_error(exc):
                        log.warning("outbox relay: database unreachable (%r); retrying", exc)
                    else:
                        log.exception("outbox relay failed; retrying")
                    degraded = True
                    await asyncio.sleep(1.0)
                    continue
                if n >= self._batch_size:
                    continue
                self._wakeup.clear()
                if not (self.listening or self._polling_only):
                    continue  # it died meanwhile: re-listen before waiting on NOTIFY
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self._poll)
        finally:
            await self._drop_listener()
