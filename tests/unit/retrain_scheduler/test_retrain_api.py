"""The scheduler's HTTP API before any store is reached: who may call what.

The app is built without connecting to anything; each documented operation
is called with made-up path values. Authentication and roles are checked
before a route touches the database, so the answers here are the API's own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from mloop.retrain_scheduler.main import create_app
from mloop.retrain_scheduler.settings import RetrainSchedulerSettings
from mloop.runtime.testing import auth_headers

SETTINGS = RetrainSchedulerSettings(environment="test")
APP = create_app(SETTINGS)
#: Probes and metrics answer anyone (orchestrators and scrapers carry no token).
PUBLIC = {"/healthz", "/readyz", "/metrics"}
OPERATIONS = [
    (method.upper(), path)
    for path, item in APP.openapi()["paths"].items()
    for method in item
    if method in ("get", "post", "put", "patch", "delete") and path not in PUBLIC
]
WRITES = [(m, p) for m, p in OPERATIONS if m != "GET"]


def _url(path: str) -> str:
    return path.replace("{job_id}", "00000000-0000-0000-0000-000000000000").replace("{model}", "credit-risk")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=APP, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://scheduler") as client:
        yield client


def test_the_api_documents_jobs_policies_signals_and_cycle_time() -> None:
    # Guards the parametrised tests below: they must have writes and reads to call.
    assert {"POST", "PUT", "DELETE", "GET"} <= {m for m, _ in OPERATIONS}
    assert len(WRITES) >= 5


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
async def test_an_anonymous_caller_is_refused_with_a_problem_document(
    http: httpx.AsyncClient, method: str, path: str
) -> None:
    r = await http.request(method, _url(path), json={})
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["status"] == 401


@pytest.mark.parametrize(("method", "path"), WRITES, ids=[f"{m} {p}" for m, p in WRITES])
async def test_a_viewer_may_not_write(http: httpx.AsyncClient, method: str, path: str) -> None:
    r = await http.request(method, _url(path), json={}, headers=auth_headers(SETTINGS, "vera", "viewer"))
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_liveness_answers_without_a_token(http: httpx.AsyncClient) -> None:
    r = await http.get("/healthz")
    assert r.status_code == 200


def test_the_scheduler_listens_on_8104_by_default() -> None:
    assert SETTINGS.http_port == 8104
