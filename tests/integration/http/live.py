"""The five services, built against a test's Kafka and Postgres."""

from __future__ import annotations

import importlib
from typing import Any

from fastapi import FastAPI

#: (main module, settings module, settings class) of each service.
SERVICES = [
    ("mloop.registry.main", "mloop.registry.settings", "RegistrySettings"),
    ("mloop.rollout.main", "mloop.rollout.settings", "RolloutSettings"),
    ("mloop.monitor.main", "mloop.monitor.settings", "MonitorSettings"),
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
