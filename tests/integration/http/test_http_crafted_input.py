"""Crafted requests against each service on a real socket: a 4xx problem, and the connection lives on.

Each request below once answered a 500 (or a 200 it should not have, or did
unbounded work). Each must now answer a 4xx naming the field, and the next
request on the same keep-alive connection must succeed. A viewer token is
enough for the reads; plans need an operator.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from mloop.runtime.testing import auth_headers, serving

from .live import SERVICE_IDS, SERVICES, build

pytestmark = pytest.mark.integration


def _token(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


#: Wrong for every route: missing fields, not an object, not base64 JSON, every field of the wrong type.
WRONG_SHAPES = ["eyJ4IjogMX0", _token([1, 2]), "%%%not-base64", _token(dict.fromkeys(
    ["id", "n", "c", "i", "t", "chain", "size", "ts", "rid"], None))]
#: ``{"id": 42}``, the example the documents once gave: wrong where the cursor is not an integer id.
ID_42 = "eyJpZCI6NDJ9"
WRONG_OR_42 = [*WRONG_SHAPES, ID_42]


def _plan(**fields: Any) -> dict[str, Any]:
    return {"strategy": "canary", **fields}


#: service -> (method, path, json body (or raw JSON text), role, expected status, field the problem names)
CRAFTED: dict[str, list[tuple[str, str, Any, str, int, str]]] = {
    "registry": [
        *[("GET", f"/models?page_token={t}", None, "viewer", 400, "page_token") for t in WRONG_OR_42],
        *[("GET", f"/promotion-requests?page_token={t}", None, "viewer", 400, "page_token") for t in WRONG_OR_42],
        *[("GET", f"/versions?page_token={t}", None, "viewer", 400, "page_token") for t in WRONG_SHAPES],
        # MLflow's own error shape there: {error_code, message}
        *[("GET", f"/api/2.0/mlflow/registered-models/search?page_token={t}", None, "viewer", 400, "page_token")
          for t in WRONG_OR_42],
        *[("GET", f"/api/2.0/mlflow/model-versions/search?page_token={t}", None, "viewer", 400, "page_token")
          for t in WRONG_SHAPES],
    ],
    "rollout": [
        *[("GET", f"/rollouts?page_token={t}", None, "viewer", 400, "page_token") for t in WRONG_OR_42],
        ("PUT", "/models/m/plan", _plan(step_weight=5e-324), "operator", 422, "step_weight"),
        ("PUT", "/models/m/plan", _plan(step_weight=1e-5), "operator", 422, "step_weight"),
        ("PUT", "/models/m/plan", _plan(steps=[i / 1000 for i in range(1, 1000)]), "operator", 422, "steps"),
        ("PUT", "/models/m/plan", _plan(failure_threshold=10**30), "operator", 422, "failure_threshold"),
        ("PUT", "/models/m/plan", _plan(progress_deadline_s=1e300), "operator", 422, "progress_deadline_s"),
        ("PUT", "/models/m/plan", _plan(step_min_samples=10**20), "operator", 422, "step_min_samples"),
        ("POST", "/rollouts", {"model": "m", "candidate": "2", "baseline": ""}, "operator", 422, "baseline"),
    ],
    "monitor": [
        *[("GET", f"/models/m/drift?page_token={t}", None, "viewer", 400, "page_token") for t in WRONG_SHAPES],
        *[("GET", f"/models/m/predictions?start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z&page_token={t}",
           None, "viewer", 400, "page_token") for t in WRONG_SHAPES],
        ("PUT", "/models/m/config", {"window": {"mode": "sliding", "size": 1_000_000, "slide": 1}},
         "operator", 422, "window"),
        # Infinity and NaN (which Python's JSON writes) or a floor no change can clear would silence a detector.
        ("PUT", "/models/m/config", '{"drift": {"min_shift": Infinity}}', "operator", 422, "min_shift"),
        ("PUT", "/models/m/config", '{"performance": {"tolerance": NaN}}', "operator", 422, "tolerance"),
        ("PUT", "/models/m/config", {"drift": {"min_mass": 2}}, "operator", 422, "min_mass"),
        ("PUT", "/models/m/config", {"performance": {"page_hinkley_threshold": 1e300}}, "operator", 422,
         "page_hinkley_threshold"),
    ],
    "retrain_scheduler": [
        ("GET", "/jobs?status=bogus", None, "viewer", 422, "status"),
        ("GET", "/jobs?state=bogus", None, "viewer", 422, "state"),
        *[("GET", f"/jobs?page_token={t}", None, "viewer", 400, "page_token") for t in WRONG_OR_42],
        # Durations past a year overflow date arithmetic when a job waits or stays in flight.
        ("PUT", "/models/m/policy", {"post_signal_data": {"max_wait": "P999999D"}}, "operator", 422, "max_wait"),
        ("PUT", "/default-policy", {"storm_guard": {"in_flight_max": "P9999D"}}, "operator", 422, "in_flight_max"),
        ("PUT", "/models/m/policy", {"post_signal_data": {"min_rows": 10**30}}, "operator", 422, "min_rows"),
    ],
    "audit": [
        *[("GET", f"/checkpoints?page_token={t}", None, "viewer", 400, "page_token") for t in WRONG_OR_42],
        *[("GET", f"/records?page_token={t}", None, "viewer", 400, "page_token") for t in WRONG_OR_42],
    ],
}


@pytest.mark.parametrize(("main_mod", "settings_mod", "settings_cls"), SERVICES, ids=SERVICE_IDS)
async def test_crafted_requests_answer_4xx_and_the_connection_survives(
    infra: Any, main_mod: str, settings_mod: str, settings_cls: str
) -> None:
    service = main_mod.split(".")[1]
    app, settings = build(main_mod, settings_mod, settings_cls, infra)
    async with serving(app, settings) as base, httpx.AsyncClient(
        base_url=base, limits=httpx.Limits(max_connections=1, max_keepalive_connections=1), timeout=30
    ) as client:
        first = await client.get("/healthz")
        port = first.extensions["network_stream"].get_extra_info("client_addr")[1]
        for method, path, body, role, status, field in CRAFTED[service]:
            headers = auth_headers(settings, "mallory", role)
            if isinstance(body, str):  # raw JSON text, as some clients write it (Infinity, NaN)
                r = await client.request(method, path, content=body,
                                         headers={**headers, "content-type": "application/json"})
            else:
                r = await client.request(method, path, json=body, headers=headers)
            assert r.status_code == status, (method, path, body, r.status_code, r.text)
            assert field in r.text, (path, r.text)
            if not path.startswith("/api/2.0/mlflow/"):
                assert r.headers["content-type"] == "application/problem+json", path
            after = await client.get("/healthz")
            assert after.status_code == 200
            assert after.extensions["network_stream"].get_extra_info("client_addr")[1] == port, (
                f"{method} {path} dropped the connection")
