"""Offline ledger verification, in memory and from an evidence bundle.

    .venv/bin/python bench/bench_ledger.py [--quick]

Builds ledger rows of ~500-byte canonical CloudEvents (1,000,000; 100,000
with ``--quick``), times ``verify_chain`` over them, then writes them as a
full-export evidence bundle and times ``verify_bundle`` (what an auditor runs).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

from mloop.ledger.bundle import ChainExport, write_bundle
from mloop.ledger.checkpoint import Checkpoint, generate_private_key, sign
from mloop.ledger.ledger_domain import LedgerHead, LedgerRecord, verify_chain
from mloop.ledger.verify import verify_bundle

ORIGIN = "mloop.example/audit/registry"


def event(i: int) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"evt-{i:012d}",
        "source": "/mloop/registry",
        "type": "mloop.registry.model_version_registered.v1",
        "time": "2025-03-01T12:00:00.000000Z",
        "datacontenttype": "application/json",
        "subject": f"models/churn/versions/{i}",
        "data": {
            "model": "churn",
            "version": i,
            "actor": "alice@example.com",
            "metrics": {"auc": 0.8123456789, "f1": 0.71},
            "lineage": {
                "repo": "git@github.com:example/churn.git",
                "commit": "0123456789abcdef0123456789abcdef01234567",
                "dataset": "s3://bucket/churn/v12",
            },
        },
    }


def run(quick: bool = False) -> list[dict[str, Any]]:
    rows = 100_000 if quick else 1_000_000
    head = LedgerHead("registry")
    records: list[LedgerRecord] = [head.append(event(i))[0] for i in range(rows)]
    mean = sum(len(r.canonical) for r in records[:1000]) / min(rows, 1000)
    key = generate_private_key()
    checkpoints = [sign(Checkpoint(ORIGIN, head.size, head.root(), datetime.now(UTC)), key)]

    started = time.perf_counter()
    result = verify_chain(records, checkpoints=checkpoints)
    chain_s = time.perf_counter() - started
    if not result.ok:
        raise RuntimeError(f"the generated chain does not verify: {result.reason}")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        write_bundle(tmp, [ChainExport("registry", ORIGIN, checkpoints, records)])
        written_s = time.perf_counter() - started
        started = time.perf_counter()
        report = verify_bundle(tmp, key.public_key())
        bundle_s = time.perf_counter() - started
    if not report.ok:
        raise RuntimeError(f"the generated bundle does not verify: {report.summary()}")
    detail = f"{rows:,} rows of {mean:.0f}-byte canonical events, one chain, one signed checkpoint"
    return [
        {"name": "ledger: verify_chain in memory", "value": round(rows / chain_s), "unit": "rows/s",
         "target": None, "detail": f"{detail}; {chain_s:.2f} s"},
        {"name": "ledger: write a full evidence bundle", "value": round(rows / written_s), "unit": "rows/s",
         "target": None, "detail": f"{detail}; {written_s:.2f} s"},
        {"name": "ledger: verify_bundle offline", "value": round(rows / bundle_s), "unit": "rows/s",
         "target": None, "detail": f"{detail}; {bundle_s:.2f} s"},
    ]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv[1:]):
        print(json.dumps(row))
