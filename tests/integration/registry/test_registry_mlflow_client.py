"""MLflow users switch without changing code: the real MLflow client against the registry on a real port.

The registry runs under uvicorn on a free port against the session's Kafka and
Postgres, the audit service beside it; ``MLFLOW_TRACKING_URI`` points at the
registry and ``MLFLOW_TRACKING_TOKEN`` carries an mloop token, exactly as a
user would set them. Every registry call of ``MlflowClient`` and
``mlflow.register_model`` is made through the client, which is synchronous,
so each call runs in a worker thread while the servers run on the test's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import mlflow
import pytest
import uvicorn
from fastapi import FastAPI
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mloop.audit.main import create_app as create_audit_app
from mloop.contracts.payloads import RolloutCompleted
from mloop.contracts.topics import spec_for
from mloop.registry.main import create_app
from mloop.registry.settings import RegistrySettings
from mloop.runtime.auth import issue_token
from mloop.runtime.service import ServiceContext
from mloop.runtime.testing import EventCollector, auth_headers

from ..audit.support import audit_settings
from .helpers import REGISTRATION, SHA, publish, registration

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::FutureWarning")]  # MLflow's stages

T = TypeVar("T")
COMMIT = REGISTRATION["lineage"]["code"]["commit"]
LINEAGE_TAGS = {
    "mloop.lineage.code.repo": REGISTRATION["lineage"]["code"]["repo"],
    "mloop.lineage.code.commit": COMMIT,
    "mloop.lineage.dataset.uri": REGISTRATION["lineage"]["dataset"]["uri"],
    "mloop.lineage.dataset.version": REGISTRATION["lineage"]["dataset"]["version"],
    "mloop.lineage.dataset.sha256": SHA,
    "mloop.lineage.features.version": "7",
    "mloop.lineage.features.schema": '[{"name": "age", "type": "number"}, {"name": "income", "type": "number"},'
                                     ' {"name": "region", "type": "category", "optional": true}]',
    "mloop.lineage.environment.image": REGISTRATION["lineage"]["environment"]["image"],
    "mloop.lineage.environment.lock_hash": REGISTRATION["lineage"]["environment"]["lock_hash"],
    "mloop.lineage.params.C": "1.0",
    "mloop.metric.auc": "0.91",
    "mloop.metric.log_loss": "0.32",
}
TOPICS = ["model-registered", "model-validated", "model-alias-changed", "promotion-requested", "model-promoted"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """``app`` under uvicorn on a free local port, consumers assigned; yields its base URL."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(600):
            if server.started or task.done():
                break
            await asyncio.sleep(0.05)
        if not server.started:
            raise RuntimeError("uvicorn did not start") from task.exception() if task.done() else None
        ctx: ServiceContext = app.state.ctx
        if ctx.consumers:
            await ctx.wait_assigned(60)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
def mlflow_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str], None]]:
    """Point the client at nothing but localhost and make failures fast; gives ``use(url, token)``."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "true")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)

    def use(url: str, token: str) -> None:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        monkeypatch.setenv("MLFLOW_REGISTRY_URI", url)
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)

    yield use


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A blocking MLflow client call, off the loop the servers run on."""
    return await asyncio.to_thread(fn, *args, **kwargs)


