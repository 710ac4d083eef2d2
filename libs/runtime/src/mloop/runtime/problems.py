"""RFC 9457 problem documents for every error a service returns.

Raise a :class:`Problem` subclass anywhere in a request; the handlers
installed by :func:`install_problem_handlers` turn it, validation errors,
unknown routes and even unexpected exceptions into
``application/problem+json`` with ``type``, ``title``, ``status``, ``detail``
and, for invalid input, per-field ``errors``.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mloop.runtime.db import CONNECTION_ERRORS, is_connection_error

__all__ = [
    "BadRequest",
    "Conflict",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "Problem",
    "Unauthorized",
    "UnprocessableEntity",
    "install_problem_handlers",
    "internal_error_response",
    "problem_response",
    "unavailable_response",
]

log = logging.getLogger(__name__)
PROBLEM_BASE = "https://mloop.dev/problems/"
#: Seconds a client is asked to wait when the database is unreachable.
RETRY_AFTER_S = 2
MEDIA_TYPE = "application/problem+json"


class Problem(Exception):
    status: int = 500
    title: str = "Internal Server Error"
    slug: str = "internal"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers
        self.extensions = extensions


class BadRequest(Problem):
    status, title, slug = 400, "Bad Request", "bad-request"


class Unauthorized(Problem):
    status, title, slug = 401, "Unauthorized", "unauthorized"


class Forbidden(Problem):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(Problem):
    status, title, slug = 404, "Not Found", "not-found"


class Conflict(Problem):
    status, title, slug = 409, "Conflict", "conflict"


class PayloadTooLarge(Problem):
    status, title, slug = 413, "Payload Too Large", "payload-too-large"


class UnprocessableEntity(Problem):
    status, title, slug = 422, "Unprocessable Entity", "validation-error"


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str,
    instance: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    body.update(extensions)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    return ".".join(parts)


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for e in exc.errors():
        out.append({"field": _field(tuple(e.get("loc", ()))), "message": e.get("msg", ""), "type": e.get("type", "")})
    return out


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            exc.status, exc.title, exc.detail, slug=exc.slug, instance=request.url.path,
            errors=exc.errors, headers=exc.headers, **exc.extensions,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(exc)
        if any(e["type"] == "json_invalid" for e in errors):
            return problem_response(
                422, "Unprocessable Entity", "the request body is not valid JSON",
                slug="invalid-json", instance=request.url.path, errors=errors,
            )
        first = errors[0] if errors else {"field": "", "message": ""}
        detail = f"{first['field']}: {first['message']}"
        if len(errors) > 1:
            detail += f" (and {len(errors) - 1} more)"
        return problem_response(
            422, "Unprocessable Entity", detail, slug="validation-error", instance=request.url.path, errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {404: "Not Found", 405: "Method Not Allowed", 401: "Unauthorized", 403: "Forbidden"}
        return problem_response(
            exc.status_code, titles.get(exc.status_code, "HTTP Error"), str(exc.detail),
            slug=f"http-{exc.status_code}", instance=request.url.path,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(asyncpg.DataError)
    async def _unstorable(request: Request, exc: asyncpg.DataError) -> JSONResponse:
        # Input that passed validation but that Postgres cannot hold (a NUL byte in
        # text, a number out of range): still the caller's input, so a 4xx.
        return problem_response(
            422, "Unprocessable Entity", f"a value in the request cannot be stored: {exc}",
            slug="unstorable-value", instance=request.url.path,
        )

    # No catch-all ``Exception`` handler here: Starlette answers with it and then
    # re-raises, and uvicorn drops the keep-alive connection. Unexpected errors
    # propagate to the service's outermost middleware, which answers without re-raising.

    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        # The database is restarting or unreachable: not the caller's fault and not a
        # bug; the write did not happen, so the caller may simply retry.
        if not is_connection_error(exc):
            raise exc
        log.warning("database unavailable on %s %s: %r", request.method, request.url.path, exc)
        return unavailable_response(request.url.path)

    for cls in (*CONNECTION_ERRORS, OSError):
        app.add_exception_handler(cls, _unavailable)


def internal_error_response(instance: str | None = None) -> JSONResponse:
    """500 ``internal``: a bug, logged by the caller; the detail gives nothing away."""
    return problem_response(
        500, "Internal Server Error", "an unexpected error occurred; it has been logged",
        slug="internal", instance=instance,
    )


def unavailable_response(instance: str | None = None) -> JSONResponse:
    """503 ``service-unavailable`` with ``Retry-After``: the database cannot be reached."""
    return problem_response(
        503, "Service Unavailable", "the database is unreachable right now; retry shortly",
        slug="service-unavailable", instance=instance, headers={"Retry-After": str(RETRY_AFTER_S)},
    )
