"""Composition root of the audit service.

Kafka events enter in ``handlers.py`` and are appended to their chain by
``store.ChainWriter`` (rows, Merkle nodes and the consumer offset in one
transaction). ``checkpointing.py`` signs tree heads in the background and
copies them out of Postgres; ``api.py`` answers queries, proofs, exports
(``service.py``) and verification (``live_verify.py``). Pure: the
``domain`` package (``records``, ``lifecycle``) over ``mloop.ledger``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI

from mloop.audit import api
from mloop.audit.checkpointing import Checkpointer, load_signing_key
from mloop.audit.handlers import build_router
from mloop.audit.settings import AuditSettings
from mloop.audit.store import ChainWriter
from mloop.runtime.messaging import ServiceRouter
from mloop.runtime.service import ServiceContext, create_service_app, serve

__all__ = ["create_app", "main"]

log = logging.getLogger(__name__)


def create_app(settings: AuditSettings | None = None) -> FastAPI:
    """The audit service's app; nothing connects and no key is read until its lifespan starts."""
    settings = settings or AuditSettings()

    async def on_startup(ctx: ServiceContext) -> None:
        role = settings.writer_role or None
        if role is not None:
            async with ctx.pool.acquire() as conn:
                usable = await conn.fetchval(
                    "SELECT pg_has_role(current_user, oid, 'MEMBER') FROM pg_roles WHERE rolname = $1", role
                )
            if not usable:
                log.warning("cannot SET ROLE %s: ingestion writes as the login user", role)
                role = None
        key = load_signing_key(settings)
        checkpointer = Checkpointer(settings, key, writer_role=role)
        ctx.extras["checkpointer"] = checkpointer
        ctx.extras["writer"] = ChainWriter(settings.origin_prefix, writer_role=role)

    def kafka(ctx: ServiceContext) -> ServiceRouter:
        return build_router(settings, ctx.extras["writer"], ctx.extras["checkpointer"],
                            max_records=settings.ingest_batch_max, registry=ctx.metrics.registry)

    async def checkpoint_loop(ctx: ServiceContext) -> None:
        checkpointer: Checkpointer = ctx.extras["checkpointer"]
        await checkpointer.run(ctx.pool)

    return create_service_app(
        settings,
        title="mloop audit",
        description="The append-only, hash-chained record of every governance event: queries, "
        "Merkle proofs, signed checkpoints and evidence bundles that verify offline.",
        migrations="mloop.audit.migrations",
        routers=[api.router],
        kafka=kafka,
        loops=[("checkpoints", checkpoint_loop)],
        on_startup=on_startup,
    )


def main() -> None:
    settings = AuditSettings()
    serve(create_app(settings), settings)
