"""A single-node Apache Kafka broker (KRaft combined mode) run from Maven Central jars."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from mloop.devstack._paths import (
    StackPaths,
    file_lock,
    kill_pid,
    port_is_open,
    process_alive,
    read_pid,
    repo_root,
    tail,
    terminate_pid,
)

__all__ = [
    "KAFKA_MAIN_CLASS",
    "LocalKafka",
    "TopicSpecLike",
    "create_topics",
    "ensure_kafka_jars",
    "kafka_libs_dir",
    "new_cluster_id",
    "render_log4j_properties",
    "render_server_properties",
    "wait_for_kafka",
]

KAFKA_MAIN_CLASS = "kafka.Kafka"
_STORAGE_TOOL_CLASS = "kafka.tools.StorageTool"
_JVM_HEAP = ("-Xms256m", "-Xmx768m")
_LOG_ROTATE_BYTES = 20 * 1024 * 1024


class TopicSpecLike(Protocol):
    """What :func:`create_topics` needs from a topic spec (``mloop.contracts.topics``)."""

    @property
    def name(self) -> str: ...

    @property
    def partitions(self) -> int: ...

    @property
    def config(self) -> Mapping[str, str]: ...


# --------------------------------------------------------------------------- jars


def kafka_libs_dir() -> Path:
    """Folder of the cached broker jars: ``MLOOP_KAFKA_LIBS`` or ``<repo>/.cache/kafka/libs``."""
    env = os.environ.get("MLOOP_KAFKA_LIBS")
    if env:
        return Path(env)
    return repo_root() / ".cache" / "kafka" / "libs"


def _jars_present(libs: Path) -> bool:
    return (libs / ".complete").is_file() and any(libs.glob("kafka_2.13-*.jar"))


def ensure_kafka_jars(libs: Path | None = None, pom: Path | None = None) -> Path:
    """Fetch the broker jars from Maven Central into ``libs`` unless they are there.

    Uses ``mvn dependency:copy-dependencies`` on ``deploy/local/kafka/pom.xml``. The copy
    goes to a temporary sibling folder that is renamed into place, under a file lock, so
    concurrent callers never see a half-filled folder. Returns the folder.
    """
    libs = libs or kafka_libs_dir()
    if _jars_present(libs):
        return libs
    pom = pom or repo_root() / "deploy" / "local" / "kafka" / "pom.xml"
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("Maven (mvn) is needed once to fetch the Kafka jars; install it")
    libs.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(libs.parent / ".fetch.lock"):
        if _jars_present(libs):
            return libs
        staging = Path(tempfile.mkdtemp(prefix=".libs-", dir=libs.parent))
        try:
            result = subprocess.run(
                [
                    mvn,
                    "-q",
                    "-B",
                    "-f",
                    str(pom),
                    "dependency:copy-dependencies",
                    f"-DoutputDirectory={staging}",
                    "-DincludeScope=runtime",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise RuntimeError(f"fetching the Kafka jars failed:\n{result.stdout[-4000:]}")
            if not any(staging.glob("kafka_2.13-*.jar")):
                raise RuntimeError(f"mvn succeeded but {staging} holds no kafka_2.13 jar")
            (staging / ".complete").write_text("ok\n")
            if libs.exists():
                shutil.rmtree(libs)
            staging.rename(libs)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return libs


def _cds_archive(java: str, libs: Path) -> Path | None:
    """Where the class-data-sharing archive for this JVM and jar set lives, or None if off.

    The archive (written by the first broker that stops cleanly, then mapped by later
    ones) lets the JVM skip parsing and verifying Kafka's classes, which shortens startup.
    A stale or foreign archive is only a missed optimisation: the JVM ignores it.
    """
    if os.environ.get("MLOOP_KAFKA_CDS", "1").lower() in ("0", "false", "no"):
        return None
    key = "\n".join([os.path.realpath(java), *sorted(p.name for p in libs.glob("*.jar"))])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return libs.parent / "cds" / f"kafka-{digest}.jsa"


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise RuntimeError("Java 17+ is needed to run Kafka; none found on PATH or JAVA_HOME")
    return found


# --------------------------------------------------------------------------- config


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID in unpadded URL-safe base64 (22 characters).

    Like Kafka's own ``Uuid.randomUuid``, ids starting with ``-`` are rejected: the
    storage tool would read such an id as an option.
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def render_server_properties(*, port: int, controller_port: int, data_dir: Path, node_id: int = 1) -> str:
    """The ``server.properties`` of a single combined broker+controller node."""
    props: dict[str, str] = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": f"{node_id}@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data_dir),
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # One node: spreading the internal topics over 50 partitions buys nothing and
        # slows the first consumer group (or transaction) down noticeably.
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.num.partitions": "1",
        "auto.create.topics.enable": "false",
        "message.max.bytes": "16777216",
        "num.partitions": "1",
    }
    lines = ["# Generated by mloop.devstack; rewritten on every start.", ""]
    lines += [f"{key}={value}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def render_log4j_properties() -> str:
    """Log4j 2 configuration: INFO to stdout (the broker log), chatty loggers at WARN."""
    return "\n".join(
        [
            "status = warn",
            "appender.stdout.type = Console",
            "appender.stdout.name = STDOUT",
            "appender.stdout.layout.type = PatternLayout",
            "appender.stdout.layout.pattern = [%d] %p %m (%c)%n",
            "rootLogger.level = INFO",
            "rootLogger.appenderRef.stdout.ref = STDOUT",
            "logger.statechange.name = state.change.logger",
            "logger.statechange.level = WARN",
            "logger.request.name = kafka.request.logger",
            "logger.request.level = WARN",
            "logger.clients.name = org.apache.kafka.clients",
            "logger.clients.level = WARN",
            "logger.config.name = org.apache.kafka.common.config.AbstractConfig",
            "logger.config.level = WARN",
            "",
        ]
    )


# --------------------------------------------------------------------------- broker


class LocalKafka:
    """One Kafka node on 127.0.0.1 whose data, config, log and pid live under ``paths``.

    The JVM runs detached (own session), so it outlives the Python process that started
    it; :meth:`stop` finds it again through the pid file.
    """

    def __init__(self, paths: StackPaths, port: int = 9092, controller_port: int = 9093) -> None:
        self.paths = paths
        self.port = port
        self.controller_port = controller_port
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for clients."""
        return f"127.0.0.1:{self.port}"

    def ensure_jars(self) -> Path:
        """Fetch the jars once (see :func:`ensure_kafka_jars`); return their folder."""
        return ensure_kafka_jars()

    @property
    def pid(self) -> int | None:
        """Pid of the running broker, or None."""
        pid = read_pid(self.paths.kafka_pid)
        return pid if process_alive(pid, KAFKA_MAIN_CLASS) else None

    def is_running(self) -> bool:
        """True when the broker process recorded in the pid file is alive."""
        if self._proc is not None:
            self._proc.poll()  # reap it if it died, so it does not linger as a zombie
        return self.pid is not None

    def _write_config(self) -> None:
        self.paths.kafka_dir.mkdir(parents=True, exist_ok=True)
        self.paths.kafka_data.mkdir(parents=True, exist_ok=True)
        self.paths.logs_dir.mkdir(parents=True, exist_ok=True)
        self.paths.pids_dir.mkdir(parents=True, exist_ok=True)
        self.paths.kafka_properties.write_text(
            render_server_properties(
                port=self.port,
                controller_port=self.controller_port,
                data_dir=self.paths.kafka_data,
            )
        )
        self.paths.kafka_log4j.write_text(render_log4j_properties())

    def _format_storage(self, java: str, classpath: str, jvm_flags: list[str]) -> None:
        if (self.paths.kafka_data / "meta.properties").is_file():
            return
        result = subprocess.run(
            [
                java,
                *jvm_flags,
                f"-Dlog4j2.configurationFile={self.paths.kafka_log4j}",
                "-cp",
                classpath,
                _STORAGE_TOOL_CLASS,
                "format",
                "-t",
                new_cluster_id(),
                "-c",
                str(self.paths.kafka_properties),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"formatting Kafka storage failed:\n{result.stdout[-4000:]}")

    def start(self) -> None:
        """Write the config, format storage on first use and launch the broker.

        Returns as soon as the JVM is launched; use :meth:`wait_ready` to wait for it.
        Does nothing when the broker already runs.
        """
        if self.is_running():
            return
        for p in (self.port, self.controller_port):
            if port_is_open(p):
                raise RuntimeError(f"port {p} is already taken by another process; stop it or choose other Kafka ports")
        libs = self.ensure_jars()
        java = _java()
        classpath = f"{libs}/*"
        self._write_config()
        cds_flags: list[str] = []
        archive = _cds_archive(java, libs)
        if archive is not None:
            self._discard_cds_dump()  # left by a broker that did not stop through us
            if archive.is_file():
                cds_flags = [f"-XX:SharedArchiveFile={archive}"]
        self._format_storage(java, classpath, cds_flags)
        if archive is not None and not cds_flags:
            # No archive yet: this broker writes one when it exits (see _promote_cds_dump).
            self._cds_dump.unlink(missing_ok=True)
            cds_flags = [f"-XX:ArchiveClassesAtExit={self._cds_dump}"]
            self.paths.kafka_cds_target.write_text(str(archive))

        log = self.paths.kafka_log
        if log.exists() and log.stat().st_size > _LOG_ROTATE_BYTES:
            log.replace(log.with_suffix(".log.1"))
        with log.open("ab") as out:
            out.write(f"\n===== starting Kafka at {time.strftime('%F %T')} =====\n".encode())
            out.flush()
            self._proc = subprocess.Popen(
                [
                    java,
                    *_JVM_HEAP,
                    *cds_flags,
                    "-Djava.awt.headless=true",
                    f"-Dlog4j2.configurationFile={self.paths.kafka_log4j}",
                    "-cp",
                    classpath,
                    KAFKA_MAIN_CLASS,
                    str(self.paths.kafka_properties),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.paths.kafka_dir,
                start_new_session=True,
            )
        self.paths.kafka_pid.write_text(f"{self._proc.pid}\n")

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until a client can connect and read cluster metadata.

        Raises RuntimeError (with the log's tail) when the broker dies or ``timeout``
        seconds pass first.
        """
        asyncio.run(self.wait_ready_async(timeout))

    async def wait_ready_async(self, timeout_s: float = 60.0) -> None:
        """:meth:`wait_ready` for callers already inside an event loop."""
        await wait_for_kafka(
            self.bootstrap_servers,
            timeout_s=timeout_s,
            alive=self.is_running,
            log=self.paths.kafka_log,
        )

    @property
    def _cds_dump(self) -> Path:
        return self.paths.kafka_dir / "classes.jsa.tmp"

    def _discard_cds_dump(self) -> None:
        self._cds_dump.unlink(missing_ok=True)
        self.paths.kafka_cds_target.unlink(missing_ok=True)

    def _promote_cds_dump(self) -> None:
        """Move the class archive this broker wrote on a clean exit into the shared cache."""
        try:
            archive = Path(self.paths.kafka_cds_target.read_text().strip())
            if self._cds_dump.stat().st_size > 0:
                archive.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self._cds_dump, archive)  # atomic: concurrent stacks may race
        except OSError:
            pass
        self._discard_cds_dump()

    def kill(self) -> bool:
        """``kill -9`` the broker, as a crash would; :meth:`start` brings it back on the same data.

        Returns False when no broker was running.
        """
        pid = read_pid(self.paths.kafka_pid)
        if not process_alive(pid, KAFKA_MAIN_CLASS):
            return False
        assert pid is not None
        kill_pid(pid, KAFKA_MAIN_CLASS)
        if self._proc is not None:
            self._proc.wait()
            self._proc = None
        self.paths.kafka_pid.unlink(missing_ok=True)
        self._discard_cds_dump()
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the broker: SIGTERM (controlled shutdown), SIGKILL after ``timeout`` s."""
        pid = read_pid(self.paths.kafka_pid)
        killed = False
        if pid is not None:
            killed = terminate_pid(pid, KAFKA_MAIN_CLASS, timeout)
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        self.paths.kafka_pid.unlink(missing_ok=True)
        if killed:
            self._discard_cds_dump()  # possibly cut short
        else:
            self._promote_cds_dump()


async def wait_for_kafka(
    bootstrap: str,
    *,
    timeout_s: float = 60.0,
    alive: Callable[[], bool] | None = None,
    log: Path | None = None,
) -> None:
    """Wait until ``bootstrap`` answers metadata requests and has a group coordinator.

    ``alive`` is an optional callable; when it returns False the wait fails at once.
    """
    from aiokafka.admin import AIOKafkaAdminClient

    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise RuntimeError(f"Kafka exited during startup. Last lines of {log}:\n{tail(log) if log else ''}")
        host, _, port = bootstrap.rpartition(":")
        if port_is_open(int(port), host or "127.0.0.1"):
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
            try:
                await admin.start()
                cluster = await admin.describe_cluster()
                if cluster.get("brokers") and cluster.get("controller_id", -1) >= 0:
                    # Consumer groups work once the group coordinator is up; the first
                    # lookup also creates __consumer_offsets, so clients need not wait.
                    await admin.find_coordinator("mloop-devstack-readiness")
                    return
            except Exception as exc:  # not up yet: keep polling
                last_error = exc
            finally:
                await admin.close()
        await asyncio.sleep(0.2)
    detail = f"\nLast lines of {log}:\n{tail(log)}" if log else ""
    raise RuntimeError(f"Kafka at {bootstrap} not ready after {timeout_s:.0f}s ({last_error!r}){detail}")


# --------------------------------------------------------------------------- topics


def _registry_specs() -> list[TopicSpecLike]:
    from mloop.contracts.topics import TOPICS

    return list(TOPICS.values())


async def create_topics(
    bootstrap: str,
    specs: Iterable[TopicSpecLike] | None = None,
    prefix: str = "",
    *,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create every topic of ``specs`` (default: the registry in ``mloop.contracts.topics``).

    Names get ``prefix`` prepended; replication factor is 1. Topics that already exist
    are left alone, so this is idempotent. Returns once each topic has a leader for every
    partition. Returns the full topic names.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError, for_code

    chosen = list(_registry_specs() if specs is None else specs)
    wanted = {f"{prefix}{s.name}": s for s in chosen}
    if not wanted:
        return []
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    await admin.start()
    try:
        response = await admin.create_topics(
            [
                NewTopic(
                    name=name,
                    num_partitions=spec.partitions,
                    replication_factor=1,
                    topic_configs=dict(spec.config),
                )
                for name, spec in wanted.items()
            ]
        )
        failures = []
        for entry in response.topic_errors:
            topic, code = entry[0], entry[1]
            message = entry[2] if len(entry) > 2 else None
            if code == 0:
                continue
            err = for_code(code)
            if err is TopicAlreadyExistsError:
                continue
            failures.append(f"{topic}: {err.__name__} {message or ''}".strip())
        if failures:
            raise RuntimeError("creating topics failed: " + "; ".join(failures))
        await _wait_for_leaders(admin, list(wanted), timeout_s)
    finally:
        await admin.close()
    return list(wanted)


async def _wait_for_leaders(admin: Any, topics: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    pending = set(topics)
    while pending:
        described = await admin.describe_topics(sorted(pending))
        for topic in described:
            parts = topic.get("partitions") or []
            if topic.get("error_code", 0) == 0 and parts and all(p.get("leader", -1) >= 0 for p in parts):
                pending.discard(topic["topic"])
        if not pending:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"topics without a leader after {timeout_s:.0f}s: {sorted(pending)}")
        await asyncio.sleep(0.1)
