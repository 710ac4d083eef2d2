"""Prediction and ground-truth loggers for serving systems.

A serving call hands a record to :meth:`PredictionLogger.log` and goes on: the
record is validated, put in a bounded in-memory buffer and returned from at
once (or within ``max_block_ms`` when the buffer is full). A background sender
batches records by size (``batch_size``) and by time (``linger_ms``) into
``prediction-logged`` messages in the contract of the platform (CloudEvents
headers, key = model) and publishes them with an idempotent producer
(``acks=all``).

Delivery, honestly stated:

- within one producer session a retried send is never written twice (idempotence);
- a batch whose send fails (broker unreachable beyond ``request_timeout_ms``) goes
  back to the front of the buffer and is sent again by a fresh producer, so an
  outage loses nothing that fits in the buffer. Only a send whose outcome is
  unknown (the broker wrote it but the answer was lost) can be written twice;
- when the buffer is full, ``log`` waits up to ``max_block_ms`` for the sender to
  make room (only while the broker is reachable: during an outage no room comes,
  so it does not wait), then the overflow policy drops a record (``drop-oldest``
  by default, see :mod:`mloop.client._buffer`) and counts it in ``stats.dropped``.
  Memory is bounded by ``buffer_capacity + max_in_flight * batch_size`` records;
- :meth:`close` flushes what is buffered; whatever cannot be delivered within
  its timeout is counted as dropped and logged.

Use :class:`PredictionLogger` inside an asyncio application and
:class:`SyncPredictionLogger` from threads (it runs its own event loop in a
daemon thread). :class:`GroundTruthLogger` / :class:`SyncGroundTruthLogger`
do the same for ``ground-truth-logged``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import repeat
from types import TracebackType
from typing import Any, ClassVar, Generic, Self, TypeVar

import msgspec
import numpy as np

from mloop.client._backoff import Backoff
from mloop.client._buffer import OverflowPolicy, RecordBuffer
from mloop.client._exceptions import LoggerClosed
from mloop.contracts.envelope import encode, new_event
from mloop.contracts.payloads import (
    MAX_ERROR_LENGTH,
    MAX_RECORDS_PER_MESSAGE,
    MAX_REQUEST_ID_LENGTH,
    MAX_VERSION_LENGTH,
    GroundTruthLogged,
    GroundTruthRecord,
    Payload,
    PredictionLogged,
    PredictionRecord,
)

__all__ = [
    "GroundTruthLogger",
    "LoggerStats",
    "PredictionLogger",
    "SyncGroundTruthLogger",
    "SyncPredictionLogger",
]

log = logging.getLogger(__name__)

_Record = Any
"""A buffered record: a ``_WireRecord`` for predictions, a dict for labels.

