"""Kafka and time: where events and ticks enter the rollout service.

* ``model-promoted`` (inbox consumer: applied exactly once) starts a rollout.
* ``prediction-logged`` and ``ground-truth-logged`` (batch consumer, offsets
  stored in the same transaction as the evidence they build) feed the
  evidence of open rollouts.
* The analysis loop analyses every active rollout at its plan's interval, at
  the moment a step becomes due, and when evidence completes a step's samples.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import asyncpg

from mloop.contracts.envelope import Event
from mloop.rollout.service import RolloutService
from mloop.rollout.store import analysis_channel
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
    """Forever: analyse the rollouts that are due, then sleep until the next one is.

    A rollout is due at its plan's interval or at the moment its step has
    lasted its minimum duration, and at once when arriving evidence completes
    the samples a ready step waited for. Changes committed elsewhere (a new
    rollout, evidence, an operator's action) wake the loop through a NOTIFY;
    ``tick_s`` bounds every sleep in case a notification is lost. About once
    a minute it also forgets predictions whose label never came.
    """
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    next_cleanup = loop.time()
    listener = _AnalysisListener(ctx, wake)
    try:
        while True:
            await listener.ensure()
            wake.clear()  # before looking: a change committed from here on wakes the next sleep
            await service.analyse_due(ctx.pool)
            if loop.time() >= next_cleanup:
                await service.forget_unlabelled(ctx.pool, timedelta(seconds=label_wait_s))
                next_cleanup = loop.time() + 60.0
            delay = await service.seconds_to_next_analysis(ctx.pool, tick_s)
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    # The loop's clock may run a hair ahead of the database's: never spin.
                    await asyncio.wait_for(wake.wait(), max(delay, 0.002))
    finally:
        await listener.close()


class _AnalysisListener:
    """LISTEN for analysis wake-ups on a pooled connection of its own; polling stands in while it is gone."""

    def __init__(self, ctx: ServiceContext, wake: asyncio.Event) -> None:
        self._ctx = ctx
        self._wake = wake
        self._conn: asyncpg.Connection | None = None
        self._channel = analysis_channel(ctx.settings.schema_name)

    def _notified(self, *_: Any) -> None:
        self._wake.set()

    async def ensure(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            return
        await self.close()
        try:
            conn = await self._ctx.pool.acquire()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return
        try:
            await conn.add_listener(self._channel, self._notified)
            conn.add_termination_listener(self._notified)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            with contextlib.suppress(Exception):
                await self._ctx.pool.release(conn)
            return
        self._conn = conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            conn.remove_termination_listener(self._notified)
        with contextlib.suppress(Exception):
            if not conn.is_closed():
                await conn.remove_listener(self._channel, self._notified)
        with contextlib.suppress(Exception):
            await self._ctx.pool.release(conn)
