"""The HTTP clients: bearer token, idempotency keys, pagination and the problem-document errors."""

from __future__ import annotations

import json

import httpx
import pytest

from mloop.client import (
    ConflictError,
    MloopClient,
    NotFoundError,
    PermissionDeniedError,
    RegistryClient,
    ServerError,
    TransportError,
)
from mloop.client.services import Endpoints


def _client(handler: httpx.MockTransport) -> RegistryClient:
    return RegistryClient("http://registry.test", "tok", transport=handler)


async def test_lists_follow_every_page() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        token = request.url.params.get("page_token")
        if token is None:
            return httpx.Response(200, json={"items": [{"version": "1"}], "next_page_token": "p2"})
        return httpx.Response(200, json={"items": [{"version": "2"}], "next_page_token": None})

    async with _client(httpx.MockTransport(handle)) as registry:
        assert [v["version"] for v in await registry.list_versions("m")] == ["1", "2"]


async def test_one_page_comes_with_the_token_of_the_next() -> None:
    seen: list[dict[str, str]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.url.params))
        if request.url.params.get("page_token") == "p2":
            return httpx.Response(200, json={"items": [{"name": "b"}], "next_page_token": None})
        return httpx.Response(200, json={"items": [{"name": "a"}], "next_page_token": "p2"})

    async with _client(httpx.MockTransport(handle)) as registry:
        assert await registry.page("/models", page_size=1, q="x") == ([{"name": "a"}], "p2")
        assert await registry.page("/models", page_token="p2", page_size=1) == ([{"name": "b"}], None)
    assert seen == [{"page_size": "1", "q": "x"}, {"page_token": "p2", "page_size": "1"}]


async def test_writes_carry_the_token_and_an_idempotency_key() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"version": "3", "validation": {"passed": True, "checks": []}})

    async with _client(httpx.MockTransport(handle)) as registry:
        out = await registry.register_version(
            "credit-risk", artifact_uri="file:///a", lineage={"code": {}}, idempotency_key="job-1"
        )
    assert out["version"] == "3"
    (req,) = seen
    assert req.headers["authorization"] == "Bearer tok"
    assert req.headers["idempotency-key"] == "job-1"
    assert json.loads(req.content)["artifact_uri"] == "file:///a"


@pytest.mark.parametrize(
    ("status", "error"), [(404, NotFoundError), (403, PermissionDeniedError), (409, ConflictError), (503, ServerError)]
)
async def test_error_responses_raise_the_matching_error_with_the_problem_document(
    status: int, error: type[Exception]
) -> None:
    problem = {"type": "https://mloop.dev/problems/x", "title": "T", "status": status, "detail": "why", "phase": "p"}

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=problem, headers={"content-type": "application/problem+json"})

    async with _client(httpx.MockTransport(handle)) as registry:
        with pytest.raises(error) as caught:
            await registry.get_model("m")
    assert caught.value.problem["phase"] == "p"  # type: ignore[attr-defined]
    assert "why" in str(caught.value)


async def test_an_unreachable_service_raises_transport_error() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with _client(httpx.MockTransport(handle)) as registry:
        with pytest.raises(TransportError):
            await registry.get_model("m")


async def test_champion_is_none_when_the_alias_is_not_set() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"title": "Not Found", "detail": "no alias"})

    async with _client(httpx.MockTransport(handle)) as registry:
        assert await registry.champion("m") is None


async def test_the_bundle_routes_each_service_to_its_endpoint_and_can_act_as_another_principal() -> None:
    hosts: list[tuple[str, str]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        hosts.append((request.url.host, request.headers["authorization"]))
        return httpx.Response(200, json={})

    ep = Endpoints.from_env({"MLOOP_AUDIT_URL": "http://audit.test", "MLOOP_ROLLOUT_URL": "http://rollout.test"})
    async with MloopClient(ep, "a", transport=httpx.MockTransport(handle)) as api:
        await api.audit.verify()
        await api.with_token("b").rollout.traffic("m")
    assert hosts == [("audit.test", "Bearer a"), ("rollout.test", "Bearer b")]
