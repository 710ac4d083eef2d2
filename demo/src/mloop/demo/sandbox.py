"""A private, throw-away platform for one run: Kafka, Postgres and the five services on free ports.

The end-to-end tests and the loop benchmark use it so they never touch (or
collide with) the stack of ``make up``::

    with private_platform() as platform:
        result = asyncio.run(run_demo(platform.stack, ...))
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from mloop.client import Endpoints
from mloop.demo.run import Stack
from mloop.devstack import SERVICES, ServiceSpec, StackPaths, create_topics, find_free_ports, start_services
from mloop.devstack.services import stop_services
from mloop.devstack.testing import EphemeralStack

__all__ = ["Platform", "private_platform"]


@dataclass(frozen=True)
class Platform:
    stack: Stack
    services: tuple[ServiceSpec, ...]
    paths: StackPaths
    startup_seconds: float
    database_url: str = ""
    #: The broker and Postgres underneath, for tests that stop or kill them (None when reusing a running stack).
    infra: EphemeralStack | None = None
    #: The environment the services were started with: :func:`start_services` with it restarts one.
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def console_url(self) -> str:
        """The web console of this platform."""
        return next(s.url for s in self.services if s.name == "console")


@contextmanager
def private_platform(timeout_s: float = 180.0, *, extra_env: Mapping[str, str] | None = None) -> Iterator[Platform]:
    """Start everything (the five services and the console); stop and delete everything on exit.

    ``extra_env`` is added to the services' environment (settings such as ``MLOOP_WEBHOOK_SECRETS``).
    """
    import time

    began = time.monotonic()
    secret = secrets.token_urlsafe(32)
    with EphemeralStack() as infra:
        asyncio.run(create_topics(infra.bootstrap_servers))
        database = infra.new_database("mloop_demo")
        ports = find_free_ports(len(SERVICES))
        services = tuple(replace(s, port=p) for s, p in zip(SERVICES, ports, strict=True))
        root = Path(tempfile.mkdtemp(prefix="mloop-svc-"))
        paths = StackPaths(root)
        env = {
            "DATABASE_URL": database,
            "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
            "MLOOP_ENVIRONMENT": "development",
            "MLOOP_JWT_SECRET": secret,
            "MLOOP_LOG_JSON": "false",
            **(extra_env or {}),
        }
        failed = True
        try:
            start_services(paths, env, services, timeout=timeout_s)
            endpoints = Endpoints(
                registry=services[0].url,
                rollout=services[1].url,
                monitor=services[2].url,
                retrain=services[3].url,
                audit=services[4].url,
            )
            yield Platform(Stack(infra.bootstrap_servers, endpoints, secret), services, paths, time.monotonic() - began,
                           database, None if infra.reuse else infra, env)
            failed = False
        finally:
            stop_services(paths, services)
            if not failed:  # keep the services' logs when something went wrong
                shutil.rmtree(root, ignore_errors=True)
