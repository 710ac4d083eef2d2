"""``make up`` / ``make down`` / ``make status``: the long-lived local stack."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from mloop.devstack._paths import StackPaths
from mloop.devstack.kafka import LocalKafka, create_topics
from mloop.devstack.postgres import LocalPostgres
from mloop.devstack.services import (
    SERVICES,
    probe_ready,
    service_pid,
    service_urls,
    start_services,
    stop_services,
)

__all__ = [
    "ENV_KEYS",
    "StackConfig",
    "clean",
    "down",
    "ensure_jwt_secret",
    "format_status",
    "print_status",
    "read_jwt_secret",
    "stack_env",
    "status",
    "up",
]

#: The variables ``make status`` prints, in order.
ENV_KEYS: tuple[str, ...] = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "DATABASE_URL",
    *(s.env_key for s in SERVICES),
    "MLOOP_JWT_SECRET",
)

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class StackConfig:
    """The ports of a stack; saved as ``stack.json`` so later commands find them."""

    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    postgres_port: int = 5433

    @classmethod
    def load(cls, paths: StackPaths) -> StackConfig:
        try:
            data = json.loads(paths.config_file.read_text())
        except (OSError, ValueError):
            return cls()
        known = {k: int(v) for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def save(self, paths: StackPaths) -> None:
        paths.root.mkdir(parents=True, exist_ok=True)
        paths.config_file.write_text(json.dumps(asdict(self), indent=2) + "\n")


def _components(paths: StackPaths, config: StackConfig) -> tuple[LocalKafka, LocalPostgres]:
    kafka = LocalKafka(paths, config.kafka_port, config.kafka_controller_port)
    postgres = LocalPostgres(paths, config.postgres_port)
    return kafka, postgres


def read_jwt_secret(paths: StackPaths) -> str | None:
    """The stack's JWT signing secret from ``secrets.env``, or None before the first ``up``."""
    try:
        for line in paths.secrets_file.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() == "MLOOP_JWT_SECRET":
                return value.strip()
    except OSError:
        pass
    return None


def ensure_jwt_secret(paths: StackPaths) -> str:
    """Return the stack's JWT secret, generating ``secrets.env`` (mode 600) the first time."""
    existing = read_jwt_secret(paths)
    if existing:
        return existing
    paths.root.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    fd = os.open(paths.secrets_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("# Local development secret of this stack; not used anywhere else.\n")
        fh.write(f"MLOOP_JWT_SECRET={value}\n")
    return value


def stack_env(paths: StackPaths | None = None) -> dict[str, str]:
    """The ``KEY=VALUE`` pairs clients of the stack need (see :data:`ENV_KEYS`)."""
    paths = paths or StackPaths.default()
    config = StackConfig.load(paths)
    kafka, postgres = _components(paths, config)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "DATABASE_URL": postgres.url,
        **service_urls(SERVICES),
    }
    secret = read_jwt_secret(paths)
    if secret is not None:
        env["MLOOP_JWT_SECRET"] = secret
    return env


def up(
    services: bool = True,
    paths: StackPaths | None = None,
    *,
    config: StackConfig | None = None,
    timeout: float = 120.0,
    log: Log = _stderr,
) -> dict[str, Any]:
    """Start Postgres and Kafka (and, with ``services``, the five services and the console); keep existing data.

    Idempotent: whatever already runs is left running. Creates the topics of the topic
    registry. Returns :func:`status`.
    """
    paths = paths or StackPaths.default()
    config = config or StackConfig.load(paths)
    config.save(paths)
    secret = ensure_jwt_secret(paths)
    kafka, postgres = _components(paths, config)

    started = time.monotonic()
    if not kafka.is_running():
        log("kafka: fetching jars if needed, starting")
    kafka.start()  # the JVM boots while Postgres starts
    if not postgres.is_running():
        log("postgres: starting")
    postgres.start()
    kafka.wait_ready(timeout)
    log(f"kafka and postgres ready in {time.monotonic() - started:.1f}s")

    try:
        topics = asyncio.run(create_topics(kafka.bootstrap_servers))
        log(f"topics: {len(topics)} present")
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith("mloop.contracts"):
            raise
        log("topics: mloop.contracts.topics not available, no topics created")

    if services:
        env = {
            "DATABASE_URL": postgres.url,
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "MLOOP_ENVIRONMENT": "development",
            "MLOOP_JWT_SECRET": secret,
        }
        log("services: starting " + ", ".join(s.name for s in SERVICES))
        start_services(paths, env, SERVICES, timeout=timeout)
        log("services: ready")
    return status(paths)


