"""An OpenAPI document that says what the service really answers.

FastAPI documents a route's success response and a 422 in its own
validation-error shape. A service built on the runtime answers more than that,
always as ``application/problem+json``: 401/403 from the role check, 404 for a
path that names nothing, 400 for a malformed ``page_token``, 413/409/422/400
from the write middleware (body limit, ``Idempotency-Key``), 503 while the
database is unreachable. :func:`install_openapi` derives those per route from
what the route depends on, so a new route is documented without extra code,
and declares the bearer (JWT) security scheme on every route that checks a role.

A route adds what only it knows with FastAPI's ``responses=``; a response it
declares with a description only gets the problem schema::

    @router.post("/things/{id}/pause", responses={409: {"description": "Not in a pausable phase"}})
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from mloop.runtime.problems import MEDIA_TYPE

__all__ = ["PROBLEM_SCHEMA", "ROLES_ATTRIBUTE", "install_openapi", "problem_content"]

#: Set on an auth dependency: the roles it requires (empty: any authenticated caller).
ROLES_ATTRIBUTE = "mloop_roles"
SECURITY_SCHEME = "bearerAuth"
_WRITES = {"POST", "PUT", "PATCH", "DELETE"}
#: Routes that answer without the database (they cannot be a 503).
_NO_DATABASE = {"/healthz", "/metrics"}

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem document; extra members carry details.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "A URI naming the kind of problem"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "What went wrong, naming the field"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"},
                               "type": {"type": "string"}},
            },
        },
    },
    "additionalProperties": True,
}

_DESCRIPTIONS = {
    400: "Bad request (a malformed page token or header, or a rule the input breaks)",
    401: "Missing, invalid or expired bearer token",
    403: "The token lacks a role this action needs",
    404: "Nothing by that name",
    409: "Conflicts with the current state (or an Idempotency-Key still in progress)",
    413: "The body is larger than the service accepts",
    422: "Invalid input; errors[] names each field",
    503: "The database is unreachable; retry after Retry-After seconds",
}


def problem_content() -> dict[str, Any]:
    """The ``content`` of a problem response, referencing the shared schema."""
    return {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dep in dependant.dependencies:
        if dep.call is not None:
            yield dep.call
        yield from _calls(dep)


def _routes(app: FastAPI) -> Iterator[Any]:
    """Every API route with its effective path, methods and dependencies."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: routes are flat
        yield from (r for r in app.routes if isinstance(r, APIRoute))
        return
    for ctx in iter_route_contexts(app.routes):
        if isinstance(ctx.original_route, APIRoute):
            yield ctx


def _expected(route: Any, method: str) -> tuple[set[int], tuple[str, ...] | None]:
    """The problem statuses a route can answer, and the roles it requires (None: no auth)."""
    roles: tuple[str, ...] | None = None
    for call in _calls(route.dependant):
        found = getattr(call, ROLES_ATTRIBUTE, None)
        if found is not None:
            roles = tuple(found) if roles is None else roles + tuple(found)
    statuses: set[int] = set()
    dependant = route.dependant
    if roles is not None:
        statuses.add(401)
        if roles:
            statuses.add(403)
    if "{" in route.path_format:
        statuses.add(404)
    if any(p.name == "page_token" for p in _all_params(dependant, "query_params")):
        statuses.add(400)
    if method in _WRITES:
        statuses |= {400, 409, 413, 422}
    statuses.add(422)  # invalid input, or a query parameter the route does not take
    if route.path_format not in _NO_DATABASE:
        statuses.add(503)
    return statuses, roles


def _all_params(dependant: Dependant, kind: str) -> list[Any]:
    out = list(getattr(dependant, kind))
    for dep in dependant.dependencies:
        out += _all_params(dep, kind)
    return out


def _document(schema: dict[str, Any], app: FastAPI) -> None:
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    components.setdefault("securitySchemes", {})[SECURITY_SCHEME] = {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "A token with `sub` and `roles` claims, signed by the platform",
    }
    for route in _routes(app):
        ops = schema.get("paths", {}).get(route.path_format, {})
        for method in route.methods or ():
            op = ops.get(method.lower())
            if op is None:
                continue
            statuses, roles = _expected(route, method)
            responses = op.setdefault("responses", {})
            for status in sorted(statuses):
                responses.setdefault(str(status), {"description": _DESCRIPTIONS[status]})
            for status, response in responses.items():
                if not status.isdigit() or int(status) < 400:
                    continue
                content = response.get("content")
                # FastAPI's own 422 shape, or a declared error with no schema: ours is a problem.
                if (not content or (int(status) == 422 and "HTTPValidationError" in str(content))
                        or content == {"application/json": {}}
                        or content == {"application/json": {"schema": {}}}):
                    response["content"] = problem_content()
            if roles is not None:
                op["security"] = [{SECURITY_SCHEME: list(roles)}]
    still_used = str(schema.get("paths", {}))
    for unused in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{unused}" not in still_used:
            components["schemas"].pop(unused, None)


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and ``/openapi.json``) document problems and security."""
    generate = app.openapi
    done: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        schema = generate()
        if done.get("schema") is not schema:
            _document(schema, app)
            done["schema"] = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
