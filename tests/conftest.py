"""Shared fixtures: one real Kafka and one real Postgres for the whole run.

Set ``MLOOP_TEST_USE_RUNNING_STACK=1`` with ``KAFKA_BOOTSTRAP_SERVERS`` and
``DATABASE_URL`` (``eval "$(make -s status)"``) to reuse a running ``make up``
stack instead of starting a private one.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mloop.devstack import create_topics
from mloop.devstack.testing import EphemeralStack

TEST_JWT_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"


_SPANS = InMemorySpanExporter()


@pytest.fixture(scope="session", autouse=True)
def _tracing() -> None:
    """Every span of the run goes to an in-memory exporter tests can inspect."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_SPANS))
    trace.set_tracer_provider(provider)


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return _SPANS


@pytest.fixture(scope="session")
def stack() -> Iterator[EphemeralStack]:
    with EphemeralStack() as s:
        yield s


@dataclass
class Infra:
    """Endpoints for one test: a fresh database and a private topic namespace."""

    bootstrap_servers: str
    database_url: str
    topic_prefix: str

    def settings_kwargs(self, **overrides: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "environment": "test",
            "kafka_bootstrap_servers": self.bootstrap_servers,
            "database_url": self.database_url,
            "topic_prefix": self.topic_prefix,
            "jwt_secret": TEST_JWT_SECRET,
            "outbox_poll_interval_s": 0.2,
            "log_json": False,
        }
        base.update(overrides)
        return base


@pytest.fixture
def infra(stack: EphemeralStack) -> Infra:
    """A fresh database and every registry topic under a unique prefix."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    asyncio.run(create_topics(stack.bootstrap_servers, prefix=prefix))
    return Infra(stack.bootstrap_servers, stack.new_database(), prefix)
