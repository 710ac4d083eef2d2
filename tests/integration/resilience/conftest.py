"""Each resilience test stops and starts its own Kafka and Postgres."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from mloop.devstack import create_topics
from mloop.devstack.testing import EphemeralStack

from .support import PrivateStack


@pytest.fixture
def private_stack() -> Iterator[PrivateStack]:
    """A fresh Kafka and Postgres for this test alone (never the shared ones).

    Private even when the other tests attach to a running stack
    (``MLOOP_TEST_USE_RUNNING_STACK``): these tests stop and restart the
    broker and the database, so they must own them.
    """
    stack = EphemeralStack()
    stack.reuse = False
    with stack:
        prefix = f"r{uuid.uuid4().hex[:8]}."
        asyncio.run(create_topics(stack.bootstrap_servers, prefix=prefix))
        yield PrivateStack(stack, stack.database_url, prefix)
