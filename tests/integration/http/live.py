"""The five services, and a way to run one on a real socket with the real server configuration."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI

from mloop.runtime.server import server_config
from mloop.runtime.settings import ServiceSettings

#: (main module, settings module, settings class) of each service.
SERVICES = [
    ("mloop.registry.main", "mloop.registry.settings", "RegistrySettings"),
    ("mloop.rollout.main", "mloop.rollout.settings", "RolloutSettings"),
    ("mloop.monitor.main", "mloop.monitor.main", "MonitorSettings"),
    ("mloop.retrain_scheduler.main", "mloop.retrain_scheduler.settings", "RetrainSchedulerSettings"),
    ("mloop.audit.main", "mloop.audit.settings", "AuditSettings"),
]
SERVICE_IDS = [s[0].split(".")[1] for s in SERVICES]


def build(main_mod: str, settings_mod: str, settings_cls: str, infra: Any, **overrides: Any) -> tuple[FastAPI, Any]:
    """The service's app and settings, against the test's Kafka and Postgres."""
    main = importlib.import_module(main_mod)
    settings_type = getattr(importlib.import_module(settings_mod), settings_cls)
    settings = settings_type(**infra.settings_kwargs(**overrides))
    return main.create_app(settings), settings


@contextlib.asynccontextmanager
async def served(app: FastAPI, settings: ServiceSettings) -> AsyncIterator[str]:
    """Run ``app`` in uvicorn (the configuration ``serve`` uses) on a free port; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(server_config(app, settings, sock=sock))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the server stopped while starting")
            if loop.time() > deadline:
                raise TimeoutError("the server did not start in 60 s")
            await asyncio.sleep(0.05)
        host, port = sock.getsockname()[:2]
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        sock.close()
