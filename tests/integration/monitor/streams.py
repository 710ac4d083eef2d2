"""Synthetic traffic and the helpers the monitor's integration tests share."""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np
from aiokafka import AIOKafkaProducer

from mloop.contracts.envelope import encode, new_event
from mloop.contracts.payloads import CodeRef, FeatureSchema, FeatureSpec, Lineage, ModelRegistered
from mloop.stats.profile import ReferenceProfile

# Yesterday noon: recent enough that the prediction store's retention (7 days)
# never prunes a stream, aligned to whole hours like the windows.
T0 = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=1)
NUMERIC = ["age", "income", "score", "tenure"]


def table(rng: np.random.Generator, n: int, shift: float = 0.0) -> dict[str, list[Any]]:
    """Columns of ``n`` rows; ``shift`` moves ``income`` by that many standard deviations."""
    cols: dict[str, list[Any]] = {
        "age": rng.normal(40, 10, n).round(1).tolist(),
        "income": (rng.normal(50_000, 12_000, n) + shift * 12_000).round(2).tolist(),
        "score": rng.uniform(0, 1, n).tolist(),
        "tenure": rng.poisson(5, n).astype(float).tolist(),
        "region": rng.choice(["north", "south", "east", "west"], n, p=[0.4, 0.3, 0.2, 0.1]).tolist(),
    }
    return cols


def predictions_of(cols: dict[str, list[Any]]) -> list[float]:
    return [1 / (1 + math.exp(-(a - 40) / 10)) for a in cols["age"]]


def reference_profile(seed: int = 7, n: int = 5000) -> ReferenceProfile:
    rng = np.random.default_rng(seed)
    cols = table(rng, n)
    return ReferenceProfile.from_columns(
        {k: np.asarray(v, dtype=object if k == "region" else np.float64) for k, v in cols.items()},
        {"region": "categorical"},
        prediction=np.asarray(predictions_of(cols)),
    )


def registration(model: str, version: str, *, profile: ReferenceProfile | None, seq: int = 1,
                 metrics: dict[str, float] | None = None) -> ModelRegistered:
    schema = [FeatureSpec(name=n, type="number") for n in NUMERIC] + [FeatureSpec(name="region", type="category")]
    return ModelRegistered(
        model=model, version=version, seq=seq, artifact_uri=f"s3://models/{model}/{version}",
        lineage=Lineage(code=CodeRef(repo="https://git.example.com/acme/credit", commit="9fceb02d"),
                        features=FeatureSchema(version="1", schema=schema)),
        metrics=metrics or {"auc": 0.9, "accuracy": 0.85},
        training_profile=profile.to_dict() if profile is not None else None,
        registered_by="user:trainer", created_at=T0,
    )


def records(rng: np.random.Generator, n: int, *, version: str, start: int, shift: float = 0.0,
            prefix: str = "r") -> list[dict[str, Any]]:
    cols = table(rng, n, shift)
    preds = predictions_of(cols)
    return [
        {"request_id": f"{prefix}-{start + i:07d}", "version": version,
         "timestamp": (T0 + timedelta(seconds=start + i)).isoformat().replace("+00:00", "Z"),
         "features": {k: cols[k][i] for k in cols}, "prediction": preds[i]}
        for i in range(n)
    ]


class Traffic:
    """A producer of plain-JSON prediction messages, keyed by model (one partition per model)."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.prefix = prefix
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all",
                                         max_request_size=16 * 1024 * 1024, linger_ms=5)

    async def __aenter__(self) -> Traffic:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def raw(self, topic: str, value: bytes, key: bytes | None = b"m",
                  headers: list[tuple[str, bytes]] | None = None) -> None:
        await self.producer.send_and_wait(self.prefix + topic, value, key=key, headers=headers or [])

    async def predictions(self, model: str, recs: list[dict[str, Any]], per_message: int = 100) -> None:
        for i in range(0, len(recs), per_message):
            body = json.dumps({"model": model, "records": recs[i:i + per_message]}).encode()
            await self.producer.send(self.prefix + "prediction-logged", body, key=model.encode())
        await self.producer.flush()

    async def labels(self, model: str, labels: list[tuple[str, Any]], at: datetime | None = None,
                     per_message: int = 100) -> None:
        when = (at or T0 + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
        for i in range(0, len(labels), per_message):
            body = json.dumps({"model": model, "records": [
                {"request_id": rid, "label": lab, "timestamp": when} for rid, lab in labels[i:i + per_message]]})
            await self.producer.send(self.prefix + "ground-truth-logged", body.encode(), key=model.encode())
        await self.producer.flush()

    async def event(self, topic: str, payload: Any) -> None:
        rec = encode(new_event(topic, payload, source="test", actor="user:test"), topic_prefix=self.prefix)
        await self.producer.send_and_wait(rec.topic, rec.value, key=rec.key, headers=rec.headers)


async def wait_until(check: Callable[[], Awaitable[bool]], timeout_s: float = 30.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await check():
        if loop.time() > deadline:
            raise TimeoutError(f"condition not met: {what or check}")
        await asyncio.sleep(0.1)


async def query(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_monitor(infra: Any, port: int, db_schema: str, consumer_group: str) -> subprocess.Popen[bytes]:
    """A monitor process (``python -m mloop.monitor``) on the test platform, for tests that ``kill -9`` it."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
        "DATABASE_URL": infra.database_url,
        "MLOOP_TOPIC_PREFIX": infra.topic_prefix,
        "MLOOP_HTTP_PORT": str(port),
        "MLOOP_JWT_SECRET": infra.settings_kwargs()["jwt_secret"],
        "MLOOP_ENVIRONMENT": "test",
        "MLOOP_DB_SCHEMA": db_schema,
        "MLOOP_CONSUMER_GROUP": consumer_group,
        # Small transactions, so the kill lands between many of them.
        "MLOOP_BATCH_MAX_MESSAGES": "2",
        "MLOOP_LOG_JSON": "false",
        "MLOOP_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen([sys.executable, "-m", "mloop.monitor"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def predictions_seen(infra: Any, schema: str) -> int:
    """How many predictions the monitor in ``schema`` has counted (0 before its tables exist)."""
    try:
        rows = await query(infra.database_url, "SELECT COALESCE(sum((state->>'predictions_seen')::int), 0) AS n "
                           f"FROM {schema}.monitor_state")
    except Exception:
        return 0
    return int(rows[0]["n"])


SMALL_WINDOWS = {"window": {"mode": "tumbling", "by": "count", "size": 500}, "resolve_after_windows": 2,
                 "reference_size": 500, "performance": {"window_labels": 100}}
