"""Postgres stops and starts again while the relay publishes and a consumer applies a stream."""

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
    keep_predicting,
    keep_publishing,
    keep_writing,
    outbox_ids,
    prediction_counts,
    topic_event_ids,
    unsent,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_a_database_restart_applies_every_event_once_and_the_service_recovers_by_itself(
    private_stack: PrivateStack,
) -> None:
    stack = private_stack
    # A long poll interval: after the restart only a re-established LISTEN wakes the relay quickly.
    settings = ProbeSettings(**stack.settings_kwargs(outbox_poll_interval_s=30.0))
    headers = auth_headers(settings, "olga", "operator")
    url = stack.database_url
    log = WriteLog()
    external: list[str] = []
    predictions: list[int] = []
    stop_writes, stop_stream = asyncio.Event(), asyncio.Event()

    async with (
        running_app(create_probe_app(settings, batch=True)) as client,
        background(keep_publishing(stack.bootstrap_servers, stack.topic_prefix, external, stop_stream)),
        background(keep_predicting(stack.bootstrap_servers, stack.topic_prefix, predictions, stop_stream)),
    ):
        async with background(keep_writing(client, headers, log, stop_writes, tag="d", concurrency=2)):

            async def flowing() -> bool:
                return len(await effects(url)) >= 30

            await wait_until(flowing, timeout_s=20, what="events applied before the outage")

            await stack.stop_postgres()
            body = {"model": "m", "alias": "during-outage", "version": "1"}
            for extra in ({}, {"Idempotency-Key": "during-outage-1"}):
                r = await client.post("/aliases", json=body, headers={**headers, **extra})
                assert r.status_code == 503, r.text
                assert r.headers["content-type"] == "application/problem+json"
                assert r.json()["type"].endswith("/service-unavailable"), r.json()
                assert int(r.headers["retry-after"]) >= 1
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert str(ready.json()["checks"]["postgres"]).startswith("unreachable"), ready.json()
            await asyncio.sleep(2)

            await stack.start_postgres()
            recovered_at = len(log.committed)

            async def writes_again() -> bool:
                return len(log.committed) > recovered_at + 5

            await wait_until(writes_again, timeout_s=20, what="writes succeed again without a restart")
            stop_writes.set()
        stop_stream.set()
        await asyncio.sleep(0.1)

        outage_statuses = {s for s, _ in log.failures}
        assert outage_statuses <= {503}, log.failures[:5]
        committed = set(log.committed)
        in_outbox = await outbox_ids(url)
        assert committed <= in_outbox
        expected = in_outbox | set(external)

        async def all_applied() -> bool:
            return (
                await unsent(url) == 0
                and set(await effects(url)) >= expected
                and (await prediction_counts(url))[1] >= len(predictions)
            )

        await wait_until(all_applied, timeout_s=30, what="every event applied")
        await asyncio.sleep(1.0)

        applied = Counter(await effects(url))
        assert set(applied) == expected
        doubled = {k: n for k, n in applied.items() if n > 1}
        assert doubled == {}, doubled
        # The batch consumer (offsets stored with its state) counted every message once.
        assert await prediction_counts(url) == (10 * len(predictions), len(predictions))
        published = await topic_event_ids(stack.bootstrap_servers, stack.topic_prefix + "model-alias-changed")
        assert set(published) == expected

        # The relay listens again: a new write is published long before the 30 s poll.
        r = await client.post("/aliases", json={"model": "m", "alias": "after", "version": "1"}, headers=headers)
        assert r.status_code == 201
        after_id = r.json()["event_id"]

        async def published_promptly() -> bool:
            return after_id in await effects(url)

        await wait_until(published_promptly, timeout_s=5, what="a write after the restart published via NOTIFY")
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
