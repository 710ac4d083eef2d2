"""Supervisor for the platform's services on the local stack (``make up``)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mloop.devstack._paths import (
    StackPaths,
    kill_pid,
    port_is_open,
    process_alive,
    read_pid,
    tail,
    terminate_pid,
)

__all__ = [
    "SERVICES",
    "ServiceError",
    "ServiceSpec",
    "kill_service",
    "probe_ready",
    "service_pid",
    "service_urls",
    "signal_service",
    "start_services",
    "stop_services",
    "wait_services_ready",
]


@dataclass(frozen=True)
class ServiceSpec:
    """One service: its name, the module ``python -m`` runs, and its HTTP port."""

    name: str
    module: str
    port: int
    #: False for a process that must not see the stack's secrets (the console: it acts only with its
    #: users' tokens, so it never gets the JWT signing secret nor the database).
    trusted: bool = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env_key(self) -> str:
        """Name of the variable holding its URL, e.g. ``MLOOP_RETRAIN_SCHEDULER_URL``."""
        return f"MLOOP_{self.name.upper()}_URL"


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("registry", "mloop.registry", 8101),
    ServiceSpec("rollout", "mloop.rollout", 8102),
    ServiceSpec("monitor", "mloop.monitor", 8103),
    ServiceSpec("retrain_scheduler", "mloop.retrain_scheduler", 8104),
    ServiceSpec("audit", "mloop.audit", 8105),
    ServiceSpec("console", "mloop.console", 8100, trusted=False),
)

#: Variables an untrusted process never inherits.
SECRET_KEYS: tuple[str, ...] = ("MLOOP_JWT_SECRET", "DATABASE_URL")


#: Services started by this process, so their exit status can be collected.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
_CHILDREN_LOCK = threading.Lock()
_exit_codes: dict[int, int] = {}


class ServiceError(RuntimeError):
    """A service failed to start or to become ready."""


def service_urls(services: Sequence[ServiceSpec] = SERVICES) -> dict[str, str]:
    """``{"MLOOP_REGISTRY_URL": "http://127.0.0.1:8101", ...}``."""
    return {s.env_key: s.url for s in services}


def service_pid(paths: StackPaths, spec: ServiceSpec) -> int | None:
    """Pid of the running service, or None."""
    _reap_children()
    pid = read_pid(paths.service_pid(spec.name))
    return pid if process_alive(pid, spec.module) else None


def probe_ready(spec: ServiceSpec, timeout: float = 1.0) -> bool:
    """True when ``GET <url>/readyz`` answers 200."""
    try:
        with urllib.request.urlopen(f"{spec.url}/readyz", timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start_services(
    paths: StackPaths,
    env: Mapping[str, str],
    services: Sequence[ServiceSpec] = SERVICES,
    *,
    wait: bool = True,
    timeout: float = 60.0,
    python: str | None = None,
) -> dict[str, int]:
    """Launch each service as ``<python> -m <module>`` detached, logging to ``logs/<name>.log``.

    The child environment is the current one plus ``env`` plus ``MLOOP_HTTP_PORT`` and
    every service's URL variable (an untrusted one, the console, without :data:`SECRET_KEYS`).
    Services that already run are left alone. With
    ``wait`` (the default) this blocks until every ``/readyz`` answers 200, raising
    :class:`ServiceError` with the log tail of the first service that died or did not
    become ready within ``timeout`` seconds; the services this call launched are then
    stopped again. Returns ``{name: pid}``.
    """
    python = python or sys.executable
    paths.logs_dir.mkdir(parents=True, exist_ok=True)
    paths.pids_dir.mkdir(parents=True, exist_ok=True)
    pids: dict[str, int] = {}
    launched: list[ServiceSpec] = []
    for spec in services:
        running = service_pid(paths, spec)
        if running is not None:
            pids[spec.name] = running
            continue
        if port_is_open(spec.port):
            raise ServiceError(f"{spec.name}: port {spec.port} is already taken by another process")
        child_env = {
            **os.environ,
            **service_urls(services),
            **env,
            "MLOOP_HTTP_PORT": str(spec.port),
            "MLOOP_SERVICE_NAME": spec.name,
        }
        if not spec.trusted:
            for key in SECRET_KEYS:
                child_env.pop(key, None)
        log = paths.service_log(spec.name)
        with log.open("ab") as out:
            out.write(f"\n===== starting {spec.name} at {time.strftime('%F %T')} =====\n".encode())
            out.flush()
            proc = subprocess.Popen(
                [python, "-m", spec.module],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=child_env,
                cwd=paths.root,
                start_new_session=True,
            )
        with _CHILDREN_LOCK:
            _CHILDREN[proc.pid] = proc
        paths.service_pid(spec.name).write_text(f"{proc.pid}\n")
        pids[spec.name] = proc.pid
        launched.append(spec)
    if wait:
        try:
            wait_services_ready(paths, services, timeout=timeout)
        except ServiceError:
            stop_services(paths, launched)  # all or nothing; the logs stay for reading
            raise
    return pids


def wait_services_ready(
    paths: StackPaths, services: Sequence[ServiceSpec] = SERVICES, *, timeout: float = 60.0
) -> None:
    """Block until every service's ``/readyz`` answers 200; see :func:`start_services`."""
    deadline = time.monotonic() + timeout
    pending = list(services)
    while pending:
        for spec in list(pending):
            if service_pid(paths, spec) is None:
                code = _exit_codes.get(read_pid(paths.service_pid(spec.name)) or -1)
                how = f" with exit code {code}" if code is not None else ""
                raise ServiceError(
                    f"{spec.name} exited during startup{how}. "
                    f"Last lines of {paths.service_log(spec.name)}:\n"
                    f"{tail(paths.service_log(spec.name))}"
                )
            if probe_ready(spec):
                pending.remove(spec)
        if not pending:
            return
        if time.monotonic() > deadline:
            spec = pending[0]
            raise ServiceError(
                f"{spec.name} not ready at {spec.url}/readyz after {timeout:.0f}s "
                f"(also pending: {[s.name for s in pending[1:]]}). "
                f"Last lines of {paths.service_log(spec.name)}:\n"
                f"{tail(paths.service_log(spec.name))}"
            )
        time.sleep(0.2)


