"""The shared composition of a service: one call builds the FastAPI app whose
lifespan starts, in order, logging and tracing, the Postgres pool, the
migrations (the runtime's tables, then the service's), the FastStream
``KafkaBroker`` (its idempotent producer first), the outbox relay, the
service's ``KafkaRouter`` subscribers and the service's background loops;
and stops them in reverse.

A service's ``main.py`` reads top-down: settings → ``create_service_app(...)``
with its HTTP routers, its Kafka router and loops → ``serve``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import stamina
import uvicorn
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from faststream.kafka import KafkaBroker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mloop.runtime.db import apply_migrations, connect_pool, is_connection_error, load_migrations
from mloop.runtime.messaging import KafkaBindings, ServiceRouter, connect_broker, create_broker, kafka_producer
from mloop.runtime.metrics import ServiceMetrics
from mloop.runtime.middleware import RequestGuard
from mloop.runtime.openapi import install_openapi
from mloop.runtime.outbox import AfterPublish, OutboxRelay
from mloop.runtime.problems import install_problem_handlers, internal_error_response, unavailable_response
from mloop.runtime.query import reject_unknown_query
from mloop.runtime.server import server_config
from mloop.runtime.settings import ServiceSettings
from mloop.runtime.telemetry import setup_logging, setup_tracing

__all__ = ["ServiceContext", "create_service_app", "serve", "tune_gc"]

log = logging.getLogger(__name__)


@dataclass
class ServiceContext:
    """What handlers, loops and routes share. Built once, in the lifespan."""

    settings: ServiceSettings
    pool: asyncpg.Pool
    broker: KafkaBroker
    producer: AIOKafkaProducer  # the broker's own: idempotent, acks=all
    metrics: ServiceMetrics
    relay: OutboxRelay
    kafka: ServiceRouter | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    migrations_applied: bool = False

    @property
    def consumers(self) -> list[Any]:
        """The router's guaranteed subscriptions (each has ``ready``, set once partitions are assigned)."""
        return list(self.kafka.subscriptions) if self.kafka is not None else []

    async def wait_assigned(self, timeout_s: float = 30.0) -> None:
        """Wait until every subscription has partitions assigned (tests use it)."""
        await asyncio.wait_for(asyncio.gather(*(c.ready.wait() for c in self.consumers)), timeout_s)


Loop = Callable[[ServiceContext], Awaitable[None]]


async def _supervise(name: str, fn: Callable[[], Awaitable[None]]) -> None:
    """Keep a loop running: restart it after an unexpected failure.

    The back-off grows while the loop keeps crashing at once and starts over once
    it has run for a while, so an outage next week is not met with last week's delay.
    """
    loop = asyncio.get_running_loop()
    began = loop.time()

    def crashed_soon(exc: BaseException) -> bool:
        if not isinstance(exc, Exception):  # cancelled: the service is stopping
            return False
        if is_connection_error(exc):
            log.warning("%s stopped: database unreachable (%r); restarting", name, exc)
        else:
            log.error("%s crashed; restarting", name, exc_info=exc)
        return loop.time() - began <= 60

    while True:
        try:
            async for attempt in stamina.retry_context(
                on=crashed_soon, attempts=None, timeout=None, wait_initial=0.5, wait_max=30.0, wait_jitter=0.5
            ):
                with attempt:
                    began = loop.time()
                    await fn()
            return
        except Exception:  # logged by crashed_soon
            # It ran for a while before failing: start over with the shortest delay.
            continue


