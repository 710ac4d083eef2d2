"""Shared helpers of the audit integration tests: realistic governance events,
a ledger prepared without Kafka, and publishing."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from mloop.audit.checkpointing import Checkpointer
from mloop.audit.settings import AuditSettings
from mloop.audit.store import ChainWriter
from mloop.contracts import payloads as p
from mloop.contracts.envelope import Event, encode, new_event
from mloop.ledger.checkpoint import generate_private_key, private_key_to_pem
from mloop.runtime.db import apply_migrations, connect_pool, load_migrations

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

LINEAGE = {
    "code": {"repo": "https://git.example.com/acme/credit", "commit": "9fceb02d0ae598e95dc970b74767f19372d61af8"},
    "dataset": {"uri": "s3://data/credit/2026-11-20.parquet", "version": "2026-11-20", "sha256": "ab" * 32},
    "features": {"version": "7", "schema": [{"name": "age", "type": "number"}]},
    "environment": {"image": "registry.example.com/train@sha256:abc", "lock_hash": "f00"},
    "params": {"C": 1.0},
}


def version_story(model: str, version: str, *, start: datetime = T0, outcome: str = "champion",
                  previous: str | None = "3") -> list[Event[Any]]:
    """Every governance event of one version, from registration to champion (or rollback), in order."""
    at = iter(start + timedelta(minutes=i) for i in range(100))
    rollout_id = f"ro-{model}-{version}"
    events: list[Event[Any]] = [
        new_event("model-registered", p.ModelRegistered(
            model=model, version=version, seq=0, artifact_uri=f"s3://models/{model}/{version}/model.pkl",
            lineage=p.Lineage.model_validate(LINEAGE), metrics={"auc": 0.91}, registered_by="user:trainer",
            created_at=start), source="registry", actor="service:trainer", at=next(at)),
        new_event("model-validated", p.ModelValidated(
            model=model, version=version, seq=1, passed=True,
            checks=[p.ValidationCheck(name="lineage-complete", passed=True),
                    p.ValidationCheck(name="not-worse-than-champion", passed=True)]),
            source="registry", actor="policy:default", at=next(at)),
        new_event("promotion-requested", p.PromotionRequested(
            model=model, version=version, seq=2, promotion_request_id=f"pr-{version}", requested_by="user:dana"),
            source="registry", actor="user:dana", at=next(at)),
        new_event("promotion-reviewed", p.PromotionReviewed(
            model=model, version=version, seq=3, promotion_request_id=f"pr-{version}", decision="approved",
            reviewer="user:rita", requested_by="user:dana", comment="metrics hold up"),
            source="registry", actor="user:rita", at=next(at)),
        new_event("model-promoted", p.ModelPromoted(
            model=model, version=version, seq=4, previous_champion=previous, requested_by="user:dana",
            approved_by=["user:rita"], promotion_request_id=f"pr-{version}"),
            source="registry", actor="user:rita", at=next(at)),
    ]

    def rollout(topic: str, payload: type[p.RolloutEvent], seq: int, phase: str, step: int, weight: float,
                reason: str = "") -> Event[Any]:
        return new_event(topic, payload(
            model=model, rollout_id=rollout_id, seq=seq, version=version, baseline_version=previous,
            strategy="canary", phase=phase, step_index=step, weight=weight, reason=reason, actor="service:rollout"),
            source="rollout", actor="service:rollout", at=next(at))

    def split(seq: int, weight: float) -> Event[Any]:
        routes = [p.Route(version=version, weight=weight)]
        if previous is not None and weight < 1.0:
            routes.insert(0, p.Route(version=previous, weight=round(1.0 - weight, 6)))
        return new_event("traffic-split-changed", p.TrafficSplitChanged(
            model=model, seq=seq, rollout_id=rollout_id, routes=routes),
            source="rollout", actor="service:rollout", at=next(at))

    events += [
        rollout("rollout-started", p.RolloutStarted, 0, "canary", 0, 0.05),
        split(10, 0.05),
        rollout("rollout-advanced", p.RolloutAdvanced, 1, "canary", 1, 0.25, "error-rate gate passed"),
        split(11, 0.25),
    ]
    if outcome == "champion":
        events += [
            rollout("rollout-completed", p.RolloutCompleted, 2, "full", 2, 1.0, "all gates passed"),
            split(12, 1.0),
            new_event("model-alias-changed", p.AliasChanged(
                model=model, alias="champion", version=version, previous_version=previous, seq=5),
                source="registry", actor="service:rollout", at=next(at)),
        ]
    else:
        events += [
            rollout("rollout-rolled-back", p.RolloutRolledBack, 2, "canary", 1, 0.0, "error rate above baseline"),
        ]
        if previous is not None:
            events.append(new_event("traffic-split-changed", p.TrafficSplitChanged(
                model=model, seq=12, rollout_id=rollout_id, routes=[p.Route(version=previous, weight=1.0)]),
                source="rollout", actor="service:rollout", at=next(at)))
    return events


def alias_events(n: int, models: int = 30, *, start: int = 0) -> list[Event[Any]]:
    """``n`` small events spread over ``models`` keys (so over every partition)."""
    return [
        new_event("model-alias-changed", p.AliasChanged(
            model=f"m{i % models}", alias="challenger", version=str(i), seq=i), source="registry",
            actor="service:registry", at=T0 + timedelta(milliseconds=i))
        for i in range(start, start + n)
    ]


async def publish(bootstrap: str, prefix: str, events: Sequence[Event[Any]]) -> None:
    """Publish with one idempotent producer, pipelined, then wait for every ack."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all",
                                linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        futures = []
        for e in events:
            rec = encode(e, topic_prefix=prefix)
            futures.append(await producer.send(rec.topic, rec.value, key=rec.key, headers=rec.headers))
        for f in futures:
            await f
    finally:
        await producer.stop()


def audit_settings(infra: Any, tmp_path: Path, **overrides: Any) -> AuditSettings:
    key = generate_private_key()
    kwargs: dict[str, Any] = dict(
        data_dir=tmp_path / "data", checkpoint_dir=tmp_path / "checkpoints",
        audit_signing_key=private_key_to_pem(key).decode(), checkpoint_interval_s=0.5,
    )
    kwargs.update(overrides)
    return AuditSettings(**infra.settings_kwargs(**kwargs))


@contextlib.asynccontextmanager
async def ledger_pool(database_url: str, schema: str = "audit") -> AsyncIterator[asyncpg.Pool]:
    """A pool on a migrated audit schema, without the service around it."""
    pool = await connect_pool(database_url, schema, min_size=1, max_size=4)
    try:
        migs = load_migrations("mloop.audit.migrations")
        await apply_migrations(pool, schema, load_migrations("mloop.runtime.migrations") + migs)
        yield pool
    finally:
        await pool.close()


def positioned(events: Sequence[Event[Any]], partition: int = 0) -> list[Event[Any]]:
    """Events as a consumer would hand them over: read from ``partition`` at increasing offsets."""
    return [e.with_position(partition, i) for i, e in enumerate(events)]


async def record(pool: asyncpg.Pool, writer: ChainWriter, events: Sequence[Event[Any]], batch: int = 50) -> None:
    for i in range(0, len(events), batch):
        async with pool.acquire() as conn, conn.transaction():
            await writer.append(conn, events[i:i + batch])


def checkpointer_for(settings: AuditSettings) -> Checkpointer:
    from mloop.audit.checkpointing import load_signing_key

    return Checkpointer(settings, load_signing_key(settings))
