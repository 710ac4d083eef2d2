"""``python -m mloop.demo [--scenario happy|rollback] [--size small|default]``.

Runs the whole loop against a running stack (``make up``): endpoints come from
the environment (``KAFKA_BOOTSTRAP_SERVERS``, ``MLOOP_*_URL``,
``MLOOP_JWT_SECRET``, ``MLOOP_TOPIC_PREFIX``) or, when absent, from the local
stack's status. Prints a live timeline and a report, writes the report as
HTML under ``reports/``, and exits non-zero when the loop does not close.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from pathlib import Path

from rich.console import Console

from mloop.client import Endpoints
from mloop.demo.run import DemoFailed, Stack, run_demo

__all__ = ["main", "stack_from_env"]


def stack_from_env() -> Stack:
    """The platform's endpoints: the environment first, then the local stack's files."""
    env = dict(os.environ)
    if "KAFKA_BOOTSTRAP_SERVERS" not in env or "MLOOP_JWT_SECRET" not in env:
        from mloop.devstack import stack_env

        env = {**stack_env(), **env}
    secret = env.get("MLOOP_JWT_SECRET")
    if not secret:
        raise DemoFailed("no JWT secret: start the stack first (`make up`) or set MLOOP_JWT_SECRET")
    return Stack(
        bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
        endpoints=Endpoints.from_env(env),
        jwt_secret=secret,
        topic_prefix=env.get("MLOOP_TOPIC_PREFIX", ""),
    )


def _repo_root() -> Path:
    try:
        from mloop.devstack import repo_root

        return repo_root()
    except RuntimeError:
        return Path.cwd()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mloop.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=["happy", "rollback"], default="happy")
    parser.add_argument("--size", choices=["small", "default"], default="default")
    parser.add_argument("--reports", type=Path, default=None, help="folder for the HTML report (default: reports/)")
    parser.add_argument("--no-live", action="store_true", help="print the timeline line by line")
    parser.add_argument(
        "--settle",
        type=float,
        default=None,
        metavar="SECONDS",
        help="keep serving the drifted world this long after the rollout ends (default: 30 s, 10 s at size small)",
    )
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    console = Console()
    repo = _repo_root()
    reports = args.reports or repo / "reports"
    began = time.monotonic()
    try:
        stack = stack_from_env()
        result = asyncio.run(
            run_demo(
                stack,
                scenario=args.scenario,
                size=args.size,
                repo=repo,
                work_root=repo / ".local" / "demo",
                console=console,
                live=console.is_terminal and not args.no_live,
                settle_s=args.settle,
            )
        )
    except DemoFailed as exc:
        console.print(f"\n[bold red]demo failed[/bold red] after {time.monotonic() - began:.0f}s: {exc}")
        console.print("logs: .local/demo/<run>/logs and the services' logs under .local/stack/logs")
        return 1
    except KeyboardInterrupt:
        return 130
    from mloop.demo.report import build_report, print_report, write_html

    report = build_report(result)
    print_report(report, console)
    path = write_html(report, reports)
    console.print(f"\nHTML report: [bold]{path}[/bold]")
    if not report["audit"].get("ok"):
        console.print("[bold red]the audit ledger did not verify[/bold red]")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
