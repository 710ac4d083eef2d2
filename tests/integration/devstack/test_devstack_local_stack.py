"""The local stack runs a real Kafka broker and a real Postgres server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from mloop.contracts.topics import TOPICS
from mloop.devstack import create_topics
from mloop.devstack._paths import port_is_open
from mloop.devstack.kafka import KAFKA_MAIN_CLASS, kafka_libs_dir
from mloop.devstack.postgres import PG_SYSTEM_USER, pg_bin
from mloop.devstack.testing import EphemeralStack

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Spec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def _uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


def psql(url: str, sql: str) -> str:
    out = subprocess.run(
        [str(pg_bin() / "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for i, v in enumerate(values):
            await producer.send_and_wait(topic, v, key=str(i).encode())
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, count: int, group: str | None) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    got: list[bytes] = []
    try:
        async with asyncio.timeout(60):
            while len(got) < count:
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    got += [r.value for r in records if r.value is not None]
        if group is not None:
            await consumer.commit()
    finally:
        await consumer.stop()
    return got


def test_processes_are_real_kafka_and_postgres(local_stack: EphemeralStack) -> None:
    assert local_stack.kafka is not None and local_stack.postgres is not None
    kafka_pid = local_stack.kafka.pid
    assert kafka_pid is not None
    cmd = _cmdline(kafka_pid)
    assert Path(cmd[0]).name == "java"
    assert KAFKA_MAIN_CLASS in cmd
    assert f"{kafka_libs_dir()}/*" in cmd
    assert any(p.name.startswith("kafka_2.13-4.1.1") for p in kafka_libs_dir().glob("*.jar"))

    pg_pid = local_stack.postgres.pid
    assert pg_pid is not None
    pg_cmd = _cmdline(pg_pid)
    assert Path(pg_cmd[0]) == pg_bin() / "postgres"
    if os.geteuid() == 0:
        import pwd

        assert _uid(pg_pid) == pwd.getpwnam(PG_SYSTEM_USER).pw_uid
    assert psql(local_stack.database_url, "select current_database()") == "mloop"
    assert psql(local_stack.database_url, "show server_version_num").startswith("18")
    assert psql(local_stack.database_url, "show fsync") == "off"


async def test_idempotent_producer_and_group_consumer_round_trip(
    local_stack: EphemeralStack,
) -> None:
    topic = unique("roundtrip")
    await create_topics(local_stack.bootstrap_servers, [Spec(topic, 1)])
    group = unique("group")
    await produce(local_stack.bootstrap_servers, topic, [b"hello", b"world"])
    assert await consume(local_stack.bootstrap_servers, topic, 2, group) == [b"hello", b"world"]

    # The group's committed offset is stored by the broker.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=local_stack.bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        assert await consumer.committed(TopicPartition(topic, 0)) == 2
    finally:
        await consumer.stop()


async def test_topics_created_as_specified_and_idempotently(local_stack: EphemeralStack) -> None:
    prefix = unique("t") + "."
    specs = [
        Spec("model.events", 3),
        Spec("model.state", 1, {"cleanup.policy": "compact"}),
    ]
    names = await create_topics(local_stack.bootstrap_servers, specs, prefix=prefix)
    assert names == [f"{prefix}model.events", f"{prefix}model.state"]
    # Again: existing topics are not an error.
    assert await create_topics(local_stack.bootstrap_servers, specs, prefix=prefix) == names

    admin = AIOKafkaAdminClient(bootstrap_servers=local_stack.bootstrap_servers)
    await admin.start()
    try:
        described = {t["topic"]: t for t in await admin.describe_topics(names)}
        assert len(described[f"{prefix}model.events"]["partitions"]) == 3
        assert len(described[f"{prefix}model.state"]["partitions"]) == 1
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
        policies = {}
        for response in responses:
            for resource in response.resources:
                # (error_code, error_message, resource_type, resource_name, config_entries)
                entries = {entry[0]: entry[1] for entry in resource[4]}
                policies[resource[3]] = entries["cleanup.policy"]
        assert policies == {f"{prefix}model.events": "delete", f"{prefix}model.state": "compact"}
    finally:
        await admin.close()


async def test_registry_topics_created_by_default(local_stack: EphemeralStack) -> None:
    prefix = unique("reg") + "."
    names = await create_topics(local_stack.bootstrap_servers, prefix=prefix)
    assert sorted(names) == sorted(prefix + s.name for s in TOPICS.values())
    admin = AIOKafkaAdminClient(bootstrap_servers=local_stack.bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    assert set(names) <= existing


def test_new_database_is_separate(local_stack: EphemeralStack) -> None:
    a = local_stack.new_database("devstack_a")
    b = local_stack.new_database()
    psql(a, "create table only_in_a (x int)")
    assert psql(a, "select count(*) from pg_tables where tablename = 'only_in_a'") == "1"
    assert psql(b, "select count(*) from pg_tables where tablename = 'only_in_a'") == "0"
    # Asking again for the same name gives a fresh, empty database.
    a2 = local_stack.new_database("devstack_a")
    assert a2 == a
    assert psql(a, "select count(*) from pg_tables where tablename = 'only_in_a'") == "0"


def test_postgres_restart_keeps_data(local_stack: EphemeralStack) -> None:
    pg = local_stack.postgres
    assert pg is not None
    url = local_stack.new_database("devstack_restart")
    psql(url, "create table kept (v text); insert into kept values ('survives')")
    pg.stop()
    assert not pg.is_running()
    assert not port_is_open(pg.port)
    pg.start()
    assert pg.is_running()
    assert psql(url, "select v from kept") == "survives"


async def test_kafka_restart_keeps_data(local_stack: EphemeralStack) -> None:
    kafka = local_stack.kafka
    assert kafka is not None
    topic = unique("durable")
    await create_topics(local_stack.bootstrap_servers, [Spec(topic, 2)])
    values = [f"m{i}".encode() for i in range(20)]
    await produce(local_stack.bootstrap_servers, topic, values)
    old_pid = kafka.pid

    await asyncio.to_thread(kafka.stop)
    assert not kafka.is_running()
    assert not port_is_open(kafka.port)
    await asyncio.to_thread(kafka.start)
    await kafka.wait_ready_async(60)
    assert kafka.pid not in (None, old_pid)

    got = await consume(local_stack.bootstrap_servers, topic, len(values), group=None)
    assert sorted(got) == sorted(values)
