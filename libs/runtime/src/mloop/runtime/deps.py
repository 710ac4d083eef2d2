"""``Annotated`` dependency aliases shared by every service's routes."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends, Path, Query, Request
from pydantic import StringConstraints

from mloop.contracts.payloads import MAX_MODEL_NAME_LENGTH, MAX_REASON_LENGTH, MODEL_NAME_PATTERN
from mloop.runtime.auth import Principal, require_roles
from mloop.runtime.service import ServiceContext

__all__ = [
    "MAX_MODELS_PER_CALL", "Ctx", "ModelNames", "ModelPath", "Operator", "Pool", "SettingReason", "Viewer", "get_ctx",
    "get_pool",
]


def get_ctx(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


def get_pool(request: Request) -> asyncpg.Pool:
    return get_ctx(request).pool


Ctx = Annotated[ServiceContext, Depends(get_ctx)]
Pool = Annotated[asyncpg.Pool, Depends(get_pool)]
#: Any authenticated caller (every role can read).
Viewer = Annotated[Principal, Depends(require_roles())]
#: The ``operator`` role (or ``admin``): writes that change how the platform behaves.
Operator = Annotated[Principal, Depends(require_roles("operator"))]
#: A model name in a path, with the same rule as the contracts' ``ModelName``.
ModelPath = Annotated[str, Path(min_length=1, max_length=MAX_MODEL_NAME_LENGTH, pattern=MODEL_NAME_PATTERN)]
#: Why a governance setting changes: an optional query parameter, kept in the setting's history and event.
SettingReason = Annotated[
    str | None,
    Query(max_length=MAX_REASON_LENGTH, description="Why the setting changes (kept in its history)",
          examples=["agreed in the weekly model review"]),
]

#: How many model names one read may filter on (a page of a list of models asks for its rows at once).
MAX_MODELS_PER_CALL = 200
_ModelNameItem = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_MODEL_NAME_LENGTH, pattern=MODEL_NAME_PATTERN)
]
#: ``?model=a&model=b``: at most :data:`MAX_MODELS_PER_CALL` names, each with the ``ModelName`` rule (422 naming
#: ``query.model`` otherwise); None when the parameter is absent.
ModelNames = Annotated[
    list[_ModelNameItem] | None,
    Query(max_length=MAX_MODELS_PER_CALL,
          description=f"Only these models (repeat the parameter, at most {MAX_MODELS_PER_CALL})"),
]
