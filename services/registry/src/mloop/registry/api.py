"""HTTP entry points of the registry.

=================================================  ==========================
``POST/GET /models``, ``GET/PATCH /models/{name}``  ``api_models``
``/models/{name}/aliases/{alias}``, alias history
``/validation-policies/default``, ``/models/{name}/validation-policy``
``POST /models/{name}/versions`` (registration)     ``api_versions``
``GET /versions``, ``/models/{name}/versions/{v}[/history]``
``.../promotion-requests``, approve, reject          ``api_promotions``
``/api/2.0/mlflow/...`` (MLflow Model Registry)      ``mlflow_api``
=================================================  ==========================

Registry errors become RFC 9457 problem documents here (the MLflow routes
answer in MLflow's own error shape instead).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from mloop.registry import api_models, api_promotions, api_versions, mlflow_api
from mloop.registry.errors import (
    ConflictError,
    GovernanceRefused,
    InvalidInput,
    NotFoundError,
    RegistryError,
    ReviewRefused,
)
from mloop.runtime.problems import problem_response

__all__ = ["install_error_handlers", "routers"]

routers = [api_models.router, api_versions.router, api_promotions.router, mlflow_api.router]


def _problem(request: Request, exc: RegistryError) -> JSONResponse:
    path = request.url.path
    if isinstance(exc, NotFoundError):
        return problem_response(404, "Not Found", str(exc), slug="not-found", instance=path)
    if isinstance(exc, ConflictError):
        return problem_response(409, "Conflict", str(exc), slug="conflict", instance=path)
    if isinstance(exc, ReviewRefused):
        return problem_response(403, "Forbidden", str(exc), slug="four-eyes", instance=path)
    if isinstance(exc, GovernanceRefused):
        return problem_response(403, "Forbidden", str(exc), slug="governance", instance=path)
    if isinstance(exc, InvalidInput):
        return problem_response(
            422, "Unprocessable Entity", f"{exc.field}: {exc}", slug="validation-error", instance=path,
            errors=[{"field": exc.field, "message": str(exc), "type": "value_error"}],
        )
    return problem_response(400, "Bad Request", str(exc), slug="bad-request", instance=path)


def install_error_handlers(app: FastAPI) -> None:
    """Translate :class:`RegistryError` into problem documents (MLflow errors on MLflow routes)."""
    mlflow_api.install_error_handlers(app)

    async def on_registry_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RegistryError)
        if mlflow_api.is_mlflow_path(request):
            return mlflow_api.error_response(exc)
        return _problem(request, exc)

    app.add_exception_handler(RegistryError, on_registry_error)
