"""``kill -9`` mid-stream and a restart give the same verdicts as an uninterrupted run."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import httpx
import numpy as np
import pytest

from mloop.monitor.main import create_app
from mloop.monitor.settings import MonitorSettings
from mloop.runtime.testing import auth_headers, running_app

from .streams import (
    SMALL_WINDOWS,
    Traffic,
    free_port,
    launch_monitor,
    predictions_seen,
    query,
    records,
    reference_profile,
    registration,
    wait_until,
)

pytestmark = pytest.mark.integration

TOTAL = 5000


async def _verdicts(infra: Any, schema: str) -> list[tuple[Any, ...]]:
    rows = await query(infra.database_url, f"""SELECT signal, window_no, window_start, window_end, size, alarm,
        severity, evidence FROM {schema}.window_results ORDER BY signal, window_no""")
    out = []
    for r in rows:
        evidence = json.loads(r["evidence"])
        feats = tuple((f["name"], f["method"], f["drifted"], f"{f['statistic']:.9g}",
                       None if f["p_value"] is None else f"{f['p_value']:.9g}")
                      for f in evidence.get("features", []))
        violations = tuple((v["kind"], v["feature"]) for v in evidence.get("violations", []))
        out.append((r["signal"], r["window_no"], r["window_start"], r["window_end"], r["size"], r["alarm"],
                    r["severity"], feats, violations))
    return out


async def _counts(infra: Any, schema: str) -> dict[str, int]:
    rows = await query(infra.database_url, f"""SELECT
        (SELECT count(*) FROM {schema}.predictions) AS predictions,
        (SELECT count(*) FROM {schema}.incidents) AS incidents,
        (SELECT count(*) FROM {schema}.outbox WHERE topic LIKE '%drift-detected') AS drift_events,
        (SELECT count(*) FROM {schema}.outbox WHERE topic LIKE '%incident-resolved') AS resolved_events,
        (SELECT sum((state->>'predictions_seen')::int) FROM {schema}.monitor_state) AS seen""")
    return {k: int(v) for k, v in dict(rows[0]).items()}


async def test_kill_9_mid_stream_and_restart_gives_the_same_results_as_an_uninterrupted_run(infra: Any) -> None:
    rng = np.random.default_rng(9)
    stream = (records(rng, 1500, version="2", start=0, prefix="k")
              + records(rng, 1500, version="2", start=1500, shift=1.0, prefix="k")
              + records(rng, 2000, version="2", start=3000, prefix="k"))
    settings = MonitorSettings(**infra.settings_kwargs(db_schema="monitor_whole", consumer_group="mloop-monitor-whole"))
    port = free_port()
    async with Traffic(infra.bootstrap_servers, infra.topic_prefix) as traffic:
        await traffic.event("model-registered", registration("loans", "2", profile=reference_profile()))
        async with running_app(create_app(settings)) as client:
            r = await client.put("/models/loans/config", json=SMALL_WINDOWS,
                                 headers=auth_headers(settings, "olga", "operator"))
            assert r.status_code == 200
            proc = launch_monitor(infra, port, "monitor_killed", "mloop-monitor-killed")
            try:
                headers = auth_headers(settings, "olga", "operator")
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
                    async def up() -> bool:
                        try:
                            ready = await http.get("/readyz")
                            return ready.status_code == 200 and ready.json()["checks"]["consumers_assigned"]
                        except httpx.HTTPError:
                            return False
                    await wait_until(up, timeout_s=60, what="monitor process ready")
                    r = await http.put("/models/loans/config", json=SMALL_WINDOWS, headers=headers)
                    assert r.status_code == 200, r.text

                    async def both_registered() -> bool:
                        rows = await query(infra.database_url,
                                           "SELECT (SELECT count(*) FROM monitor_whole.model_versions) + "
                                           "(SELECT count(*) FROM monitor_killed.model_versions) AS n")
                        return bool(rows[0]["n"] == 2)
                    await wait_until(both_registered, what="both monitors registered the version")
                    await traffic.predictions("loans", stream, per_message=50)

                    async def mid_stream() -> bool:
                        return await predictions_seen(infra, "monitor_killed") >= 1200
                    await wait_until(mid_stream, timeout_s=60, what="killed monitor half way")
                killed_at = await predictions_seen(infra, "monitor_killed")
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                assert killed_at < TOTAL, "the stream was over before the kill"
                proc = launch_monitor(infra, port, "monitor_killed", "mloop-monitor-killed")

                async def whole_done() -> bool:
                    return await predictions_seen(infra, "monitor_whole") == TOTAL
                async def killed_done() -> bool:
                    return await predictions_seen(infra, "monitor_killed") == TOTAL
                await wait_until(whole_done, timeout_s=60, what="uninterrupted run done")
                await wait_until(killed_done, timeout_s=90, what="restarted run done")
                await asyncio.sleep(1.0)
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)

    whole, killed = await _verdicts(infra, "monitor_whole"), await _verdicts(infra, "monitor_killed")
    assert len(whole) == 3 * 10  # data, prediction and quality for each of the 10 windows
    assert killed == whole
    assert [v[5] for v in whole if v[0] == "data"] == [False] * 3 + [True] * 3 + [False] * 4
    counts = await _counts(infra, "monitor_killed")
    assert counts == await _counts(infra, "monitor_whole")
    assert counts["predictions"] == TOTAL and counts["drift_events"] == 1 and counts["resolved_events"] == 1
