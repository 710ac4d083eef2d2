"""What one Kafka event becomes in the ledger, without I/O.

The ledger hashes the structured-mode CloudEvent of the event *as it was
received*: its attributes and payload, plus what travelled beside them in
the Kafka record: the W3C trace context (the CloudEvents distributed-tracing
extension ``traceparent``/``tracestate``), the Kafka key (the partitioning
extension ``partitionkey``) and any other header (``ce_<name>`` headers as
extension attributes, the rest under ``kafkaheaders``).

The searchable columns (model, version, actor, ...) are extracted from that
same event; they are conveniences for queries, never evidence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mloop.contracts.envelope import Event
from mloop.ledger.ledger_domain import LedgerHead, LedgerRecord
from mloop.ledger.merkle import SubtreeNode

__all__ = ["LedgerEntry", "append_entry", "chain_of", "cloudevent_of", "columns_of"]

_ATTRIBUTE_NAME = re.compile(r"^[a-z0-9]{1,20}$")
_RESERVED = frozenset(
    {"specversion", "id", "source", "type", "time", "datacontenttype", "dataschema", "subject", "data",
     "actor", "traceparent", "tracestate", "partitionkey", "kafkaheaders"}
)


def chain_of(topic: str, partition: int) -> str:
    """The chain of a Kafka partition: ``<logical topic>/<partition>``."""
    return f"{topic}/{partition}"


def cloudevent_of(event: Event[Any]) -> dict[str, Any]:
    """The full CloudEvent recorded for ``event``: attributes, extensions and payload."""
    out = event.to_cloudevent()
    if event.traceparent:
        out["traceparent"] = event.traceparent
    if event.tracestate:
        out["tracestate"] = event.tracestate
    if event.key is not None:
        out["partitionkey"] = event.key
    others: dict[str, str] = {}
    for name, value in event.extra_headers.items():
        attribute = name[3:] if name.startswith("ce_") else ""
        if _ATTRIBUTE_NAME.fullmatch(attribute) and attribute not in _RESERVED:
            out[attribute] = value
        else:
            others[name] = value
    if others:
        out["kafkaheaders"] = others
    return out


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """A ledger row with the columns extracted for queries."""

    record: LedgerRecord
    topic: str
    kafka_offset: int | None
    event_type: str
    source: str
    subject: str | None
    model: str | None
    version: str | None
    actor: str | None
    event_time: datetime
    data: dict[str, Any]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def columns_of(cloudevent: dict[str, Any]) -> dict[str, Any]:
    """The searchable columns of a recorded CloudEvent (``cloudevent_of`` output)."""
    data = cloudevent.get("data")
    data = data if isinstance(data, dict) else {}
    return {
        "event_type": str(cloudevent.get("type", "")),
        "source": str(cloudevent.get("source", "")),
        "subject": _text(cloudevent.get("subject")),
        "model": _text(data.get("model")) or _text(cloudevent.get("subject")),
        "version": _text(data.get("version")),
        "actor": _text(cloudevent.get("actor")),
        "data": data,
    }


def append_entry(head: LedgerHead, event: Event[Any]) -> tuple[LedgerEntry, list[SubtreeNode]]:
    """Append ``event`` to ``head``; return its row and the Merkle nodes it completed.

    Raises ``ValueError`` (``CanonicalizationError`` included) when the event
    has no canonical form; the head is then unchanged.
    """
    cloudevent = cloudevent_of(event)
    record, nodes = head.append(cloudevent)
    cols = columns_of(cloudevent)
    entry = LedgerEntry(
        record=record,
        topic=event.topic,
        kafka_offset=event.offset,
        event_type=cols["event_type"],
        source=cols["source"],
        subject=cols["subject"],
        model=cols["model"],
        version=cols["version"],
        actor=cols["actor"],
        event_time=event.time,
        data=cols["data"],
    )
    return entry, nodes
