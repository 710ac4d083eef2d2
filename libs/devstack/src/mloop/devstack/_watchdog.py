"""Tears an ephemeral stack down when the process that owns it dies without doing so.

``python -m mloop.devstack._watchdog OWNER_PID ROOT`` polls ``OWNER_PID``; once it is
gone, it kills the Kafka broker and the Postgres server recorded under ``ROOT`` and
deletes ``ROOT``. The owner stops the watchdog (SIGTERM) when it cleans up normally.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from mloop.devstack._paths import StackPaths, process_alive, read_pid


def _postmaster_pid(paths: StackPaths) -> int | None:
    return read_pid(paths.pg_data / "postmaster.pid")


def teardown(paths: StackPaths) -> None:
    """Kill the stack's processes at once and delete its folder."""
    kafka = read_pid(paths.kafka_pid)
    if process_alive(kafka, "kafka.Kafka") and kafka is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(kafka, signal.SIGKILL)
    postmaster = _postmaster_pid(paths)
    if process_alive(postmaster, "postgres") and postmaster is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(postmaster, signal.SIGQUIT)  # immediate shutdown
        for _ in range(100):
            if not process_alive(postmaster):
                break
            time.sleep(0.05)
    shutil.rmtree(paths.root, ignore_errors=True)


def main(argv: list[str]) -> int:
    owner, root = int(argv[0]), Path(argv[1])
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the owner to handle
    while not stop:
        if not process_alive(owner):
            teardown(StackPaths(root))
            return 0
        time.sleep(0.5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
