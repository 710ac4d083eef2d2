"""The MLflow Model Registry REST subset, in MLflow's JSON shapes, on the same store."""

from __future__ import annotations

from typing import Any

import pytest

from mloop.registry.main import create_app
from mloop.registry.settings import RegistrySettings
from mloop.runtime.testing import EventCollector, running_app

from .helpers import Caller, registration

pytestmark = pytest.mark.integration

API = "/api/2.0/mlflow"


async def test_mlflow_clients_create_read_search_and_alias_models_on_the_same_registry(infra: Any) -> None:
    settings = RegistrySettings(**infra.settings_kwargs())
    async with running_app(create_app(settings)) as client, \
            EventCollector(infra.bootstrap_servers, infra.topic_prefix, ["model-registered"]) as seen:
        ds = Caller(client, settings, "dana", "data-scientist")
        ops = Caller(client, settings, "otto", "operator")
        viewer = Caller(client, settings, "vic", "viewer")

        r = await ds.post(f"{API}/registered-models/create",
                          {"name": "credit-risk", "tags": [{"key": "team", "value": "risk"}], "description": "PD"})
        assert r.status_code == 200, r.text
        rm = r.json()["registered_model"]
        assert rm["name"] == "credit-risk" and rm["tags"] == [{"key": "team", "value": "risk"}]
        assert isinstance(rm["creation_timestamp"], int) and rm["user_id"] == "dana"
        r = await ds.post(f"{API}/registered-models/create", {"name": "credit-risk"})
        assert r.status_code == 400 and r.json()["error_code"] == "RESOURCE_ALREADY_EXISTS"

        r = await ds.post(f"{API}/model-versions/create", {
            "name": "credit-risk", "source": "s3://models/credit-risk/1", "run_id": "run-1",
            "tags": [{"key": "stage", "value": "dev"}]})
        assert r.status_code == 200, r.text
        mv = r.json()["model_version"]
        assert (mv["name"], mv["version"], mv["source"], mv["run_id"], mv["status"]) == (
            "credit-risk", "1", "s3://models/credit-risk/1", "run-1", "READY")
        assert mv["status_message"] == "validation failed"  # no lineage through MLflow
        [event] = await seen.wait_for("model-registered")
        assert event.data.version == "1" and event.data.artifact_uri == "s3://models/credit-risk/1"
        # The native API registers the next version of the same model.
        r = await ds.post("/models/credit-risk/versions", registration())
        assert r.json()["version"] == "2"

        r = await viewer.get(f"{API}/model-versions/get", params={"name": "credit-risk", "version": "2"})
        assert r.json()["model_version"]["source"] == "s3://models/credit-risk/42/model.pkl"
        r = await viewer.get(f"{API}/model-versions/search", params={"filter": "name='credit-risk'"})
        assert [v["version"] for v in r.json()["model_versions"]] == ["1", "2"]
        r = await viewer.get(f"{API}/model-versions/search", params={"filter": "run_id = 'run-1'"})
        assert [v["version"] for v in r.json()["model_versions"]] == ["1"]
        r = await viewer.get(f"{API}/model-versions/search",
                             params={"filter": "name = 'credit-risk' AND tags.team = 'risk'"})
        assert [v["version"] for v in r.json()["model_versions"]] == ["2"]
        r = await viewer.get(f"{API}/model-versions/search", params={"max_results": 1})
        assert len(r.json()["model_versions"]) == 1 and r.json()["next_page_token"]
        r = await viewer.get(f"{API}/model-versions/search", params={"filter": "version_number > 1"})
        assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"

        r = await ops.post(f"{API}/registered-models/alias", {"name": "credit-risk", "alias": "champion",
                                                              "version": "2"})
        assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED", r.text
        r = await ops.post(f"{API}/registered-models/alias", {"name": "credit-risk", "alias": "challenger",
                                                              "version": "1"})  # failed validation
        assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE", r.text
        r = await ops.post(f"{API}/registered-models/alias", {"name": "credit-risk", "alias": "challenger",
                                                              "version": "2"})
        assert r.status_code == 200 and r.json() == {}
        r = await viewer.get(f"{API}/registered-models/alias", params={"name": "credit-risk", "alias": "challenger"})
        assert r.json()["model_version"]["version"] == "2" and r.json()["model_version"]["aliases"] == ["challenger"]
        r = await viewer.get(f"{API}/registered-models/get", params={"name": "credit-risk"})
        rm = r.json()["registered_model"]
        assert rm["aliases"] == [{"alias": "challenger", "version": "2"}]
        assert [v["version"] for v in rm["latest_versions"]] == ["2"]
        # The filter MLflow's own client sends (it leaves prompts out).
        r = await viewer.get(f"{API}/registered-models/search", params={
            "filter": "name LIKE 'credit%' AND tag.`mlflow.prompt.is_prompt` != 'true'", "max_results": "100"})
        assert [m["name"] for m in r.json()["registered_models"]] == ["credit-risk"]
        r = await viewer.get(f"{API}/registered-models/search", params={"filter": "tags.team != 'risk'"})
        assert r.json()["registered_models"] == []
        r = await viewer.get(f"{API}/model-versions/search", params={"filter": "tags.stage != 'dev'"})
        assert [v["version"] for v in r.json()["model_versions"]] == ["2"]
        r = await ds.post(f"{API}/registered-models/alias", {"name": "credit-risk", "alias": "x", "version": "1"})
        assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED"
        r = await ops.delete(f"{API}/registered-models/alias", json={"name": "credit-risk", "alias": "challenger"})
        assert r.status_code == 200, r.text
        r = await viewer.get(f"{API}/registered-models/alias", params={"name": "credit-risk", "alias": "challenger"})
        assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"

        r = await viewer.get(f"{API}/registered-models/get", params={"name": "nope"})
        assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
        r = await viewer.get(f"{API}/model-versions/get", params={"name": "credit-risk"})
        assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        r = await client.get(f"{API}/registered-models/get", params={"name": "credit-risk"})
        assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHENTICATED"
        r = await viewer.get(f"{API}/model-versions/get-download-uri", params={"name": "credit-risk", "version": "1"})
        assert r.json() == {"artifact_uri": "s3://models/credit-risk/1"}
