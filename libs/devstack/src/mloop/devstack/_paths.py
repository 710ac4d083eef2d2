"""Filesystem layout of a local stack and small process helpers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "StackPaths",
    "find_free_ports",
    "kill_pid",
    "port_is_open",
    "process_alive",
    "read_pid",
    "repo_root",
    "tail",
    "terminate_pid",
]

_POM_RELATIVE = Path("deploy") / "local" / "kafka" / "pom.xml"


def repo_root() -> Path:
    """Return the repository root.

    ``MLOOP_REPO_ROOT`` wins when set; otherwise the first ancestor of this file, then of
    the current directory, that holds ``deploy/local/kafka/pom.xml``.
    """
    env = os.environ.get("MLOOP_REPO_ROOT")
    if env:
        return Path(env).resolve()
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for candidate in (start, *start.parents):
            if (candidate / _POM_RELATIVE).is_file():
                return candidate
    raise RuntimeError(f"cannot find the repository root (no ancestor holds {_POM_RELATIVE}); set MLOOP_REPO_ROOT")


@dataclass(frozen=True)
class StackPaths:
    """Where one local stack keeps its data, logs and pid files.

    Everything lives under ``root``; deleting ``root`` (with the stack stopped) removes
    the stack's state completely. The Kafka jars are not part of it: they are shared by
    every stack and cached under ``<repo>/.cache/kafka/libs``.
    """

    root: Path

    @classmethod
    def default(cls) -> StackPaths:
        """The stack of ``make up``: ``<repo>/.local/stack``."""
        return cls(repo_root() / ".local" / "stack")

    # Kafka
    @property
    def kafka_dir(self) -> Path:
        return self.root / "kafka"

    @property
    def kafka_data(self) -> Path:
        return self.kafka_dir / "data"

    @property
    def kafka_properties(self) -> Path:
        return self.kafka_dir / "server.properties"

    @property
    def kafka_log4j(self) -> Path:
        return self.kafka_dir / "log4j2.properties"

    @property
    def kafka_cds_target(self) -> Path:
        return self.kafka_dir / "classes.jsa.target"

    @property
    def kafka_log(self) -> Path:
        return self.logs_dir / "kafka.log"

    @property
    def kafka_pid(self) -> Path:
        return self.pids_dir / "kafka.pid"

    # Postgres
    @property
    def pg_dir(self) -> Path:
        return self.root / "postgres"

    @property
    def pg_data(self) -> Path:
        return self.pg_dir / "data"

    @property
    def pg_socket_dir(self) -> Path:
        return self.pg_dir / "run"

    @property
    def pg_log(self) -> Path:
        # Written by the server itself, so it lives in the server's own folder.
        return self.pg_dir / "postgres.log"

    # Shared
    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def pids_dir(self) -> Path:
        return self.root / "run"

    @property
    def secrets_file(self) -> Path:
        return self.root / "secrets.env"

    @property
    def config_file(self) -> Path:
        return self.root / "stack.json"

    def service_log(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def service_pid(self, name: str) -> Path:
        return self.pids_dir / f"{name}.pid"


def find_free_ports(count: int) -> list[int]:
    """Return ``count`` distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


def port_is_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def read_pid(path: Path) -> int | None:
    """The pid stored in the first line of ``path``, or None."""
    try:
        first = path.read_text().splitlines()[0].strip()
        return int(first)
    except (OSError, IndexError, ValueError):
        return None


def process_alive(pid: int | None, needle: str | None = None) -> bool:
    """True when ``pid`` runs (zombies do not count) and its command line holds ``needle``."""
    if pid is None or pid <= 0:
        return False
    proc = Path("/proc") / str(pid)
    try:
        stat = (proc / "stat").read_text()
        # The state follows the parenthesised command name, which may contain spaces.
        state = stat[stat.rindex(")") + 2]
        if state in "ZX":
            return False
        if needle is not None:
            raw = (proc / "cmdline").read_bytes()
            if not raw:
                # Empty for a moment while the kernel finishes an exec (a child we just
                # launched may be there when Popen returns): not yet checkable, so alive.
                return True
            return needle in raw.replace(b"\0", b" ").decode(errors="replace")
        return True
    except (OSError, ValueError, IndexError):
        return False


def _reap(pid: int) -> None:
    """Collect ``pid``'s exit status if it is our child; ignore it otherwise."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def kill_pid(pid: int, needle: str | None) -> None:
    """SIGKILL ``pid`` (when it is alive and matches ``needle``) and wait until it is gone."""
    if not process_alive(pid, needle):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        _reap(pid)
        if not process_alive(pid, needle):
            return
        time.sleep(0.02)


def terminate_pid(pid: int, needle: str | None, timeout: float) -> bool:
    """Send SIGTERM to ``pid``, wait up to ``timeout`` seconds, then SIGKILL.

    Returns True when the process had to be killed.
    """
    if not process_alive(pid, needle):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not process_alive(pid, needle):
            return False
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        _reap(pid)
        if not process_alive(pid, needle):
            break
        time.sleep(0.05)
    return True


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file ('' when it does not exist)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created when missing)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
