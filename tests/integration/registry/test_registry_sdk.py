"""The Python SDK's registry client against the real registry (the contract other teams build on)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from mloop.client import PermissionDeniedError, RegistryClient
from mloop.contracts.payloads import RolloutCompleted
from mloop.registry.main import create_app
from mloop.registry.settings import RegistrySettings
from mloop.runtime.auth import issue_token
from mloop.runtime.testing import running_app

from .helpers import REGISTRATION, publish

pytestmark = pytest.mark.integration


async def test_the_sdk_registers_requests_reviews_and_reads_the_whole_record(infra: Any) -> None:
    settings = RegistrySettings(**infra.settings_kwargs())
    app = create_app(settings)

    def client(sub: str, *roles: str) -> RegistryClient:
        token = issue_token(settings.jwt_secret.get_secret_value(), sub, list(roles))
        return RegistryClient("http://registry", token, transport=httpx.ASGITransport(app=app))

    async with running_app(app):
        ds, rev, ops = client("dana", "data-scientist"), client("rita", "reviewer"), client("otto", "operator")
        await ds.create_model("credit-risk", tags={"team": "risk"})
        lineage = REGISTRATION["lineage"]
        first = await ds.register_version("credit-risk", artifact_uri="s3://m/1", lineage=lineage,
                                          metrics={"auc": 0.9}, idempotency_key="job-1")
        assert first["version"] == "1" and first["validation"]["passed"] is True
        with pytest.raises(PermissionDeniedError, match="managed by the platform"):
            await ops.set_alias("credit-risk", "champion", "1")  # only a completed rollout moves it
        # The first champion the governed way: an approved promotion whose rollout completed.
        first_request = await ds.request_promotion("credit-risk", "1", reason="first model")
        await rev.approve(first_request["id"], comment="first model")
        await publish(infra.bootstrap_servers, infra.topic_prefix, "rollout-completed", RolloutCompleted(
            model="credit-risk", rollout_id="ro-1", seq=1, version="1", baseline_version=None, strategy="canary",
            phase="completed", step_index=0, weight=1.0))
        for _ in range(200):
            if await ds.champion("credit-risk") == "1":
                break
            await asyncio.sleep(0.1)
        assert await ds.champion("credit-risk") == "1"
        await ds.register_version("credit-risk", artifact_uri="s3://m/2", lineage=lineage,
                                  metrics={"auc": 0.92}, segment_metrics={"north": {"recall": 0.8}})
        policy = await ops.set_validation_policy("credit-risk", {"required_approvals": 1})
        assert policy["effective"]["required_approvals"] == 1
        assert (await ds.get_validation_policy("credit-risk"))["override"] == {"required_approvals": 1}
        request = await ds.request_promotion("credit-risk", "2", reason="better AUC")
        pending = await rev.list_promotion_requests(status="pending")
        assert [r["id"] for r in pending] == [request["id"]]
        approved = await rev.approve(request["id"], comment="checked")
        assert approved["status"] == "approved" and approved["previous_champion"] == "1"
        history = await ds.version_history("credit-risk", "2")
        assert history["status"] == "promoted"
        assert history["promotion_requests"][0]["reviews"][0]["comment"] == "checked"
        versions = await ds.list_versions("credit-risk", limit=10)
        assert [v["version"] for v in versions] == ["1", "2"]
        assert [m["name"] for m in await ds.list_models(tag="team:risk")] == ["credit-risk"]
