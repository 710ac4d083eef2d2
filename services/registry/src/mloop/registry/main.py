"""Composition root of the registry.

HTTP requests enter in ``api.py`` (routers ``api_models``, ``api_versions``,
``api_promotions``, ``mlflow_api``), Kafka events in ``handlers.py``. Both go
through the service layer (``service.py``), whose decisions are pure
(the ``domain`` package) and whose state is written by ``store.py`` in one
transaction with the events it publishes (outbox).
"""

from __future__ import annotations

from fastapi import FastAPI

from mloop.registry import api
from mloop.registry.handlers import build_router
from mloop.registry.metrics import RegistryMetrics
from mloop.registry.mlflow_api import PREFIX as MLFLOW_PREFIX
from mloop.registry.service import Registry
from mloop.registry.settings import RegistrySettings
from mloop.runtime.messaging import ServiceRouter
from mloop.runtime.service import ServiceContext, create_service_app, serve

__all__ = ["create_app", "main"]


def create_app(settings: RegistrySettings | None = None) -> FastAPI:
    """The registry's app; nothing connects until its lifespan starts."""
    settings = settings or RegistrySettings()

    def kafka(_: ServiceContext) -> ServiceRouter:
        return build_router(settings, registry)  # called by the lifespan, once ``registry`` exists

    app = create_service_app(
        settings,
        title="mloop registry",
        description="Models and versions with lineage, automated validation gates, four-eyes promotion and "
        "aliases; also the MLflow Model Registry REST API.",
        migrations="mloop.registry.migrations",
        routers=api.routers,
        kafka=kafka,
        lenient_query_prefixes=[MLFLOW_PREFIX],  # MLflow clients send parameters we ignore (order_by)
    )
    registry = Registry(source=settings.source, metrics=RegistryMetrics(app.state.metrics.registry))
    app.state.registry = registry
    api.install_error_handlers(app)
    return app


def main() -> None:
    settings = RegistrySettings()
    serve(create_app(settings), settings)
