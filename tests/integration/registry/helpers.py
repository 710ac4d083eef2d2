"""Bodies and calls shared by the registry's integration tests."""

from __future__ import annotations

import copy
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from mloop.contracts.envelope import encode, new_event
from mloop.contracts.payloads import Payload
from mloop.registry.settings import RegistrySettings
from mloop.runtime.testing import auth_headers

SHA = "5f7c1e0b9a3d4c2e8f6a7b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e"

REGISTRATION: dict[str, Any] = {
    "artifact_uri": "s3://models/credit-risk/42/model.pkl",
    "lineage": {
        "code": {"repo": "https://git.example.com/acme/credit", "commit": "9fceb02d0ae598e95dc970b74767f19372d61af8"},
        "dataset": {"uri": "s3://data/credit/2026-11-20.parquet", "version": "2026-11-20", "sha256": SHA},
        "features": {"version": "7", "schema": [{"name": "age", "type": "number"},
                                                {"name": "income", "type": "number"},
                                                {"name": "region", "type": "category", "optional": True}]},
        "environment": {"image": "registry.example.com/train@sha256:abc", "lock_hash": "b1946ac9"},
        "params": {"C": 1.0},
        "retrain_job_id": None,
    },
    "metrics": {"auc": 0.91, "log_loss": 0.32},
    "training_profile": None,
    "description": "weekly retrain",
    "tags": {"team": "risk"},
}


def registration(*, metrics: dict[str, float] | None = None, tags: dict[str, str] | None = None,
                 **lineage_patch: Any) -> dict[str, Any]:
    """The registration body pipelines send; ``dataset__sha256=None`` patches one lineage field."""
    body = copy.deepcopy(REGISTRATION)
    if metrics is not None:
        body["metrics"] = metrics
    if tags is not None:
        body["tags"] = tags
    for path, value in lineage_patch.items():
        section, _, name = path.partition("__")
        body["lineage"][section][name] = value
    return body


class Caller:
    """An HTTP client acting as one person (or pipeline) with some roles."""

    def __init__(self, client: httpx.AsyncClient, settings: RegistrySettings, sub: str, *roles: str) -> None:
        self.client = client
        self.headers = auth_headers(settings, sub, *roles)

    async def get(self, url: str, **kw: Any) -> httpx.Response:
        return await self.client.get(url, headers=self.headers, **kw)

    async def post(self, url: str, json: Any = None, **kw: Any) -> httpx.Response:
        headers = {**self.headers, **kw.pop("headers", {})}
        return await self.client.post(url, json=json, headers=headers, **kw)

    async def put(self, url: str, json: Any = None, **kw: Any) -> httpx.Response:
        return await self.client.put(url, json=json, headers=self.headers, **kw)

    async def patch(self, url: str, json: Any = None) -> httpx.Response:
        return await self.client.patch(url, json=json, headers=self.headers)

    async def delete(self, url: str, **kw: Any) -> httpx.Response:
        return await self.client.request("DELETE", url, headers=self.headers, **kw)


async def publish(bootstrap: str, prefix: str, topic: str, payload: Payload, actor: str = "service:rollout") -> str:
    """Publish one event as the producing service would; returns its id."""
    event = new_event(topic, payload, source="rollout", actor=actor)
    rec = encode(event, topic_prefix=prefix)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(rec.topic, rec.value, key=rec.key, headers=rec.headers)
    finally:
        await producer.stop()
    return event.id
