"""One model's traffic spread over partitions and two monitor instances in one consumer group.

Every record is counted exactly once (the sum of the window counts is what was
produced), the verdicts are those of a single instance on the same stream, and
``kill -9`` of one instance mid-stream changes neither: the survivor takes its
partitions over from the offsets stored with the state.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from typing import Any

import httpx
import numpy as np
import pytest
from aiokafka import AIOKafkaProducer

from mloop.monitor.main import create_app
from mloop.monitor.settings import MonitorSettings
from mloop.runtime.testing import auth_headers, running_app

from .streams import SMALL_WINDOWS, Traffic, query, records, reference_profile, registration, wait_until

pytestmark = pytest.mark.integration

PHASE = 2000  # four windows of 500 rows per phase
PARTITIONS = 12


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(infra: Any, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
        "DATABASE_URL": infra.database_url,
        "MLOOP_TOPIC_PREFIX": infra.topic_prefix,
        "MLOOP_HTTP_PORT": str(port),
        "MLOOP_JWT_SECRET": infra.settings_kwargs()["jwt_secret"],
        "MLOOP_ENVIRONMENT": "test",
        "MLOOP_DB_SCHEMA": "monitor_pair",
        "MLOOP_CONSUMER_GROUP": "mloop-monitor-pair",
        # Small transactions, so the kill lands between many of them.
        "MLOOP_BATCH_MAX_MESSAGES": "2",
        "MLOOP_LOG_JSON": "false",
        "MLOOP_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen([sys.executable, "-m", "mloop.monitor"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _spread(producer: AIOKafkaProducer, topic: str, model: str, recs: list[dict[str, Any]]) -> None:
    """Messages of 20 records keyed by their first request id: the model's traffic over every partition."""
    for i in range(0, len(recs), 20):
        chunk = recs[i:i + 20]
        body = json.dumps({"model": model, "records": chunk}).encode()
        await producer.send(topic, body, key=chunk[0]["request_id"].encode())
    await producer.flush()


async def _seen(infra: Any, schema: str) -> int:
    try:
        rows = await query(infra.database_url, "SELECT COALESCE(sum((state->>'predictions_seen')::int), 0) AS n "
                           f"FROM {schema}.monitor_state")
    except Exception:
        return 0
    return int(rows[0]["n"])


async def _window_rows(infra: Any, schema: str) -> int:
    rows = await query(infra.database_url,
                       f"SELECT COALESCE(sum(size), 0) AS n FROM {schema}.window_results WHERE signal = 'data'")
    return int(rows[0]["n"])


async def _verdicts(infra: Any, schema: str) -> list[tuple[Any, ...]]:
    rows = await query(infra.database_url, f"""SELECT signal, window_no, size, alarm
        FROM {schema}.window_results ORDER BY signal, window_no""")
    return [(r["signal"], r["window_no"], r["size"], r["alarm"]) for r in rows]


async def _stored(infra: Any, schema: str) -> tuple[int, int]:
    rows = await query(infra.database_url,
                       f"SELECT count(*) AS n, count(DISTINCT request_id) AS d FROM {schema}.predictions")
    return int(rows[0]["n"]), int(rows[0]["d"])


async def test_two_instances_count_every_record_once_and_agree_with_one_even_when_one_is_killed(
        infra: Any) -> None:
    rng = np.random.default_rng(13)
    clean = records(rng, PHASE, version="1", start=0, prefix="s")
    drifted = records(rng, PHASE, version="1", start=PHASE, shift=1.5, prefix="s")
    one = MonitorSettings(**infra.settings_kwargs(db_schema="monitor_one", consumer_group="mloop-monitor-one"))
    headers = auth_headers(one, "olga", "operator")
    topic = infra.topic_prefix + "prediction-logged"
    ports = [_free_port(), _free_port()]
    async with Traffic(infra.bootstrap_servers, infra.topic_prefix) as traffic:
        await traffic.event("model-registered", registration("spread", "1", profile=reference_profile()))
        async with running_app(create_app(one)) as client:
            assert (await client.put("/models/spread/config", json=SMALL_WINDOWS, headers=headers)).status_code == 200
            procs = [_launch(infra, p) for p in ports]
            try:
                async with httpx.AsyncClient(timeout=5) as http:
                    async def both_up() -> bool:
                        try:
                            for p in ports:
                                ready = await http.get(f"http://127.0.0.1:{p}/readyz")
                                if ready.status_code != 200 or not ready.json()["checks"]["consumers_assigned"]:
                                    return False
                            return True
                        except httpx.HTTPError:
                            return False
                    # Ready means each instance has partitions of the traffic topics assigned.
                    await wait_until(both_up, timeout_s=240, what="both instances ready")
                    r = await http.put(f"http://127.0.0.1:{ports[0]}/models/spread/config", json=SMALL_WINDOWS,
                                       headers=headers)
                    assert r.status_code == 200, r.text

                async def registered() -> bool:
                    rows = await query(infra.database_url,
                                       "SELECT (SELECT count(*) FROM monitor_one.model_versions WHERE registered) + "
                                       "(SELECT count(*) FROM monitor_pair.model_versions WHERE registered) AS n")
                    return bool(rows[0]["n"] == 2)
                await wait_until(registered, timeout_s=60, what="both runs registered the version")

                # Phase one: clean traffic. Windows are cut by count, so the drifted phase is
                # sent once the clean one is counted: every window then holds one phase only,
                # whatever order the partitions were read in.
                await _spread(traffic.producer, topic, "spread", clean)

                async def clean_done() -> bool:
                    return await _seen(infra, "monitor_one") == PHASE and await _seen(infra, "monitor_pair") == PHASE
                await wait_until(clean_done, timeout_s=120, what="clean phase counted by both runs")
                owners = await query(infra.database_url, "SELECT count(*) AS n FROM monitor_pair.applied_offsets "
                                     "WHERE topic = 'prediction-logged'")
                assert owners[0]["n"] == PARTITIONS  # the traffic reached every partition

                await _spread(traffic.producer, topic, "spread", drifted)

                async def mid_stream() -> bool:
                    return await _seen(infra, "monitor_pair") >= PHASE + 300
                await wait_until(mid_stream, timeout_s=120, what="pair half way through the drifted phase")
                killed_at = await _seen(infra, "monitor_pair")
                procs[0].send_signal(signal.SIGKILL)
                procs[0].wait(10)
                assert killed_at < 2 * PHASE, "the stream was over before the kill"

                async def all_done() -> bool:
                    return (await _seen(infra, "monitor_one") == 2 * PHASE
                            and await _seen(infra, "monitor_pair") == 2 * PHASE)
                # The survivor gets the killed instance's partitions after its session times out.
                await wait_until(all_done, timeout_s=180, what="both runs counted the whole stream")
            finally:
                for p in procs:
                    if p.poll() is None:
                        p.send_signal(signal.SIGKILL)
                        p.wait(10)

    single, pair = await _verdicts(infra, "monitor_one"), await _verdicts(infra, "monitor_pair")
    assert await _window_rows(infra, "monitor_pair") == 2 * PHASE == await _window_rows(infra, "monitor_one")
    assert await _stored(infra, "monitor_pair") == (2 * PHASE, 2 * PHASE) == await _stored(infra, "monitor_one")
    assert pair == single
    assert [v[3] for v in single if v[0] == "data"] == [False] * 4 + [True] * 4
