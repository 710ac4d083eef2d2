"""One model's traffic spread over partitions and two monitor instances in one consumer group.

Every record is counted exactly once (the sum of the window counts is what was
produced), the verdicts are those of a single instance on the same stream, and
``kill -9`` of one instance mid-stream changes neither: the survivor takes its
partitions over from the offsets stored with the state.

The verdicts are compared window by window, drift statistics and p-values
included, on **time windows**: a time pane closes when the event-time
watermark of every partition has passed its end, so a window holds the same
rows whatever order the instances read the partitions in, and the stream is
sent as it would be served, in time order, interleaved over all partitions.

A second model runs on **count windows** in the same run. A count window is
cut in the order its rows are counted, and with the traffic spread over
partitions that order is whichever instance's batch takes the state lock
first: two runs fill their windows with different rows of the same phase.
So its clean and drifted phases are sent one after the other (every window
then holds one phase), and what is compared for it is what that order cannot
change: every record counted once, the windows' numbers and sizes, and every
drifted window alarming. Whether a clean window raises one of its false
alarms (one in a hundred per test family) depends on which rows it holds, so
those alarms are not compared for it.
"""

from __future__ import annotations

import json
import math
import signal
from datetime import timedelta
from typing import Any

import httpx
import numpy as np
import pytest
from aiokafka import AIOKafkaProducer

from mloop.monitor.main import create_app
from mloop.monitor.settings import MonitorSettings
from mloop.runtime.testing import auth_headers, running_app

from .streams import (
    SMALL_WINDOWS,
    T0,
    Traffic,
    free_port,
    launch_monitor,
    query,
    records,
    reference_profile,
    registration,
    wait_until,
)

pytestmark = pytest.mark.integration

PHASE = 2000  # four windows of 500 rows (or 500 s) per phase
PARTITIONS = 12


async def _spread(producer: AIOKafkaProducer, topic: str, model: str, recs: list[dict[str, Any]]) -> None:
    """Messages of 20 records keyed by their first request id: the model's traffic over every partition."""
    for i in range(0, len(recs), 20):
        chunk = recs[i:i + 20]
        body = json.dumps({"model": model, "records": chunk}).encode()
        await producer.send(topic, body, key=chunk[0]["request_id"].encode())
    await producer.flush()


async def _seen(infra: Any, schema: str, model: str, what: str = "predictions_seen") -> int:
    try:
        rows = await query(infra.database_url, f"SELECT COALESCE(sum((state->>'{what}')::int), 0) AS n "
                           f"FROM {schema}.monitor_state WHERE model = $1", model)
    except Exception:
        return 0
    return int(rows[0]["n"])


async def _window_rows(infra: Any, schema: str, model: str) -> int:
    rows = await query(infra.database_url, f"SELECT COALESCE(sum(size), 0) AS n FROM {schema}.window_results "
                       "WHERE signal = 'data' AND model = $1", model)
    return int(rows[0]["n"])


async def _verdicts(infra: Any, schema: str, model: str) -> list[tuple[Any, ...]]:
    rows = await query(infra.database_url, f"""SELECT signal, window_no, size, alarm
        FROM {schema}.window_results WHERE model = $1 ORDER BY signal, window_no""", model)
    return [(r["signal"], r["window_no"], r["size"], r["alarm"]) for r in rows]


async def _figures(infra: Any, schema: str, model: str) -> tuple[list[tuple[Any, ...]], list[float]]:
    """Every window's verdict and per-test drift figures: exact fields, and the floats to compare closely.

    Counts, bins and samples are the same rows whatever the order; means and
    variances are summed in another order and may differ in their last bits.
    """
    rows = await query(infra.database_url, f"""SELECT signal, window_no, window_start, window_end, size, alarm,
        severity, evidence FROM {schema}.window_results WHERE model = $1 ORDER BY signal, window_no""", model)
    exact: list[tuple[Any, ...]] = []
    floats: list[float] = []
    for r in rows:
        evidence = json.loads(r["evidence"]) if isinstance(r["evidence"], str) else r["evidence"]
        tests = evidence.get("features", []) + evidence.get("missing", [])
        details: list[tuple[str, str, Any]] = []
        for f in tests:
            floats.extend(float(f[k]) if f.get(k) is not None else math.nan
                          for k in ("statistic", "p_value", "effect_size"))
            for k, v in sorted(f.get("detail", {}).items()):
                if isinstance(v, float):
                    floats.append(v)
                else:
                    details.append((f["name"], k, v))
        exact.append((r["signal"], r["window_no"], r["window_start"], r["window_end"], r["size"], r["alarm"],
                      r["severity"], [(f["name"], f["method"], f["drifted"]) for f in tests], details,
                      evidence.get("distributions"), evidence.get("violations"), evidence.get("late_rows")))
    return exact, floats


