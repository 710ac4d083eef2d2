"""Helpers for tests that run a service app in-process against real Kafka and Postgres."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

import httpx
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fastapi import FastAPI

from mloop.contracts.envelope import Event, decode, encode, new_event
from mloop.contracts.payloads import Payload
from mloop.runtime.auth import issue_token
from mloop.runtime.server import server_config
from mloop.runtime.service import ServiceContext
from mloop.runtime.settings import ServiceSettings

__all__ = ["EventCollector", "EventPublisher", "auth_headers", "running_app", "serving"]


@contextlib.asynccontextmanager
async def running_app(app: FastAPI, *, wait_assigned: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app``'s lifespan and give an HTTP client bound to it (no sockets)."""
    async with app.router.lifespan_context(app):
        ctx: ServiceContext = app.state.ctx
        if wait_assigned and ctx.consumers:
            await ctx.wait_assigned(60)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=30) as client:
            yield client


@contextlib.asynccontextmanager
async def serving(app: FastAPI, settings: ServiceSettings) -> AsyncIterator[str]:
    """Run ``app`` in uvicorn, configured as ``serve`` does, on a free local port; yields the base URL.

    For tests about the wire itself (keep-alive, timeouts, made-up methods) and
    for clients that need a real server (contract testers).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(server_config(app, settings, sock=sock))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the server stopped while starting")
            if loop.time() > deadline:
                raise TimeoutError("the server did not start in 120 s")
            await asyncio.sleep(0.05)
        host, port = sock.getsockname()[:2]
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 60)
        sock.close()


def auth_headers(settings: ServiceSettings, sub: str, *roles: str, **extra: str) -> dict[str, str]:
    token = issue_token(settings.jwt_secret.get_secret_value(), sub, list(roles),
                        issuer=settings.jwt_issuer, audience=settings.jwt_audience)
    return {"Authorization": f"Bearer {token}", **extra}


class EventCollector:
    """Reads topics (with a prefix) from the beginning, without a group, and decodes events."""

    def __init__(self, bootstrap: str, prefix: str, topics: Iterable[str]) -> None:
        self.prefix = prefix
        self.topics = list(topics)
        self._consumer = AIOKafkaConsumer(
            *[prefix + t for t in self.topics], bootstrap_servers=bootstrap, group_id=None,
            auto_offset_reset="earliest", enable_auto_commit=False,
        )
        self.events: list[Event[Any]] = []
        self.raw: list[Any] = []

    async def __aenter__(self) -> EventCollector:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def poll(self, timeout_s: float = 0.5) -> None:
        batches = await self._consumer.getmany(timeout_ms=int(timeout_s * 1000))
        for _tp, msgs in batches.items():
            for m in msgs:
                self.raw.append(m)
                topic = m.topic[len(self.prefix):]
                with contextlib.suppress(Exception):
                    self.events.append(decode(topic, m.key, m.value, m.headers, partition=m.partition, offset=m.offset))

    def of(self, topic: str) -> list[Event[Any]]:
        return [e for e in self.events if e.topic == topic]

    async def wait_for(self, topic: str, count: int = 1, timeout_s: float = 20.0,
                       where: Any = None) -> list[Event[Any]]:
        """Wait until at least ``count`` events of ``topic`` (matching ``where``) arrived."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            found = [e for e in self.of(topic) if where is None or where(e)]
            if len(found) >= count:
                return found
            if loop.time() > deadline:
                raise TimeoutError(f"saw {len(found)} of {count} {topic} events in {timeout_s}s")
            await self.poll(0.3)


class EventPublisher:
    """Publishes events (CloudEvents binary mode, with a topic prefix) the way services do."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.prefix = prefix
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")

    async def __aenter__(self) -> EventPublisher:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def send(self, topic: str, payload: Payload, *, source: str, actor: str | None = None,
                   at: datetime | None = None) -> str:
        """Publish and wait for the broker's ack; returns the event id."""
        event = new_event(topic, payload, source=source, actor=actor, at=at)
        rec = encode(event, topic_prefix=self.prefix)
        await self.producer.send_and_wait(rec.topic, rec.value, key=rec.key, headers=rec.headers)
        return event.id
