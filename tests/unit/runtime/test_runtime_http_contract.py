"""The runtime's HTTP contract without infrastructure: typed page tokens, the OpenAPI
document it generates, unknown query parameters, and the plan bounds that keep work small."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Query

from mloop.runtime.deps import ModelPath, Operator, Viewer
from mloop.runtime.pagination import Page, decode_cursor, encode_cursor
from mloop.runtime.problems import BadRequest
from mloop.runtime.service import create_service_app
from mloop.runtime.settings import ServiceSettings

router = APIRouter()


@router.get("/things")
async def list_things(_: Viewer, page_token: str | None = None,
                      kind: Annotated[str | None, Query()] = None) -> Page[str]:
    return Page[str](items=[], next_page_token=None)


@router.post("/things/{name}/pause", status_code=200, responses={409: {"description": "Not pausable now"}})
async def pause(name: ModelPath, who: Operator) -> dict[str, str]:
    return {"paused": name}


def _app() -> Any:
    settings = ServiceSettings(service_name="contract", environment="test",
                               jwt_secret="a-test-secret-that-is-long-enough-0123456789")
    return create_service_app(settings, title="contract", routers=[router])


def test_a_cursor_of_the_wrong_shape_is_a_400_naming_page_token() -> None:
    token = encode_cursor({"t": "2026-11-26T00:00:00+00:00", "id": "r-1"})
    assert decode_cursor(token, t=datetime, id=str) == {"t": datetime(2026, 11, 26, tzinfo=UTC), "id": "r-1"}
    wrong = [encode_cursor({"x": 1}), encode_cursor({"t": "yesterday", "id": "r"}),
             encode_cursor({"t": "2026-11-26T00:00:00", "id": "r"}),   # no time zone
             encode_cursor({"t": "2026-11-26T00:00:00+00:00", "id": 7}), encode_cursor([1]), "%%%"]
    for bad in wrong:
        with pytest.raises(BadRequest) as info:
            decode_cursor(bad, t=datetime, id=str)
        assert info.value.errors and info.value.errors[0]["field"] == "query.page_token", bad
    for bad_id in (True, "42", 2**63, 1.5):
        with pytest.raises(BadRequest):
            decode_cursor(encode_cursor({"id": bad_id}), id=int)
    assert decode_cursor(encode_cursor({"id": 42}), id=int) == {"id": 42}


def test_the_openapi_document_lists_the_problems_each_route_answers_and_the_bearer_scheme() -> None:
    spec = _app().openapi()
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "A token with `sub` and `roles` claims, signed by the platform"}
    assert "HTTPValidationError" not in str(spec)
    listing = spec["paths"]["/things"]["get"]
    assert set(listing["responses"]) == {"200", "400", "401", "422", "503"}   # a viewer is never a 403
    assert listing["security"] == [{"bearerAuth": []}]
    pausing = spec["paths"]["/things/{name}/pause"]["post"]
    assert set(pausing["responses"]) == {"200", "400", "401", "403", "404", "409", "413", "422", "503"}
    assert pausing["security"] == [{"bearerAuth": ["operator"]}]
    for status in ("400", "401", "403", "404", "409", "413", "422", "503"):
        assert pausing["responses"][status]["content"] == {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}, status
    assert pausing["responses"]["409"]["description"] == "Not pausable now"   # the route's own words stay
    assert "security" not in spec["paths"]["/healthz"]["get"]
    assert "503" not in spec["paths"]["/healthz"]["get"]["responses"]
    assert spec["components"]["schemas"]["Problem"]["required"] == ["type", "title", "status", "detail"]


async def test_a_query_parameter_the_route_does_not_take_is_a_422_naming_it() -> None:
    app = _app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        r = await client.get("/healthz", params={"verbose": "1"})
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"] == [{"field": "query.verbose", "message": "unknown query parameter",
                                       "type": "extra_forbidden"}]
        r = await client.get("/things", params={"status": "bogus"})
        assert r.status_code == 422 and "query.status" in r.json()["detail"]
        assert (await client.get("/healthz")).status_code == 200
        # Declared parameters are still taken (and then the token is checked).
        assert (await client.get("/things", params={"kind": "a", "page_token": "x"})).status_code == 401
