"""``Annotated`` dependencies of the registry's routes: who may do what, path parameters, the service layer.

Roles (``admin`` always passes):

============================  ==========================================
reading                       any authenticated caller (``viewer`` up)
models: create, tags          data-scientist, service, operator
versions: register            data-scientist, service (training pipelines)
versions: validate again      data-scientist, service, operator
versions: tags, archive       data-scientist, operator
versions: delete              operator
promotion: request            data-scientist, service
promotion: approve / reject   reviewer (never the requester)
aliases, policies             operator (``champion`` and ``previous-champion``: nobody;
                              they move only with rollouts)
============================  ==========================================
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, Depends, Path, Request

from mloop.contracts.payloads import MAX_MODEL_NAME_LENGTH, MODEL_NAME_PATTERN
from mloop.registry.service import Registry
from mloop.runtime.auth import Principal, require_roles
from mloop.runtime.problems import UnprocessableEntity

__all__ = [
    "AliasPath",
    "Curator",
    "Deleter",
    "ModelPath",
    "ModelWriter",
    "Operator",
    "Reg",
    "Registrar",
    "Requester",
    "Revalidator",
    "Reviewer",
    "VersionPath",
    "example",
    "reject_nul",
]

ModelWriter = Annotated[Principal, Depends(require_roles("data-scientist", "service", "operator"))]
Registrar = Annotated[Principal, Depends(require_roles("data-scientist", "service"))]
Revalidator = Annotated[Principal, Depends(require_roles("data-scientist", "service", "operator"))]
Curator = Annotated[Principal, Depends(require_roles("data-scientist", "operator"))]
Deleter = Annotated[Principal, Depends(require_roles("operator"))]
Requester = Annotated[Principal, Depends(require_roles("data-scientist", "service"))]
Reviewer = Annotated[Principal, Depends(require_roles("reviewer"))]
Operator = Annotated[Principal, Depends(require_roles("operator"))]

ModelPath = Annotated[
    str,
    Path(min_length=1, max_length=MAX_MODEL_NAME_LENGTH, pattern=MODEL_NAME_PATTERN, description="Model name",
         examples=["credit-risk"]),
]
VersionPath = Annotated[int, Path(ge=1, le=999_999_999, description="Version number", examples=[3])]
AliasPath = Annotated[
    str,
    Path(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9._-]*$", description="Alias name",
         examples=["champion"]),
]


async def reject_nul(request: Request) -> None:
    """Refuse a NUL character in a path or query parameter (Postgres cannot store it) with a 422 naming it."""
    params = [("path", k, v) for k, v in request.path_params.items()]
    params += [("query", k, v) for k, v in request.query_params.multi_items()]
    for where, name, value in params:
        if isinstance(value, str) and "\x00" in value:
            field = f"{where}.{name}"
            raise UnprocessableEntity(f"{field}: NUL characters are not allowed",
                                      errors=[{"field": field, "message": "NUL character", "type": "value_error"}])


def get_registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


Reg = Annotated[Registry, Depends(get_registry)]


def example(**named: Any) -> Any:
    """A ``Body`` carrying named OpenAPI request examples: ``example(basic=({...}, "summary"))``."""
    return Body(openapi_examples={k: {"summary": s, "value": v} for k, (v, s) in named.items()})
