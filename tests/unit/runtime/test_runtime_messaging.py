"""The FastStream-facing messaging layer, in memory (``TestKafkaBroker``): no Kafka, no Postgres.

What needs a database (the inbox, stored offsets) is proven against the real
broker and database in tests/integration/runtime and tests/integration/resilience.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.message import StreamMessage
from opentelemetry import trace

from mloop.contracts.envelope import decode, encode, new_event
from mloop.contracts.payloads import AliasChanged, DeadLetter
from mloop.runtime.messaging import KafkaBindings, ServiceRouter, create_broker, kafka_producer
from mloop.runtime.settings import ServiceSettings


class _Settings(ServiceSettings):
    service_name: str = "probe"


def _settings(**kw: Any) -> _Settings:
    return _Settings(environment="test", topic_prefix="t1-", log_json=False, **kw)


def _raw(msg: StreamMessage[Any]) -> Any:
    return msg.raw_message


def _alias_event() -> Any:
    return encode(new_event("model-alias-changed", AliasChanged(model="m", alias="a", version="1", seq=1),
                            source="test"))


async def test_undecodable_messages_are_dead_lettered_with_their_original_bytes_and_the_subscriber_carries_on() -> None:
    settings = _settings()
    broker = create_broker(settings)
    applied: list[Any] = []

    async def on_alias(event: Any, conn: Any) -> None:
        applied.append(event)  # pragma: no cover - only reached with a database

    router = ServiceRouter(settings)
    router.inbox({"model-alias-changed": on_alias})
    letters: list[ConsumerRecord[bytes, bytes]] = []

    @broker.subscriber("t1-dead-letter", decoder=_raw)
    async def collect(record: ConsumerRecord[bytes, bytes]) -> None:
        letters.append(record)

    for sub in router.subscriptions:
        sub.bind(KafkaBindings(settings, pool=None, broker=broker))  # type: ignore[arg-type]
    broker.include_router(router)
    good = _alias_event()
    headers = {k: v.decode() for k, v in good.headers}
    async with TestKafkaBroker(broker) as br:
        await br.publish(b"\x00\xffnot json", "t1-model-alias-changed", key=b"m", headers=headers)
        await br.publish(b'{"model": "m", "alias": "a"}', "t1-model-alias-changed", key=b"m", headers=headers)
    assert not applied
    assert len(letters) == 2
    first, second = (decode("dead-letter", r.key, r.value, r.headers).data for r in letters)
    assert isinstance(first, DeadLetter) and isinstance(second, DeadLetter)
    assert base64.b64decode(first.value_b64) == b"\x00\xffnot json"
    assert first.error_type == "UndecodableMessage" and first.topic == "model-alias-changed"
    assert first.consumer_group == "mloop-probe" and first.service == "probe"
    assert ("ce_type", base64.b64encode(b"dev.mloop.model-alias-changed.v1").decode()) in first.headers
    assert base64.b64decode(second.value_b64) == b'{"model": "m", "alias": "a"}'
    assert second.error_type != "UndecodableMessage" and "version" in second.reason and "seq" in second.reason


async def test_the_producers_trace_continues_in_a_span_named_after_the_logical_topic(spans: Any) -> None:
    broker = create_broker(_settings())
    seen: list[int] = []

    @broker.subscriber("t1-model-alias-changed")
    async def handle(body: Any) -> None:
        seen.append(trace.get_current_span().get_span_context().trace_id)

    rec = _alias_event()
    parent_trace = 0x0AF7651916CD43DD8448EB211C80319C
    headers = {k: v.decode() for k, v in rec.headers}
    headers["traceparent"] = f"00-{parent_trace:032x}-b7ad6b7169203331-01"
    spans.clear()
    async with TestKafkaBroker(broker) as br:
        await br.publish(rec.value, "t1-model-alias-changed", key=rec.key, headers=headers)
    assert seen == [parent_trace]
    finished = [s for s in spans.get_finished_spans() if s.name == "model-alias-changed process"]
    assert len(finished) == 1
    assert finished[0].context.trace_id == parent_trace and finished[0].parent is not None


def test_the_broker_producer_is_idempotent_with_acks_all_and_the_transport_follows_the_settings() -> None:
    broker = create_broker(_settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-512",
                                     kafka_sasl_username="u", kafka_sasl_password="p"))
    opts = broker._connection_kwargs
    assert opts["enable_idempotence"] is True
    assert opts["acks"] == "all"
    assert opts["security_protocol"] == "SASL_PLAINTEXT" and opts["sasl_mechanism"] == "SCRAM-SHA-512"
    assert opts["sasl_plain_username"] == "u" and opts["sasl_plain_password"] == "p"
    plain = create_broker(_settings())._connection_kwargs
    assert plain.get("security_protocol", "PLAINTEXT") == "PLAINTEXT" and "sasl_plain_username" not in plain


async def test_faststream_publish_adds_its_own_headers_so_the_relay_keeps_the_brokers_producer() -> None:
    # The limit behind the one aiokafka piece left: an outbox row holds the exact
    # headers written in the state change's transaction, but FastStream's publish
    # always adds its own (a fresh correlation_id), so the relay sends the rows
    # with the broker's own idempotent producer (``kafka_producer``) instead.
    broker = KafkaBroker(apply_types=False)
    seen: list[dict[str, str]] = []

    @broker.subscriber("y", decoder=lambda msg: msg)
    async def handle(msg: StreamMessage[Any]) -> None:
        seen.append(dict(msg.headers))

    exact = {"ce_id": "1", "ce_type": "dev.mloop.x.v1", "content-type": "application/json"}
    async with TestKafkaBroker(broker) as br:
        await br.publish(b"v", "y", headers=exact)
    assert len(seen) == 1 and seen[0] != exact
    assert "correlation_id" in seen[0]
    with pytest.raises(RuntimeError):
        kafka_producer(create_broker(_settings()))  # not connected: no producer to hand out


# --------------------------------------------------------------------------- retries of one event


def _failing(errors: list[BaseException]) -> tuple[Any, list[int]]:
    calls: list[int] = []

    async def fn() -> None:
        calls.append(1)
        if errors:
            raise errors.pop(0)

    return fn, calls


async def test_a_failing_handler_is_tried_max_attempts_times_then_given_up() -> None:
    from mloop.runtime.messaging import _Subscription

    sub = _Subscription(["t"], max_attempts=3, retry_delay_s=0.001)
    fn, calls = _failing([ValueError("bad")] * 10)
    error = await sub.retrying("event", fn)
    assert isinstance(error, ValueError)
    assert len(calls) == 3


async def test_transient_failures_do_not_count_against_the_event() -> None:
    from mloop.runtime.messaging import _Subscription

    sub = _Subscription(["t"], max_attempts=2, retry_delay_s=0.001)
    fn, calls = _failing([ConnectionRefusedError("db restarting")] * 4 + [ValueError("bad")])
    assert await sub.retrying("event", fn) is None
    assert len(calls) == 6  # four transient, one counted failure, then success


async def test_a_permanent_error_is_raised_at_once() -> None:
    from mloop.runtime.errors import PermanentError
    from mloop.runtime.messaging import _Subscription

    sub = _Subscription(["t"], max_attempts=5, retry_delay_s=0.001)
    fn, calls = _failing([PermanentError("no such model")])
    with pytest.raises(PermanentError):
        await sub.retrying("event", fn)
    assert len(calls) == 1


class _Consumer:
    """Positions as the rebalance callback leaves them; any wait on the fetcher is a failure."""

    def __init__(self) -> None:
        self.positions: dict[Any, int] = {}

    def seek(self, tp: Any, offset: int) -> None:
        self.positions[tp] = offset

    async def seek_to_beginning(self, *tps: Any) -> None:
        raise AssertionError("the rebalance callback waited on the fetcher")


class _Pool:
    def __init__(self, rows: list[dict[str, Any]] | None = None, *, fail: bool = False, hang: bool = False) -> None:
        self.rows, self.fail, self.hang = rows or [], fail, hang

    def acquire(self) -> Any:
        pool = self

        class _Conn:
            async def __aenter__(self) -> Any:
                if pool.fail:
                    raise ConnectionRefusedError("database down")
                if pool.hang:
                    await asyncio.sleep(3600)
                return self

            async def __aexit__(self, *exc: object) -> None:
                return None

            async def fetch(self, sql: str, group: str) -> list[dict[str, Any]]:
                assert "consumer_offsets" in sql and group == "mloop-probe-traffic"
                return pool.rows

        return _Conn()


def _stored_offsets_subscription(pool: _Pool) -> tuple[Any, _Consumer]:
    settings = _settings()
    router = ServiceRouter(settings)

    async def handler(items: Any, conn: Any) -> None:
        return None  # pragma: no cover - never called here

    sub = router.stored_offsets(["prediction-logged"], handler, group_suffix="-traffic")
    sub.bind(KafkaBindings(settings, pool=pool, broker=create_broker(settings)))
    consumer = _Consumer()
    sub.subscriber = type("_Subscriber", (), {"consumer": consumer})()
    return sub, consumer


async def test_assignment_seeks_to_the_stored_offsets_and_to_zero_without_waiting_on_the_fetcher() -> None:
    pool = _Pool([{"topic": "prediction-logged", "partition": 1, "next_offset": 42}])
    sub, consumer = _stored_offsets_subscription(pool)
    p0, p1 = TopicPartition("t1-prediction-logged", 0), TopicPartition("t1-prediction-logged", 1)
    await sub.listener().on_partitions_assigned([p0, p1])
    assert consumer.positions == {p0: 0, p1: 42}
    assert sub.ready.is_set()


@pytest.mark.parametrize("pool", [_Pool(fail=True), _Pool(hang=True)], ids=["database down", "database hangs"])
async def test_assignment_returns_promptly_when_the_stored_offsets_cannot_be_read(
    pool: _Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mloop.runtime import messaging

    monkeypatch.setattr(messaging, "_LISTENER_DB_TIMEOUT_S", 0.2)
    sub, consumer = _stored_offsets_subscription(pool)
    # The group's coordination waits for this callback: it must come back, leaving positions to Kafka's commits.
    await asyncio.wait_for(sub.listener().on_partitions_assigned([TopicPartition("t1-prediction-logged", 0)]), 5)
    assert consumer.positions == {}
    assert sub.ready.is_set()