def _reap_children() -> None:
    """Collect the services this process started that have exited (no lingering zombies).

    Safe to call from several threads at once (services restarted side by side).
    """
    with _CHILDREN_LOCK:
        for pid, proc in list(_CHILDREN.items()):
            code = proc.poll()
            if code is not None:
                _exit_codes[pid] = code
                _CHILDREN.pop(pid, None)


def stop_services(paths: StackPaths, services: Sequence[ServiceSpec] = SERVICES, *, timeout: float = 20.0) -> list[str]:
    """SIGTERM each running service (SIGKILL after ``timeout`` s); return the names stopped."""
    stopped = []
    for spec in reversed(services):
        pid = service_pid(paths, spec)
        if pid is not None:
            terminate_pid(pid, spec.module, timeout)
            _reap_children()
            stopped.append(spec.name)
        paths.service_pid(spec.name).unlink(missing_ok=True)
    return stopped


def kill_service(paths: StackPaths, spec: ServiceSpec) -> int | None:
    """``kill -9`` the service, as a crash would, and wait until it is gone; returns its pid (None: not running).

    :func:`start_services` starts it again (it starts whatever does not run).
    """
    pid = service_pid(paths, spec)
    if pid is None:
        return None
    kill_pid(pid, spec.module)
    _reap_children()
    paths.service_pid(spec.name).unlink(missing_ok=True)
    return pid


def signal_service(paths: StackPaths, spec: ServiceSpec, signum: int) -> int | None:
    """Send ``signum`` (e.g. SIGSTOP, SIGCONT) to the running service; returns its pid (None: not running)."""
    pid = service_pid(paths, spec)
    if pid is not None:
        os.kill(pid, signum)
    return pid
