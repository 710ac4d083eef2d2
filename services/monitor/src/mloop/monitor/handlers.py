"""Where Kafka events enter the monitor: decode, then call the service layer.

* ``prediction-logged`` and ``ground-truth-logged`` arrive as the raw records
  of one partition; predictions are decoded straight into columns
  (``ingest.py``), labels as events, and the batch goes to
  :meth:`Monitoring.on_batch <mloop.monitor.service.Monitoring.on_batch>` in the
  transaction that stores the partition's next offset.
* ``model-registered`` and ``traffic-split-changed`` are inbox events
  (:func:`~mloop.monitor.service.on_model_registered`,
  :func:`~mloop.monitor.service.on_traffic_split_changed`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from mloop.contracts.envelope import Event
from mloop.monitor.ingest import TOPIC as PREDICTIONS_TOPIC
from mloop.monitor.ingest import PredictionMessage, decode_prediction_message
from mloop.monitor.service import Monitoring, on_model_registered, on_traffic_split_changed
from mloop.runtime.messaging import Record, ServiceRouter, decode_record
from mloop.runtime.settings import ServiceSettings

__all__ = ["TRAFFIC_TOPICS", "build_router"]

TRAFFIC_TOPICS = ["prediction-logged", "ground-truth-logged"]


def build_router(settings: ServiceSettings, monitoring: Monitoring, *, batch_max_messages: int) -> ServiceRouter:
    """The monitor's Kafka side.

    Registrations and traffic splits go through the inbox. Predictions and
    labels come as the raw records of one partition, applied in the
    transaction that stores the partition's next offset; a record that is not
    a valid event raises :class:`EnvelopeError` while decoding and is
    dead-lettered on its own, the rest of the batch applied.
    """

    prefix = settings.topic_prefix

    def decode(r: Record) -> Event[Any] | PredictionMessage:
        if r.topic == prefix + PREDICTIONS_TOPIC:
            # Predictions skip the envelope's per-record models: straight to columns.
            msg = decode_prediction_message(r.value, r.headers, partition=r.partition, offset=r.offset)
            # Keyed by its model, a model's traffic stays in one partition; keyed otherwise
            # (by request, or not at all) it spreads over every partition of the topic.
            msg.spread = r.key != msg.model.encode()
            return msg
        return decode_record(r, prefix)

    async def on_traffic(records: Sequence[Record], conn: asyncpg.Connection) -> None:
        await monitoring.on_batch([decode(r) for r in records], conn)

    router = ServiceRouter(settings)
    router.inbox({"model-registered": on_model_registered, "traffic-split-changed": on_traffic_split_changed})
    router.stored_offsets(TRAFFIC_TOPICS, on_traffic, raw=True, group_suffix="-traffic",
                          max_records=batch_max_messages)
    return router
