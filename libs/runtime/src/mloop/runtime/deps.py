"""``Annotated`` dependency aliases shared by every service's routes."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends, Request

from mloop.runtime.auth import Principal, require_roles
from mloop.runtime.service import ServiceContext

__all__ = ["Ctx", "Pool", "Viewer", "get_ctx", "get_pool"]


def get_ctx(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


def get_pool(request: Request) -> asyncpg.Pool:
    return get_ctx(request).pool


Ctx = Annotated[ServiceContext, Depends(get_ctx)]
Pool = Annotated[asyncpg.Pool, Depends(get_pool)]
#: Any authenticated caller (every role can read).
Viewer = Annotated[Principal, Depends(require_roles())]
