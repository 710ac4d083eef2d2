"""The CloudEvents envelope and the topic registry."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from mloop.contracts.envelope import (
    InvalidPayload,
    UndecodableMessage,
    UnknownEventType,
    decode,
    encode,
    new_event,
    uuid7,
)
from mloop.contracts.payloads import MAX_RECORDS_PER_MESSAGE, ModelPromoted, TrafficSplitChanged
from mloop.contracts.schema import asyncapi_document, json_schemas, topics_markdown
from mloop.contracts.topics import SERVICES, TOPICS, audited_topics, consumed_by, produced_by

PREDICTION = {
    "model": "credit-risk",
    "records": [{"request_id": "r-000123", "version": "3", "timestamp": "2026-11-26T14:00:00.123Z",
                 "features": {"age": 41, "income": 52000.0, "region": "north"}, "prediction": 0.83,
                 "latency_ms": 4.2, "error": None}],
}


def _promoted() -> ModelPromoted:
    return ModelPromoted(model="credit-risk", version="4", seq=3, previous_champion="3", requested_by="dana",
                         approved_by=["rita"], promotion_request_id="p-1")


def test_encode_puts_cloudevents_attributes_in_headers_and_the_payload_in_the_value() -> None:
    event = new_event("model-promoted", _promoted(), source="registry", actor="user:rita")
    rec = encode(event, topic_prefix="x.")
    headers = dict(rec.headers)
    assert rec.topic == "x.model-promoted"
    assert rec.key == b"credit-risk"
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_type"] == b"dev.mloop.model-promoted.v1"
    assert headers["ce_source"] == b"/mloop/registry"
    assert headers["ce_subject"] == b"credit-risk"
    assert headers["ce_actor"] == b"user:rita"
    assert headers["content-type"] == b"application/json"
    assert json.loads(rec.value)["approved_by"] == ["rita"]


def test_decode_round_trips_an_encoded_event() -> None:
    event = new_event("model-promoted", _promoted(), source="registry", actor="user:rita")
    rec = encode(event)
    back = decode("model-promoted", rec.key, rec.value, rec.headers)
    assert back.id == event.id and back.data == event.data and back.actor == "user:rita"
    assert abs((back.time - event.time).total_seconds()) < 1e-3


def test_decode_with_a_position_is_the_event_with_that_position() -> None:
    event = new_event("model-promoted", _promoted(), source="registry", actor="user:rita")
    rec = encode(event)
    headers = [*rec.headers, ("x-origin", b"replay")]
    placed = decode("model-promoted", rec.key, rec.value, headers, partition=2, offset=41)
    assert placed == decode("model-promoted", rec.key, rec.value, headers).with_position(2, 41)
    assert (placed.partition, placed.offset) == (2, 41)
    assert placed.extra_headers == {"x-origin": "replay"}


def test_a_derived_id_is_the_uuid5_of_the_hashed_request_ids() -> None:
    import hashlib

    from mloop.contracts.envelope import _DERIVED_NAMESPACE, derived_id

    for topic, ids, value in (("prediction-logged", ["r-1", "r-2"], b"{}"), ("ground-truth-logged", None, b"{x}"),
                              ("prediction-logged", ["\u00e9t\u00e9-1"], b"")):
        h = hashlib.sha256(topic.encode())
        h.update("\x00".join(ids).encode() if ids else value)
        assert derived_id(topic, ids, value) == str(uuid.uuid5(_DERIVED_NAMESPACE, h.hexdigest()))


def test_uuid7_is_version_7_and_time_ordered() -> None:
    ids = [uuid7() for _ in range(50)]
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert [i[:13] for i in ids] == sorted(i[:13] for i in ids)


def test_plain_json_predictions_are_accepted_with_an_id_derived_from_request_ids() -> None:
    raw = json.dumps(PREDICTION).encode()
    a = decode("prediction-logged", None, raw, [])
    b = decode("prediction-logged", None, raw, None)
    assert a.id == b.id
    assert a.type == "dev.mloop.prediction-logged.v1"
    other = dict(PREDICTION, records=[dict(PREDICTION["records"][0], request_id="r-000124")])
    assert decode("prediction-logged", None, json.dumps(other).encode(), []).id != a.id


def test_governance_topics_require_cloudevents_headers() -> None:
    rec = encode(new_event("model-promoted", _promoted(), source="registry"))
    with pytest.raises(UndecodableMessage, match="ce_type"):
        decode("model-promoted", rec.key, rec.value, [])


@pytest.mark.parametrize(
    ("value", "error", "needle"),
    [
        (b"\xff\xfe garbage", UndecodableMessage, "JSON"),
        (b"[1, 2", UndecodableMessage, "JSON"),
        (json.dumps({"model": "m"}).encode(), InvalidPayload, "records"),
        (json.dumps({"model": "bad name!", "records": PREDICTION["records"]}).encode(), InvalidPayload, "model"),
    ],
)
def test_bad_messages_raise_an_envelope_error_with_a_reason(value: bytes, error: type, needle: str) -> None:
    with pytest.raises(error) as info:
        decode("prediction-logged", None, value, [])
    assert needle in info.value.reason


def test_an_unknown_event_version_is_refused() -> None:
    with pytest.raises(UnknownEventType, match="v9"):
        decode("prediction-logged", None, json.dumps(PREDICTION).encode(),
               [("ce_type", b"dev.mloop.prediction-logged.v9"), ("ce_id", b"x")])


def test_a_batch_larger_than_the_cap_is_invalid() -> None:
    rec = PREDICTION["records"][0]
    big = {"model": "m", "records": [dict(rec, request_id=f"r{i}") for i in range(MAX_RECORDS_PER_MESSAGE + 1)]}
    with pytest.raises(InvalidPayload, match="records"):
        decode("prediction-logged", None, json.dumps(big).encode(), [])


def test_traffic_split_weights_of_serving_routes_must_sum_to_one() -> None:
    TrafficSplitChanged(model="m", seq=1, routes=[{"version": "1", "weight": 0.95},
                                                   {"version": "2", "weight": 0.05},
                                                   {"version": "3", "weight": 0.0, "shadow": True}])
    with pytest.raises(ValueError, match="sum to 1"):
        TrafficSplitChanged(model="m", seq=1, routes=[{"version": "1", "weight": 0.9}])


def test_the_registry_covers_the_design_topics_with_their_properties() -> None:
    for name in ["prediction-logged", "ground-truth-logged", "model-registered", "model-validated",
                 "promotion-requested", "promotion-reviewed", "model-promoted", "traffic-split-changed",
                 "rollout-started", "rollout-advanced", "rollout-paused", "rollout-resumed",
                 "rollout-completed", "rollout-rolled-back", "drift-detected", "performance-degraded",
                 "data-quality-violated", "retrain-requested", "retrain-completed", "retrain-failed",
                 "dead-letter"]:
        assert name in TOPICS
    assert TOPICS["prediction-logged"].partitions == 12
    assert TOPICS["traffic-split-changed"].config["cleanup.policy"] == "compact"
    audited = {s.name for s in audited_topics()}
    assert "dead-letter" in audited and "prediction-logged" not in audited and "ground-truth-logged" not in audited
    assert {s.name for s in produced_by("registry")} >= {"model-registered", "model-promoted"}
    assert {s.name for s in consumed_by("rollout")} >= {"model-promoted", "prediction-logged"}


def test_every_service_gets_an_asyncapi_document_and_every_event_a_json_schema() -> None:
    schemas = json_schemas()
    assert set(schemas) == {s.event_type for s in TOPICS.values()}
    for svc in SERVICES:
        doc = asyncapi_document(svc)
        assert doc["asyncapi"].startswith("3.")
        for op in doc["operations"].values():
            assert op["channel"]["$ref"].removeprefix("#/channels/") in doc["channels"]
    assert "| `traffic-split-changed` |" in topics_markdown()


def test_event_time_is_rfc3339_utc() -> None:
    at = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)
    rec = encode(new_event("model-promoted", _promoted(), source="registry", at=at))
    assert dict(rec.headers)["ce_time"] == b"2026-11-26T14:00:00Z"
