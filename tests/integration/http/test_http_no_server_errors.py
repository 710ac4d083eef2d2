"""Bad input never gets a 500: every write route of every service, fed garbage.

For each service, every route of its OpenAPI document is called with path
parameters that name nothing, and every write route with bodies that are not
JSON, of the wrong JSON type, or of the right shape with wrong field types.
Each answer must be a 4xx problem document (or a 2xx where the input happens
to be acceptable; MLflow-compatible routes answer in MLflow's error shape),
never a 5xx.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

import pytest

from mloop.runtime.testing import auth_headers, running_app

pytestmark = pytest.mark.integration

SERVICES = [
    ("mloop.registry.main", "mloop.registry.settings", "RegistrySettings"),
    ("mloop.rollout.main", "mloop.rollout.settings", "RolloutSettings"),
    ("mloop.monitor.main", "mloop.monitor.settings", "MonitorSettings"),
    ("mloop.retrain_scheduler.main", "mloop.retrain_scheduler.settings", "RetrainSchedulerSettings"),
    ("mloop.audit.main", "mloop.audit.settings", "AuditSettings"),
]

GARBAGE_BODIES: list[tuple[bytes, str]] = [
    (b"\x00\xff\xfe garbage", "application/json"),
    (b"{\"unterminated\": ", "application/json"),
    (b"[]", "application/json"),
    (b"\"a string\"", "application/json"),
    (b"12345678901234567890123456789", "application/json"),
    (b"{}", "application/json"),
    (b"{\"name\": {\"nested\": [1, 2, {\"x\": null}]}, \"version\": [], \"weight\": \"heavy\"}", "application/json"),
    (b"name=x&version=y", "application/x-www-form-urlencoded"),
]
GARBAGE_QUERIES: list[dict[str, str]] = [
    {"page_token": "%%%garbage", "page_size": "-5", "since": "yesterday", "max_results": "NaN"},
    {"page_token": "eyJ4IjogMX0", "page_size": "99999999999999999999", "start": "yesterday", "end": "0"},
    {"page_token": "eyJpZCI6NDJ9", "state": "bogus", "status": "bogus", "order": "sideways", "kind": "x"},
]
# The MLflow-compatible routes answer in MLflow's own error shape, which its client expects.
MLFLOW_PREFIX = "/api/2.0/mlflow/"
WEIRD_IDS = ["does-not-exist", "0", "-1", "99999999999999999999", "%00", "a" * 300]


def _wrong_types(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """An object with the schema's property names and values of the wrong type."""
    if "$ref" in schema:
        schema = components.get(schema["$ref"].rsplit("/", 1)[-1], {})
    out: dict[str, Any] = {}
    for name, prop in (schema.get("properties") or {}).items():
        t = prop.get("type")
        out[name] = {"string": 12345, "integer": "NaN", "number": "x", "boolean": "maybe",
                     "array": {"not": "a list"}, "object": ["not", "an", "object"]}.get(t, [[[]]])
    return out


def _load(main_mod: str, settings_mod: str, settings_cls: str) -> tuple[Any, Any]:
    main = importlib.import_module(main_mod)
    settings_type = getattr(importlib.import_module(settings_mod), settings_cls)
    return main, settings_type


@pytest.mark.parametrize(("main_mod", "settings_mod", "settings_cls"), SERVICES,
                         ids=[s[0].split(".")[1] for s in SERVICES])
async def test_every_route_answers_garbage_with_a_4xx_problem_never_a_500(
    infra: Any, main_mod: str, settings_mod: str, settings_cls: str
) -> None:
    main, settings_type = _load(main_mod, settings_mod, settings_cls)
    settings = settings_type(**infra.settings_kwargs())
    app = main.create_app(settings)
    admin = auth_headers(settings, "fuzzer", "admin")
    failures: list[str] = []
    calls = 0
    async with running_app(app, wait_assigned=False) as client:
        spec = (await client.get("/openapi.json")).json()
        components = spec.get("components", {}).get("schemas", {})
        for path, ops in spec["paths"].items():
            for method, op in ops.items():
                if method not in {"get", "post", "put", "patch", "delete"}:
                    continue
                ids = WEIRD_IDS if "{" in path else [""]
                for ident in ids:
                    url = re.sub(r"\{[^}]+\}", ident, path) if ident else path
                    if method in {"get", "delete"}:
                        # Only parameters the operation takes: any other name is refused before the route runs.
                        declared = {p["name"] for p in op.get("parameters", []) if p.get("in") == "query"}
                        attempts = [(None, None, {k: v for k, v in params.items() if k in declared})
                                    for params in GARBAGE_QUERIES]
                    else:
                        body_schema = (op.get("requestBody", {}).get("content", {})
                                       .get("application/json", {}).get("schema", {}))
                        import json as _json
                        attempts = [(b, ct, None) for b, ct in GARBAGE_BODIES]
                        attempts.append((_json.dumps(_wrong_types(body_schema, components)).encode(),
                                         "application/json", None))
                    for body, ctype, params in attempts:
                        headers = dict(admin)
                        if ctype:
                            headers["content-type"] = ctype
                        r = await client.request(method.upper(), url, content=body, params=params,
                                                 headers=headers)
                        calls += 1
                        if r.status_code >= 500:
                            failures.append(f"{method.upper()} {url} body={body!r:.60} -> {r.status_code}")
                        elif (r.status_code >= 400 and not path.startswith(MLFLOW_PREFIX)
                              and not r.headers.get("content-type", "").startswith("application/problem+json")):
                            failures.append(f"{method.upper()} {url} -> {r.status_code} without a problem document")
    assert calls > 20
    assert not failures, "\n".join(failures[:40])
