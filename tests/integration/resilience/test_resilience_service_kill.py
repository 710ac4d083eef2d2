"""kill -9 of a real service process mid-stream, then a restart: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter

import httpx
import pytest

from mloop.devstack import repo_root
from mloop.runtime.testing import auth_headers

from ..runtime.probe import ProbeSettings
from .support import (
    PrivateStack,
    WriteLog,
    background,
    effects,
    free_port,
    keep_publishing,
    keep_writing,
    outbox_ids,
    topic_event_ids,
    unsent,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _launch(stack: PrivateStack, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.resilience.probe_process"],
        cwd=repo_root(),
        env=stack.env(port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _wait_ready(http: httpx.AsyncClient, proc: subprocess.Popen[bytes]) -> None:
    async def ready() -> bool:
        assert proc.poll() is None, f"the probe process exited with {proc.returncode}"
        try:
            r = await http.get("/readyz")
        except httpx.TransportError:
            return False
        return r.status_code == 200 and r.json()["checks"]["consumers_assigned"] is True

    await wait_until(ready, timeout_s=45, what="the probe process ready with partitions assigned")


async def test_kill_9_mid_stream_and_a_restart_lose_no_committed_event_and_double_no_effect(
    private_stack: PrivateStack,
) -> None:
    stack = private_stack
    settings = ProbeSettings(**stack.settings_kwargs())
    headers = auth_headers(settings, "olga", "operator")
    url = stack.database_url
    port = free_port()
    log = WriteLog()
    external: list[str] = []
    stop_writes, stop_stream = asyncio.Event(), asyncio.Event()
    kills = 0

    proc = _launch(stack, port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            await _wait_ready(http, proc)
            async with (
                background(keep_publishing(stack.bootstrap_servers, stack.topic_prefix, external, stop_stream)),
                background(keep_writing(http, headers, log, stop_writes, tag="k", interval_s=0.005, concurrency=4)),
            ):
                for _ in range(2):
                    floor = len(await effects(url)) + 40

                    async def busy(floor: int = floor) -> bool:
                        return len(await effects(url)) >= floor

                    await wait_until(busy, timeout_s=30, what="the stream flowing before the kill")
                    proc.kill()  # SIGKILL: no shutdown, no flush, no offset commit
                    proc.wait()
                    kills += 1
                    proc = _launch(stack, port)
                    await _wait_ready(http, proc)
                await asyncio.sleep(1.0)
                stop_writes.set()
                stop_stream.set()

            in_outbox = await outbox_ids(url)
            committed = set(log.committed)
            # Every write the client saw succeed was committed, with its event.
            assert committed <= in_outbox, sorted(committed - in_outbox)[:5]
            expected = in_outbox | set(external)

            async def all_applied() -> bool:
                return await unsent(url) == 0 and set(await effects(url)) >= expected

            await wait_until(all_applied, timeout_s=40, what="every committed and external event applied")
            await asyncio.sleep(1.0)

            applied = Counter(await effects(url))
            assert set(applied) == expected
            doubled = {k: n for k, n in applied.items() if n > 1}
            assert doubled == {}, doubled
            published = await topic_event_ids(stack.bootstrap_servers, stack.topic_prefix + "model-alias-changed")
            assert set(published) == expected
            assert kills == 2 and len(committed) > 100 and len(external) > 100
            metrics = (await http.get("/metrics")).text
            assert "mloop_service_info" in metrics
    finally:
        proc.kill()
        proc.wait()