async def _stored(infra: Any, schema: str, model: str) -> tuple[int, int]:
    rows = await query(infra.database_url, "SELECT count(*) AS n, count(DISTINCT request_id) AS d "
                       f"FROM {schema}.predictions WHERE model = $1", model)
    return int(rows[0]["n"]), int(rows[0]["d"])


async def _tail(producer: AIOKafkaProducer, topic: str, model: str, at_s: int) -> None:
    """One record on every partition at ``at_s``: every partition's watermark passes the stream's last window."""
    for p in range(PARTITIONS):
        rec = records(np.random.default_rng(p), 1, version="1", start=at_s + p, prefix=f"tail{p}")
        body = json.dumps({"model": model, "records": rec}).encode()
        await producer.send(topic, body, key=rec[0]["request_id"].encode(), partition=p)
    await producer.flush()


TIME_WINDOWS = {"window": {"mode": "tumbling", "by": "time", "seconds": 500.0, "min_rows": 100},
                "resolve_after_windows": 2, "reference_size": 500, "performance": {"window_labels": 100}}


async def test_two_instances_count_every_record_once_and_agree_with_one_even_when_one_is_killed(
        infra: Any) -> None:
    rng = np.random.default_rng(13)
    # Time windows: one stream in event-time order, 1 s apart, clean then drifted, starting on
    # a window boundary (windows are aligned to the epoch).
    align = -int(T0.timestamp()) % 500
    stream = (records(rng, PHASE, version="1", start=align, prefix="s")
              + records(rng, PHASE, version="1", start=align + PHASE, shift=1.5, prefix="s"))
    # Count windows: the same two phases, sent one after the other.
    clean = records(rng, PHASE, version="1", start=0, prefix="c")
    drifted = records(rng, PHASE, version="1", start=PHASE, shift=1.5, prefix="c")
    one = MonitorSettings(**infra.settings_kwargs(db_schema="monitor_one", consumer_group="mloop-monitor-one"))
    headers = auth_headers(one, "olga", "operator")
    topic = infra.topic_prefix + "prediction-logged"
    ports = [free_port(), free_port()]
    configs = {"spread": TIME_WINDOWS, "spread-count": SMALL_WINDOWS}
    async with Traffic(infra.bootstrap_servers, infra.topic_prefix) as traffic:
        for model in configs:
            await traffic.event("model-registered", registration(model, "1", profile=reference_profile()))
        async with running_app(create_app(one)) as client:
            for model, config in configs.items():
                r = await client.put(f"/models/{model}/config", json=config, headers=headers)
                assert r.status_code == 200, r.text
            procs = [launch_monitor(infra, p, "monitor_pair", "mloop-monitor-pair") for p in ports]
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
                    for model, config in configs.items():
                        r = await http.put(f"http://127.0.0.1:{ports[0]}/models/{model}/config", json=config,
                                           headers=headers)
                        assert r.status_code == 200, r.text

                async def registered() -> bool:
                    rows = await query(infra.database_url,
                                       "SELECT (SELECT count(*) FROM monitor_one.model_versions WHERE registered) + "
                                       "(SELECT count(*) FROM monitor_pair.model_versions WHERE registered) AS n")
                    return bool(rows[0]["n"] == 4)
                await wait_until(registered, timeout_s=60, what="both runs registered the versions")

                # The count model's clean phase is counted before its drifted phase is sent.
                await _spread(traffic.producer, topic, "spread-count", clean)

                async def clean_done() -> bool:
                    return (await _seen(infra, "monitor_one", "spread-count") == PHASE
                            and await _seen(infra, "monitor_pair", "spread-count") == PHASE)
                await wait_until(clean_done, timeout_s=120, what="clean phase counted by both runs")
                owners = await query(infra.database_url, "SELECT count(*) AS n FROM monitor_pair.applied_offsets "
                                     "WHERE topic = 'prediction-logged'")
                assert owners[0]["n"] == PARTITIONS  # the traffic reached every partition

                # The time model's stream, in time order over every partition, and the count
                # model's drifted phase; one instance is killed while they are being counted.
                cut = PHASE + PHASE // 5
                await _spread(traffic.producer, topic, "spread-count", drifted)
                await _spread(traffic.producer, topic, "spread", stream[:cut])

                async def mid_stream() -> bool:
                    return await _seen(infra, "monitor_pair", "spread") >= PHASE // 2
                await wait_until(mid_stream, timeout_s=120, what="pair a quarter through the time stream")
                killed_at = await _seen(infra, "monitor_pair", "spread")
                procs[0].send_signal(signal.SIGKILL)
                procs[0].wait(10)
                assert killed_at < cut, "the stream was over before the kill"
                await _spread(traffic.producer, topic, "spread", stream[cut:])
                await _tail(traffic.producer, topic, "spread", align + 2 * PHASE + 100)

                async def all_done() -> bool:
                    for schema in ("monitor_one", "monitor_pair"):
                        if (await _seen(infra, schema, "spread-count") != 2 * PHASE
                                or await _seen(infra, schema, "spread") != 2 * PHASE + PARTITIONS):
                            return False
                    return True
                # The survivor gets the killed instance's partitions after its session times out.
                await wait_until(all_done, timeout_s=180, what="both runs counted the whole stream")
            finally:
                for p in procs:
                    if p.poll() is None:
                        p.send_signal(signal.SIGKILL)
                        p.wait(10)

    single, pair = await _verdicts(infra, "monitor_one", "spread"), await _verdicts(infra, "monitor_pair", "spread")
    assert await _window_rows(infra, "monitor_pair", "spread") == 2 * PHASE == await _window_rows(
        infra, "monitor_one", "spread")
    assert await _stored(infra, "monitor_pair", "spread") == (2 * PHASE + PARTITIONS,) * 2 == await _stored(
        infra, "monitor_one", "spread")
    assert pair == single
    assert [v[3] for v in single if v[0] == "data"] == [False] * 4 + [True] * 4
    # Window by window, the same rows: the same bins, statistics and p-values.
    (single_exact, single_floats), (pair_exact, pair_floats) = (
        await _figures(infra, "monitor_one", "spread"), await _figures(infra, "monitor_pair", "spread"))
    assert pair_exact == single_exact and len(single_exact) == 3 * 8  # data, prediction, quality
    assert pair_floats == pytest.approx(single_floats, rel=1e-9, abs=1e-12, nan_ok=True)
    for schema in ("monitor_one", "monitor_pair"):
        assert await _seen(infra, schema, "spread", "late_rows") == 0
        # Keyed by request, the model is taken as spread over every partition from its first message.
        waits_on = await query(infra.database_url,
                               f"SELECT state->'partitions' AS p FROM {schema}.monitor_state WHERE model = 'spread'")
        assert json.loads(waits_on[0]["p"]) == list(range(PARTITIONS))
    first = min(v[2] for v in single_exact)
    assert first == T0 + timedelta(seconds=align) and all(v[4] == 500 for v in single_exact)

    # Count windows: every record once, the same windows, the drifted ones alarming in both runs.
    count_single = await _verdicts(infra, "monitor_one", "spread-count")
    count_pair = await _verdicts(infra, "monitor_pair", "spread-count")
    assert await _window_rows(infra, "monitor_pair", "spread-count") == 2 * PHASE == await _window_rows(
        infra, "monitor_one", "spread-count")
    assert await _stored(infra, "monitor_pair", "spread-count") == (2 * PHASE,) * 2 == await _stored(
        infra, "monitor_one", "spread-count")
    assert [v[:3] for v in count_pair] == [v[:3] for v in count_single]
    for verdicts in (count_single, count_pair):
        data = [v[3] for v in verdicts if v[0] == "data"]
        assert len(data) == 8 and data[4:] == [True] * 4
