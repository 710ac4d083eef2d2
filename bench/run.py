"""Run every benchmark: ``python bench/run.py [--quick] [--only NAME ...]``.

Each ``bench/bench_*.py`` exposes ``run(quick: bool) -> list[dict]`` with
``name``, ``value``, ``unit``, ``target`` and ``detail``. Results go to
``bench-results/<timestamp>.json`` and ``bench-results/latest.json``, and a
table is printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def machine() -> dict[str, Any]:
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "memory_gib": mem, "cpu": cpu, "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}"}


def load(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = mod
    spec.loader.exec_module(mod)
    return mod


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    ap.add_argument("--only", nargs="*", help="bench module names, e.g. bench_rollout")
    ap.add_argument("--out", default="bench-results")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE))
    results: list[dict[str, Any]] = []
    failures = 0
    for path in sorted(HERE.glob("bench_*.py")):
        if args.only and path.stem not in args.only:
            continue
        print(f"== {path.stem}", flush=True)
        started = time.perf_counter()
        try:
            rows = load(path).run(quick=args.quick)
        except Exception:
            failures += 1
            traceback.print_exc()
            rows = [{"name": f"{path.stem} failed", "value": float("nan"), "unit": "", "target": None,
                     "detail": traceback.format_exc(limit=3)}]
        for r in rows:
            r["suite"] = path.stem.removeprefix("bench_")
        results.extend(rows)
        print(f"   {len(rows)} results in {time.perf_counter() - started:.1f}s", flush=True)
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    doc = {"at": stamp, "machine": machine(), "quick": args.quick, "results": results}
    (out / f"{stamp}.json").write_text(json.dumps(doc, indent=2, default=str))
    (out / "latest.json").write_text(json.dumps(doc, indent=2, default=str))
    print()
    w = max([len(r["name"]) for r in results] + [10])
    print(f"{'suite':<12} {'benchmark':<{w}} {'value':>14} {'unit':<14} target")
    print("-" * (w + 60))
    for r in results:
        v = r["value"]
        vs = f"{v:,.4g}" if isinstance(v, float) else str(v)
        print(f"{r['suite']:<12} {r['name']:<{w}} {vs:>14} {r.get('unit') or '':<14} {r.get('target') or ''}")
    print(f"\nmachine: {doc['machine']}\nresults: {out / 'latest.json'}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
