"""Kafka clients built from settings: the idempotent producer and consumers."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from mloop.runtime.settings import ServiceSettings

__all__ = ["MAX_MESSAGE_BYTES", "create_consumer", "create_producer", "start_with_retry"]

log = logging.getLogger(__name__)
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def create_producer(settings: ServiceSettings, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent producer (``acks=all``): a retried send is never written twice."""
    opts: dict[str, Any] = {
        **settings.kafka_client_options(),
        "client_id": f"mloop-{settings.service_name}",
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 5,
        "max_request_size": MAX_MESSAGE_BYTES,
        "request_timeout_ms": 30_000,
    }
    opts.update(overrides)
    return AIOKafkaProducer(**opts)


def create_consumer(settings: ServiceSettings, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer in the service's group; offsets are committed by the runtime, never automatically."""
    opts: dict[str, Any] = {
        **settings.kafka_client_options(),
        "group_id": settings.group_id,
        "client_id": f"mloop-{settings.service_name}",
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_partition_fetch_bytes": MAX_MESSAGE_BYTES,
        "fetch_max_bytes": 4 * MAX_MESSAGE_BYTES,
        "session_timeout_ms": 10_000,
        "heartbeat_interval_ms": 1_000,
        "isolation_level": "read_committed",
        # Governance events are rare and latency matters for the loop's cycle time.
        "fetch_max_wait_ms": 100,
    }
    opts.update(overrides)
    return AIOKafkaConsumer(*topics, **opts)


async def start_with_retry(client: AIOKafkaProducer | AIOKafkaConsumer, wait_s: float = 60.0) -> None:
    """Start a client, retrying while the broker is not reachable yet."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    delay = 0.2
    while True:
        try:
            await client.start()
            return
        except KafkaConnectionError:
            if loop.time() > deadline:
                raise
            log.warning("kafka not reachable yet; retrying")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
