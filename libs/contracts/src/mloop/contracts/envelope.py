"""CloudEvents 1.0 in Kafka binary content mode.

The Kafka value is the JSON payload. The CloudEvents attributes travel as
headers: ``ce_specversion``, ``ce_id`` (UUIDv7), ``ce_source``, ``ce_type``,
``ce_time``, ``ce_subject``, the extension ``ce_actor``, plus
``content-type`` and the W3C trace context (``traceparent``/``tracestate``).

Plain JSON without CloudEvents headers is accepted on the external topics
(``prediction-logged``, ``ground-truth-logged``); the event id is then derived
deterministically from the records' ``request_id`` so a redelivery or a
re-send of the same batch is recognised.

Errors (all subclasses of :class:`EnvelopeError`, each with a ``reason``)::

    EnvelopeError
    ├── UndecodableMessage   the bytes are not UTF-8 JSON
    ├── UnknownEventType     a ce_type this consumer does not know
    └── InvalidPayload       JSON that does not match the payload model
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import pydantic

from mloop.contracts.payloads import Payload
from mloop.contracts.topics import TopicSpec, spec_for

__all__ = [
    "SPECVERSION",
    "EnvelopeError",
    "Event",
    "InvalidPayload",
    "KafkaRecord",
    "UndecodableMessage",
    "UnknownEventType",
    "decode",
    "derived_id",
    "encode",
    "new_event",
    "uuid7",
]

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"
_DERIVED_NAMESPACE = uuid.UUID("6b1f5a8e-3c1d-4e2a-9f5b-7d0c2e4a9b31")
_DERIVED_NAMESPACE_BYTES = _DERIVED_NAMESPACE.bytes

P = TypeVar("P", bound=Payload)


class EnvelopeError(Exception):
    """A message that cannot become an :class:`Event`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UndecodableMessage(EnvelopeError):
    pass


class UnknownEventType(EnvelopeError):
    pass


class InvalidPayload(EnvelopeError):
    pass


def uuid7() -> str:
    """A time-ordered UUID (RFC 9562 version 7) as a string."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


@dataclass(frozen=True)
class KafkaRecord:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True)
class Event(Generic[P]):
    """One CloudEvent. ``topic`` is the logical topic name (without any prefix)."""

    id: str
    type: str
    source: str
    time: datetime
    topic: str
    data: P
    subject: str | None = None
    actor: str | None = None
    key: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None
    # Where it was read from; set by consumers.
    partition: int | None = None
    offset: int | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)

    def with_position(self, partition: int, offset: int) -> Event[P]:
        return replace(self, partition=partition, offset=offset)

    def to_cloudevent(self) -> dict[str, Any]:
        """The structured-mode JSON of this event (used by the audit ledger)."""
        out: dict[str, Any] = {
            "specversion": SPECVERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": _iso(self.time),
            "datacontenttype": CONTENT_TYPE,
            "data": self.data.model_dump(mode="json", by_alias=True),
        }
        if self.subject is not None:
            out["subject"] = self.subject
        if self.actor is not None:
            out["actor"] = self.actor
        return out


def _iso(t: datetime) -> str:
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def new_event(
    topic: str,
    data: P,
    *,
    source: str,
    actor: str | None = None,
    subject: str | None = None,
    event_id: str | None = None,
    at: datetime | None = None,
) -> Event[P]:
    """Build an event for ``topic``; the key and subject default to the spec's key field."""
    spec = spec_for(topic)
    if not isinstance(data, spec.payload):
        raise TypeError(f"{topic} carries {spec.payload.__name__}, not {type(data).__name__}")
    key_value = getattr(data, spec.key, None)
    key = None if key_value is None else str(key_value)
    model = getattr(data, "model", None)
    return Event(
        id=event_id or uuid7(),
        type=spec.event_type,
        source=source if source.startswith("/") else f"/mloop/{source}",
        time=at or datetime.now(UTC),
        topic=topic,
        data=data,
        subject=subject if subject is not None else (str(model) if model is not None else key),
        actor=actor,
        key=key,
    )


def encode(event: Event[Any], *, topic_prefix: str = "") -> KafkaRecord:
    """The Kafka record (binary content mode) for ``event``."""
    headers: list[tuple[str, bytes]] = [
        ("ce_specversion", SPECVERSION.encode()),
        ("ce_id", event.id.encode()),
        ("ce_source", event.source.encode()),
        ("ce_type", event.type.encode()),
        ("ce_time", _iso(event.time).encode()),
        ("content-type", CONTENT_TYPE.encode()),
    ]
    if event.subject is not None:
        headers.append(("ce_subject", event.subject.encode()))
    if event.actor is not None:
        headers.append(("ce_actor", event.actor.encode()))
    if event.traceparent:
        headers.append(("traceparent", event.traceparent.encode()))
    if event.tracestate:
        headers.append(("tracestate", event.tracestate.encode()))
    for k, v in event.extra_headers.items():
        headers.append((k, v.encode()))
    value = event.data.model_dump_json(by_alias=True).encode()
    key = event.key.encode() if event.key is not None else None
    return KafkaRecord(topic=topic_prefix + event.topic, key=key, value=value, headers=headers)