async def refused(code: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    """Call ``fn`` and return the message of the :class:`MlflowException` it must raise with ``code``."""
    with pytest.raises(MlflowException) as caught:
        await call(fn, *args, **kwargs)
    assert caught.value.error_code == code, caught.value.message
    return str(caught.value.message)


async def test_the_mlflow_client_drives_the_registry_under_its_governance(
    infra: Any, tmp_path: Path, mlflow_env: Callable[[str, str], None],
) -> None:
    settings = RegistrySettings(**infra.settings_kwargs())
    secret = settings.jwt_secret.get_secret_value()

    def token(sub: str, *roles: str) -> str:
        return issue_token(secret, sub, list(roles), issuer=settings.jwt_issuer, audience=settings.jwt_audience)

    registry_app = create_app(settings)
    audit = audit_settings(infra, tmp_path)
    async with serving(registry_app) as url, serving(create_audit_app(audit)) as audit_url, \
            EventCollector(infra.bootstrap_servers, infra.topic_prefix, TOPICS) as seen, \
            httpx.AsyncClient(base_url=url, timeout=30) as native:
        # One pipeline token with the roles every call of a pipeline needs.
        pipeline = token("pipeline", "data-scientist", "operator")
        mlflow_env(url, pipeline)
        client = MlflowClient()

        # ------------------------------------------------------------ registered models
        rm = await call(client.create_registered_model, "credit-risk", tags={"team": "risk"}, description="PD")
        assert (rm.name, rm.tags, rm.description) == ("credit-risk", {"team": "risk"}, "PD")
        await refused("RESOURCE_ALREADY_EXISTS", client.create_registered_model, "credit-risk")
        await refused("RESOURCE_DOES_NOT_EXIST", client.get_registered_model, "nope")
        rm = await call(client.update_registered_model, "credit-risk", description="Probability of default")
        assert rm.description == "Probability of default"
        await call(client.set_registered_model_tag, "credit-risk", "tier", "1")
        await call(client.delete_registered_model_tag, "credit-risk", "team")
        assert (await call(client.get_registered_model, "credit-risk")).tags == {"tier": "1"}
        await call(client.create_registered_model, "draft")
        await call(client.rename_registered_model, "draft", "fraud")
        assert (await call(client.get_registered_model, "fraud")).name == "fraud"
        await refused("RESOURCE_DOES_NOT_EXIST", client.get_registered_model, "draft")
        await call(client.create_registered_model, "scratch")
        await call(client.delete_registered_model, "scratch")
        await refused("RESOURCE_DOES_NOT_EXIST", client.get_registered_model, "scratch")

        # ------------------------------------------------------------ versions
        # mlflow.register_model: the model exists already, so it adds version 1, lineage in its tags.
        v1 = await call(mlflow.register_model, "s3://models/credit-risk/1", "credit-risk",
                        await_registration_for=0, tags=LINEAGE_TAGS)
        assert (v1.name, v1.version, v1.source, v1.status) == ("credit-risk", "1", "s3://models/credit-risk/1", "READY")
        assert v1.status_message == ""  # every gate passed on the lineage and metrics the tags carry
        [registered] = await seen.wait_for("model-registered", where=lambda e: e.data.version == "1")
        assert registered.data.lineage.code.commit == COMMIT and registered.data.lineage.dataset.sha256 == SHA
        assert registered.data.metrics == {"auc": 0.91, "log_loss": 0.32}
        assert registered.data.registered_by == "user:pipeline" and registered.actor == "user:pipeline"
        [validated] = await seen.wait_for("model-validated", where=lambda e: e.data.version == "1")
        assert validated.data.passed is True
        # Without lineage tags the gates fail, and say why.
        v2 = await call(client.create_model_version, "credit-risk", "s3://models/credit-risk/2", run_id="run-2",
                        tags={"stage": "dev"}, await_creation_for=0)
        assert (v2.version, v2.run_id, v2.status_message) == ("2", "run-2", "validation failed")
        [failed] = await seen.wait_for("model-validated", where=lambda e: e.data.version == "2")
        assert [c.name for c in failed.data.checks if not c.passed] == ["lineage-complete"]
        # mlflow.register_model on a new name creates the model first.
        v = await call(mlflow.register_model, "s3://models/churn/1", "churn", await_registration_for=0)
        assert (v.name, v.version) == ("churn", "1")
        await refused("INVALID_PARAMETER_VALUE", client.rename_registered_model, "churn", "churn-v2")

        got = await call(client.get_model_version, "credit-risk", "1")
        assert got.tags["mloop.lineage.code.commit"] == COMMIT and got.current_stage == "None"
        await refused("RESOURCE_DOES_NOT_EXIST", client.get_model_version, "credit-risk", "99")
        await refused("RESOURCE_DOES_NOT_EXIST", client.get_model_version, "nope", "1")
        assert await call(client.get_model_version_download_uri, "credit-risk", "2") == "s3://models/credit-risk/2"
        updated = await call(client.update_model_version, "credit-risk", "2", description="try")
        assert updated.description == "try"
        await call(client.set_model_version_tag, "credit-risk", "2", "qa", "pending")
        await call(client.delete_model_version_tag, "credit-risk", "2", "stage")
        assert (await call(client.get_model_version, "credit-risk", "2")).tags == {"qa": "pending"}
        # Lineage is fixed at registration: no tag call rewrites it.
        message = await refused("INVALID_PARAMETER_VALUE", client.set_model_version_tag, "credit-risk", "2",
                                "mloop.lineage.code.commit", COMMIT)
        assert "fixed at registration" in message
        await refused("INVALID_PARAMETER_VALUE", client.delete_model_version_tag, "credit-risk", "1",
                      "mloop.lineage.dataset.sha256")

        # ------------------------------------------------------------ search
        r = await native.post("/models/credit-risk/versions", json=registration(tags={"team": "risk"}),
                              headers=auth_headers(settings, "pipeline", "data-scientist", "operator"))
        assert r.json()["version"] == "3", r.text  # native and MLflow number versions of the same model
        found = await call(client.search_model_versions, "name = 'credit-risk'", order_by=["version_number DESC"])
        assert [m.version for m in found] == ["3", "2", "1"]
        found = await call(client.search_model_versions, "name='credit-risk' AND tags.qa = 'pending'")
        assert [m.version for m in found] == ["2"]
        assert [m.version for m in await call(client.search_model_versions, "run_id = 'run-2'")] == ["2"]
        first = await call(client.search_model_versions, "name = 'credit-risk'", max_results=2,
                           order_by=["version_number ASC"])
        rest = await call(client.search_model_versions, "name = 'credit-risk'", max_results=2,
                          order_by=["version_number ASC"], page_token=first.token)
        assert [m.version for m in first] == ["1", "2"] and [m.version for m in rest] == ["3"] and not rest.token
        await refused("INVALID_PARAMETER_VALUE", client.search_model_versions, "name = 'credit-risk'",
                      order_by=["source DESC"])
        models = await call(client.search_registered_models, order_by=["name DESC"], max_results=2)
        assert [m.name for m in models] == ["fraud", "credit-risk"] and models.token
        more = await call(client.search_registered_models, order_by=["name DESC"], max_results=2,
                          page_token=models.token)
        assert [m.name for m in more] == ["churn"]
        tiered = await call(client.search_registered_models, filter_string="name LIKE 'c%' AND tags.tier = '1'")
        assert [m.name for m in tiered] == ["credit-risk"]

        # ------------------------------------------------------------ aliases and governance
        message = await refused("PERMISSION_DENIED", client.set_registered_model_alias, "credit-risk", "champion",
                                "1")
        assert "managed by the platform" in message
        await refused("INVALID_PARAMETER_VALUE", client.set_registered_model_alias, "credit-risk", "challenger",
                      "2")  # its validation failed
        await call(client.set_registered_model_alias, "credit-risk", "challenger", "3")
        assert (await call(client.get_model_version_by_alias, "credit-risk", "challenger")).version == "3"
        moved = await seen.wait_for("model-alias-changed", where=lambda e: e.data.alias == "challenger")
        assert [(e.data.version, e.actor) for e in moved] == [("3", "user:pipeline")]
        await call(client.delete_registered_model_alias, "credit-risk", "challenger")
        await refused("RESOURCE_DOES_NOT_EXIST", client.get_model_version_by_alias, "credit-risk", "challenger")
        await refused("INVALID_PARAMETER_VALUE", client.delete_model_version, "credit-risk", "3")  # it was aliased
        message = await refused("PERMISSION_DENIED", client.transition_model_version_stage, "credit-risk", "1",
                                "Production")
        assert "promotion request" in message
        await refused("INVALID_PARAMETER_VALUE", client.transition_model_version_stage, "credit-risk", "1",
                      "Staging")

        # The governed path: a promotion request, a second person's approval, a completed rollout.
        request = await native.post("/models/credit-risk/versions/1/promotion-requests", json={"reason": "mlflow"},
                                    headers=auth_headers(settings, "pipeline", "data-scientist", "operator"))
        assert request.status_code == 201, request.text
        rid = request.json()["id"]
        # Four eyes compare persons: the pipeline's token with the reviewer role too is still the requester.
        own = await native.post(f"/promotion-requests/{rid}/approve", json={},
                                headers=auth_headers(settings, "pipeline", "data-scientist", "operator", "reviewer"))
        assert own.status_code == 403, own.text
        ok = await native.post(f"/promotion-requests/{rid}/approve", json={"comment": "checked"},
                               headers=auth_headers(settings, "rita", "reviewer"))
        assert ok.status_code == 200, ok.text
        await publish(infra.bootstrap_servers, infra.topic_prefix, "rollout-completed", RolloutCompleted(
            model="credit-risk", rollout_id="ro-1", seq=1, version="1", baseline_version=None, strategy="canary",
            phase="completed", step_index=0, weight=1.0))
        await seen.wait_for("model-alias-changed", where=lambda e: e.data.alias == "champion")
        champion = await call(client.get_model_version_by_alias, "credit-risk", "champion")
        assert (champion.version, champion.current_stage) == ("1", "Production")
        latest = await call(client.get_latest_versions, "credit-risk", stages=["Production"])
        assert [(m.version, m.current_stage) for m in latest] == [("1", "Production")]
        latest = await call(client.get_latest_versions, "credit-risk")
        assert {m.current_stage: m.version for m in latest} == {"Production": "1", "None": "3"}
        await refused("PERMISSION_DENIED", client.delete_registered_model_alias, "credit-risk", "champion")
        await refused("INVALID_PARAMETER_VALUE", client.delete_model_version, "credit-risk", "1")  # it served
        await refused("INVALID_PARAMETER_VALUE", client.delete_registered_model, "credit-risk")
        archived = await call(client.transition_model_version_stage, "credit-risk", "2", "Archived")
        assert archived.current_stage == "Archived"
        await refused("INVALID_PARAMETER_VALUE", client.set_registered_model_alias, "credit-risk", "challenger",
                      "2")  # archived
        await call(client.delete_model_version, "churn", "1")  # never served, never aliased
        await refused("RESOURCE_DOES_NOT_EXIST", client.get_model_version, "churn", "1")

        # ------------------------------------------------------------ roles and unknown endpoints
        mlflow_env(url, token("vic", "viewer"))
        assert (await call(client.get_registered_model, "credit-risk")).name == "credit-risk"
        await refused("PERMISSION_DENIED", client.create_registered_model, "mine")
        mlflow_env(url, "not-a-token")
        await refused("UNAUTHENTICATED", client.get_registered_model, "credit-risk")
        mlflow_env(url, pipeline)
        await refused("ENDPOINT_NOT_FOUND", client.search_experiments)  # the tracking API is not the registry's

        # ------------------------------------------------------------ the ledger
        # The MLflow-made version 1 and the native version 3 reach the ledger the same way.
        for topic in ("model-registered", "model-validated", "model-alias-changed", "model-promoted"):
            assert spec_for(topic).audited and "audit" in spec_for(topic).consumers
        viewer = auth_headers(settings, "vic", "viewer")

        async def ledger(version: str) -> list[dict[str, Any]]:
            async with httpx.AsyncClient(base_url=audit_url, timeout=30) as audit_api:
                for _ in range(300):
                    items: list[dict[str, Any]] = (await audit_api.get("/records", headers=viewer, params={
                        "model": "credit-risk", "version": version, "page_size": 100})).json()["items"]
                    if {"model-registered", "model-validated"} <= {i["topic"] for i in items} and (
                            version != "1" or "model-promoted" in {i["topic"] for i in items}):
                        return items
                    await asyncio.sleep(0.1)
            raise AssertionError(f"version {version}'s events did not reach the ledger")

        via_mlflow, native_made = await ledger("1"), await ledger("3")
        for topic in ("model-registered", "model-validated"):
            [a] = [i for i in via_mlflow if i["topic"] == topic]
            [b] = [i for i in native_made if i["topic"] == topic]
            assert (a["type"], a["source"], a["actor"]) == (b["type"], b["source"], b["actor"])
            assert a["event"]["data"].keys() == b["event"]["data"].keys()
        [a] = [i["event"]["data"]["lineage"] for i in via_mlflow if i["topic"] == "model-registered"]
        [b] = [i["event"]["data"]["lineage"] for i in native_made if i["topic"] == "model-registered"]
        assert a.pop("params") == {"C": "1.0"} and b.pop("params") == {"C": 1.0}  # MLflow tags are text
        assert a == b
        assert [i["actor"] for i in via_mlflow if i["topic"] == "model-promoted"] == ["user:rita"]
