"""The MLflow Model Registry REST subset, in MLflow's JSON shapes, on the same store."""

from __future__ import annotations

import json
import random
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


# Values a client, a fuzzer or a typo can put in any field of any MLflow request.
NASTY: list[Any] = [
    None, "", "credit-risk", "1", "2", "champion", "challenger", "0", "-1", "999999999999", "x" * 6000, "a\x00b",
    0, -1, 10**20, 1.5, True, [], {}, ["x"], {"k": "v"}, [{"key": "k", "value": "v"}],
    [{"key": "mloop.metric.auc", "value": "x"}], "name = 'x' OR 1=1", "version_number DESC", "Production",
    "Archived", "s3://m/1", "tags.`a` = 'b'", "eyJvZmZzZXQiOi0xfQ",
]
RAW_BODIES = [b"{", b"[]", b'"x"', b'{"name": NaN}', b"\xff\xfe", b'{"name": "credit-risk", "version": 1e999}']


async def test_no_mlflow_route_answers_5xx_to_anything_a_client_can_send(infra: Any) -> None:
    settings = RegistrySettings(**infra.settings_kwargs())
    app = create_app(settings)
    async with running_app(app) as client:
        admin = Caller(client, settings, "ada", "admin")  # past every role check, into the service layer
        assert (await admin.post(f"{API}/registered-models/create", {"name": "credit-risk"})).status_code == 200
        r = await admin.post(f"{API}/model-versions/create", {"name": "credit-risk", "source": "s3://m/1"})
        assert r.status_code == 200, r.text
        await admin.post("/models/credit-risk/versions", registration())
        spec = app.openapi()
        schemas = spec["components"]["schemas"]
        rng = random.Random(14)
        checked = 0
        for path, operations in spec["paths"].items():
            if not path.startswith(API + "/"):
                continue
            for method, op in operations.items():
                fields = [p["name"] for p in op.get("parameters", [])]
                body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
                ref = next((s["$ref"] for s in [body, *body.get("anyOf", [])] if "$ref" in s), None)
                if ref:
                    fields += list(schemas[ref.rsplit("/", 1)[1]]["properties"])
                sends = []
                for _ in range(30):
                    values = {f: rng.choice(NASTY) for f in rng.sample(fields, k=rng.randint(0, len(fields)))}
                    if method == "get":
                        sends.append({"params": {k: v if isinstance(v, str) else json.dumps(v)
                                                 for k, v in values.items()}})
                    else:
                        sends.append({"json": values})
                if method != "get":
                    sends += [{"content": raw, "headers": {"content-type": "application/json"}} for raw in RAW_BODIES]
                for send in sends:
                    headers = {**admin.headers, **send.pop("headers", {})}
                    r = await client.request(method.upper(), path, headers=headers, **send)
                    assert r.status_code < 500, (method, path, send, r.text)
                    if r.status_code >= 400:
                        assert set(r.json()) == {"error_code", "message"}, (method, path, send, r.text)
                    checked += 1
        assert checked > 600
        # Methods and paths MLflow's API does not have answer MLflow's ENDPOINT_NOT_FOUND, not a problem document.
        for method, path in [("PUT", "/registered-models/create"), ("GET", "/model-versions/create"),
                             ("POST", "/experiments/search"), ("GET", "/runs/get"), ("GET", "/"),
                             ("PATCH", "/registered-models/alias")]:
            r = await admin.client.request(method, API + path, headers=admin.headers)
            assert r.status_code == 404 and r.json()["error_code"] == "ENDPOINT_NOT_FOUND", (method, path, r.text)
        r = await admin.client.get(API, headers=admin.headers, follow_redirects=True)  # to the slash
        assert r.status_code == 404 and r.json()["error_code"] == "ENDPOINT_NOT_FOUND"
        # Off the MLflow routes nothing changed: problem documents as before.
        r = await admin.get("/models/nope")
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
