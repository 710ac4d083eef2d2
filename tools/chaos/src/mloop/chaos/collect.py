"""Collects a settled run's :class:`~mloop.chaos.history.History`.

State comes from the services' APIs and the topics, read from the beginning;
facts that only storage holds (unsent outbox rows, a rollout's next due
analysis, a job's lease, labelled rows of the prediction store) come from
Postgres through a read-only session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from mloop.chaos.history import FaultRecord, History
from mloop.chaos.workload import LoopOutcome
from mloop.client import MloopClient
from mloop.contracts.envelope import EnvelopeError, decode
from mloop.contracts.topics import TOPICS, audited_topics

__all__ = ["SCHEMAS", "collect", "read_topics", "settle"]

#: The services' database schemas (one per service).
SCHEMAS: tuple[str, ...] = ("registry", "rollout", "monitor", "retrain_scheduler", "audit")
_TERMINAL_JOB = ("completed", "failed", "timed-out", "cancelled")


def _ts(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value)).timestamp()


async def read_topics(bootstrap: str, topics: Iterable[str], *, timeout_s: float = 30.0) -> list[tuple[str, Any]]:
    """Every record of ``topics`` from the beginning to their current end: ``(topic, consumer record)``."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                isolation_level="read_committed")
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in _partitions(t)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[tuple[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                break
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                out += [(tp.topic, r) for r in records if r.offset < ends[tp]]
        return out
    finally:
        await consumer.stop()


async def end_offsets(bootstrap: str, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """The current end offset of every partition of ``topics``."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                isolation_level="read_committed")
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in _partitions(t)]
        return {(tp.topic, tp.partition): int(end) for tp, end in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


def _event_id(topic: str, rec: Any) -> str | None:
    try:
        return decode(topic, rec.key, rec.value, rec.headers).id
    except EnvelopeError:
        return None


def _partitions(topic: str) -> range:
    """The partitions of a registry topic, as the platform created them."""
    return range(TOPICS[topic].partitions)


async def _readonly(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(url, server_settings={"default_transaction_read_only": "on"})


async def stored_offsets(conn: asyncpg.Connection, bootstrap: str) -> list[dict[str, Any]]:
    """Offsets stored with state (the monitor's applied offsets, every service's stored consumer
    offsets) against the end of each partition of their topics."""
    stored: dict[tuple[str, str], dict[int, int]] = {}
    for r in await conn.fetch("SELECT topic, partition, next_offset FROM monitor.applied_offsets"):
        stored.setdefault(("monitor/applied", str(r["topic"])), {})[r["partition"]] = int(r["next_offset"])
    for schema in SCHEMAS:
        for r in await conn.fetch(
                f'SELECT consumer_group, topic, partition, next_offset FROM "{schema}".consumer_offsets'):
            group = (f"{schema}/{r['consumer_group']}", str(r["topic"]))
            stored.setdefault(group, {})[r["partition"]] = int(r["next_offset"])
    for topic in ("prediction-logged", "ground-truth-logged"):
        stored.setdefault(("monitor/applied", topic), {})
    ends = await end_offsets(bootstrap, sorted({t for _, t in stored}))
    out: list[dict[str, Any]] = []
    for (consumer, topic), applied in sorted(stored.items()):
        for (t, partition), end in sorted(ends.items()):
            if t == topic:
                out.append({"consumer": consumer, "topic": topic, "partition": partition,
                            "applied": applied.get(partition, 0), "end": end})
    return out


async def settle(api: MloopClient, database_url: str, bootstrap: str, model: str, delivered: int, *,
                 timeout_s: float = 90.0) -> float:
    """Wait until the platform is quiet: outboxes empty, the monitor has counted ``delivered``
    records, every consumer storing its offsets has reached its topics' end, and every event on
    the audited topics is in the ledger. Returns the seconds waited;
    after ``timeout_s`` it returns anyway (the checker then says what did not settle).
    """
    began = time.monotonic()
    audited = [s.name for s in audited_topics()]
    while time.monotonic() - began < timeout_s:
        try:
            conn = await _readonly(database_url)
            try:
                unsent = sum([await conn.fetchval(f'SELECT count(*) FROM "{s}".outbox WHERE sent_at IS NULL')
                              for s in SCHEMAS])
                recorded = {r["event_id"] for r in await conn.fetch("SELECT event_id FROM audit.ledger")}
                lagging = [o for o in await stored_offsets(conn, bootstrap) if o["applied"] != o["end"]]
            finally:
                await conn.close()
            status = await api.monitor.status(model)
            seen = sum(int(v["predictions_seen"]) for v in status["versions"])
            if unsent == 0 and seen >= delivered and not lagging:
                produced = {_event_id(t, r) for t, r in await read_topics(bootstrap, audited)} - {None}
                if produced <= recorded:
                    return time.monotonic() - began
        except Exception:  # a service or the database still recovering: look again
            pass
        await asyncio.sleep(1.0)
    return time.monotonic() - began


async def collect(
    api: MloopClient,
    *,
    bootstrap: str,
    database_url: str,
    loop: LoopOutcome,
    faults: list[FaultRecord],
    seed: int,
    started_at: float,
    work_dir: Path,
) -> History:
    """The run's history, read after :func:`settle`; ``api`` acts as an operator."""
    model = loop.model
    h = History(seed=seed, model=model, started_at=started_at, collected_at=time.time(), faults=list(faults),
                candidate=loop.candidate, outcome=loop.outcome)
    pl = loop.simulator.get("predictions_logger", {})
    gl = loop.simulator.get("ground_truth_logger", {})
    h.sdk = {"predictions_delivered": int(pl.get("delivered", -1)), "predictions_dropped": int(pl.get("dropped", 0)),
             "labels_delivered": int(gl.get("delivered", -1)), "labels_dropped": int(gl.get("dropped", 0))}
    status = await api.monitor.status(model)
    h.monitor = [{"version": v["version"], "predictions_seen": v["predictions_seen"],
                  "labels_joined": v["labels_joined"]} for v in status["versions"]]

    # ---- the topics: audited events produced, and the routing table on the compacted topic
    audited = [s.name for s in audited_topics()]  # the dead-letter topic included: the ledger records it too
    routing_topic = TOPICS["traffic-split-changed"].name
    for topic, rec in await read_topics(bootstrap, sorted({*audited, routing_topic})):
        try:
            event = decode(topic, rec.key, rec.value, rec.headers)
        except EnvelopeError:
            continue
        if topic == "dead-letter":
            d = event.data
            h.dead_letters.append({"topic": d.topic, "partition": d.partition, "offset": d.offset,
                                   "reason": d.reason, "service": d.service, "at": event.time.timestamp()})
        if topic == routing_topic:
            data = event.data
            h.routing_topic[data.model] = [r.model_dump() for r in data.routes]
        if topic in audited:
            h.produced.append({"id": event.id, "topic": topic, "at": event.time.timestamp(),
                               "model": getattr(event.data, "model", None)})

    # ---- the ledger
    await api.audit.sign_checkpoints()
    h.ledger = [{"event_id": r["event_id"], "topic": r["topic"], "at": _ts(r["recorded_at"])}
                for r in await api.audit.records(limit=None)]
    verify = await api.audit.verify()
    chains = await api.audit.chains()
    items = chains.get("items", chains) if isinstance(chains, dict) else chains
    h.audit = {"verify_ok": bool(verify.get("ok")), "verify": verify,
               "chains": [{"chain": c["chain"], "size": c["size"], "signed_size": c.get("signed_size")} for c in items]}
    bundle = await api.audit.export(work_dir / "evidence.tar.gz")
    key = await api.audit.public_key()
    from mloop.ledger.checkpoint import load_public_key
    from mloop.ledger.verify import verify_bundle

    report = await asyncio.to_thread(verify_bundle, bundle, load_public_key(key["base64"]))
    h.audit["bundle_ok"] = bool(report.ok)
    h.audit["bundle"] = {"ok": bool(report.ok), "path": str(bundle)}

    # ---- the registry
    h.versions = [{"version": v["version"], "created_at": _ts(v.get("created_at"))}
                  for v in await api.registry.list_versions(model)]
    h.promotions = [{"id": p["id"], "version": p["version"], "requested_by": p["requested_by"],
                     "status": p["status"], "approvers": list(p.get("approved_by", [])), "at": _ts(p["created_at"])}
                    for p in await api.registry.list_promotion_requests(model=model)]
    h.champion = await api.registry.champion(model)
    h.champion_moves = [{"version": m["version"], "at": _ts(m["at"]), "actor": m["actor"]}
                        for m in await api.registry.alias_history(model) if m["alias"] == "champion"]

    # ---- rollouts and the routing table the rollout service holds
    rollouts = await api.rollout.list_rollouts(model=model)
    traffic = await api.rollout.traffic(model)
    h.routing_service[model] = list(traffic["routes"])

    conn = await _readonly(database_url)
    try:
        due = {r["id"]: _ts(r["next_analysis_at"])
               for r in await conn.fetch("SELECT id, next_analysis_at FROM rollout.rollouts WHERE model = $1", model)}
        h.rollouts = [{"id": r["id"], "candidate": r["candidate"], "phase": r["phase"],
                       "created_at": _ts(r["created_at"]), "finished_at": _ts(r.get("finished_at")),
                       "next_analysis_at": due.get(r["id"])} for r in rollouts]
        for j in await conn.fetch("SELECT * FROM retrain_scheduler.jobs WHERE model = $1", model):
            h.jobs.append({"id": j["id"], "state": j["state"], "delivery": j["delivery"],
                           "next_attempt_at": _ts(j["next_attempt_at"]), "updated_at": _ts(j["updated_at"]),
                           "lease_until": _lease(dict(j))})
        for schema in SCHEMAS:
            row = await conn.fetchrow(
                f'SELECT count(*) AS n, min(created_at) AS oldest FROM "{schema}".outbox WHERE sent_at IS NULL')
            h.outboxes.append({"schema": schema, "unsent": int(row["n"]), "oldest_unsent_at": _ts(row["oldest"])})
        h.consumer_offsets = await stored_offsets(conn, bootstrap)
        # Which prediction messages on the topic left no row in the monitor's prediction store
        # (written in the transaction that counts them): the records lost between broker and monitor.
        stored_ids = {r["request_id"] for r in await conn.fetch(
            "SELECT request_id FROM monitor.predictions WHERE model = $1", model)}
        on_topic = 0
        for topic, rec in await read_topics(bootstrap, ["prediction-logged"], timeout_s=120):
            try:
                event = decode(topic, rec.key, rec.value, rec.headers)
            except EnvelopeError:
                continue
            if event.data.model != model:
                continue
            ids = [r.request_id for r in event.data.records]
            on_topic += len(ids)
            missing = [i for i in ids if i not in stored_ids]
            if missing:
                h.lost_messages.append({"partition": rec.partition, "offset": rec.offset,
                                        "at": rec.timestamp / 1000.0, "records": len(ids),
                                        "not_stored": len(missing), "first_request_id": missing[0]})
        h.sdk["predictions_on_topic"] = on_topic
        h.labelled_rows = int(await conn.fetchval(
            "SELECT count(*) FROM monitor.predictions WHERE model = $1 AND label IS NOT NULL", model))
    finally:
        await conn.close()
    h.collected_at = time.time()
    return h


def _lease(job: dict[str, Any]) -> float | None:
    """Until when a non-terminal job may legitimately stay where it is."""
    if job["state"] in _TERMINAL_JOB:
        return None
    if job["delivery"] == "pending":
        return _ts(job["next_attempt_at"])
    policy = job["policy"] if isinstance(job["policy"], dict) else json.loads(job["policy"])
    if job["state"] in ("dispatched", "running") and job["dispatched_at"] is not None:
        from datetime import timedelta

        timeout = _duration(policy.get("job_timeout"))
        return float((job["dispatched_at"] + timedelta(seconds=timeout)).timestamp()) if timeout else None
    if job["state"] == "requested":
        waits = _duration((policy.get("post_signal_data") or {}).get("max_wait"))
        start = job["dispatch_not_before"] or job["requested_at"]
        return float(start.timestamp()) + (waits or 0)
    return None  # awaiting-confirmation waits for a person


def _duration(value: Any) -> float | None:
    """Seconds of an ISO 8601 duration as pydantic dumps a timedelta (``PT300S``) or a number."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    with contextlib.suppress(ValueError):
        from datetime import timedelta

        from pydantic import TypeAdapter

        return float(TypeAdapter(timedelta).validate_python(value).total_seconds())
    return None
