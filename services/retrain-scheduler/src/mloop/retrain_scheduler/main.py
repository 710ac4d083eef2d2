"""Composition root of the retrain scheduler.

Kafka events enter in ``handlers.py``, HTTP requests in ``api.py``; both
go through the service layer (``service.py``), whose decisions are pure
(the ``domain`` package) and whose state is written by ``store.py`` together with
its events (outbox). ``dispatch.py`` releases jobs and calls the training
webhooks in the background.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import httpx
from fastapi import FastAPI

from mloop.retrain_scheduler.api import router
from mloop.retrain_scheduler.dispatch import WebhookDispatcher
from mloop.retrain_scheduler.handlers import build_router
from mloop.retrain_scheduler.metrics import RetrainMetrics
from mloop.retrain_scheduler.service import Scheduler, utcnow
from mloop.retrain_scheduler.settings import RetrainSchedulerSettings
from mloop.runtime.messaging import ServiceRouter
from mloop.runtime.service import ServiceContext, create_service_app, serve

__all__ = ["create_app", "main"]


def create_app(
    settings: RetrainSchedulerSettings | None = None,
    *,
    clock: Callable[[], datetime] = utcnow,
    webhook_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """The scheduler's app; nothing connects until its lifespan starts."""
    settings = settings or RetrainSchedulerSettings()
    scheduler = Scheduler(source=settings.source, clock=clock)

    def kafka(_: ServiceContext) -> ServiceRouter:
        return build_router(settings, scheduler)

    async def dispatch(ctx: ServiceContext) -> None:
        dispatcher = WebhookDispatcher(
            ctx.pool,
            scheduler,
            settings.secret_values(),
            poll_interval_s=settings.dispatch_poll_interval_s,
            lease_margin=timedelta(seconds=settings.dispatch_lease_margin_s),
            max_in_flight=settings.dispatch_max_in_flight,
            transport=webhook_transport,
            clock=clock,
        )
        await dispatcher.run()

    app: FastAPI = create_service_app(
        settings,
        title="mloop retrain scheduler",
        description="Turns monitoring signals into retraining jobs, dispatches them to training "
        "pipelines and measures the time from a signal to a redeployed model.",
        migrations="mloop.retrain_scheduler.migrations",
        routers=[router],
        kafka=kafka,
        loops=[("retrain-dispatch", dispatch)],
    )
    scheduler.metrics = RetrainMetrics(app.state.metrics.registry)
    app.state.scheduler = scheduler
    return app


def main() -> None:
    settings = RetrainSchedulerSettings()
    serve(create_app(settings), settings)
