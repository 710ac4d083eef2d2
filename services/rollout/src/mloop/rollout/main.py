"""Composition root of the rollout service.

Kafka events and analysis ticks enter in ``handlers.py``, HTTP requests in
``api.py``; both go through the service layer (``service.py``), whose
decisions are the pure state machine's (``domain/machine.py``, with
``plan.py``, ``gates.py`` and ``evidence.py``) and whose state is written by
``store.py`` together with the events it publishes (outbox).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import FastAPI

from mloop.rollout.api import router
from mloop.rollout.handlers import analysis_loop, build_router
from mloop.rollout.metrics import RolloutMetrics
from mloop.rollout.service import RolloutService, utcnow
from mloop.rollout.settings import RolloutSettings
from mloop.runtime.messaging import ServiceRouter
from mloop.runtime.service import ServiceContext, create_service_app, serve

__all__ = ["create_app", "main"]


def create_app(settings: RolloutSettings | None = None, *, clock: Callable[[], datetime] = utcnow) -> FastAPI:
    """The rollout service's app; nothing connects until its lifespan starts."""
    settings = settings or RolloutSettings()
    service = RolloutService(source=settings.source, clock=clock, track_labels=settings.track_labels)

    def kafka(_: ServiceContext) -> ServiceRouter:
        return build_router(settings, service, evidence_max_records=settings.evidence_max_records)

    async def analysis(ctx: ServiceContext) -> None:
        await analysis_loop(ctx, service, settings.analysis_tick_s, settings.label_wait_s)

    app = create_service_app(
        settings,
        title="mloop rollout",
        description="Progressive delivery of model versions: shadow, canary and champion/challenger "
        "rollouts with gates on live evidence, always-valid sequential tests and automatic rollback.",
        migrations="mloop.rollout.migrations",
        routers=[router],
        kafka=kafka,
        loops=[("rollout-analysis", analysis)],
    )
    service.metrics = RolloutMetrics(app.state.metrics.registry)
    app.state.rollouts = service
    return app


def main() -> None:
    settings = RolloutSettings()
    serve(create_app(settings), settings)
