"""Publishing undecodable or inapplicable messages to ``dead-letter``."""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from mloop.contracts.envelope import encode, new_event
from mloop.contracts.payloads import DeadLetter

__all__ = ["DeadLetterPublisher"]

log = logging.getLogger(__name__)


class DeadLetterPublisher:
    def __init__(
        self, producer: AIOKafkaProducer, *, service: str, group_id: str, topic_prefix: str = ""
    ) -> None:
        self._producer = producer
        self._service = service
        self._group = group_id
        self._prefix = topic_prefix

    async def publish(self, msg: ConsumerRecord[bytes, bytes], reason: str, error_type: str) -> None:
        """Send the original bytes and headers with ``reason``; waits for the broker's ack."""
        topic = msg.topic[len(self._prefix) :] if msg.topic.startswith(self._prefix) else msg.topic
        payload = DeadLetter(
            topic=topic,
            partition=msg.partition,
            offset=msg.offset,
            key_b64=base64.b64encode(msg.key).decode() if msg.key is not None else None,
            value_b64=base64.b64encode(msg.value or b"").decode(),
            headers=[(k, base64.b64encode(v).decode()) for k, v in (msg.headers or ())],
            reason=reason[:2000],
            error_type=error_type,
            service=self._service,
            consumer_group=self._group,
            failed_at=datetime.now(UTC),
        )
        event = new_event("dead-letter", payload, source=self._service, actor=f"service:{self._service}")
        rec = encode(event, topic_prefix=self._prefix)
        fut = await self._producer.send(rec.topic, value=rec.value, key=rec.key, headers=rec.headers)
        await fut
        log.warning(
            "dead-lettered %s[%d]@%d: %s", topic, msg.partition, msg.offset, reason[:300],
            extra={"ctx_topic": topic, "ctx_error_type": error_type},
        )
