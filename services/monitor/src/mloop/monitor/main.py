"""Composition root of the monitor.

Kafka events enter in ``handlers.py`` (predictions and labels in batches,
registrations and traffic splits through the inbox), HTTP requests in
``api.py``. Decisions are pure (``domain.py`` over ``windows.py`` and
``performance.py``); ``store.py`` writes state, verdicts and the outbox
events (``drift-detected``, ``performance-degraded``,
``data-quality-violated``, ``incident-resolved``) in one transaction with
the consumer offsets. ``report.py`` renders drift reports.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from fastapi import FastAPI
from pydantic import Field

from mloop.monitor import api, store
from mloop.monitor.handlers import Monitoring, build_router
from mloop.runtime.messaging import ServiceRouter
from mloop.runtime.service import ServiceContext, create_service_app, serve
from mloop.runtime.settings import ServiceSettings

__all__ = ["MonitorSettings", "create_app", "main"]

log = logging.getLogger(__name__)


class MonitorSettings(ServiceSettings):
    """Environment variables ``MLOOP_<FIELD>``."""

    service_name: str = "monitor"
    http_port: int = Field(8103, ge=1, le=65535)
    prediction_store: Literal["full", "minimal", "off"] = Field(
        "full", description="full: features too; minimal: no features (labels still join); off: no store, "
        "no lookups, no performance tracking")
    prediction_store_sample_rate: float = Field(
        1.0, gt=0, le=1, description="Share of request ids stored (chosen by a hash of the id, so labels join "
        "the same share); below 1 when the store dominates the cost")
    prediction_retention_s: float = Field(7 * 86400.0, gt=0, description="How long stored predictions are kept")
    unknown_models: Literal["dead-letter", "monitor"] = Field(
        "dead-letter", description="Predictions of a model with no registered version: dead-letter them, or "
        "monitor them against their first predictions")
    max_versions_per_model: int = Field(100, ge=1)
    batch_max_messages: int = Field(
        500, ge=1, description="Messages per partition applied in one transaction (bounds how long the event "
        "loop is busy with one batch)")
    maintenance_interval_s: float = Field(60.0, gt=0)


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