def down(paths: StackPaths | None = None, *, log: Log = _stderr) -> None:
    """Stop the services, Kafka and Postgres gracefully, in that order; data is kept."""
    paths = paths or StackPaths.default()
    kafka, postgres = _components(paths, StackConfig.load(paths))
    began = time.monotonic()
    stopped = stop_services(paths, SERVICES)
    if stopped:
        log(f"services: stopped {', '.join(stopped)} in {time.monotonic() - began:.1f}s")
    if kafka.is_running():
        began = time.monotonic()
        kafka.stop()
        log(f"kafka: stopped in {time.monotonic() - began:.1f}s")
    if postgres.is_running():
        began = time.monotonic()
        postgres.stop()
        log(f"postgres: stopped in {time.monotonic() - began:.1f}s")


def clean(paths: StackPaths | None = None, *, log: Log = _stderr) -> None:
    """:func:`down`, then delete the stack's folder (all data, logs and the secret)."""
    paths = paths or StackPaths.default()
    down(paths, log=log)
    if paths.root.exists():
        shutil.rmtree(paths.root)
        log(f"removed {paths.root}")


def status(paths: StackPaths | None = None) -> dict[str, Any]:
    """What runs where: ``{"root", "kafka", "postgres", "services", "env"}``."""
    paths = paths or StackPaths.default()
    kafka, postgres = _components(paths, StackConfig.load(paths))
    services: dict[str, dict[str, Any]] = {}
    for spec in SERVICES:
        pid = service_pid(paths, spec)
        services[spec.name] = {
            "running": pid is not None,
            "ready": pid is not None and probe_ready(spec, timeout=0.5),
            "pid": pid,
            "url": spec.url,
            "log": str(paths.service_log(spec.name)),
        }
    return {
        "root": str(paths.root),
        "kafka": {
            "running": kafka.is_running(),
            "pid": kafka.pid,
            "bootstrap_servers": kafka.bootstrap_servers,
            "log": str(paths.kafka_log),
        },
        "postgres": {
            "running": postgres.is_running(),
            "pid": postgres.pid,
            "url": postgres.url,
            "log": str(paths.pg_log),
        },
        "services": services,
        "env": stack_env(paths),
    }


def _state(entry: dict[str, Any]) -> str:
    if not entry.get("running"):
        return "stopped"
    if "ready" in entry:
        return "ready" if entry["ready"] else "starting"
    return "running"


def format_status(st: dict[str, Any], *, include_secret: bool = True) -> str:
    """Render :func:`status` for humans (``#`` lines) and scripts (``KEY=VALUE`` lines).

    ``include_secret=False`` leaves out ``MLOOP_JWT_SECRET`` (for output that may
    end up in logs, such as ``up``'s).

    The output is valid shell, so ``eval "$(make -s status)"`` sets the variables.
    """
    rows: list[tuple[str, dict[str, Any], str]] = [
        ("kafka", st["kafka"], st["kafka"]["bootstrap_servers"]),
        ("postgres", st["postgres"], st["postgres"]["url"]),
    ]
    rows += [(name, entry, entry["url"]) for name, entry in st["services"].items()]
    lines = [f"# mloop local stack at {st['root']}"]
    for name, entry, where in rows:
        pid = entry.get("pid")
        lines.append(f"#   {name:<18} {_state(entry):<8} {('pid ' + str(pid)) if pid else '':<11} {where}")
    env: dict[str, str] = st["env"]
    if "MLOOP_JWT_SECRET" not in env:
        lines.append("#   (no JWT secret yet: it is generated by the first `make up`)")
    keys = [k for k in ENV_KEYS if include_secret or k != "MLOOP_JWT_SECRET"]
    lines += [f"{key}={shlex.quote(env[key])}" for key in keys if key in env]
    if not include_secret:
        lines.append("#   MLOOP_JWT_SECRET: see `make status` (kept out of this output)")
    return "\n".join(lines) + "\n"


def print_status(paths: StackPaths | None = None) -> None:
    """Print :func:`format_status` of the stack to stdout."""
    sys.stdout.write(format_status(status(paths)))
    sys.stdout.flush()
