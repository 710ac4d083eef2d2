"""Kafka: where events enter the retrain scheduler.

Each handler runs inside the consumer's transaction together with the inbox
insert, so an event is applied exactly once; the scheduler writes the state
change and its events in that same transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import asyncpg

from mloop.contracts.envelope import Event
from mloop.retrain_scheduler.domain import IllegalTransition, JobNotFound
from mloop.retrain_scheduler.scheduler import Scheduler
from mloop.runtime.consumer import Handler
from mloop.runtime.errors import PermanentError

__all__ = ["TRAFFIC_TOPICS", "build_handlers", "traffic_handler"]

TRAFFIC_TOPICS = ["prediction-logged", "ground-truth-logged"]


def build_handlers(scheduler: Scheduler) -> Mapping[str, Handler]:
    """The handler of every topic the scheduler consumes."""

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

    return {
        "drift-detected": on_signal,
        "performance-degraded": on_signal,
        "data-quality-violated": on_signal,
        "model-registered": on_model_registered,
        "rollout-started": on_rollout_started,
        "rollout-completed": on_rollout_completed,
        "rollout-rolled-back": on_rollout_rolled_back,
        "retrain-completed": on_retrain_finished,
        "retrain-failed": on_retrain_finished,
    }


def traffic_handler(scheduler: Scheduler) -> Callable[[Sequence[Event[Any]], asyncpg.Connection], Awaitable[None]]:
    """Predictions and labels (batch consumer, offsets stored with the counts they feed):
    counted for the jobs that wait for post-signal data, and nothing else."""

    async def on_traffic(events: Sequence[Event[Any]], conn: asyncpg.Connection) -> None:
        await scheduler.on_traffic(conn, events)

    return on_traffic
