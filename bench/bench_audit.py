"""Audit benchmarks on a real Kafka + Postgres (an ephemeral stack).

* Ingestion: a backlog of governance events on Kafka, recorded by the
  audit service in-process (decode, canonical JSON, hashes, Merkle nodes,
  rows and offsets in one transaction per partition batch); events/s from
  start to the last row.
* Verification of 1,000,000 rows read from the database: every chain
  replayed from Postgres (leaf and chain hashes, Merkle root against the
  signed checkpoints). The rows are generated with the ledger's own code
  and bulk-loaded with COPY.
* Query latency at 1,000,000 rows, through the HTTP API: records by model,
  version, type, actor and time range, a version's lifecycle, the split
  serving at time T, approvals, an inclusion proof; p50 and p95.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from mloop.audit.checkpointing import Checkpointer
from mloop.audit.domain.records import columns_of
from mloop.audit.live_verify import verify_ledger
from mloop.audit.main import create_app
from mloop.audit.settings import AuditSettings
from mloop.contracts import payloads as p
from mloop.contracts.envelope import Event, encode, new_event
from mloop.contracts.topics import TOPICS
from mloop.devstack import create_topics
from mloop.devstack.testing import EphemeralStack
from mloop.ledger.checkpoint import generate_private_key, private_key_to_pem
from mloop.ledger.ledger_domain import LedgerHead
from mloop.runtime.db import apply_migrations, connect_pool, load_migrations
from mloop.runtime.testing import auth_headers, running_app

JWT = "bench-secret-that-is-long-enough-for-hs256-0123456789"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q / 100 * (len(xs) - 1)))]


def _settings(stack: EphemeralStack, prefix: str, database_url: str, workdir: Path) -> AuditSettings:
    return AuditSettings(
        environment="test", kafka_bootstrap_servers=stack.bootstrap_servers, database_url=database_url,
        topic_prefix=prefix, jwt_secret=JWT, log_json=False, log_level="WARNING",
        audit_signing_key=private_key_to_pem(generate_private_key()).decode(),
        data_dir=workdir / "data", checkpoint_dir=workdir / "checkpoints", checkpoint_interval_s=5.0,
        checkpoint_every_events=10_000,
    )


# --------------------------------------------------------------------------- ingestion


async def bench_ingestion(stack: EphemeralStack, quick: bool, workdir: Path) -> dict[str, Any]:
    n = 10_000 if quick else 50_000
    prefix = f"b{uuid.uuid4().hex[:8]}."
    await create_topics(stack.bootstrap_servers, prefix=prefix)
    settings = _settings(stack, prefix, stack.new_database(), workdir / "ingest")
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap_servers, enable_idempotence=True, acks="all",
                                linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        futures = []
        for i in range(n):
            event: Event[Any]
            if i % 2:
                event = new_event("model-alias-changed", p.AliasChanged(
                    model=f"m{i % 101}", alias="challenger", version=str(i), seq=i), source="registry",
                    actor="service:registry")
            else:
                event = new_event("retrain-job-changed", p.RetrainJobChanged(
                    job_id=f"job-{i}", model=f"m{i % 101}", seq=i, state="running", previous_state="queued",
                    at=T0, detail="dispatched to the training webhook"), source="retrain-scheduler",
                    actor="service:retrain-scheduler")
            rec = encode(event, topic_prefix=prefix)
            futures.append(await producer.send(rec.topic, rec.value, key=rec.key, headers=rec.headers))
        for f in futures:
            await f
    finally:
        await producer.stop()

    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        started = time.perf_counter()
        async with running_app(create_app(settings), wait_assigned=False):
            first_row = None
            while True:
                try:
                    count = int(await conn.fetchval("SELECT count(*) FROM audit.ledger"))
                except asyncpg.UndefinedTableError:
                    count = 0
                if count and first_row is None:
                    first_row, first_cpu, first_count = time.perf_counter(), time.process_time(), count
                if count >= n:
                    cpu_s = time.process_time() - first_cpu
                    break
                await asyncio.sleep(0.05)
            done = time.perf_counter()
        chains = await conn.fetchval("SELECT count(DISTINCT chain) FROM audit.ledger")
    finally:
        await conn.close()
    steady = n / (done - first_row) if first_row else float("nan")
    return {
        "name": "ingestion: Kafka backlog to ledger rows",
        "value": round(steady),
        "unit": "events/s",
        "target": 2_000,
        "detail": f"{n} events on {chains} chains, rows+nodes+offsets per partition batch in one transaction; "
                  f"{n / (done - started):.0f} events/s including service start-up; "
                  f"{cpu_s / max(n - first_count, 1) * 1e6:.0f} µs CPU per event in the audit's process",
    }


# --------------------------------------------------------------------------- a million rows

_TYPES = ["model-registered", "model-validated", "promotion-requested", "promotion-reviewed", "model-promoted",
          "rollout-started", "traffic-split-changed", "rollout-advanced", "rollout-completed",
          "model-alias-changed", "drift-detected", "retrain-job-changed"]
_ACTORS = [f"user:u{i}" for i in range(40)] + ["service:rollout", "service:registry", "policy:default"]


def _cloudevent(i: int, rng: random.Random) -> dict[str, Any]:
    model = f"model-{i % 200}"
    version = str(1 + (i // 200) % 60)
    topic = _TYPES[i % len(_TYPES)]
    data: dict[str, Any] = {"model": model, "version": version, "seq": i // 200}
    if topic == "traffic-split-changed":
        w = round(rng.random(), 4)
        data = {"model": model, "seq": i // 200, "rollout_id": f"ro-{i // 2400}",
                "routes": [{"version": str(int(version) - 1 or 1), "weight": round(1 - w, 4), "shadow": False},
                           {"version": version, "weight": w, "shadow": False}]}
    elif topic == "promotion-reviewed":
        data.update(promotion_request_id=f"pr-{i}", decision="approved" if i % 7 else "rejected",
                    reviewer=rng.choice(_ACTORS[:40]), requested_by=rng.choice(_ACTORS[:40]), comment=None)
    elif topic == "model-promoted":
        data.update(previous_champion=str(max(1, int(version) - 1)), requested_by="user:u1",
                    approved_by=[rng.choice(_ACTORS[:40])], promotion_request_id=f"pr-{i - 1}")
    else:
        data.update(detail="x" * 40, metrics={"auc": round(rng.random(), 6), "log_loss": round(rng.random(), 6)},
                    lineage={"commit": "9fceb02d0ae598e95dc970b74767f19372d61af8",
                             "dataset": "s3://data/credit/2026-11-20.parquet"})
    return {
        "specversion": "1.0", "id": str(uuid.UUID(int=rng.getrandbits(128))), "source": "/mloop/bench",
        "type": TOPICS[topic].event_type,
        "time": (T0 + timedelta(seconds=30 * i)).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json", "subject": model, "actor": rng.choice(_ACTORS),
        "partitionkey": model, "data": data,
    }


async def load_rows(database_url: str, rows: int, chains: int = 8, chain_prefix: str = "") -> tuple[float, float]:
    """Generate ``rows`` ledger rows with the ledger's code and COPY them in; (generate_s, copy_s).

    ``chain_prefix`` names the chains apart from those a running audit service writes.
    """
    import json

    rng = random.Random(7)
    heads = [LedgerHead(f"{chain_prefix}{_TYPES[c]}/0") for c in range(chains)]
    records: list[tuple[Any, ...]] = []
    nodes: list[tuple[Any, ...]] = []
    started = time.perf_counter()
    for i in range(rows):
        event = _cloudevent(i, rng)
        head = heads[i % chains]
        rec, completed = head.append(event)
        cols = columns_of(event)
        records.append((rec.chain, rec.seq, rec.event_id, rec.canonical, rec.leaf_hash, rec.chain_hash,
                        rec.chain.rsplit("/", 1)[0], rec.seq, cols["event_type"], cols["source"], cols["subject"],
                        cols["model"], cols["version"], cols["actor"],
                        datetime.fromisoformat(event["time"].replace("Z", "+00:00")),
                        json.dumps(cols["data"], separators=(",", ":"))))
        nodes += [(rec.chain, n.level, n.index, n.hash) for n in completed]
    generated = time.perf_counter() - started
    conn = await asyncpg.connect(database_url)  # no jsonb codec: COPY takes the JSON text
    try:
        started = time.perf_counter()
        await conn.executemany(
            "INSERT INTO audit.ledger_chains (chain, topic, partition, origin) VALUES ($1, $2, 0, $3)",
            [(h.chain, h.chain.rsplit("/", 1)[0], f"mloop/audit/{h.chain}") for h in heads],
        )
        columns = ["chain", "seq", "event_id", "canonical", "leaf_hash", "chain_hash", "topic", "kafka_offset",
                   "event_type", "source", "subject", "model", "version", "actor", "event_time", "data"]
        for i in range(0, len(records), 100_000):
            await conn.copy_records_to_table("ledger", schema_name="audit", columns=columns,
                                             records=records[i:i + 100_000])
        await conn.copy_records_to_table("ledger_nodes", schema_name="audit",
                                         columns=["chain", "level", "index", "hash"], records=nodes)
        await conn.execute("ANALYZE audit.ledger")
        copied = time.perf_counter() - started
    finally:
        await conn.close()
    return generated, copied


async def bench_million(stack: EphemeralStack, quick: bool, workdir: Path) -> list[dict[str, Any]]:
    rows = 100_000 if quick else 1_000_000
    prefix = f"b{uuid.uuid4().hex[:8]}."
    await create_topics(stack.bootstrap_servers, prefix=prefix)
    database_url = stack.new_database()
    settings = _settings(stack, prefix, database_url, workdir / "million")
    pool = await connect_pool(database_url, "audit")
    try:
        await apply_migrations(pool, "audit", load_migrations("mloop.runtime.migrations")
                               + load_migrations("mloop.audit.migrations"))
        generated, copied = await load_rows(database_url, rows)
        from mloop.audit.checkpointing import load_signing_key

        checkpointer = Checkpointer(settings, load_signing_key(settings))
        started = time.perf_counter()
        signed = await checkpointer.checkpoint(pool)
        signing = time.perf_counter() - started
        async with pool.acquire() as conn:
            started = time.perf_counter()
            cpu_started = time.process_time()
            report = await verify_ledger(conn, checkpointer.public_key)
            verify_s = time.perf_counter() - started
            verify_cpu = time.process_time() - cpu_started
        assert report.ok and sum(c.rows for c in report.chains) == rows, report.summary()
    finally:
        await pool.close()
    results = [{
        "name": f"verification of {rows:,} rows from the database",
        "value": round(verify_s, 2),
        "unit": "s",
        "target": 60.0,
        "detail": f"{rows / verify_s:,.0f} rows/s over {len(report.chains)} chains (cursor in seq order, leaf + "
                  f"chain hash, Merkle root vs {len(signed)} signed checkpoints); {verify_cpu:.1f}s CPU in this "
                  f"process; rows generated in {generated:.1f}s, COPY in {copied:.1f}s, checkpoints signed from "
                  f"stored nodes in {signing * 1000:.0f} ms",
    }]
    results += await bench_queries(settings, rows, quick)
    return results


async def bench_queries(settings: AuditSettings, rows: int, quick: bool) -> list[dict[str, Any]]:
    runs = 20 if quick else 60
    rng = random.Random(11)
    h = auth_headers(settings, "auditor", "viewer")
    out: list[dict[str, Any]] = []
    async with running_app(create_app(settings), wait_assigned=False) as client:
        sample = (await client.get("/records", params={"model": "model-7", "page_size": 1}, headers=h)).json()
        some_id = sample["items"][0]["event_id"]

        def at(frac: float) -> str:
            return (T0 + timedelta(seconds=30 * rows * frac)).isoformat()

        queries: list[tuple[str, Any]] = [
            ("records by model (page of 50)", lambda: ("/records", {"model": f"model-{rng.randrange(200)}"})),
            ("records by model and version", lambda: ("/records", {"model": f"model-{rng.randrange(200)}",
                                                                   "version": str(1 + rng.randrange(60))})),
            ("records by event type", lambda: ("/records", {"type": rng.choice(_TYPES)})),
            ("records by actor, page 2", None),
            ("records in a one-day time range", lambda: ("/records", {"since": at(f := rng.random() * 0.9),
                                                                      "until": at(f + 2880 / rows)})),
            ("lifecycle of one version", lambda: (
                f"/models/model-{rng.randrange(200)}/versions/{1 + rng.randrange(60)}/lifecycle", {})),
            ("version serving a model at time T", lambda: (f"/models/model-{rng.randrange(200)}/serving",
                                                           {"at": at(0.1 + rng.random() * 0.9)})),
            ("approvals of a model", lambda: ("/approvals", {"model": f"model-{rng.randrange(200)}"})),
            ("inclusion proof of a record", lambda: (f"/records/{some_id}/proof", {})),
        ]
        for name, make in queries:
            latencies: list[float] = []
            for _ in range(runs):
                if make is None:
                    actor = rng.choice(_ACTORS)
                    first = (await client.get("/records", params={"actor": actor}, headers=h)).json()
                    path, params = "/records", {"actor": actor, "page_token": first["next_page_token"]}
                else:
                    path, params = make()
                started = time.perf_counter()
                r = await client.get(path, params=params, headers=h)
                latencies.append((time.perf_counter() - started) * 1000)
                assert r.status_code in (200, 404), (path, r.status_code, r.text[:300])
            out.append({
                "name": f"query at {rows:,} rows: {name}",
                "value": round(statistics.median(latencies), 1),
                "unit": "ms p50",
                "target": 100.0,
                "detail": f"p95 {_pct(latencies, 95):.1f} ms over {runs} requests through the HTTP API",
            })
    return out


async def _run(stack: EphemeralStack, quick: bool, workdir: Path) -> list[dict[str, Any]]:
    results = [await bench_ingestion(stack, quick, workdir)]
    results += await bench_million(stack, quick, workdir)
    return results


def run(quick: bool = False) -> list[dict[str, Any]]:
    # The stack starts outside the event loop (its start-up runs one of its own).
    with EphemeralStack() as stack, tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        return asyncio.run(_run(stack, quick, Path(tmp)))


if __name__ == "__main__":
    import json
    import sys

    for row in run(quick="--quick" in sys.argv):
        print(json.dumps(row))
