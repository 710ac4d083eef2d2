"""The columnar decoder of ``prediction-logged`` agrees with the contract's models, and names what is wrong."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mloop.contracts.envelope import InvalidPayload, UndecodableMessage, UnknownEventType, decode, encode, new_event
from mloop.contracts.payloads import MAX_RECORDS_PER_MESSAGE, PredictionLogged
from mloop.monitor.ingest import PredictionColumns, decode_prediction_message

TS = "2026-11-26T12:00:00.250Z"


def _value(records: list[dict[str, Any]], model: str = "fraud") -> bytes:
    return json.dumps({"model": model, "records": records}).encode()


def _rec(i: int, **over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"request_id": f"r-{i}", "version": "1" if i % 3 else "2", "timestamp": TS,
                           "features": {"age": 30 + i, "income": 1.5 * i, "region": "north", "vip": i % 2 == 0,
                                        "gap": None},
                           "prediction": 0.25 * i, "latency_ms": 1.0, "error": "timeout" if i == 4 else None}
    rec.update(over)
    return rec


def test_columns_hold_what_the_contract_model_reads_and_the_same_message_id() -> None:
    records = [_rec(i) for i in range(7)] + [_rec(7, prediction="yes"), _rec(8, prediction=[0.1, 0.9]),
                                             _rec(9, timestamp="2026-11-26T13:00:00+01:00", prediction=1)]
    value = _value(records)
    msg = decode_prediction_message(value, None, partition=3, offset=41)
    event = decode("prediction-logged", None, value, None)
    model = event.data
    assert (msg.id, msg.model, msg.partition, msg.offset) == (event.id, "fraud", 3, 41)
    cols = msg.columns
    assert cols.request_ids == [r.request_id for r in model.records]
    assert cols.versions == [r.version for r in model.records]
    assert cols.timestamps.tolist() == [r.timestamp.timestamp() for r in model.records]
    assert cols.features == [r.features for r in model.records]
    assert cols.predictions == [r.prediction for r in model.records]
    assert cols.errors == [bool(r.error) for r in model.records]


def test_rows_split_by_version_keep_their_order_and_concatenate_back() -> None:
    cols = decode_prediction_message(_value([_rec(i) for i in range(10)]), None, partition=0, offset=0).columns
    parts = cols.by_version()
    assert sorted(parts) == ["1", "2"]
    assert parts["2"].request_ids == ["r-0", "r-3", "r-6", "r-9"]
    assert parts["2"].timestamps.size == 4
    joined = PredictionColumns.concat([parts["1"], parts["2"]])
    assert sorted(joined.request_ids) == sorted(cols.request_ids)
    single = decode_prediction_message(_value([_rec(1), _rec(2)]), None, partition=0, offset=0).columns
    assert single.by_version() == {"1": single}


def test_nan_and_infinities_written_as_bare_words_are_read_as_values_to_count() -> None:
    value = json.dumps({"model": "fraud", "records": [_rec(1, features={"x": float("nan"), "y": float("-inf")}),
                                                      _rec(2)]}).encode()
    assert b"NaN" in value
    msg = decode_prediction_message(value, None, partition=0, offset=0)
    x, y = msg.columns.features[0]["x"], msg.columns.features[0]["y"]
    assert x != x and y == float("-inf")
    assert msg.id == decode("prediction-logged", None, value, None).id
    with pytest.raises(InvalidPayload, match=r"records\.0\.request_id"):
        decode_prediction_message(value.replace(b'"r-1"', b"17"), None, partition=0, offset=0)


def test_a_time_without_offset_is_utc() -> None:
    msg = decode_prediction_message(_value([_rec(1, timestamp="2026-11-26T12:00:00")]), None, partition=0, offset=0)
    assert msg.columns.timestamps[0] == 1795694400.0
    assert msg.columns.times[0].utcoffset() is not None


def test_cloudevents_headers_give_the_id_and_another_event_type_is_refused() -> None:
    payload = PredictionLogged.model_validate_json(_value([_rec(1)]))
    rec = encode(new_event("prediction-logged", payload, source="serving"))
    msg = decode_prediction_message(rec.value, rec.headers, partition=0, offset=0)
    assert msg.id == decode("prediction-logged", rec.key, rec.value, rec.headers).id
    wrong = [(k, b"dev.mloop.model-registered.v1" if k == "ce_type" else v) for k, v in rec.headers]
    with pytest.raises(UnknownEventType, match="model-registered"):
        decode_prediction_message(rec.value, wrong, partition=0, offset=0)


@pytest.mark.parametrize(("value", "error", "reason"), [
    (b"\x00\xffnot json", UndecodableMessage, "not valid JSON"),
    (None, UndecodableMessage, "tombstone"),
    (_value([{"request_id": "a", "timestamp": TS}]), InvalidPayload, "records.0.version: Field required"),
    (_value([_rec(1), _rec(2, features={"age": [1, 2]})]), InvalidPayload, "records.1.features.age"),
    (_value([_rec(1, features={"nested": {"a": 1}})]), InvalidPayload, "records.0.features.nested"),
    (_value([_rec(1, request_id="")]), InvalidPayload, "records.0.request_id"),
    (_value([_rec(1, request_id="x" * 257)]), InvalidPayload, "records.0.request_id"),
    (_value([_rec(1, version="v" * 65)]), InvalidPayload, "records.0.version"),
    (_value([_rec(1, timestamp="yesterday")]), InvalidPayload, "records.0.timestamp"),
    (_value([_rec(1, latency_ms=-1)]), InvalidPayload, "records.0.latency_ms"),
    (_value([_rec(1, error="e" * 129)]), InvalidPayload, "records.0.error"),
    (_value([_rec(1, prediction={"p": 1})]), InvalidPayload, "records.0.prediction"),
    (_value([_rec(1)], model="no spaces allowed"), InvalidPayload, "model"),
    (_value([]), InvalidPayload, "records"),
    (_value([{"request_id": f"h{i}", "version": "1", "timestamp": TS} for i in range(MAX_RECORDS_PER_MESSAGE + 1)]),
     InvalidPayload, f"at most {MAX_RECORDS_PER_MESSAGE} records"),
])
def test_a_bad_message_is_refused_with_a_reason_naming_the_record_and_field(
        value: bytes | None, error: type[Exception], reason: str) -> None:
    with pytest.raises(error, match=reason.replace(".", r"\.")):
        decode_prediction_message(value, None, partition=0, offset=0)
    if value is not None and error is InvalidPayload:
        # The contract's own model refuses the same messages.
        with pytest.raises(Exception):  # noqa: B017 - the envelope's error types differ by case
            decode("prediction-logged", None, value, None)
