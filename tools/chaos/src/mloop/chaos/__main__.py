"""``python -m mloop.chaos --seed N``: one chaos run; exit code 0 when every invariant holds."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mloop.chaos.run import run_chaos


def _repo_root() -> Path:
    try:
        from mloop.devstack import repo_root

        return repo_root()
    except RuntimeError:
        return Path.cwd()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mloop.chaos", description=__doc__)
    parser.add_argument("--seed", type=int, required=True, help="the fault schedule's seed")
    parser.add_argument("--span", type=float, default=60.0, help="seconds over which the faults are spread")
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds the loop has to close after drift")
    parser.add_argument("--reports", type=Path, default=None, help="folder for the report (default: reports/)")
    parser.add_argument("--hold", type=float, default=0.0, metavar="SECONDS",
                        help="keep the platform up this long after the check, to inspect it")
    parser.add_argument("--plan-only", action="store_true", help="print the schedule and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    if args.plan_only:
        from mloop.chaos.schedule import plan

        print(plan(args.seed, span_s=args.span).render())
        return 0
    repo = _repo_root()
    report = run_chaos(args.seed, span_s=args.span, work_root=repo / ".local" / "chaos", repo=repo,
                       deadline_s=args.deadline, say=lambda m: print(m, flush=True), hold_s=args.hold)
    js, txt = report.write(args.reports or repo / "reports")
    print()
    print(report.render())
    print(f"report: {txt} and {js}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
