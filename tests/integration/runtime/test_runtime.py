"""The shared runtime against the real Kafka and Postgres."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.errors import KafkaConnectionError

from mloop.contracts.envelope import encode, new_event
from mloop.contracts.payloads import AliasChanged
from mloop.runtime import messaging
from mloop.runtime.db import apply_migrations, connect_pool, load_migrations
from mloop.runtime.errors import MigrationError
from mloop.runtime.testing import EventCollector, auth_headers, running_app

from .probe import ProbeSettings, create_probe_app

pytestmark = pytest.mark.integration


def _settings(infra: Any, **kw: Any) -> ProbeSettings:
    return ProbeSettings(**infra.settings_kwargs(**kw))


async def _effects(infra: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(infra.database_url)
    try:
        return await conn.fetch("SELECT event_id, alias, version FROM probe.probe_effects")
    finally:
        await conn.close()


async def _counts(infra: Any) -> tuple[int, int]:
    """Prediction records and messages the probe's stored-offsets consumer applied."""
    conn = await asyncpg.connect(infra.database_url)
    try:
        row = await conn.fetchrow("SELECT records, messages FROM probe.probe_counts")
        return (row["records"], row["messages"]) if row else (0, 0)
    finally:
        await conn.close()


async def _wait(predicate: Any, timeout_s: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await predicate():
        if loop.time() > deadline:
            raise TimeoutError(f"condition not met: {predicate.__name__}")
        await asyncio.sleep(0.1)


async def test_outbox_rows_of_a_rolled_back_transaction_are_never_published(infra: Any) -> None:
    settings = _settings(infra)
    app = create_probe_app(settings)
    headers = auth_headers(settings, "olga", "operator")
    async with running_app(app) as client, EventCollector(
        infra.bootstrap_servers, infra.topic_prefix, ["model-alias-changed"]
    ) as seen:
        r1 = await client.post("/aliases?fail=1", json={"model": "m", "alias": "champion", "version": "1"},
                               headers=headers)
        assert r1.status_code == 201 and r1.json()["rolled_back"] is True
        r2 = await client.post("/aliases", json={"model": "m", "alias": "champion", "version": "2"},
                               headers=headers)
        assert r2.status_code == 201
        events = await seen.wait_for("model-alias-changed", 1)
        await asyncio.sleep(1.0)
        await seen.poll(0.5)
        ids = [e.id for e in seen.of("model-alias-changed")]
        assert ids == [r2.json()["event_id"]]
        assert r1.json()["event_id"] not in ids
        assert events[0].data.version == "2"
        assert events[0].actor == "user:olga"
        assert events[0].source == "/mloop/probe"


async def test_a_relay_crash_between_publish_and_mark_sent_redelivers_and_the_inbox_drops_it(infra: Any) -> None:
    settings = _settings(infra)
    crashed = {"n": 0}

    async def crash_once(rows: Any) -> None:
        if crashed["n"] == 0:
            crashed["n"] += 1
            raise ConnectionError("relay died after publishing, before marking sent")

    app = create_probe_app(settings, after_publish=crash_once)
    headers = auth_headers(settings, "olga", "operator")
    async with running_app(app) as client, EventCollector(
        infra.bootstrap_servers, infra.topic_prefix, ["model-alias-changed"]
    ) as seen:
        r = await client.post("/aliases", json={"model": "m", "alias": "champion", "version": "7"}, headers=headers)
        assert r.status_code == 201
        event_id = r.json()["event_id"]
        # The same event reaches the topic twice ...
        await seen.wait_for("model-alias-changed", 2, where=lambda e: e.id == event_id)
        # ... but its effect happens once.
        async def applied() -> bool:
            return len(await _effects(infra)) >= 1
        await _wait(applied)
        await asyncio.sleep(1.5)
        effects = await _effects(infra)
        assert [(e["event_id"], e["version"]) for e in effects] == [(event_id, "7")]
        assert crashed["n"] == 1
        metrics = (await client.get("/metrics")).text
        assert 'mloop_events_duplicate_total{topic="model-alias-changed"} 1.0' in metrics


async def test_undecodable_and_invalid_messages_go_to_dead_letter_and_the_consumer_carries_on(infra: Any) -> None:
    settings = _settings(infra)
    app = create_probe_app(settings)
    topic = infra.topic_prefix + "model-alias-changed"
    good = new_event("model-alias-changed", AliasChanged(model="m", alias="a", version="9", seq=1), source="test")
    rec = encode(good)
    invalid_headers = [(k, v) for k, v in rec.headers if k != "ce_id"] + [("ce_id", b"invalid-1")]
    async with running_app(app), EventCollector(
        infra.bootstrap_servers, infra.topic_prefix, ["dead-letter"]
    ) as dlq:
        producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers, enable_idempotence=True, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"\x00\xffnot json at all", key=b"m", headers=rec.headers)
            await producer.send_and_wait(topic, json.dumps({"model": "m", "alias": "a"}).encode(), key=b"m",
                                         headers=invalid_headers)
            await producer.send_and_wait(topic, rec.value, key=rec.key, headers=rec.headers)
        finally:
            await producer.stop()
        letters = await dlq.wait_for("dead-letter", 2)
        reasons = sorted(e.data.reason for e in letters)
        assert any("not valid JSON" in r or "UTF-8" in r for r in reasons), reasons
        assert any("version" in r and "seq" in r for r in reasons), reasons
        raw = {e.data.error_type: base64.b64decode(e.data.value_b64) for e in letters}
        assert raw["UndecodableMessage"] == b"\x00\xffnot json at all"
        assert all(e.data.topic == "model-alias-changed" and e.data.consumer_group == "mloop-probe" for e in letters)

        async def good_applied() -> bool:
            return any(e["event_id"] == good.id for e in await _effects(infra))
        await _wait(good_applied)


