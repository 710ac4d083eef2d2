"""Console page time at scale: 1,000 models and 100,000 ledger rows, on a real platform.

Kafka, Postgres, the five services and the console run as real processes
(the demo's private platform). 1,000 models are created through the
registry's API (the first page's models get a version, a promotion and a
champion through the governed path, the first ten a second version in a
live rollout and a retrain job); 100,000 ledger rows are generated with
the ledger's own code and bulk-loaded beside the live chains. Each page is
then fetched as a signed-in person; the value is the console's own
``Server-Timing`` (server-side time of the page, its calls to the services
included), p50 and p95 over the repetitions.

``/audit/verify`` is left out on purpose: it asks the audit service to
replay every chain, which is O(rows) by design (bench_audit measures it).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
MODELS = 1_000
LEDGER_ROWS = 100_000
TARGET_MS = 300.0
LINEAGE: dict[str, Any] = {
    "code": {"repo": "https://git.example.com/acme/credit", "commit": "9fceb02d0ae598e95dc970b74767f19372d61af8"},
    "dataset": {"uri": "s3://data/credit.parquet", "version": "1", "sha256": "ab" * 32},
    "features": {"version": "1", "schema": [{"name": "age", "type": "number"}]},
    "environment": {"lock_hash": "b1946ac9"},
}


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q / 100 * (len(xs) - 1)))]


async def _populate(platform: Any, models: int, tokens: dict[str, str]) -> dict[str, str]:
    """``models`` models; the first 25 with a champion through an approved promotion, the first 10 of those
    with a second version approved (so a rollout runs) and a retrain job. Returns ids the pages need."""
    from mloop.client import MloopClient

    async with MloopClient(platform.stack.endpoints, tokens["dana"], timeout_s=60) as dana:
        rita = dana.with_token(tokens["rita"])
        omar = dana.with_token(tokens["omar"])
        gate = asyncio.Semaphore(8)

        async def promote(name: str, i: int) -> None:
            reg = await dana.registry.register_version(name, artifact_uri=f"s3://m/{i}/{name}", lineage=LINEAGE,
                                                       metrics={"auc": 0.8})
            pr = await dana.registry.request_promotion(name, reg["version"], reason="bench")
            await rita.registry.approve(pr["id"], comment="ok")

        async def one(i: int) -> None:
            name = f"model-{i:04d}"
            async with gate:
                await dana.registry.create_model(name, tags={"team": f"t{i % 10}"})
                if i < 25:
                    await promote(name, i)
            if i < 10:
                deadline = time.monotonic() + 120
                while await dana.registry.champion(name) != "1":
                    assert time.monotonic() < deadline, f"{name} v1 never became champion"
                    await asyncio.sleep(0.5)
                async with gate:
                    await promote(name, i)
                    await omar.retrain.trigger(name, reason="bench")

        await asyncio.gather(*(one(i) for i in range(models)))
        deadline = time.monotonic() + 120
        while not (rollouts := await dana.rollout.list_rollouts(model="model-0000")):
            assert time.monotonic() < deadline, "the rollout of model-0000 v2 never started"
            await asyncio.sleep(0.5)
        jobs = await dana.retrain.list_jobs(model="model-0000", limit=1)
    return {"model": "model-0000", "rollout": str(rollouts[0]["id"]), "job": str(jobs[0]["id"])}


def _sign_in(console: str, token: str) -> httpx.Client:
    client = httpx.Client(base_url=console, timeout=60, follow_redirects=False)
    answer = client.post("/login", data={"token": token, "next": "/models"})
    assert answer.status_code == 303, answer.text[:300]
    return client


def _measure(client: httpx.Client, path: str, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
        timing = answer.headers["server-timing"]
        times.append(float(timing.split("dur=", 1)[1]))
    return times


def _table(results: list[dict[str, Any]]) -> str:
    lines = [f"{'page':<34} {'p50 ms':>8} {'p95 ms':>8}  within {TARGET_MS:.0f} ms",
             f"{'-' * 34} {'-' * 8} {'-' * 8}  {'-' * 14}"]
    for r in results:
        within = "yes" if r["value"] <= TARGET_MS else "NO"
        lines.append(f"{r['page']:<34} {r['p50_ms']:>8.1f} {r['value']:>8.1f}  {within}")
    return "\n".join(lines)


def run(quick: bool = False) -> list[dict[str, Any]]:
    sys.path.insert(0, str(HERE))
    from bench_audit import load_rows

    from mloop.demo.sandbox import private_platform
    from mloop.runtime.auth import issue_token

    models = 200 if quick else MODELS
    rows = 20_000 if quick else LEDGER_ROWS
    repeat = 5 if quick else 20
    with private_platform() as platform:
        secret = platform.stack.jwt_secret
        tokens = {
            "dana": issue_token(secret, "dana", ["data-scientist"]),
            "rita": issue_token(secret, "rita", ["reviewer"]),
            "omar": issue_token(secret, "omar", ["operator", "reviewer"]),
        }
        started = time.perf_counter()
        ids = asyncio.run(_populate(platform, models, tokens))
        model = ids["model"]
        populate_s = time.perf_counter() - started
        print(f"{models} models in {populate_s:.0f}s", file=sys.stderr, flush=True)
        started = time.perf_counter()
        asyncio.run(load_rows(platform.database_url, rows, chain_prefix="archive-"))
        load_s = time.perf_counter() - started
        client = _sign_in(platform.console_url, tokens["omar"])
        try:
            pages = {
                "models (first page)": "/models",
                "models (search)": "/models?q=model-09",
                "a model": f"/models/{model}",
                "a version (champion)": f"/models/{model}/versions/1",
                "a version (in rollout)": f"/models/{model}/versions/2",
                "drift": f"/models/{model}/drift",
                "promotion queue": "/promotions",
                "rollouts": "/rollouts",
                "a rollout (live)": f"/rollouts/{ids['rollout']}",
                "retrain": "/retrain",
                "a retrain job": f"/retrain/jobs/{ids['job']}",
                "audit search (all)": "/audit",
                "audit search (model)": "/audit?model=model-42",
                "audit search (actor, time)": "/audit?actor=user:u7&since=2026-01-10T00:00:00",
                "lifecycle": f"/audit/lifecycle?model={model}&version=1",
                "served at T": f"/audit/serving?model={model}",
            }
            for path in pages.values():  # warm the connection pools and the database caches
                _measure(client, path, 1)
            results = []
            for label, path in pages.items():
                times = _measure(client, path, repeat)
                results.append({
                    "name": f"console page at {models:,} models / {rows:,} ledger rows: {label}",
                    "value": round(_pct(times, 95), 1),
                    "unit": "ms p95",
                    "target": TARGET_MS,
                    "page": label,
                    "p50_ms": round(statistics.median(times), 1),
                    "detail": f"p50 {statistics.median(times):.1f} ms, max {max(times):.1f} ms over {repeat} "
                              f"requests (server-side, service calls included); setup: models via API "
                              f"{populate_s:.0f}s, ledger rows via COPY {load_s:.0f}s",
                })
        finally:
            client.close()
    return results


if __name__ == "__main__":
    import json

    rows = run(quick="--quick" in sys.argv)
    for row in rows:
        print(json.dumps(row))
    print(_table(rows), file=sys.stderr)