A record of the logger's own model is buffered as is; one logged with another
``model=`` as a ``(model, record)`` pair.
"""
_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
_MAX_BATCH_BYTES = 4 * 1024 * 1024
"""Bytes per partition in one produce request: a few large messages, so a round trip carries many records."""
_STALLED_AFTER_S = 0.25
_FIRST_RETRY_S = 0.1
_MAX_RETRY_S = 2.0


@dataclass(frozen=True)
class LoggerStats:
    """Counters of a logger. ``accepted = delivered + dropped + pending`` once sends settle."""

    accepted: int
    delivered: int
    dropped: int
    pending: int
    messages: int
    send_failures: int
    connected: bool

    def as_dict(self) -> dict[str, int | bool]:
        return {
            "accepted": self.accepted,
            "delivered": self.delivered,
            "dropped": self.dropped,
            "pending": self.pending,
            "messages": self.messages,
            "send_failures": self.send_failures,
            "connected": self.connected,
        }


ProducerFactory = Callable[..., Any]


class _KafkaLogger:
    """Buffer + batching sender shared by both loggers."""

    topic: ClassVar[str]
    payload_type: ClassVar[type[Payload]]

    def _encode(self, model: str, records: list[Any]) -> bytes:
        """A batch of buffered records as the message value."""
        return _records_json(model, records)

    def __init__(
        self,
        bootstrap_servers: str,
        model: str,
        *,
        topic_prefix: str = "",
        source: str = "/mloop/sdk",
        actor: str | None = None,
        batch_size: int = 500,
        linger_ms: float = 50.0,
        buffer_capacity: int = 100_000,
        overflow: OverflowPolicy = "drop-oldest",
        max_block_ms: float = 5.0,
        request_timeout_ms: int = 10_000,
        max_in_flight: int = 16,
        producer_options: Mapping[str, Any] | None = None,
        producer_factory: ProducerFactory | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_RECORDS_PER_MESSAGE:
            raise ValueError(f"batch_size must be within 1..{MAX_RECORDS_PER_MESSAGE}")
        if linger_ms < 0 or max_block_ms < 0:
            raise ValueError("linger_ms and max_block_ms must be >= 0")
        self.bootstrap_servers = bootstrap_servers
        self.model = model
        self.topic_prefix = topic_prefix
        self.source = source
        self.actor = actor
        self.batch_size = batch_size
        self.linger_s = linger_ms / 1000.0
        self.max_block_s = max_block_ms / 1000.0
        self.request_timeout_ms = request_timeout_ms
        self.max_in_flight = max(1, max_in_flight)
        self._producer_options = dict(producer_options or {})
        self._producer_factory = producer_factory
        self._buffer: RecordBuffer[_Record] = RecordBuffer(
            buffer_capacity, overflow, ready_at=batch_size, on_ready=self._wake
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._event: asyncio.Event | None = None
        self._room = asyncio.Event()  # set by the sender whenever it takes records
        self._task: asyncio.Task[None] | None = None
        self._producer: Any = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._in_flight_records = 0
        self._needs_reset = False
        self._closing = False
        self._closed = False
        self._flushing = 0
        self._last_take = 0.0
        self.delivered = 0
        self.messages = 0
        self.send_failures = 0
        self.last_error: BaseException | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Start the background sender. Returns at once: the broker need not be reachable yet."""
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._event = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"mloop-{self.topic}-sender")
        if len(self._buffer):
            self._event.set()

    async def close(self, timeout_s: float = 30.0) -> LoggerStats:
        """Flush what is buffered and stop; records not delivered within ``timeout_s`` are dropped.

        Returns the final counters. Idempotent.
        """
        if self._closed:
            return self.stats
        self._closing = True
        self._wake()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the sender never raises; defensive
                log.error("logger sender failed: %r", exc)
        for t in list(self._in_flight):
            t.cancel()
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        abandoned = self._buffer.discard_all()
        if abandoned:
            log.warning("%s: %d records could not be delivered before close; counted as dropped", self.topic, abandoned)
        await self._stop_producer()
        self._closed = True
        return self.stats

    async def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until everything logged so far is delivered; False when ``timeout_s`` passed first."""
        self._flushing += 1  # send partial batches without lingering
        self._wake()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            while self.pending:
                if loop.time() > deadline:
                    return False
                await asyncio.sleep(0.005)
            return True
        finally:
            self._flushing -= 1

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ counters
    @property
    def pending(self) -> int:
        """Records buffered or being sent."""
        return len(self._buffer) + self._in_flight_records

    @property
    def dropped(self) -> int:
        return self._buffer.dropped

    @property
    def stats(self) -> LoggerStats:
        return LoggerStats(
            accepted=self._buffer.accepted,
            delivered=self.delivered,
            dropped=self._buffer.dropped,
            pending=self.pending,
            messages=self.messages,
            send_failures=self.send_failures,
            connected=self._producer is not None and not self._needs_reset,
        )

    # ------------------------------------------------------------------ input
    def _put(self, model: str | None, record: _Record, max_block_s: float) -> bool:
        if self._closing:
            raise LoggerClosed(f"the {self.topic} logger is closed")
        # Waiting for room only helps while the sender drains; during an outage it would
        # slow every serving call by max_block_ms for nothing.
        buffer = self._buffer
        wait = max_block_s if max_block_s and len(buffer) >= buffer.capacity and self._draining else 0.0
        if model is not None and model != self.model:
            record = (model, record)
        return buffer.put(record, wait)

    @property
    def _draining(self) -> bool:
        # Connected, and the sender took records recently (a stalled sender makes no room).
        return (
            self._producer is not None
            and not self._needs_reset
            and time.monotonic() - self._last_take < _STALLED_AFTER_S
        )

    async def _put_async(self, model: str | None, record: _Record) -> bool:
        # Never block the event loop: the sender runs on it. Poll for room instead.
        if len(self._buffer) >= self._buffer.capacity and self.max_block_s > 0 and self._draining:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.max_block_s
            while len(self._buffer) >= self._buffer.capacity:
                left = deadline - loop.time()
                if left <= 0:
                    break
                self._room.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._room.wait(), left)
        return self._put(model, record, 0.0)

    def _wake(self) -> None:
        loop, event = self._loop, self._event
        if loop is None or event is None:
            return
        if threading.get_ident() == self._loop_thread:
            event.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(event.set)

    # ------------------------------------------------------------------ sender
    async def _run(self) -> None:
        assert self._event is not None
        event = self._event
        loop = asyncio.get_running_loop()
        # One backoff for both ways of losing the broker (a failed send, a failed start), reset once a
        # producer starts; the pauses are woken early by new records and by close.
        backoff = Backoff(_FIRST_RETRY_S, _MAX_RETRY_S)
        while True:
            if self._needs_reset:
                await self._reset_producer(backoff.next())
                continue
            if not len(self._buffer):
                if self._closing and not self._in_flight:
                    return
                event.clear()
                if not len(self._buffer):
                    if self._closing:
                        await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
                    else:
                        await event.wait()
                continue
            # Linger: let a batch fill up, unless it is full already or we are closing.
            deadline = loop.time() + self.linger_s
            while len(self._buffer) < self.batch_size and not (self._closing or self._flushing):
                left = deadline - loop.time()
                if left <= 0:
                    break
                event.clear()
                if len(self._buffer) >= self.batch_size:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), left)
            if self._producer is None:
                try:
                    await self._start_producer()
                    backoff.reset()
                except Exception as exc:
                    self.last_error = exc
                    pause = backoff.next()
                    log.debug("%s: broker not reachable (%r); retrying in %.2fs", self.topic, exc, pause)
                    await self._sleep_or_wake(pause)
                    continue
            items = self._buffer.take(self.batch_size)
            if not items:
                continue
            self._room.set()
            self._last_take = time.monotonic()
            for model, recs in self._by_model(items).items():
                self._in_flight_records += len(recs)
                try:
                    fut = await self._send(model, recs)
                except Exception as exc:
                    self._in_flight_records -= len(recs)
                    self._fail(recs, model, exc)
                    continue
                task = asyncio.ensure_future(self._await_delivery(fut, model, recs))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
            while len(self._in_flight) >= self.max_in_flight:
                await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)

    def _by_model(self, items: list[_Record]) -> dict[str, list[_Record]]:
        """Buffered items grouped into one record list per model (a message each)."""
        if tuple not in set(map(type, items)):  # all of the logger's own model: the usual case
            return {self.model: items}
        by_model: dict[str, list[_Record]] = {}
        for item in items:
            model, rec = item if type(item) is tuple else (self.model, item)
            by_model.setdefault(model, []).append(rec)
        return by_model

    async def _send(self, model: str, records: list[_Record]) -> asyncio.Future[Any]:
        # The headers come from the envelope (with an empty stand-in payload); the value is
        # serialised straight from the records, validated when they were logged.
        stub = self.payload_type.model_construct(model=model, records=[])
        rec = encode(new_event(self.topic, stub, source=self.source, actor=self.actor), topic_prefix=self.topic_prefix)
        value = self._encode(model, records)
        fut: asyncio.Future[Any] = await self._producer.send(rec.topic, value=value, key=rec.key, headers=rec.headers)
        return fut

    async def _await_delivery(self, fut: asyncio.Future[Any], model: str, records: list[_Record]) -> None:
        try:
            await fut
        except asyncio.CancelledError:
            self._in_flight_records -= len(records)
            self._buffer.dropped += len(records)  # abandoned on close: outcome unknown
            raise
        except Exception as exc:
            self._in_flight_records -= len(records)
            self._fail(records, model, exc)
            return
        self._in_flight_records -= len(records)
        self.delivered += len(records)
        self.messages += 1

    def _fail(self, records: list[_Record], model: str, exc: BaseException) -> None:
        self.send_failures += 1
        self.last_error = exc
        self._needs_reset = True
        dropped = self._buffer.requeue(records if model == self.model else [(model, r) for r in records])
        self._wake()
        log.warning(
            "%s: sending %d records failed (%r); requeued%s",
            self.topic,
            len(records),
            exc,
            f", {dropped} dropped by the overflow policy" if dropped else "",
        )

    async def _sleep_or_wake(self, seconds: float) -> None:
        assert self._event is not None
        self._event.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), seconds)

    def _new_producer(self) -> Any:
        opts: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": "mloop-sdk",
            "enable_idempotence": True,
            "acks": "all",
            # The sender batches already; the producer sends at once and packs what queues
            # up behind a request in flight (it has one per broker) into the next.
            "linger_ms": 0,
            "max_request_size": _MAX_MESSAGE_BYTES,
            "max_batch_size": _MAX_BATCH_BYTES,
            "request_timeout_ms": self.request_timeout_ms,
            **self._producer_options,
        }
        if self._producer_factory is not None:
            return self._producer_factory(**opts)
        from aiokafka import AIOKafkaProducer

        return AIOKafkaProducer(**opts)

    async def _start_producer(self) -> None:
        producer = self._new_producer()
        try:
            await producer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 5)
            raise
        self._producer = producer

    async def _stop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 5)

    async def _reset_producer(self, pause_s: float) -> None:
        # A failed batch may leave the idempotent producer's sequence numbers out of step:
        # settle what is in flight, then start over with a fresh producer id.
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        await self._stop_producer()
        self._needs_reset = False
        await self._sleep_or_wake(pause_s)


_SIMPLE_TYPES = frozenset({int, float, str, bool, type(None)})
_now = time.time


def _plain(value: Any) -> Any:
    """numpy scalars and arrays to Python values."""
    if type(value) in _SIMPLE_TYPES:
        return value
    tolist = getattr(value, "tolist", None)
    if tolist is not None:
        return tolist()
    return value


def _features(features: Mapping[str, Any]) -> dict[str, Any] | None:
    """A copy of ``features`` with plain values, or None when a value is not a feature value."""
    out = dict(features)
    for k, v in out.items():
        if type(v) not in _SIMPLE_TYPES:
            v = _plain(v)
            if type(v) not in _SIMPLE_TYPES:
                return None
            out[k] = v
        if type(k) is not str:
            return None
    return out


def _prediction(value: Any) -> tuple[bool, Any]:
    v = _plain(value)
    t = type(v)
    if t is float or t is str or v is None:
        return True, v
    if t is int:
        return True, float(v)
    if t is list and all(type(x) is float or type(x) is int for x in v):
        return True, [float(x) for x in v]
    return False, v


def _ts(t: datetime | None) -> float | datetime:
    # A float epoch is cheap to take on the serving path; it is formatted by the sender.
    return time.time() if t is None else t


def _iso(t: float | datetime) -> str:
    if isinstance(t, float):
        t = datetime.fromtimestamp(t, UTC)
    elif t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _short_str(v: Any, limit: int) -> bool:
    return type(v) is str and 0 < len(v) <= limit


class _WireRecord(msgspec.Struct, gc=False):
    """A validated prediction, in ``PredictionRecord``'s field order: what the message carries.

    ``timestamp`` holds the epoch float taken by ``log`` (or the caller's
    datetime) until the sender formats the whole batch as RFC 3339 text.
    Instances are invisible to the garbage collector (``gc=False``): their
    values are plain scalars and a dict of plain scalars, which cannot form a
    cycle, and a buffer of 100,000 records would otherwise be traversed by
    every full collection.
    """

    request_id: str
    version: str
    timestamp: Any
    features: dict[str, Any]
    prediction: Any
    latency_ms: float | None
    error: str | None


class _WireMessage(msgspec.Struct):
    model: str
    records: list[_WireRecord]


def _prediction_record(
    request_id: str,
    version: str,
    features: Mapping[str, Any],
    prediction: Any,
    timestamp: datetime | None,
    latency_ms: float | None,
    error: str | None,
) -> _WireRecord:
    """A validated prediction record; raises ``ValueError`` naming the field of an invalid one.

    The common case (plain feature values, a float prediction, no timestamp)
    is checked with a handful of type tests and no call beyond the copy of
    ``features``: it runs on the serving call's path.
    """
    feats = features.copy() if type(features) is dict else dict(features)
    for k, v in feats.items():
        if type(v) not in _SIMPLE_TYPES or type(k) is not str:
            feats = _features(features)  # type: ignore[assignment]
            break
    if type(prediction) is float or prediction is None:
        ok, pred = True, prediction
    else:
        ok, pred = _prediction(prediction)
    if (
        ok
        and feats is not None
        and type(request_id) is str
        and 0 < len(request_id) <= MAX_REQUEST_ID_LENGTH
        and type(version) is str
        and 0 < len(version) <= MAX_VERSION_LENGTH
        and (latency_ms is None or (type(latency_ms) in (float, int) and latency_ms >= 0))
        and (error is None or (type(error) is str and len(error) <= MAX_ERROR_LENGTH))
    ):
        if timestamp is None:
            return _WireRecord(request_id, version, _now(), feats, pred, latency_ms, error)
        if isinstance(timestamp, datetime):
            return _WireRecord(request_id, version, timestamp, feats, pred, latency_ms, error)
    # The slow path raises pydantic.ValidationError (a ValueError) naming the bad field.
    rec = PredictionRecord(
        request_id=request_id,
        version=version,
        timestamp=timestamp or datetime.now(UTC),
        features=features if feats is None else feats,
        prediction=pred,
        latency_ms=latency_ms,
        error=error,
    )
    out = rec.model_dump(mode="json")
    return _WireRecord(rec.request_id, rec.version, rec.timestamp, out["features"], out["prediction"],
                       rec.latency_ms, rec.error)


_ENCODER = msgspec.json.Encoder()


def _predictions_json(model: str, records: list[_WireRecord]) -> bytes:
    """The message value ``{"model": ..., "records": [...]}`` of a batch, encoded in one msgspec call.

    The records' timestamps are formatted first, column-wise (they stay
    formatted should the batch be sent again). Non-finite floats become null
    (JSON has no such numbers; the monitor counts missing).
    """
    stamps = _stamps([r.timestamp for r in records])
    deque(map(setattr, records, repeat("timestamp"), stamps), maxlen=0)  # a C loop: half the cost of a for
    return _ENCODER.encode(_WireMessage(model, records))


def _stamps(times: list[Any]) -> list[str]:
    """RFC 3339 text of timestamps, formatted column-wise by numpy when all are epoch floats.

    Records of one batch share a handful of seconds: each distinct second is
    formatted once, the microseconds of all records by integer arithmetic into
    one block of ASCII that a single split turns into the strings (cheaper
    than numpy's general datetime formatting, which costs about as much as
    the JSON encoding of the record).
    """
    try:
        micros = (np.asarray(times, dtype=np.float64) * 1e6).astype(np.int64)
    except (TypeError, ValueError):  # a datetime given by the caller, or text formatted for an earlier send
        stamp = _Stamper()
        return [t if type(t) is str else stamp(t) for t in times]
    seconds, fraction = np.divmod(micros, 1_000_000)
    first = int(seconds.min())
    if int(seconds.max()) - first < _SPAN:  # the usual batch: every second of its span, indexed by offset
        distinct, which = np.arange(first, int(seconds.max()) + 1), seconds - first
    else:  # records buffered through an outage: only the seconds that occur (a sort)
        distinct, which = np.unique(seconds, return_inverse=True)
    heads = np.frombuffer(
        "".join([time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(s)) for s in distinct.tolist()]).encode(),
        dtype=np.uint8,
    )
    if heads.size != _HEAD * distinct.size:  # a year outside 1000..9999: numpy's general formatting
        text: list[str] = np.datetime_as_string(micros.astype("datetime64[us]"), unit="us", timezone="UTC").tolist()
        return text
    out = np.empty((micros.size, _HEAD + 8), dtype=np.uint8)
    out[:, :_HEAD] = heads.reshape(-1, _HEAD)[which]
    out[:, _HEAD:_HEAD + 3] = _TRIPLES[fraction // 1000]
    out[:, _HEAD + 3:_HEAD + 6] = _TRIPLES[fraction % 1000]
    out[:, _HEAD + 6] = ord("Z")
    out[:, _HEAD + 7] = ord("\n")  # the separator the split cuts at
    return out.tobytes().decode("ascii").split("\n")[:-1]


_HEAD = len("2026-01-01T00:00:00.")
_SPAN = 64
"""Seconds a batch may span and still have each of them formatted rather than sorting out the distinct ones."""
_TRIPLES = np.frombuffer("".join(f"{i:03d}" for i in range(1000)).encode(), dtype=np.uint8).reshape(1000, 3)
"""The ASCII digits of 000..999, row by row."""


class _Stamper:
    """RFC 3339 text of epoch floats; records of one batch share their seconds, so the prefix is cached."""

    def __init__(self) -> None:
        self.second, self.prefix = -1, ""

    def __call__(self, t: float | datetime) -> str:
        if type(t) is float:
            whole = int(t)
            if whole != self.second:
                self.second, self.prefix = whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
            return f"{self.prefix}.{int((t - whole) * 1_000_000):06d}Z"
        return _iso(t)


def _ground_truth_record(request_id: str, label: Any, timestamp: datetime | None) -> _Record:
    lab = _plain(label)
    if (
        _short_str(request_id, MAX_REQUEST_ID_LENGTH)
        and type(lab) in (int, float, str, bool)
        and (timestamp is None or isinstance(timestamp, datetime))
    ):
        return {"request_id": request_id, "label": lab, "timestamp": _ts(timestamp)}
    rec = GroundTruthRecord(request_id=request_id, label=lab, timestamp=timestamp or datetime.now(UTC))
    return {"request_id": rec.request_id, "label": rec.label, "timestamp": rec.timestamp}


def _finite(value: Any) -> Any:
    """Non-finite floats (NaN, ±inf) become null: JSON has no such numbers; the monitor counts missing."""
    if type(value) is float:
        return value if math.isfinite(value) else None
    if type(value) is dict:
        return {k: _finite(v) for k, v in value.items()}
    if type(value) is list:
        return [_finite(v) for v in value]
    return value


def _records_json(model: str, records: list[_Record]) -> bytes:
    """The message value: ``{"model": ..., "records": [...]}`` as compact JSON."""
    out = []
    second, prefix = -1, ""
    for r in records:
        r = dict(r)
        t = r["timestamp"]
        if type(t) is float:
            # Formatting each timestamp from scratch dominates; records of one batch share seconds.
            whole = int(t)
            if whole != second:
                second, prefix = whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
            r["timestamp"] = f"{prefix}.{int((t - whole) * 1_000_000):06d}Z"
        else:
            r["timestamp"] = _iso(t)
        out.append(r)
    body = {"model": model, "records": out}
    try:
        return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    except ValueError:
        return json.dumps(_finite(body), separators=(",", ":"), allow_nan=False).encode()


class PredictionLogger(_KafkaLogger):
    """Logs predictions to ``prediction-logged`` from an asyncio application.

    ::

        async with PredictionLogger("127.0.0.1:9092", "credit-risk") as logger:
            await logger.log("r-1", version="3", features={"age": 41}, prediction=0.83)

    Keyword options (all optional): ``topic_prefix``; ``batch_size`` records per
    message (500) and ``linger_ms`` to wait for a batch to fill (50);
    ``buffer_capacity`` records held while the broker is slow or down (100,000)
    and the ``overflow`` policy beyond it (``"drop-oldest"`` or
    ``"drop-newest"``); ``max_block_ms``, the most a ``log`` call waits for room
    in a full buffer (5); ``request_timeout_ms`` before a send counts as failed;
    ``max_in_flight`` messages sent and awaiting the broker's acknowledgement (16);
    ``producer_options`` passed to ``AIOKafkaProducer`` (SASL/TLS settings).

    Like any asyncio object it is used from its event loop's thread only (its
    buffer takes no lock on that path); threads use :class:`SyncPredictionLogger`.
    """

    topic = "prediction-logged"
    payload_type = PredictionLogged

    def _encode(self, model: str, records: list[Any]) -> bytes:
        return _predictions_json(model, records)

    async def log(
        self,
        request_id: str,
        *,
        version: str,
        features: Mapping[str, Any],
        prediction: Any,
        timestamp: datetime | None = None,
        latency_ms: float | None = None,
        error: str | None = None,
        model: str | None = None,
    ) -> bool:
        """Buffer one prediction; returns within ``max_block_ms``.

        Returns False when this record was dropped (full buffer, ``drop-newest``).
        Raises ``ValueError`` for an invalid record and :class:`LoggerClosed` after close.
        """
        # The usual record (a plain feature dict, a float or no prediction, no timestamp, no error,
        # the logger's own model, room in the buffer) is checked and buffered right here: each
        # further call on this path costs every serving call. Anything else takes the general path.
        if (
            type(features) is dict
            and (type(prediction) is float or prediction is None)
            and timestamp is None
            and model is None
            and error is None
            and type(request_id) is str
            and 0 < len(request_id) <= MAX_REQUEST_ID_LENGTH
            and type(version) is str
            and 0 < len(version) <= MAX_VERSION_LENGTH
            and (latency_ms is None or (type(latency_ms) is float and latency_ms >= 0))
            and not self._closing
        ):
            feats = features.copy()  # the caller may reuse its dict
            for k, v in feats.items():  # a plain loop: the interpreter's type() is cheaper than map(type, ...)
                if type(v) not in _SIMPLE_TYPES or type(k) is not str:
                    break
            else:
                rec = _WireRecord(request_id, version, _now(), feats, prediction, latency_ms, None)
                if self._buffer.offer_here(rec):
                    return True
                return await self._put_async(None, rec)
        rec = _prediction_record(request_id, version, features, prediction, timestamp, latency_ms, error)
        if self._closing:
            raise LoggerClosed(f"the {self.topic} logger is closed")
        if model is None and self._buffer.offer(rec):  # room, no second coroutine
            return True
        return await self._put_async(model, rec)

    def log_nowait(
        self,
        request_id: str,
        *,
        version: str,
        features: Mapping[str, Any],
        prediction: Any,
        timestamp: datetime | None = None,
        latency_ms: float | None = None,
        error: str | None = None,
        model: str | None = None,
    ) -> bool:
        """Like :meth:`log` but never waits: a full buffer applies the overflow policy at once."""
        rec = _prediction_record(request_id, version, features, prediction, timestamp, latency_ms, error)
        return self._put(model, rec, 0.0)


class GroundTruthLogger(_KafkaLogger):
    """Logs observed labels to ``ground-truth-logged``; same options as :class:`PredictionLogger`."""

    topic = "ground-truth-logged"
    payload_type = GroundTruthLogged

    async def log(
        self, request_id: str, label: Any, *, timestamp: datetime | None = None, model: str | None = None
    ) -> bool:
        """Buffer one label for ``request_id``; returns within ``max_block_ms``."""
        rec = _ground_truth_record(request_id, label, timestamp)
        if self._closing:
            raise LoggerClosed(f"the {self.topic} logger is closed")
        if model is None and self._buffer.offer(rec):
            return True
        return await self._put_async(model, rec)

    def log_nowait(
        self, request_id: str, label: Any, *, timestamp: datetime | None = None, model: str | None = None
    ) -> bool:
        return self._put(model, _ground_truth_record(request_id, label, timestamp), 0.0)


# --------------------------------------------------------------------------- sync wrappers

L = TypeVar("L", bound=_KafkaLogger)
T = TypeVar("T")


class _LoopThread:
    """An event loop in a daemon thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


