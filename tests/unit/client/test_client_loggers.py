"""PredictionLogger / GroundTruthLogger batching, backpressure and counters, with a fake producer."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import numpy as np
import pytest

from mloop.client import (
    GroundTruthLogger,
    LoggerClosed,
    PredictionLogger,
    SyncPredictionLogger,
)
from mloop.contracts.envelope import decode


class FakeBroker:
    """What the fake producers write to; ``up`` and ``fail_sends`` simulate outages."""

    def __init__(self) -> None:
        self.up = True
        self.fail_sends = False
        self.messages: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]] = []
        self.producers: list[FakeProducer] = []

    def factory(self, **opts: Any) -> FakeProducer:
        p = FakeProducer(self, opts)
        self.producers.append(p)
        return p

    def records(self) -> list[dict[str, Any]]:
        return [r for _, _, value, _ in self.messages for r in json.loads(value)["records"]]


class FakeProducer:
    def __init__(self, broker: FakeBroker, opts: dict[str, Any]) -> None:
        self.broker = broker
        self.opts = opts

    async def start(self) -> None:
        if not self.broker.up:
            raise ConnectionError("broker down")

    async def stop(self) -> None:
        pass

    async def send(self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]) -> Any:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.broker.fail_sends or not self.broker.up:
            fut.set_exception(TimeoutError("request timed out"))
        else:
            self.broker.messages.append((topic, key, value, headers))
            fut.set_result(None)
        return fut


def _logger(broker: FakeBroker, **opts: Any) -> PredictionLogger:
    return PredictionLogger("fake:9092", "credit-risk", producer_factory=broker.factory, **opts)


async def _log_n(logger: PredictionLogger, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        await logger.log(f"r-{i}", version="1", features={"age": 30 + i % 10, "region": "north"}, prediction=0.5)


async def test_records_are_batched_by_size_into_contract_messages_with_cloudevents_headers() -> None:
    broker = FakeBroker()
    async with _logger(broker, batch_size=100, linger_ms=10_000, topic_prefix="p.") as logger:
        await _log_n(logger, 250)
        assert await logger.flush(5)
    sizes = [len(json.loads(v)["records"]) for _, _, v, _ in broker.messages]
    assert sizes == [100, 100, 50]  # the last one sent by the flush on close
    topic, key, value, headers = broker.messages[0]
    assert topic == "p.prediction-logged"
    assert key == b"credit-risk"
    event = decode("prediction-logged", key, value, headers)
    assert event.type == "dev.mloop.prediction-logged.v1"
    assert event.data.model == "credit-risk"
    assert event.data.records[0].request_id == "r-0"
    assert logger.stats.delivered == 250
    assert logger.stats.messages == 3


async def test_a_partial_batch_is_sent_after_the_linger_time() -> None:
    broker = FakeBroker()
    async with _logger(broker, batch_size=1000, linger_ms=30) as logger:
        await _log_n(logger, 10)
        await asyncio.sleep(0.3)
        assert len(broker.messages) == 1
        assert logger.stats.delivered == 10
        assert logger.pending == 0


async def test_the_producer_is_idempotent_with_acks_all() -> None:
    broker = FakeBroker()
    async with _logger(broker) as logger:
        await _log_n(logger, 1)
    opts = broker.producers[0].opts
    assert opts["enable_idempotence"] is True
    assert opts["acks"] == "all"


async def test_while_the_broker_is_down_log_returns_within_its_bound_and_the_buffer_stays_bounded() -> None:
    broker = FakeBroker()
    broker.up = False
    logger = _logger(broker, buffer_capacity=1000, max_block_ms=2, batch_size=100)
    await logger.start()
    worst = 0.0
    for i in range(3000):
        began = time.perf_counter()
        await logger.log(f"r-{i}", version="1", features={"x": 1.0}, prediction=0.1)
        worst = max(worst, time.perf_counter() - began)
    assert worst < 0.05
    assert logger.pending <= 1000
    assert logger.stats.dropped == 2000
    assert logger.stats.accepted == 3000
    # The broker comes back: everything buffered is delivered, the newest records (drop-oldest).
    broker.up = True
    assert await logger.flush(10)
    stats = await logger.close()
    assert stats.delivered == 1000
    ids = {r["request_id"] for r in broker.records()}
    assert ids == {f"r-{i}" for i in range(2000, 3000)}
    assert stats.accepted == stats.delivered + stats.dropped


async def test_failed_sends_are_requeued_and_delivered_once_the_broker_recovers() -> None:
    broker = FakeBroker()
    logger = _logger(broker, batch_size=50, linger_ms=1)
    await logger.start()
    broker.fail_sends = True
    await _log_n(logger, 200)
    await asyncio.sleep(0.3)
    assert logger.stats.send_failures >= 1
    assert logger.stats.delivered == 0
    broker.fail_sends = False
    assert await logger.flush(10)
    await logger.close()
    ids = [r["request_id"] for r in broker.records()]
    assert sorted(ids) == sorted(f"r-{i}" for i in range(200))  # each exactly once
    assert logger.stats.dropped == 0


async def test_close_counts_what_could_not_be_delivered_as_dropped() -> None:
    broker = FakeBroker()
    broker.up = False
    logger = _logger(broker)
    await logger.start()
    await _log_n(logger, 30)
    stats = await logger.close(timeout_s=0.3)
    assert stats.delivered == 0
    assert stats.dropped == 30
    assert stats.pending == 0


async def test_log_after_close_raises() -> None:
    broker = FakeBroker()
    logger = _logger(broker)
    await logger.start()
    await logger.close()
    with pytest.raises(LoggerClosed):
        await logger.log("r-1", version="1", features={}, prediction=0.1)


async def test_an_invalid_record_is_refused_at_once_naming_the_field() -> None:
    broker = FakeBroker()
    async with _logger(broker) as logger:
        with pytest.raises(ValueError, match="features"):
            await logger.log("r-1", version="1", features={"x": object()}, prediction=0.1)
        with pytest.raises(ValueError, match="request_id"):
            await logger.log("", version="1", features={}, prediction=0.1)
    assert logger.stats.accepted == 0


async def test_a_missing_or_misspelt_field_is_refused_like_a_wrong_keyword_argument() -> None:
    broker = FakeBroker()
    fields: dict[str, Any] = {"version": "1", "features": {"x": 1.0}, "prediction": 0.1}
    async with _logger(broker) as logger:
        with pytest.raises(TypeError, match="prediction"):
            await logger.log("r-1", version="1", features={"x": 1.0})  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="latency"):
            logger.log_nowait("r-2", **fields, latency=3.0)  # type: ignore[call-arg]
        assert await logger.log("r-3", **fields, latency_ms=3.0, model="other")
        assert await logger.flush(5)
    assert logger.stats.accepted == 1
    assert [(json.loads(v)["model"], r["request_id"], r["latency_ms"]) for _, _, v, _ in broker.messages
            for r in json.loads(v)["records"]] == [("other", "r-3", 3.0)]


async def test_numpy_values_are_logged_as_plain_numbers() -> None:
    broker = FakeBroker()
    async with _logger(broker) as logger:
        await logger.log(
            "r-1",
            version="1",
            features={"age": np.int64(41), "income": np.float32(5.5)},
            prediction=np.array([0.2, 0.8]),
        )
    (rec,) = broker.records()
    assert rec["features"] == {"age": 41, "income": 5.5}
    assert rec["prediction"] == [0.2, 0.8]


async def test_records_of_several_models_go_in_separate_messages_keyed_by_model() -> None:
    broker = FakeBroker()
    async with _logger(broker, batch_size=10, linger_ms=1) as logger:
        for i in range(4):
            await logger.log(f"r-{i}", version="1", features={}, prediction=0.1, model="a" if i % 2 else "b")
    keys = sorted(k for _, k, _, _ in broker.messages if k is not None)
    assert keys == [b"a", b"b"]


async def test_ground_truth_is_logged_to_its_topic() -> None:
    broker = FakeBroker()
    async with GroundTruthLogger("fake:9092", "credit-risk", producer_factory=broker.factory) as logger:
        await logger.log("r-1", 1)
        await logger.log("r-2", "yes")
    topic, key, value, headers = broker.messages[0]
    assert topic == "ground-truth-logged"
    event = decode("ground-truth-logged", key, value, headers)
    assert [r.label for r in event.data.records] == [1, "yes"]


def test_the_sync_logger_blocks_at_most_max_block_ms_and_delivers_on_close() -> None:
    broker = FakeBroker()
    broker.up = False
    logger = SyncPredictionLogger(
        "fake:9092", "credit-risk", producer_factory=broker.factory, buffer_capacity=100, max_block_ms=3
    )
    worst = 0.0
    for i in range(300):
        began = time.perf_counter()
        logger.log(f"r-{i}", version="1", features={"x": i}, prediction=0.5)
        worst = max(worst, time.perf_counter() - began)
    assert worst < 0.05
    assert logger.pending <= 100
    broker.up = True
    stats = logger.close(timeout_s=10)
    assert stats.delivered == 100
    assert stats.dropped == 200


async def test_timestamps_given_or_taken_are_sent_as_rfc_3339_instants_and_non_finite_values_as_null() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    broker = FakeBroker()
    given = datetime(2026, 11, 26, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    async with _logger(broker) as logger:
        before = time.time()
        await logger.log("r-1", version="1", features={"x": float("nan")}, prediction=float("inf"))
        after = time.time()
        await logger.log("r-2", version="1", features={"x": 1.0}, prediction=0.5, timestamp=given)
    event = decode("prediction-logged", None, broker.messages[0][2], broker.messages[0][3])
    first, second = event.data.records
    assert before - 1e-6 <= first.timestamp.timestamp() <= after
    assert first.features == {"x": None} and first.prediction is None
    assert second.timestamp == given.astimezone(UTC)
    assert broker.records()[0]["timestamp"].endswith("Z")


async def test_the_message_value_is_the_contract_json_byte_for_byte(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime

    from mloop.client import loggers

    clock = iter([1764777600.25, 1764777601.125])
    monkeypatch.setattr(loggers, "_now", lambda: next(clock))
    broker = FakeBroker()
    async with _logger(broker) as logger:
        await logger.log("r-1", version="3", features={"age": 41, "income": 5.2e4, "region": "north", "vip": True,
                                                      "gap": None}, prediction=0.83, latency_ms=4.2)
        await logger.log("r-2", version="3", features={"x": np.float64(1.5)}, prediction=[0.25, 1], error="oops")
        await logger.log("r-3", version="3", features={}, prediction="yes", timestamp=datetime(2026, 11, 26, 14, 0))
        await logger.log("r-4", version="3", features={}, prediction=None,
                         timestamp=datetime(2026, 11, 26, 14, 0, 0, 5, tzinfo=UTC))
    assert [value for _, _, value, _ in broker.messages] == [
        b'{"model":"credit-risk","records":['
        b'{"request_id":"r-1","version":"3","timestamp":"2025-12-03T16:00:00.250000Z",'
        b'"features":{"age":41,"income":52000.0,"region":"north","vip":true,"gap":null},'
        b'"prediction":0.83,"latency_ms":4.2,"error":null},'
        b'{"request_id":"r-2","version":"3","timestamp":"2025-12-03T16:00:01.125000Z",'
        b'"features":{"x":1.5},"prediction":[0.25,1.0],"latency_ms":null,"error":"oops"},'
        b'{"request_id":"r-3","version":"3","timestamp":"2026-11-26T14:00:00Z",'
        b'"features":{},"prediction":"yes","latency_ms":null,"error":null},'
        b'{"request_id":"r-4","version":"3","timestamp":"2026-11-26T14:00:00.000005Z",'
        b'"features":{},"prediction":null,"latency_ms":null,"error":null}]}'
    ]


async def test_a_batch_sent_again_after_a_failure_carries_the_same_value() -> None:
    broker = FakeBroker()
    attempts: list[bytes] = []
    real_send = FakeProducer.send

    async def send(self: FakeProducer, topic: str, value: bytes, key: bytes | None,
                   headers: list[tuple[str, bytes]]) -> Any:
        attempts.append(value)
        return await real_send(self, topic, value, key, headers)

    FakeProducer.send = send  # type: ignore[method-assign]
    try:
        logger = _logger(broker, batch_size=10, linger_ms=1)
        await logger.start()
        broker.fail_sends = True
        await _log_n(logger, 10)
        for _ in range(1000):  # until the first attempt has failed
            if logger.stats.send_failures:
                break
            await asyncio.sleep(0.01)
        broker.fail_sends = False
        assert await logger.flush(10)
        await logger.close()
    finally:
        FakeProducer.send = real_send  # type: ignore[method-assign]
    assert len(attempts) >= 2
    assert attempts[-1] == attempts[0]
    assert [r["request_id"] for r in broker.records()] == [f"r-{i}" for i in range(10)]


async def test_with_the_broker_down_the_sender_retries_after_jittered_pauses_that_grow_to_a_bound() -> None:
    broker = FakeBroker()
    broker.up = False
    logger = _logger(broker, linger_ms=0, max_block_ms=2)
    pauses: list[float] = []

    async def record_pause(seconds: float) -> None:  # only the length matters, so it is not slept...
        pauses.append(seconds)
        if len(pauses) >= 40:
            await asyncio.Event().wait()  # ...until enough are seen: then the sender stays in this one
        await asyncio.sleep(0)

    logger._sleep_or_wake = record_pause  # type: ignore[method-assign]
    await logger.start()
    await _log_n(logger, 10)
    for _ in range(1000):
        if len(pauses) >= 40:
            break
        await asyncio.sleep(0.001)
    began = time.perf_counter()
    await _log_n(logger, 10, start=10)
    assert time.perf_counter() - began < 0.05  # log() does not wait on the sender's retries
    await logger.close(timeout_s=0.1)
    assert len(pauses) >= 40
    assert 0.05 <= pauses[0] <= 0.1
    assert all(0.05 <= p <= 2.0 for p in pauses)
    capped = pauses[6:]
    assert all(1.0 <= p <= 2.0 for p in capped)
    assert len(set(capped)) > len(capped) // 2  # jittered, also at the cap


async def test_a_pause_between_retries_is_cut_short_by_a_flush_once_the_broker_is_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import mloop.client.loggers as loggers

    monkeypatch.setattr(loggers, "_FIRST_RETRY_S", 60.0)  # every pause far longer than the flush may take
    monkeypatch.setattr(loggers, "_MAX_RETRY_S", 120.0)
    broker = FakeBroker()
    broker.up = False
    logger = _logger(broker, linger_ms=0)
    await logger.start()
    await _log_n(logger, 5)
    for _ in range(1000):
        if logger.last_error is not None:
            break
        await asyncio.sleep(0.001)
    assert isinstance(logger.last_error, ConnectionError)  # the sender is now in a pause of 30 s or more
    broker.up = True
    assert await logger.flush(10)
    await logger.close()
    assert sorted(r["request_id"] for r in broker.records()) == sorted(f"r-{i}" for i in range(5))


def test_epoch_timestamps_are_formatted_as_numpy_formats_them_whatever_seconds_a_batch_spans() -> None:
    from mloop.client.loggers import _stamps

    def expected(times: list[float]) -> list[str]:
        micros = (np.asarray(times) * 1e6).astype(np.int64).astype("datetime64[us]")
        return list(np.datetime_as_string(micros, unit="us", timezone="UTC").tolist())

    spread = [1764777600.0 + i * 0.0137 for i in range(3000)]  # 41 seconds, every digit position moving
    assert _stamps(spread) == expected(spread)
    edges = [1764777600.999999, 1764777601.0, 0.5, 1e-7, -0.5, -86400.000001]  # decades apart
    assert _stamps(spread + edges) == expected(spread + edges)
    beyond = [253402300800.0, 1764777600.25]  # year 10000 does not fit the fixed width: the general formatting
    assert _stamps(beyond) == expected(beyond) == ["10000-01-01T00:00:00.000000Z", "2025-12-03T16:00:00.250000Z"]
