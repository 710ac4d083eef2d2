"""Timing of ledger verification (not collected by pytest).

    .venv/bin/python tests/unit/ledger/bench_ledger_verify.py [ROWS] [--bundle]

Builds ROWS ledger rows of ~500-byte canonical CloudEvents (default
1,000,000), then times ``verify_chain`` over them; with ``--bundle`` also
writes them as a full-export evidence bundle and times ``verify_bundle``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

from mloop.ledger.checkpoint import Checkpoint, generate_private_key, sign
from mloop.ledger.ledger_domain import LedgerHead, LedgerRecord, verify_chain
from mloop.ledger.verify import ChainExport, verify_bundle, write_bundle

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


def main(argv: list[str]) -> None:
    rows = int(argv[0]) if argv and argv[0].isdigit() else 1_000_000
    head = LedgerHead("registry")
    started = time.perf_counter()
    records: list[LedgerRecord] = [head.append(event(i))[0] for i in range(rows)]
    built = time.perf_counter() - started
    mean = sum(len(r.canonical) for r in records[:1000]) / min(rows, 1000)
    print(f"built {rows} rows ({mean:.0f} B canonical) in {built:.2f}s")

    key = generate_private_key()
    now = datetime.now(UTC)
    checkpoints = [sign(Checkpoint(ORIGIN, head.size, head.root(), now), key)]

    started, cpu = time.perf_counter(), time.process_time()
    result = verify_chain(records, checkpoints=checkpoints)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert result.ok, result.reason
    print(f"verify_chain: {rows} rows in {elapsed:.2f}s wall, {cpu:.2f}s CPU ({cpu / rows * 1e6:.2f} us/row)")

    if "--bundle" in argv:
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            write_bundle(tmp, [ChainExport("registry", ORIGIN, checkpoints, records)])
            written = time.perf_counter() - started
            started, cpu = time.perf_counter(), time.process_time()
            report = verify_bundle(tmp, key.public_key())
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            assert report.ok, report.summary()
            print(f"write_bundle: {written:.2f}s; verify_bundle: {elapsed:.2f}s wall, {cpu:.2f}s CPU")


if __name__ == "__main__":
    main(sys.argv[1:])
