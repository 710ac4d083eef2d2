"""Kafka: where events enter the retrain scheduler.

Each handler runs inside the consumer's transaction together with the inbox
insert, so an event is applied exactly once; the scheduler writes the state
change and its events in that same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from mloop.contracts.envelope import Event
from mloop.retrain_scheduler.domain import IllegalTransition, JobNotFound
from mloop.retrain_scheduler.service import Scheduler
from mloop.runtime.errors import PermanentError
from mloop.runtime.messaging import ServiceRouter
from mloop.runtime.settings import ServiceSettings

__all__ = ["TRAFFIC_TOPICS", "build_router"]

TRAFFIC_TOPICS = ["prediction-logged", "ground-truth-logged"]


def build_router(settings: ServiceSettings, scheduler: Scheduler) -> ServiceRouter:
    """The scheduler's Kafka side: one inbox subscriber for every topic it consumes."""

    async def on_signal(event: Event[Any], conn: asyncpg.Connection) -> None:
        await scheduler.on_signal(conn, event)

    async def on_model_registered(event: Event[Any], conn: asyncpg.Connection) -> None:
        await scheduler.on_model_registered(conn, event)

    async def on_rollout_started(event: Event[Any], conn: asyncpg.Connection) -> None:
        await scheduler.on_rollout_started(conn, event)

    async def on_rollout_completed(event: Event[Any], conn: asyncpg.Connection) -> None:
        await scheduler.on_rollout_finished(conn, event, "completed")

    async def on_rollout_rolled_back(event: Event[Any], conn: asyncpg.Connection) -> None:
        await scheduler.on_rollout_finished(conn, event, "rolled-back")

    async def on_retrain_finished(event: Event[Any], conn: asyncpg.Connection) -> None:
        try:
            await scheduler.on_retrain_finished(conn, event)
        except (JobNotFound, IllegalTransition) as exc:
            # A report about a job nobody asked for, or one that was never
            # dispatched: retrying cannot help; keep it visible instead.
            raise PermanentError(str(exc)) from exc

    router = ServiceRouter(settings)
    router.inbox({
        "drift-detected": on_signal,
        "performance-degraded": on_signal,
        "data-quality-violated": on_signal,
        "model-registered": on_model_registered,
        "rollout-started": on_rollout_started,
        "rollout-completed": on_rollout_completed,
        "rollout-rolled-back": on_rollout_rolled_back,
        "retrain-completed": on_retrain_finished,
        "retrain-failed": on_retrain_finished,
    })

    async def on_traffic(events: Sequence[Event[Any]], conn: asyncpg.Connection) -> None:
        # Counted for the jobs that wait for post-signal data, and nothing else.
        await scheduler.on_traffic(conn, events)

    # Its own consumer group, offsets stored with the counts they feed: the scheduler
    # counts the traffic itself (services never read each other's tables).
    router.stored_offsets(TRAFFIC_TOPICS, on_traffic, group_suffix="-traffic")
    return router
