"""``python -m mloop.devstack up|down|status|clean [--no-services]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mloop.devstack._paths import StackPaths
from mloop.devstack.stack import clean, down, format_status, status, up


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m mloop.devstack",
        description="The local mloop stack: Kafka, Postgres, the five services and the console.",
    )
    parser.add_argument("command", choices=["up", "down", "status", "clean"])
    parser.add_argument(
        "--no-services",
        dest="services",
        action="store_false",
        help="up: start only Kafka and Postgres",
    )
    parser.add_argument("--json", action="store_true", help="status: print JSON")
    parser.add_argument("--root", help="stack folder (default: <repo>/.local/stack)")
    parser.add_argument("--timeout", type=float, default=120.0, help="up: seconds to wait")
    args = parser.parse_args(argv)

    paths = StackPaths(Path(args.root)) if args.root else None
    try:
        if args.command == "up":
            st = up(services=args.services, paths=paths, timeout=args.timeout)
            sys.stdout.write(format_status(st, include_secret=False))
        elif args.command == "down":
            down(paths)
        elif args.command == "clean":
            clean(paths)
        else:
            st = status(paths)
            if args.json:
                print(json.dumps(st, indent=2))
            else:
                sys.stdout.write(format_status(st))
    except (RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
