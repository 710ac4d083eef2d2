"""Composition root of the monitor.

Settings come from ``settings.py``. Kafka events enter in ``handlers.py``
(predictions and labels in batches, decoded by ``ingest.py``;
registrations and traffic splits through the inbox), HTTP requests in
``api.py``; both call the use cases of ``service.py``. Decisions are pure
(the ``domain`` package); ``store.py`` writes state, verdicts and the outbox
events (``drift-detected``, ``performance-degraded``,
``data-quality-violated``, ``incident-resolved``) in one transaction with
the consumer offsets. ``report.py`` renders drift reports.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI

from mloop.monitor import api, store
from mloop.monitor.handlers import build_router
from mloop.monitor.service import Monitoring
from mloop.monitor.settings import MonitorSettings
from mloop.runtime.messaging import ServiceRouter
from mloop.runtime.service import ServiceContext, create_service_app, serve

__all__ = ["MonitorSettings", "create_app", "main"]

log = logging.getLogger(__name__)


def create_app(settings: MonitorSettings | None = None) -> FastAPI:
    """The monitor's app; nothing connects until its lifespan starts."""
    settings = settings or MonitorSettings()

    def kafka(ctx: ServiceContext) -> ServiceRouter:
        monitoring = Monitoring(
            source=settings.service_name,
            store_mode=settings.prediction_store,
            unknown_models=settings.unknown_models,
            max_versions_per_model=settings.max_versions_per_model,
            store_sample_rate=settings.prediction_store_sample_rate,
            metrics=ctx.metrics,
        )
        ctx.extras["monitoring"] = monitoring
        return build_router(settings, monitoring, batch_max_messages=settings.batch_max_messages)

    async def maintenance(ctx: ServiceContext) -> None:
        while True:
            predictions, labels = await store.prune(
                ctx.pool, settings.prediction_retention_s, 7 * 86400.0)
            if predictions or labels:
                log.info("pruned %d predictions and %d pending labels", predictions, labels)
            await asyncio.sleep(settings.maintenance_interval_s)

    return create_service_app(
        settings,
        title="mloop monitor",
        description="Watches predictions for data drift, prediction drift, data quality and performance; "
        "emits drift-detected, performance-degraded and data-quality-violated with their evidence.",
        migrations="mloop.monitor.migrations",
        routers=[api.router],
        kafka=kafka,
        loops=[("maintenance", maintenance)],
    )


def main() -> None:
    settings = MonitorSettings()
    serve(create_app(settings), settings)
