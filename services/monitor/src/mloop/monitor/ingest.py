"""``prediction-logged`` messages decoded straight into columns.

The monitor's hot path. A raw Kafka record (value bytes, headers, partition,
offset) becomes a :class:`PredictionMessage` whose records are already
columns: request ids, versions, event times (a float array), feature
mappings, predictions, error flags. Nothing builds a model object per record.

The whole message is validated by one typed msgspec decode (types, lengths,
the model-name pattern, ``latency_ms >= 0``; the same rules as
``PredictionRecord``), then per column (every timestamp resolvable to an
instant). A message that breaks any rule raises an ``EnvelopeError`` whose
reason names the record and the field; the consumer dead-letters it and
carries on. Headers follow the envelope's rules: plain JSON from outside is
accepted (its id derived from its request ids, as the envelope derives it),
CloudEvents headers must name the topic's event type.

The functions here take plain values, not a consumer framework's record:
:func:`decode_prediction_message` is what any consumer calls.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from typing import Annotated, Any

import msgspec
import numpy as np
import numpy.typing as npt

from mloop.contracts.envelope import InvalidPayload, UndecodableMessage, UnknownEventType, derived_id
from mloop.contracts.payloads import (
    MAX_ERROR_LENGTH,
    MAX_MODEL_NAME_LENGTH,
    MAX_RECORDS_PER_MESSAGE,
    MAX_REQUEST_ID_LENGTH,
    MAX_VERSION_LENGTH,
    MODEL_NAME_PATTERN,
)
from mloop.contracts.topics import spec_for

__all__ = ["TOPIC", "PredictionColumns", "PredictionMessage", "decode_prediction_message"]

TOPIC = "prediction-logged"

_FEATURE_TYPES = frozenset({float, int, str, bool, type(None)})


class _Record(msgspec.Struct):
    # Field for field the rules of ``PredictionRecord`` (unknown fields ignored).
    request_id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_REQUEST_ID_LENGTH)]
    version: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_VERSION_LENGTH)]
    timestamp: datetime
    # Values are checked per column after the decode: msgspec's errors would not name the feature.
    features: dict[str, Any] = {}
    prediction: float | str | list[float] | None = None
    latency_ms: Annotated[float, msgspec.Meta(ge=0)] | None = None
    error: Annotated[str, msgspec.Meta(max_length=MAX_ERROR_LENGTH)] | None = None


class _Message(msgspec.Struct):
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_MODEL_NAME_LENGTH, pattern=MODEL_NAME_PATTERN)]
    records: Annotated[list[_Record], msgspec.Meta(min_length=1)]


_DECODER = msgspec.json.Decoder(_Message)
_SPEC = spec_for(TOPIC)

FloatArray = npt.NDArray[np.float64]


@dataclass(slots=True)
class PredictionColumns:
    """Records of one model as columns, in arrival order."""

    request_ids: list[str]
    versions: list[str]
    times: list[datetime]
    """Event times as served (the prediction store keeps them)."""
    stamps: list[float]
    """The same instants as epoch seconds."""
    features: list[dict[str, Any]]
    predictions: list[Any]
    errors: list[bool]
    _timestamps: FloatArray | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def timestamps(self) -> FloatArray:
        """The event times as an array of epoch seconds (what windows count by), built on first use:
        for the batch a consumer applies, not for each of its messages."""
        if self._timestamps is None:
            self._timestamps = np.array(self.stamps, dtype=np.float64)
        return self._timestamps

    def __len__(self) -> int:
        return len(self.request_ids)

    def take(self, index: Sequence[int]) -> PredictionColumns:
        """The rows at ``index`` (in that order)."""
        return PredictionColumns(
            [self.request_ids[i] for i in index], [self.versions[i] for i in index], [self.times[i] for i in index],
            [self.stamps[i] for i in index], [self.features[i] for i in index],
            [self.predictions[i] for i in index], [self.errors[i] for i in index],
        )

    def by_version(self) -> dict[str, PredictionColumns]:
        """The rows split by version; one message usually carries a single one, returned as is."""
        first = self.versions[0]
        if self.versions.count(first) == len(self.versions):
            return {first: self}
        index: dict[str, list[int]] = {}
        for i, v in enumerate(self.versions):
            index.setdefault(v, []).append(i)
        return {v: self.take(ix) for v, ix in index.items()}

    @classmethod
    def concat(cls, parts: Sequence[PredictionColumns]) -> PredictionColumns:
        if len(parts) == 1:
            return parts[0]
        out = cls([], [], [], [], [], [], [])
        for p in parts:
            out.request_ids += p.request_ids
            out.versions += p.versions
            out.times += p.times
            out.stamps += p.stamps
            out.features += p.features
            out.predictions += p.predictions
            out.errors += p.errors
        return out


@dataclass
class PredictionMessage:
    """One decoded ``prediction-logged`` message and where it was read from."""

    model: str
    columns: PredictionColumns
    partition: int
    offset: int
    ce_id: str | None = None
    topic: str = TOPIC
    spread: bool = False
    """Keyed by something other than the model's name: the model's traffic is spread over every partition."""

    @property
    def id(self) -> str:
        """The event id: the CloudEvents ``ce_id``, or for plain JSON the one the envelope derives
        from the request ids (computed when asked: the monitor applies predictions by offset)."""
        return self.ce_id if self.ce_id is not None else derived_id(TOPIC, self.columns.request_ids, b"")


def decode_prediction_message(
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]] | None,
    *,
    partition: int,
    offset: int,
) -> PredictionMessage:
    """Decode and validate one ``prediction-logged`` record into columns.

    Raises ``UndecodableMessage`` (not JSON, bad headers, tombstone),
    ``UnknownEventType`` (a CloudEvent of another type) or ``InvalidPayload``
    (a record breaks the contract; the reason names the record and field).
    """
    ce_type = ce_id = None
    for k, v in headers or ():
        if k == "ce_type" or k == "ce_id":
            try:
                text = v.decode() if isinstance(v, bytes | bytearray) else str(v)
            except UnicodeDecodeError as exc:
                raise UndecodableMessage(f"a header is not UTF-8: {exc}") from exc
            if k == "ce_type":
                ce_type = text
            else:
                ce_id = text
    if ce_type is not None and not _SPEC.accepts_type(ce_type):
        raise UnknownEventType(f"unknown event type {ce_type!r} on {TOPIC} (expected {_SPEC.event_type})")
    if value is None:
        raise UndecodableMessage("empty value (tombstone) where an event was expected")
    try:
        msg = _DECODER.decode(value)
    except msgspec.ValidationError as exc:
        raise InvalidPayload(_reason(exc)) from exc
    except msgspec.DecodeError as exc:
        msg = _decode_lenient(value, exc)
    records = msg.records
    if len(records) > MAX_RECORDS_PER_MESSAGE:
        raise InvalidPayload(f"records: at most {MAX_RECORDS_PER_MESSAGE} records per message, got {len(records)}")
    features = [r.features for r in records]
    # One C-level pass over every value's type; only a failure looks record by record.
    if not set(map(type, chain.from_iterable(map(dict.values, features)))) <= _FEATURE_TYPES:
        raise InvalidPayload(_bad_feature(features))
    request_ids = [r.request_id for r in records]
    times = [r.timestamp for r in records]
    try:
        stamps = [t.timestamp() for t in times]
    except (OverflowError, OSError, ValueError):
        stamps = []  # one naive or out-of-range time: resolved below, record by record
    if len(stamps) != len(times) or any(t.tzinfo is None for t in times):
        times = [_aware(t, i) for i, t in enumerate(times)]
        stamps = [t.timestamp() for t in times]
    return PredictionMessage(
        model=msg.model,
        columns=PredictionColumns(
            request_ids,
            [r.version for r in records],
            times,
            stamps,
            features,
            [r.prediction for r in records],
            [bool(r.error) for r in records],
        ),
        partition=partition,
        offset=offset,
        ce_id=ce_id,
    )


def _decode_lenient(value: bytes, strict_error: msgspec.DecodeError) -> _Message:
    """The rare message strict JSON refuses: NaN and infinities written as bare words.

    Serving code in Python writes them (``json.dumps`` does by default) and the
    contract counts them as invalid values, so they are read the standard
    library's way and validated by the same rules; anything else is not JSON.
    """
    try:
        raw = json.loads(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UndecodableMessage(f"value is not valid JSON: {strict_error}") from exc
    try:
        return msgspec.convert(raw, _Message)
    except msgspec.ValidationError as exc:
        raise InvalidPayload(_reason(exc)) from exc


def _aware(t: datetime, index: int) -> datetime:
    # A time without an offset is taken as UTC (servers log in UTC).
    t = t.replace(tzinfo=UTC) if t.tzinfo is None else t
    try:
        t.timestamp()
    except (OverflowError, OSError, ValueError) as exc:
        raise InvalidPayload(f"records.{index}.timestamp: not a usable instant ({exc})") from exc
    return t


def _bad_feature(features: Sequence[dict[str, Any]]) -> str:
    for i, f in enumerate(features):
        for k, v in f.items():
            if type(v) not in _FEATURE_TYPES:
                return (f"records.{i}.features.{k}: a feature value is a number, a string, a boolean or null, "
                        f"not {type(v).__name__}")
    return "records: a feature value is not a number, a string, a boolean or null"


def _reason(exc: msgspec.ValidationError) -> str:
    # msgspec says "... - at `$.records[3].request_id`"; the envelope's reasons read "records.3.request_id: ...".
    text = str(exc)
    message, sep, where = text.rpartition(" - at `")
    if not sep:
        message, where = text, "$`"
    path = where.rstrip("`").removeprefix("$").removeprefix(".")
    path = path.replace("[", ".").replace("]", "")
    missing = re.fullmatch(r"Object missing required field `(\w+)`", message)
    if missing:
        return f"{path + '.' if path else ''}{missing.group(1)}: Field required"
    return f"{path or '(root)'}: {message}"
