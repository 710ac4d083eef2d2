"""Kafka and time: where events and ticks enter the rollout service.

* ``model-promoted`` (inbox consumer: applied exactly once) starts a rollout.
* ``prediction-logged`` and ``ground-truth-logged`` (batch consumer, offsets
  stored in the same transaction as the evidence they build) feed the
  evidence of open rollouts.
* The analysis loop analyses every active rollout at its plan's interval.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import asyncpg

from mloop.contracts.envelope import Event
from mloop.rollout.service import RolloutService
from mloop.runtime.messaging import ServiceRouter
from mloop.runtime.service import ServiceContext
from mloop.runtime.settings import ServiceSettings

__all__ = ["EVIDENCE_TOPICS", "analysis_loop", "build_router"]

EVIDENCE_TOPICS = ["prediction-logged", "ground-truth-logged"]


def build_router(settings: ServiceSettings, service: RolloutService, *, evidence_max_records: int) -> ServiceRouter:
    """The rollout service's Kafka side: promotions through the inbox, evidence with stored offsets."""

    async def on_model_promoted(event: Event[Any], conn: asyncpg.Connection) -> None:
        await service.on_model_promoted(conn, event)

    async def on_evidence(events: Sequence[Event[Any]], conn: asyncpg.Connection) -> None:
        await service.on_evidence(conn, events)

    router = ServiceRouter(settings)
    router.inbox({"model-promoted": on_model_promoted})
    router.stored_offsets(EVIDENCE_TOPICS, on_evidence, group_suffix="-evidence", max_records=evidence_max_records)
    return router


async def analysis_loop(ctx: ServiceContext, service: RolloutService, tick_s: float, label_wait_s: float) -> None:
    """Forever: analyse the rollouts that are due, then wait one tick.

    About once a minute it also forgets predictions whose label never came.
    """
    loop = asyncio.get_running_loop()
    next_cleanup = loop.time()
    while True:
        await service.analyse_due(ctx.pool)
        if loop.time() >= next_cleanup:
            await service.forget_unlabelled(ctx.pool, timedelta(seconds=label_wait_s))
            next_cleanup = loop.time() + 60.0
        await asyncio.sleep(tick_s)
