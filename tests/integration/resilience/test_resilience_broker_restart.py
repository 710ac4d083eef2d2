"""Kafka stops and starts again while a client keeps writing: nothing is lost or doubled."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from mloop.runtime.testing import auth_headers, running_app

from ..runtime.probe import ProbeSettings, create_probe_app
from .support import (
    PrivateStack,
    WriteLog,
    background,
    effects,
    keep_writing,
    outbox_ids,
    topic_event_ids,
    unsent,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_a_broker_restart_during_writes_loses_nothing_and_applies_each_event_once(
    private_stack: PrivateStack,
) -> None:
    stack = private_stack
    settings = ProbeSettings(**stack.settings_kwargs())
    headers = auth_headers(settings, "olga", "operator")
    log = WriteLog()
    stop = asyncio.Event()
    url = stack.database_url

    async with running_app(create_probe_app(settings)) as client:
        async with background(keep_writing(client, headers, log, stop, tag="b", concurrency=2)):

            async def some_applied() -> bool:
                return len(await effects(url)) >= 10

            await wait_until(some_applied, timeout_s=20, what="the first events applied")

            await stack.stop_kafka()
            ready = await client.get("/readyz")
            assert ready.status_code == 503, ready.text
            assert str(ready.json()["checks"]["kafka"]).startswith("unreachable"), ready.json()
            assert ready.json()["checks"]["postgres"] is True
            before = len(log.committed)
            await asyncio.sleep(3)
            # Writes need only Postgres: they go on while the broker is away.
            assert len(log.committed) > before
            assert await unsent(url) > 0
            ready = await client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["loops"] is True, ready.json()

            await stack.start_kafka()

            async def ready_again() -> bool:
                r = await client.get("/readyz")
                return r.status_code == 200

            await wait_until(ready_again, timeout_s=30, what="/readyz back to 200 after the restart")
            await asyncio.sleep(1.5)
            stop.set()

        assert log.failures == [], log.failures[:5]
        committed = set(log.committed)
        assert committed == await outbox_ids(url)

        async def all_applied() -> bool:
            return await unsent(url) == 0 and set(await effects(url)) >= committed

        await wait_until(all_applied, timeout_s=40, what="every committed write published and applied")
        await asyncio.sleep(1.0)  # any redelivery would land now

        applied = Counter(await effects(url))
        assert set(applied) == committed
        doubled = {k: n for k, n in applied.items() if n > 1}
        assert doubled == {}, doubled
        published = await topic_event_ids(stack.bootstrap_servers, stack.topic_prefix + "model-alias-changed")
        assert set(published) == committed
        assert (await client.get("/readyz")).status_code == 200
