"""Kafka entry points: the rollout service's outcomes.

Each handler runs inside the inbox transaction of its event, so applying it
and recording its id commit together; the alias moves it causes go to the
outbox in that same transaction. An event about a version this registry
does not know can never apply: :class:`PermanentError` sends it to
``dead-letter``.
"""

from __future__ import annotations

import asyncpg

from mloop.contracts.envelope import Event
from mloop.contracts.payloads import RolloutCompleted, RolloutRolledBack
from mloop.registry.service import Registry
from mloop.runtime.messaging import ServiceRouter
from mloop.runtime.settings import ServiceSettings

__all__ = ["build_router"]


def build_router(settings: ServiceSettings, registry: Registry) -> ServiceRouter:
    """The registry's Kafka side: one inbox subscriber for the rollout outcomes."""

    async def on_rollout_completed(event: Event[RolloutCompleted], conn: asyncpg.Connection) -> None:
        await registry.apply_rollout_completed(conn, event)

    async def on_rollout_rolled_back(event: Event[RolloutRolledBack], conn: asyncpg.Connection) -> None:
        await registry.apply_rollout_rolled_back(conn, event)

    router = ServiceRouter(settings)
    router.inbox({"rollout-completed": on_rollout_completed, "rollout-rolled-back": on_rollout_rolled_back})
    return router
