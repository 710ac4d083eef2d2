"""Every governance setting change takes its ``reason`` with one limit, the contracts' own."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from mloop.contracts.payloads import MAX_REASON_LENGTH


@functools.cache
def _apps() -> dict[str, Any]:
    from mloop.monitor.main import create_app as monitor_app
    from mloop.monitor.settings import MonitorSettings
    from mloop.registry.main import create_app as registry_app
    from mloop.registry.settings import RegistrySettings
    from mloop.retrain_scheduler.main import create_app as retrain_app
    from mloop.retrain_scheduler.settings import RetrainSchedulerSettings
    from mloop.rollout.main import create_app as rollout_app
    from mloop.rollout.settings import RolloutSettings

    return {
        "monitor": monitor_app(MonitorSettings(environment="test")),
        "registry": registry_app(RegistrySettings(environment="test")),
        "retrain-scheduler": retrain_app(RetrainSchedulerSettings(environment="test")),
        "rollout": rollout_app(RolloutSettings(environment="test")),
    }


@pytest.mark.parametrize("service", ["monitor", "registry", "retrain-scheduler", "rollout"])
def test_every_setting_reason_is_limited_by_the_contract(service: str) -> None:
    doc = _apps()[service].openapi()
    reasons = [
        (method.upper(), path, p["schema"])
        for path, item in doc["paths"].items()
        for method, op in item.items()
        for p in op.get("parameters", [])
        if p["name"] == "reason" and p["in"] == "query"
    ]
    assert reasons, f"{service} documents no setting change with a reason"
    for method, path, schema in reasons:
        limits = [s.get("maxLength") for s in schema.get("anyOf", [schema]) if s.get("type") == "string"]
        assert limits == [MAX_REASON_LENGTH], (method, path, schema)
