"""Throw-away Kafka + Postgres for test sessions.

Typical use in a ``conftest.py``::

    @pytest.fixture(scope="session")
    def stack() -> Iterator[EphemeralStack]:
        with EphemeralStack() as s:
            yield s

With ``MLOOP_TEST_USE_RUNNING_STACK=1`` plus ``KAFKA_BOOTSTRAP_SERVERS`` and
``DATABASE_URL`` in the environment, the stack already running there is used instead
and left running on exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

from mloop.devstack._paths import StackPaths, find_free_ports
from mloop.devstack.kafka import LocalKafka, wait_for_kafka
from mloop.devstack.postgres import LocalPostgres, create_database, drop_database

__all__ = ["USE_RUNNING_STACK_ENV", "EphemeralStack"]

USE_RUNNING_STACK_ENV = "MLOOP_TEST_USE_RUNNING_STACK"


class EphemeralStack:
    """A private Kafka and Postgres on free ports in a temporary folder.

    ``start()`` (or entering the context) launches both (Postgres with ``fast=True``);
    ``stop()`` (or leaving it) stops both and deletes the folder. ``startup_seconds``
    tells how long starting took. Should the owning process die without stopping the
    stack (a killed test run), a small watchdog process kills both servers and deletes
    the folder.
    """

    def __init__(self, root: Path | None = None, *, keep: bool = False) -> None:
        self._root_arg = root
        self.keep = keep
        self.reuse = os.environ.get(USE_RUNNING_STACK_ENV, "") not in ("", "0", "false")
        self.paths: StackPaths | None = None
        self.kafka: LocalKafka | None = None
        self.postgres: LocalPostgres | None = None
        self.startup_seconds: float | None = None
        self._bootstrap: str | None = None
        self._database_url: str | None = None
        self._created_root = False
        self._databases: list[str] = []
        self._watchdog: subprocess.Popen[bytes] | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> EphemeralStack:
        """Start (or attach to) the stack; returns ``self``."""
        began = time.monotonic()
        if self.reuse:
            try:
                self._bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
                self._database_url = os.environ["DATABASE_URL"]
            except KeyError as exc:
                raise RuntimeError(f"{USE_RUNNING_STACK_ENV}=1 needs {exc.args[0]} in the environment") from None
            import asyncio

            asyncio.run(wait_for_kafka(self._bootstrap, timeout_s=timeout))
            self.startup_seconds = time.monotonic() - began
            return self

        if self._root_arg is None:
            # Short path: the Postgres socket path must stay under 108 bytes.
            root = Path(tempfile.mkdtemp(prefix="mloop-stack-"))
            self._created_root = True
        else:
            root = self._root_arg
            root.mkdir(parents=True, exist_ok=True)
        self.paths = StackPaths(root)
        kafka_port, controller_port, pg_port = find_free_ports(3)
        if self._created_root and not self.keep:
            self._watchdog = subprocess.Popen(
                [sys.executable, "-m", "mloop.devstack._watchdog", str(os.getpid()), str(root)],
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.kafka = LocalKafka(self.paths, kafka_port, controller_port)
        self.postgres = LocalPostgres(self.paths, pg_port, fast=True)
        try:
            self.kafka.start()  # the JVM boots while Postgres initialises
            self.postgres.start(timeout=timeout)
            self.kafka.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        self._bootstrap = self.kafka.bootstrap_servers
        self._database_url = self.postgres.url
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop what this object started and delete its folder (unless ``keep``)."""
        if self.reuse:
            for name in self._databases:
                with contextlib.suppress(RuntimeError):
                    drop_database(self.database_url, name)
            self._databases.clear()
            return
        if self._watchdog is not None:
            self._watchdog.terminate()
            self._watchdog.wait()
            self._watchdog = None
        errors: list[BaseException] = []
        if self.kafka is not None:
            try:
                self.kafka.stop(timeout=30)
            except Exception as exc:
                errors.append(exc)
        if self.postgres is not None:
            try:
                self.postgres.stop(timeout=30, mode="immediate" if not self.keep else "fast")
            except Exception as exc:
                errors.append(exc)
        if self.paths is not None and self._created_root and not self.keep:
            shutil.rmtree(self.paths.root, ignore_errors=True)
        if errors:
            raise errors[0]

    def __enter__(self) -> EphemeralStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- endpoints ---------------------------------------------------------------------
    @property
    def bootstrap_servers(self) -> str:
        """Kafka bootstrap servers, ``127.0.0.1:<port>``."""
        if self._bootstrap is None:
            raise RuntimeError("the stack is not started")
        return self._bootstrap

    @property
    def database_url(self) -> str:
        """URL of the stack's ``mloop`` database."""
        if self._database_url is None:
            raise RuntimeError("the stack is not started")
        return self._database_url

    def new_database(self, name: str | None = None) -> str:
        """Create a fresh, empty database (default name: random) and return its URL.

        An existing database of that name is dropped first.
        """
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        drop_database(self.database_url, name)
        url = create_database(self.database_url, name, exist_ok=False)
        self._databases.append(name)
        return url
