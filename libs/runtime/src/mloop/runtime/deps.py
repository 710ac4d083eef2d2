"""``Annotated`` dependency aliases shared by every service's routes."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends, Path, Request

from mloop.runtime.auth import Principal, require_roles
from mloop.runtime.service import ServiceContext

__all__ = ["Ctx", "ModelPath", "Operator", "Pool", "Viewer", "get_ctx", "get_pool"]


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
ModelPath = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
