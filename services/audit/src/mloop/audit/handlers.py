"""Where Kafka events enter the audit service.

One batch handler for every audited topic (the topic registry's
``audited_topics()``, dead-letter included). The runtime's offset consumer
calls it with the events of one partition, inside the transaction that also
stores the partition's next offset, so a batch is recorded exactly once
whatever crashes. Undecodable messages never get here: the runtime
dead-letters them, and the dead letter itself is recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry, Counter

from mloop.audit.checkpointing import Checkpointer
from mloop.audit.store import ChainWriter
from mloop.contracts.envelope import Event
from mloop.contracts.topics import audited_topics
from mloop.runtime.errors import PermanentError
from mloop.runtime.messaging import BatchHandler, ServiceRouter
from mloop.runtime.settings import ServiceSettings

__all__ = ["audited_topic_names", "build_ledger_handler", "build_router"]


def audited_topic_names() -> list[str]:
    return [s.name for s in audited_topics()]


def build_ledger_handler(
    writer: ChainWriter, checkpointer: Checkpointer, registry: CollectorRegistry | None = None
) -> BatchHandler:
    """The batch handler that appends events to their partition's chain."""
    appended = Counter(
        "mloop_audit_rows_appended_total", "Rows appended to the ledger", ["topic"],
        registry=registry,
    ) if registry is not None else None

    async def record_events(events: Sequence[Event[Any]], conn: asyncpg.Connection) -> None:
        try:
            written = await writer.append(conn, events)
        except ValueError as exc:
            # No canonical form (e.g. a lone surrogate): it can never be recorded as is.
            # The runtime retries the batch event by event and dead-letters this one,
            # and the dead letter is recorded in its place.
            raise PermanentError(f"event has no canonical JSON form: {exc}") from exc
        checkpointer.note_appended(len(written))
        if appended is not None:
            for entry in written:
                appended.labels(topic=entry.topic).inc()

    return record_events


def build_router(
    settings: ServiceSettings, writer: ChainWriter, checkpointer: Checkpointer, *, max_records: int,
    registry: CollectorRegistry | None = None,
) -> ServiceRouter:
    """The audit service's Kafka side: one stored-offsets subscriber for every audited topic."""
    router = ServiceRouter(settings)
    router.stored_offsets(audited_topic_names(), build_ledger_handler(writer, checkpointer, registry),
                          max_records=max_records)
    return router