def _derive_id(topic: str, data: Payload, value: bytes) -> str:
    """A deterministic id for a plain-JSON message: from its records' request ids."""
    records = getattr(data, "records", None)
    return derived_id(topic, [str(r.request_id) for r in records] if records else None, value)


def derived_id(topic: str, request_ids: Sequence[str] | None, value: bytes) -> str:
    """The id of a plain-JSON message without ``ce_id``: from its records' request ids, else its value.

    Decoders that read records without building the payload model use it to
    give the same message the same id.
    """
    h = hashlib.sha256(topic.encode())
    if request_ids:
        h.update("\x00".join(request_ids).encode())
    else:
        h.update(value)
    # uuid.uuid5(_DERIVED_NAMESPACE, hexdigest) spelled out: the same id without building a UUID
    # object, which costs more than the hashing on a one-record message.
    b = bytearray(hashlib.sha1(_DERIVED_NAMESPACE_BYTES + h.hexdigest().encode()).digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x50
    b[8] = (b[8] & 0x3F) | 0x80
    x = b.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def decode(
    topic: str,
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...] | None,
    *,
    spec: TopicSpec | None = None,
    partition: int | None = None,
    offset: int | None = None,
) -> Event[Any]:
    """Turn a Kafka record of logical topic ``topic`` into an :class:`Event`.

    ``partition`` and ``offset`` (where a consumer read it) are set on the
    event directly: the same as ``with_position`` without building the event
    twice, which a consumer pays per record.
    Raises a subclass of :class:`EnvelopeError` naming what is wrong.
    """
    spec = spec or spec_for(topic)
    hdrs: dict[str, str] = {}
    try:
        for k, v in headers or ():
            hdrs[k] = v.decode() if isinstance(v, bytes | bytearray) else str(v)
    except UnicodeDecodeError as exc:
        raise UndecodableMessage(f"a header is not UTF-8: {exc}") from exc
    if value is None:
        raise UndecodableMessage("empty value (tombstone) where an event was expected")
    ce_type = hdrs.get("ce_type")
    if ce_type is None:
        if not spec.external:
            raise UndecodableMessage("missing ce_type header: not a CloudEvent")
        ce_type = spec.event_type
    elif not spec.accepts_type(ce_type):
        raise UnknownEventType(f"unknown event type {ce_type!r} on {topic} (expected {spec.event_type})")
    try:
        data = spec.payload.model_validate_json(value)
    except pydantic.ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise UndecodableMessage(f"value is not valid JSON: {exc.errors()[0]['msg']}") from exc
        raise InvalidPayload(_summarise(exc)) from exc
    except UnicodeDecodeError as exc:
        raise UndecodableMessage("value is not UTF-8") from exc
    ce_id = hdrs.get("ce_id")
    if ce_id is None:
        if not spec.external:
            raise UndecodableMessage("missing ce_id header")
        ce_id = _derive_id(topic, data, value)
    time_s = hdrs.get("ce_time")
    try:
        at = datetime.fromisoformat(time_s.replace("Z", "+00:00")) if time_s else datetime.now(UTC)
    except ValueError as exc:
        raise UndecodableMessage(f"ce_time is not an RFC 3339 timestamp: {time_s!r}") from exc
    return Event(
        id=ce_id,
        type=ce_type,
        source=hdrs.get("ce_source", "/external"),
        time=at,
        topic=topic,
        data=data,
        subject=hdrs.get("ce_subject"),
        actor=hdrs.get("ce_actor"),
        key=key.decode(errors="replace") if key is not None else None,
        traceparent=hdrs.get("traceparent"),
        tracestate=hdrs.get("tracestate"),
        partition=partition,
        offset=offset,
        extra_headers={k: v for k, v in hdrs.items() if k not in _KNOWN_HEADERS},
    )


# Headers that become Event attributes; any other header is kept in ``extra_headers``.
_KNOWN_HEADERS = frozenset({
    "ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_subject", "ce_actor",
    "content-type", "traceparent", "tracestate",
})


def _summarise(exc: pydantic.ValidationError, limit: int = 5) -> str:
    parts = []
    for e in exc.errors()[:limit]:
        loc = ".".join(str(x) for x in e["loc"]) or "(root)"
        parts.append(f"{loc}: {e['msg']}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"... and {more} more")
    return "invalid payload: " + "; ".join(parts)