async def _assigned(client: Any) -> None:
    async def consumers_assigned() -> bool:
        return bool((await client.get("/readyz")).json()["checks"].get("consumers_assigned"))
    await _wait(consumers_assigned, timeout_s=60)


def _refuse_first_dead_letter(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The broker drops the first dead letter (the connection lost mid-send); later ones go through."""
    real = messaging.publish_dead_letter
    refused: list[int] = []

    async def flaky(bound: Any, msg: Any, *args: Any, **kwargs: Any) -> None:
        if not refused:
            refused.append(msg.offset)
            raise KafkaConnectionError("connection to the broker lost while sending")
        await real(bound, msg, *args, **kwargs)

    monkeypatch.setattr(messaging, "publish_dead_letter", flaky)
    return refused


async def test_an_inbox_record_whose_dead_letter_failed_is_fetched_again_not_skipped(
    infra: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = _refuse_first_dead_letter(monkeypatch)
    topic = infra.topic_prefix + "model-alias-changed"
    events = [new_event("model-alias-changed", AliasChanged(model="m", alias=alias, version="1", seq=i), source="t")
              for i, alias in enumerate(["a", "poison", "b"], start=1)]
    async with running_app(create_probe_app(_settings(infra))) as client, EventCollector(
        infra.bootstrap_servers, infra.topic_prefix, ["dead-letter"]
    ) as dlq:
        await _assigned(client)
        producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers, enable_idempotence=True, acks="all")
        await producer.start()
        try:
            for e in events:
                rec = encode(e)
                await producer.send_and_wait(topic, rec.value, key=rec.key, headers=rec.headers, partition=0)
        finally:
            await producer.stop()

        async def both_applied() -> bool:
            return {r["alias"] for r in await _effects(infra)} == {"a", "b"}
        await _wait(both_applied)
        letters = await dlq.wait_for("dead-letter", 1)
        await dlq.poll(1.0)
    assert refused == [1]
    # The poisoned event reached dead-letter once it could be sent, exactly once; the others applied once each.
    assert [(e.data.topic, e.data.offset) for e in dlq.of("dead-letter")] == [("model-alias-changed", 1)]
    assert "poisoned alias" in letters[0].data.reason
    assert sorted(r["alias"] for r in await _effects(infra)) == ["a", "b"]


async def test_a_batch_whose_dead_letter_failed_is_fetched_again_and_its_later_records_applied(
    infra: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = _refuse_first_dead_letter(monkeypatch)
    topic = infra.topic_prefix + "prediction-logged"

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers, enable_idempotence=True, acks="all")
        await producer.start()
        try:
            batch = producer.create_batch()
            for i, model in enumerate(["m", "poison", "m"]):
                payload = {"model": model, "records": [{"request_id": f"r{i}-{j}", "version": "1",
                           "timestamp": "2026-11-26T14:00:00Z", "features": {"x": j}} for j in range(10)]}
                assert batch.append(key=model.encode(), value=json.dumps(payload).encode(), timestamp=None)
            await (await producer.send_batch(batch, topic, partition=0))
        finally:
            await producer.stop()

    async with running_app(create_probe_app(_settings(infra), batch=True)) as client, EventCollector(
        infra.bootstrap_servers, infra.topic_prefix, ["dead-letter"]
    ) as dlq:
        # Sent once the group has settled, in one producer batch: one fetch, no rebalance to seek for us.
        await _assigned(client)
        await send()

        async def both_counted() -> bool:
            return (await _counts(infra))[1] >= 2
        await _wait(both_counted)
        await dlq.wait_for("dead-letter", 1)
        await asyncio.sleep(1.0)
        await dlq.poll(0.5)
    assert refused == [1]
    assert await _counts(infra) == (20, 2)
    assert [(e.data.topic, e.data.offset) for e in dlq.of("dead-letter")] == [("prediction-logged", 1)]


async def test_migrations_apply_once_and_a_changed_checksum_is_refused(infra: Any, tmp_path: Path) -> None:
    pkg = tmp_path / "probe_migs_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "0001_first.sql").write_text("CREATE TABLE thing (id int PRIMARY KEY);")
    (pkg / "0002_second.sql").write_text("INSERT INTO thing VALUES (1);")
    sys.path.insert(0, str(tmp_path))
    try:
        pool = await connect_pool(infra.database_url, "migtest")
        try:
            first = await apply_migrations(pool, "migtest", load_migrations("probe_migs_pkg"))
            again = await apply_migrations(pool, "migtest", load_migrations("probe_migs_pkg"))
            assert first == ["probe_migs_pkg/0001_first", "probe_migs_pkg/0002_second"]
            assert again == []
            assert await pool.fetchval("SELECT count(*) FROM migtest.thing") == 1
            (pkg / "0001_first.sql").write_text("CREATE TABLE thing (id bigint PRIMARY KEY);")
            with pytest.raises(MigrationError, match=r"0001_first was changed after it was applied"):
                await apply_migrations(pool, "migtest", load_migrations("probe_migs_pkg"))
        finally:
            await pool.close()
    finally:
        sys.path.remove(str(tmp_path))


async def test_http_errors_are_problem_documents(infra: Any) -> None:
    settings = _settings(infra)
    app = create_probe_app(settings)
    async with running_app(app) as client:
        body = {"model": "m", "alias": "champion", "version": "1"}
        r = await client.post("/aliases", json=body)
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["status"] == 401 and "Bearer" in r.json()["detail"]
        r = await client.post("/aliases", json=body, headers=auth_headers(settings, "v", "viewer"))
        assert r.status_code == 403 and "operator" in r.json()["detail"]
        r = await client.post("/aliases", json={"model": "NOT VALID", "alias": "c", "version": "1"},
                              headers=auth_headers(settings, "o", "operator"))
        assert r.status_code == 422
        assert r.json()["errors"][0]["field"] == "body.model"
        assert r.json()["detail"].startswith("body.model:")
        r = await client.post("/aliases", content=b"{not json", headers={
            **auth_headers(settings, "o", "operator"), "content-type": "application/json"})
        assert r.status_code == 422 and r.json()["type"].endswith("invalid-json")
        r = await client.post("/aliases", content=b"x" * (settings.max_body_bytes + 1),
                              headers=auth_headers(settings, "o", "operator"))
        assert r.status_code == 413
        r = await client.get("/nowhere")
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"


async def test_a_repeated_idempotency_key_returns_the_first_result(infra: Any) -> None:
    settings = _settings(infra)
    app = create_probe_app(settings)
    headers = auth_headers(settings, "o", "operator", **{"Idempotency-Key": "move-1"})
    async with running_app(app) as client:
        body = {"model": "m", "alias": "champion", "version": "3"}
        first = await client.post("/aliases", json=body, headers=headers)
        second = await client.post("/aliases", json=body, headers=headers)
        assert first.status_code == second.status_code == 201
        assert second.json() == first.json()
        assert second.headers.get("idempotency-replayed") == "true"
        other = await client.post("/aliases", json={**body, "version": "4"}, headers=headers)
        assert other.status_code == 422
        async def one_effect() -> bool:
            return len(await _effects(infra)) == 1
        await _wait(one_effect)
        conn = await asyncpg.connect(infra.database_url)
        try:
            assert await conn.fetchval("SELECT seq FROM probe.probe_aliases") == 1
        finally:
            await conn.close()


async def test_health_readiness_metrics_and_openapi(infra: Any) -> None:
    settings = _settings(infra)
    app = create_probe_app(settings)
    async with running_app(app) as client:
        assert (await client.get("/healthz")).json()["status"] == "ok"
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["postgres"] is True and ready.json()["checks"]["kafka"] is True
        assert "mloop_service_info" in (await client.get("/metrics")).text
        assert "/aliases" in (await client.get("/openapi.json")).json()["paths"]


async def test_offsets_stored_with_state_survive_a_restart_without_double_counting(infra: Any) -> None:
    settings = _settings(infra)
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers, enable_idempotence=True, acks="all")
    await producer.start()

    async def send(n: int, start: int) -> None:
        for i in range(start, start + n):
            payload = {"model": "m", "records": [{"request_id": f"r{i}-{j}", "version": "1",
                       "timestamp": "2026-11-26T14:00:00Z", "features": {"x": j}} for j in range(10)]}
            await producer.send(infra.topic_prefix + "prediction-logged", json.dumps(payload).encode(),
                                key=b"m", partition=i % 12)
        await producer.flush()

    try:
        await send(120, 0)
        async with running_app(create_probe_app(settings, batch=True)):
            async def first_half() -> bool:
                return (await _counts(infra))[1] == 120
            await _wait(first_half)
        await send(80, 120)
        async with running_app(create_probe_app(settings, batch=True)):
            async def all_in() -> bool:
                return (await _counts(infra))[1] >= 200
            await _wait(all_in)
            await asyncio.sleep(1.0)
        assert await _counts(infra) == (2000, 200)
    finally:
        await producer.stop()


async def test_a_partition_whose_first_records_were_deleted_is_read_from_its_earliest_offset(infra: Any) -> None:
    """No stored offset means offset 0; below the log start the fetcher resets to the earliest record."""
    topic = infra.topic_prefix + "prediction-logged"
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for i in range(10):
            payload = {"model": "m", "records": [{"request_id": f"r{i}-{j}", "version": "1",
                       "timestamp": "2026-11-26T14:00:00Z", "features": {"x": j}} for j in range(10)]}
            await producer.send(topic, json.dumps(payload).encode(), key=b"m", partition=3)
        await producer.flush()
    finally:
        await producer.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.bootstrap_servers)
    await admin.start()
    try:
        low = await admin.delete_records({TopicPartition(topic, 3): RecordsToDelete(before_offset=4)})
    finally:
        await admin.close()
    assert low[TopicPartition(topic, 3)] == 4

    async with running_app(create_probe_app(_settings(infra), batch=True)):
        async def rest_counted() -> bool:
            return (await _counts(infra))[1] >= 6
        await _wait(rest_counted, timeout_s=30)
        await asyncio.sleep(1.0)
    assert await _counts(infra) == (60, 6)


async def test_a_trace_begun_by_an_http_request_continues_in_the_consumer(infra: Any, spans: Any) -> None:
    settings = _settings(infra)
    app = create_probe_app(settings)
    async with running_app(app) as client:
        spans.clear()
        r = await client.post("/aliases", json={"model": "m", "alias": "champion", "version": "5"},
                              headers=auth_headers(settings, "o", "operator"))
        assert r.status_code == 201
        async def applied() -> bool:
            return any(s.name == "model-alias-changed process" for s in spans.get_finished_spans())
        await _wait(applied)
    finished = spans.get_finished_spans()
    server = [s for s in finished if s.name.startswith("POST /aliases") and s.parent is None]
    consumer = [s for s in finished if s.name == "model-alias-changed process"]
    assert server and consumer
    assert consumer[0].context.trace_id == server[0].context.trace_id
    assert consumer[0].parent is not None


async def test_an_idempotency_key_whose_first_attempt_died_is_taken_over_after_the_timeout(infra: Any) -> None:
    from mloop.runtime.middleware import IN_PROGRESS_TIMEOUT_S

    settings = _settings(infra)
    app = create_probe_app(settings)
    headers = auth_headers(settings, "o", "operator", **{"Idempotency-Key": "died-1"})
    body = {"model": "m", "alias": "champion", "version": "8"}
    async with running_app(app) as client:
        first = await client.post("/aliases", json=body, headers=headers)
        assert first.status_code == 201
        conn = await asyncpg.connect(infra.database_url)
        try:
            # Make it look like a first attempt that never finished.
            await conn.execute("UPDATE probe.idempotency_keys SET status = NULL, body = NULL")
            busy = await client.post("/aliases", json=body, headers=headers)
            assert busy.status_code == 409 and busy.headers["retry-after"] == "1"
            assert busy.json()["type"].endswith("/idempotency-in-progress")
            await conn.execute(
                "UPDATE probe.idempotency_keys SET created_at = now() - make_interval(secs => $1)",
                IN_PROGRESS_TIMEOUT_S + 1,
            )
        finally:
            await conn.close()
        retried = await client.post("/aliases", json=body, headers=headers)
        assert retried.status_code == 201 and retried.json()["seq"] == 2
        replayed = await client.post("/aliases", json=body, headers=headers)
        assert replayed.json() == retried.json() and replayed.headers.get("idempotency-replayed") == "true"
