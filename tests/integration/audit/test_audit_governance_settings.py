"""Every governance setting is an event: a change through a service's API is kept in its history, published
as its ``*-changed`` event and found in the audit ledger's lifecycle view of the model."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from mloop.audit.main import create_app as create_audit
from mloop.monitor.main import create_app as create_monitor
from mloop.monitor.settings import MonitorSettings
from mloop.retrain_scheduler.main import create_app as create_scheduler
from mloop.retrain_scheduler.settings import RetrainSchedulerSettings
from mloop.rollout.main import create_app as create_rollout
from mloop.rollout.settings import RolloutSettings
from mloop.runtime.testing import EventCollector, auth_headers, running_app

from .support import audit_settings

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def with_audit(infra: Any, tmp_path: Path, service: FastAPI, topic: str) -> AsyncIterator[
        tuple[httpx.AsyncClient, httpx.AsyncClient, EventCollector, dict[str, str]]]:
    """The service, the audit service consuming every governance topic, and a collector on ``topic``."""
    settings = audit_settings(infra, tmp_path)
    viewer = auth_headers(settings, "ava", "viewer")
    async with running_app(create_audit(settings)) as audit, running_app(service) as client, \
            EventCollector(infra.bootstrap_servers, infra.topic_prefix, [topic]) as seen:
        yield client, audit, seen, viewer


async def lifecycle_step(audit: httpx.AsyncClient, viewer: dict[str, str], model: str, stage: str,
                         count: int = 1, timeout_s: float = 90.0) -> list[dict[str, Any]]:
    """Wait until the audit's lifecycle view of ``model`` holds ``count`` ``stage`` steps; return those steps.

    Each event reaches the ledger on its own, so a view read too early holds only the first of them.
    """
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        r = await audit.get(f"/models/{model}/lifecycle", headers=viewer)
        assert r.status_code == 200, r.text
        steps = [s for s in r.json()["items"] if s["stage"] == stage]
        if len(steps) >= count:
            return steps
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"no {stage} step in the lifecycle of {model}: {r.json()}")
        await asyncio.sleep(0.3)


async def outbox_count(database_url: str, schema: str, topic: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        n: int = await conn.fetchval(f"SELECT count(*) FROM {schema}.outbox WHERE topic = $1", topic)
        return n
    finally:
        await conn.close()


async def test_a_monitor_configuration_change_is_kept_published_and_on_the_ledger(infra: Any, tmp_path: Path) -> None:
    settings = MonitorSettings(**infra.settings_kwargs())
    olga = auth_headers(settings, "olga", "operator")
    async with with_audit(infra, tmp_path, create_monitor(settings), "monitor-config-changed") as (
            client, audit, seen, viewer):
        r = await client.put("/models/credit-risk/config", json={"drift": {"alpha": 0.001}},
                             params={"reason": "fewer false alarms"}, headers=olga)
        assert r.status_code == 200, r.text
        r = await client.put("/models/credit-risk/config", json={"drift": {"alpha": 0.05}}, headers=olga)
        assert r.status_code == 200, r.text
        # A viewer may read the history but not change the setting.
        assert (await client.put("/models/credit-risk/config", json={}, headers=viewer)).status_code == 403

        page = (await client.get("/models/credit-risk/config/history", params={"page_size": 1},
                                 headers=viewer)).json()
        [first] = page["items"]
        assert (first["seq"], first["actor"], first["reason"], first["previous"]) == (
            1, "user:olga", "fewer false alarms", None)
        assert first["config"]["drift"]["alpha"] == 0.001
        rest = (await client.get("/models/credit-risk/config/history",
                                 params={"page_token": page["next_page_token"]}, headers=viewer)).json()
        [second] = rest["items"]
        assert second["previous"]["drift"]["alpha"] == 0.001 and second["config"]["drift"]["alpha"] == 0.05
        assert rest["next_page_token"] is None

        events = await seen.wait_for("monitor-config-changed", 2, timeout_s=90)
        assert [(e.data.seq, e.data.changed_by, e.data.reason, e.actor) for e in events] == [
            (1, "user:olga", "fewer false alarms", "user:olga"), (2, "user:olga", None, "user:olga")]
        assert events[1].data.previous is not None and events[1].data.previous["drift"]["alpha"] == 0.001
        assert events[1].data.config["drift"]["alpha"] == 0.05

        steps = await lifecycle_step(audit, viewer, "credit-risk", "monitor-config-changed")
        assert steps[0]["actor"] == "user:olga" and "fewer false alarms" in steps[0]["detail"]
        assert steps[0]["version"] is None and steps[0]["event_id"] == events[0].id
    assert await outbox_count(infra.database_url, "monitor", "monitor-config-changed") == 2


async def test_a_rollout_plan_change_is_kept_published_and_on_the_ledger(infra: Any, tmp_path: Path) -> None:
    settings = RolloutSettings(**infra.settings_kwargs())
    olga = auth_headers(settings, "olga", "operator")
    plan = {"strategy": "canary", "steps": [0.1, 0.5], "failure_threshold": 2}
    async with with_audit(infra, tmp_path, create_rollout(settings), "rollout-plan-changed") as (
            client, audit, seen, viewer):
        r = await client.put("/models/credit-risk/plan", json=plan, params={"reason": "two steps are enough"},
                             headers=olga)
        assert r.status_code == 200, r.text
        r = await client.put("/models/credit-risk/plan", json={**plan, "failure_threshold": 5}, headers=olga)
        assert r.status_code == 200, r.text
        assert (await client.put("/models/credit-risk/plan", json=plan, headers=viewer)).status_code == 403
        # An invalid plan changes nothing and publishes nothing.
        r = await client.put("/models/credit-risk/plan", json={**plan, "steps": [0.5, 0.2]}, headers=olga)
        assert r.status_code == 422

        history = (await client.get("/models/credit-risk/plan/history", headers=viewer)).json()["items"]
        assert [(h["seq"], h["actor"], h["reason"]) for h in history] == [
            (1, "user:olga", "two steps are enough"), (2, "user:olga", None)]
        assert history[0]["previous"] is None and history[1]["previous"]["failure_threshold"] == 2
        assert history[1]["plan"]["failure_threshold"] == 5
        r = await client.get("/models/credit-risk/plan/history", params={"page_token": "eyJ4IjogMX0"},
                             headers=viewer)
        assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json")

        events = await seen.wait_for("rollout-plan-changed", 2, timeout_s=90)
        assert [(e.data.seq, e.data.changed_by, e.data.reason) for e in events] == [
            (1, "user:olga", "two steps are enough"), (2, "user:olga", None)]
        assert events[1].data.previous == history[1]["previous"] and events[1].data.plan == history[1]["plan"]

        steps = await lifecycle_step(audit, viewer, "credit-risk", "rollout-plan-changed")
        assert [s["event_id"] for s in steps][:1] == [events[0].id]
        assert steps[0]["actor"] == "user:olga" and "two steps are enough" in steps[0]["detail"]
    assert await outbox_count(infra.database_url, "rollout", "rollout-plan-changed") == 2


async def test_a_retrain_policy_change_is_kept_published_and_on_the_ledger(infra: Any, tmp_path: Path) -> None:
    settings = RetrainSchedulerSettings(**infra.settings_kwargs())
    olga = auth_headers(settings, "olga", "operator")
    async with with_audit(infra, tmp_path, create_scheduler(settings), "retrain-policy-changed") as (
            client, audit, seen, viewer):
        r = await client.put("/models/credit-risk/policy", json={"cooldown": "PT2H"},
                             params={"reason": "retrain at most every two hours"}, headers=olga)
        assert r.status_code == 200, r.text
        r = await client.delete("/models/credit-risk/policy", params={"reason": "back to the default"},
                                headers=olga)
        assert r.status_code == 204, r.text
        assert (await client.delete("/models/credit-risk/policy", headers=olga)).status_code == 404
        r = await client.put("/default-policy", json={"consecutive_signals": 2}, headers=olga)
        assert r.status_code == 200, r.text
        assert (await client.put("/models/credit-risk/policy", json={}, headers=viewer)).status_code == 403

        history = (await client.get("/models/credit-risk/policy/history", headers=viewer)).json()["items"]
        assert [(h["seq"], h["actor"], h["reason"], h["previous"], h["policy"]) for h in history] == [
            (1, "user:olga", "retrain at most every two hours", None, {"cooldown": "PT2H"}),
            (2, "user:olga", "back to the default", {"cooldown": "PT2H"}, None)]
        [default] = (await client.get("/default-policy/history", headers=viewer)).json()["items"]
        assert default["policy"]["consecutive_signals"] == 2 and default["previous"] is None

        found = await seen.wait_for("retrain-policy-changed", 3, timeout_s=90)
        # Ordered per model (the Kafka key); the default's change travels on its own key.
        events = [e for e in found if e.data.model == "credit-risk"] + [e for e in found if e.data.model == "*"]
        assert [(e.data.model, e.data.scope, e.data.removed, e.data.reason) for e in events] == [
            ("credit-risk", "model", False, "retrain at most every two hours"),
            ("credit-risk", "model", True, "back to the default"),
            ("*", "default", False, None)]
        assert events[0].data.effective["cooldown"] == "PT2H" and events[1].data.previous == {"cooldown": "PT2H"}
        assert all(e.data.changed_by == e.actor == "user:olga" for e in events)

        steps = await lifecycle_step(audit, viewer, "credit-risk", "retrain-policy-changed", count=2)
        assert [s["event_id"] for s in steps] == [events[0].id, events[1].id]
        assert "retrain at most every two hours" in steps[0]["detail"] and steps[1]["detail"].startswith("removed")
        defaults = await lifecycle_step(audit, viewer, "*", "retrain-policy-changed")
        assert [s["event_id"] for s in defaults] == [events[2].id]
    assert await outbox_count(infra.database_url, "retrain_scheduler", "retrain-policy-changed") == 3
