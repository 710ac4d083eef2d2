"""Each resilience test stops and starts its own Kafka and Postgres."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import pytest

from mloop.devstack import create_topics
from mloop.devstack.testing import USE_RUNNING_STACK_ENV, EphemeralStack

from .support import PrivateStack


@pytest.fixture
def private_stack() -> Iterator[PrivateStack]:
    """A fresh Kafka and Postgres for this test alone (never the shared ones)."""
    if os.environ.get(USE_RUNNING_STACK_ENV, "") not in ("", "0", "false"):
        pytest.skip("stops and restarts Kafka and Postgres: needs a private stack")
    with EphemeralStack() as stack:
        prefix = f"r{uuid.uuid4().hex[:8]}."
        asyncio.run(create_topics(stack.bootstrap_servers, prefix=prefix))
        yield PrivateStack(stack, stack.database_url, prefix)
