"""``Annotated`` dependencies of the registry's routes: who may do what, path parameters, the service layer.

Roles (``admin`` always passes):

============================  ==========================================
reading                       any authenticated caller (``viewer`` up)
models: create, tags          data-scientist, service, operator
versions: register            data-scientist, service (training pipelines)
versions: tags, archive       data-scientist, operator
versions: delete              operator
promotion: request            data-scientist, service
promotion: approve / reject   reviewer (never the requester)
aliases, policies             operator
============================  ==========================================
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, Depends, Path, Request

from mloop.registry.service import Registry
from mloop.runtime.auth import Principal, require_roles

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
    "Reviewer",
    "VersionPath",
    "example",
]

ModelWriter = Annotated[Principal, Depends(require_roles("data-scientist", "service", "operator"))]
Registrar = Annotated[Principal, Depends(require_roles("data-scientist", "service"))]
Curator = Annotated[Principal, Depends(require_roles("data-scientist", "operator"))]
Deleter = Annotated[Principal, Depends(require_roles("operator"))]
Requester = Annotated[Principal, Depends(require_roles("data-scientist", "service"))]
Reviewer = Annotated[Principal, Depends(require_roles("reviewer"))]
Operator = Annotated[Principal, Depends(require_roles("operator"))]

ModelPath = Annotated[
    str,
    Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="Model name",
         examples=["credit-risk"]),
]
VersionPath = Annotated[int, Path(ge=1, le=999_999_999, description="Version number", examples=[3])]
AliasPath = Annotated[
    str,
    Path(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9._-]*$", description="Alias name",
         examples=["champion"]),
]


def get_registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


Reg = Annotated[Registry, Depends(get_registry)]


def example(**named: Any) -> Any:
    """A ``Body`` carrying named OpenAPI request examples: ``example(basic=({...}, "summary"))``."""
    return Body(openapi_examples={k: {"summary": s, "value": v} for k, (v, s) in named.items()})