class _ProblemGuard:
    """Outermost HTTP middleware: no exception ever leaves the app.

    A database outage met outside a route (the ``Idempotency-Key`` bookkeeping)
    is a 503, any other escaped exception a logged 500 problem document. Nothing
    is re-raised: uvicorn closes the connection when an exception escapes after
    the response started (without ``Connection: close``), so the client's next
    request on that keep-alive connection would fail. Starlette's own catch-all
    handler re-raises after answering, which is why the catch-all lives here.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapped(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapped)
        except Exception as exc:
            unavailable = is_connection_error(exc)
            if started:
                # The caller has its answer; only bookkeeping after it failed.
                log.warning("error after answering %s %s: %r", scope["method"], scope["path"], exc,
                            exc_info=not unavailable)
                return
            if unavailable:
                log.warning("database unavailable on %s %s: %r", scope["method"], scope["path"], exc)
                await unavailable_response(scope["path"])(scope, receive, send)
            else:
                log.error("unhandled error on %s %s", scope["method"], scope["path"], exc_info=exc)
                await internal_error_response(scope["path"])(scope, receive, send)


_READINESS: dict[str, Any] = {
    "type": "object", "required": ["status", "checks"],
    "properties": {"status": {"type": "string", "enum": ["ready", "not-ready"]}, "checks": {"type": "object"}},
}


def create_service_app(
    settings: ServiceSettings,
    *,
    title: str,
    description: str = "",
    migrations: str | None = None,
    routers: Sequence[APIRouter] = (),
    kafka: Callable[[ServiceContext], ServiceRouter] | None = None,
    loops: Sequence[tuple[str, Loop]] = (),
    on_startup: Callable[[ServiceContext], Awaitable[None]] | None = None,
    relay_after_publish: AfterPublish | None = None,
    version: str = "0.1.0",
    lenient_query_prefixes: Sequence[str] = (),
) -> FastAPI:
    """Build the service's app. Nothing connects until the app's lifespan starts.

    ``kafka(ctx)`` returns the service's :class:`ServiceRouter` (its subscribers
    and publishers); it is called once in the lifespan, after ``on_startup``,
    and the broker starts with it.
    A query parameter a route does not declare is a 422, except under
    ``lenient_query_prefixes`` (compatibility APIs whose clients send extras).
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        setup_logging(settings.service_name, settings.log_level, settings.log_json)
        setup_tracing(settings.service_name, settings.otel_traces_exporter)
        metrics: ServiceMetrics = app.state.metrics
        pool = await connect_pool(
            settings.database_url.get_secret_value(),
            settings.schema_name,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            application_name=f"mloop-{settings.service_name}",
        )
        tasks: list[asyncio.Task[None]] = []
        broker = create_broker(settings, metrics)
        try:
            migs = load_migrations("mloop.runtime.migrations")
            if migrations:
                migs += load_migrations(migrations)
            await apply_migrations(pool, settings.schema_name, migs)
            app.state.pool = pool
            await connect_broker(broker)
            producer = kafka_producer(broker)
            relay = OutboxRelay(
                pool, producer, schema=settings.schema_name, topic_prefix=settings.topic_prefix,
                poll_interval_s=settings.outbox_poll_interval_s, metrics=metrics,
                after_publish=relay_after_publish,
            )
            ctx = ServiceContext(settings, pool, broker, producer, metrics, relay, migrations_applied=True)
            app.state.ctx = ctx
            app.state.broker = broker
            if on_startup is not None:
                await on_startup(ctx)
            if kafka is not None:
                ctx.kafka = kafka(ctx)
                bindings = KafkaBindings(settings, pool, broker, metrics)
                for sub in ctx.kafka.subscriptions:
                    sub.bind(bindings)
                broker.include_router(ctx.kafka)
            await broker.start()
            tasks.append(asyncio.create_task(_supervise("outbox relay", relay.run), name="outbox-relay"))
            for name, loop_fn in loops:
                tasks.append(asyncio.create_task(_supervise(name, functools.partial(loop_fn, ctx)), name=name))
            app.state.tasks = tasks
            log.info("%s started", settings.service_name)
            yield
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            with contextlib.suppress(Exception):
                await broker.stop()
            await pool.close()
            log.info("%s stopped", settings.service_name)

    app = FastAPI(title=title, description=description, version=version, lifespan=lifespan,
                  dependencies=[Depends(reject_unknown_query)])
    app.state.settings = settings
    app.state.lenient_query_prefixes = tuple(lenient_query_prefixes)
    app.state.metrics = ServiceMetrics(settings.service_name)
    install_problem_handlers(app)
    app.add_middleware(RequestGuard)
    app.add_middleware(_ProblemGuard)  # added last: wraps RequestGuard
    try:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz,metrics")
    except ImportError:  # pragma: no cover
        log.warning("FastAPI instrumentation not installed")

    ops = APIRouter(tags=["operations"])

    @ops.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": settings.service_name}

    @ops.get("/readyz", summary="Kafka and Postgres reachable, migrations applied",
             responses={200: {"content": {"application/json": {"schema": _READINESS}}},
                        503: {"description": "Not ready: the checks say what is missing",
                              "content": {"application/json": {"schema": _READINESS}}}})
    async def readyz(request: Request) -> JSONResponse:
        ctx: ServiceContext | None = getattr(request.app.state, "ctx", None)
        checks: dict[str, Any] = {"migrations": bool(ctx and ctx.migrations_applied)}
        if ctx is not None:
            try:
                async with ctx.pool.acquire(timeout=2) as conn:
                    await asyncio.wait_for(conn.fetchval("SELECT 1"), 2)
                checks["postgres"] = True
            except Exception as exc:
                checks["postgres"] = f"unreachable: {type(exc).__name__}"
            try:
                await asyncio.wait_for(ctx.producer.client.fetch_all_metadata(), 3)
                checks["kafka"] = True
            except Exception as exc:
                checks["kafka"] = f"unreachable: {type(exc).__name__}"
            tasks: list[asyncio.Task[None]] = getattr(request.app.state, "tasks", [])
            dead = [t.get_name() for t in tasks if t.done()]
            checks["loops"] = True if not dead else f"stopped: {', '.join(dead)}"
            checks["consumers_assigned"] = all(c.ready.is_set() for c in ctx.consumers)
        ok = all(v is True for k, v in checks.items() if k != "consumers_assigned")
        return JSONResponse({"status": "ready" if ok else "not-ready", "checks": checks},
                            status_code=200 if ok else 503)

    @ops.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics_endpoint(request: Request) -> Response:
        return Response(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4")

    app.include_router(ops)
    for r in routers:
        app.include_router(r)
    install_openapi(app)
    return app


def tune_gc(gen0_threshold: int) -> None:
    """Set the process's garbage collector for a service that allocates at traffic rate.

    The objects alive now (modules, the app) move to the permanent generation
    (``gc.freeze``), so full passes no longer walk them, and the young
    generation is collected every ``gen0_threshold`` allocations instead of
    Python's 700 (0 leaves the thresholds as they are). Reference counting
    still frees everything without cycles at once; only cyclic garbage waits
    for the larger threshold.
    """
    gc.freeze()
    if gen0_threshold > 0:
        _, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(gen0_threshold, gen1, gen2)


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    """Run ``app`` with uvicorn until SIGTERM/SIGINT."""
    setup_logging(settings.service_name, settings.log_level, settings.log_json)
    tune_gc(settings.gc_gen0_threshold)
    uvicorn.Server(server_config(app, settings)).run()