class _SyncLogger(Generic[L]):
    _inner: L

    def __init__(self, inner: L) -> None:
        self._inner = inner
        self._thread = _LoopThread(f"mloop-{inner.topic}-logger")
        self._thread.run(inner.start())

    @property
    def stats(self) -> LoggerStats:
        return self._inner.stats

    @property
    def pending(self) -> int:
        return self._inner.pending

    @property
    def dropped(self) -> int:
        return self._inner.dropped

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Block until everything logged so far is delivered; False on timeout."""
        return self._thread.run(self._inner.flush(timeout_s))

    def close(self, timeout_s: float = 30.0) -> LoggerStats:
        """Flush, stop the sender and its thread; returns the final counters."""
        if self._inner._closed:
            return self._inner.stats
        stats = self._thread.run(self._inner.close(timeout_s))
        self._thread.stop()
        return stats

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class SyncPredictionLogger(_SyncLogger[PredictionLogger]):
    """:class:`PredictionLogger` for threaded code; ``log`` blocks at most ``max_block_ms``.

    Takes the same arguments as :class:`PredictionLogger`. Thread-safe.
    """

    def __init__(self, bootstrap_servers: str, model: str, **options: Any) -> None:
        super().__init__(PredictionLogger(bootstrap_servers, model, **options))

    def log(
        self,
        request_id: str,
        *,
        version: str,
        features: Mapping[str, Any],
        prediction: Any,
        timestamp: datetime | None = None,
        latency_ms: float | None = None,
        error: str | None = None,
        model: str | None = None,
    ) -> bool:
        """Buffer one prediction; see :meth:`PredictionLogger.log`."""
        rec = _prediction_record(request_id, version, features, prediction, timestamp, latency_ms, error)
        return self._inner._put(model, rec, self._inner.max_block_s)

    def log_many(self, records: Sequence[Mapping[str, Any]]) -> int:
        """Log several predictions (each a mapping of :meth:`log`'s arguments); returns how many were kept."""
        return sum(self.log(**r) for r in records)


class SyncGroundTruthLogger(_SyncLogger[GroundTruthLogger]):
    """:class:`GroundTruthLogger` for threaded code."""

    def __init__(self, bootstrap_servers: str, model: str, **options: Any) -> None:
        super().__init__(GroundTruthLogger(bootstrap_servers, model, **options))

    def log(self, request_id: str, label: Any, *, timestamp: datetime | None = None, model: str | None = None) -> bool:
        """Buffer one label; returns within ``max_block_ms``."""
        return self._inner._put(model, _ground_truth_record(request_id, label, timestamp), self._inner.max_block_s)
