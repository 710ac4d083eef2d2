"""The injector: plays a :class:`~mloop.chaos.schedule.Schedule` against a private platform.

Each fault begins at its planned offset. Faults on different services
overlap (one service may be restarting while another is killed); a fault of
the broker or of Postgres waits until no service is being restarted and
holds the others back until its target is back (the broker serves metadata,
Postgres accepts connections): a service restarted with its database down
would be refused, which is not the fault under test. A fault has recovered
when its target is back (a service answers ``/readyz``). A webhook fault only
arms the receiver. Each fault is recorded with the
wall-clock times it began and ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

from mloop.chaos.history import FaultRecord
from mloop.chaos.schedule import Fault, FaultKind, Schedule
from mloop.demo.sandbox import Platform
from mloop.devstack import ServiceSpec, kill_service, signal_service, start_services
from mloop.devstack.services import service_urls

__all__ = ["Injector", "WebhookFaults"]

log = logging.getLogger(__name__)

_WEBHOOK = (FaultKind.WEBHOOK_FAILING, FaultKind.WEBHOOK_SLOW)
_INFRA = (FaultKind.KILL_KAFKA, FaultKind.RESTART_POSTGRES)


class _Gate:
    """Faults on different services overlap; a broker or database fault runs alone.

    A service is restarted while others are down, as in a bad day; the broker
    or Postgres is taken down only when no service is being restarted, so a
    restart is never refused for want of its database. Two faults on one
    service never overlap.
    """

    def __init__(self) -> None:
        self._cond = asyncio.Condition()
        self._services: set[str] = set()
        self._infra = False

    @contextlib.asynccontextmanager
    async def service(self, name: str) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._infra and name not in self._services)
            self._services.add(name)
        try:
            yield
        finally:
            async with self._cond:
                self._services.discard(name)
                self._cond.notify_all()

    @contextlib.asynccontextmanager
    async def infra(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._infra and not self._services)
            self._infra = True
        try:
            yield
        finally:
            async with self._cond:
                self._infra = False
                self._cond.notify_all()


@dataclass
class WebhookFaults:
    """What the webhook receiver does to its next deliveries: ``"failing"`` or ``"slow"``, one entry each."""

    pending: list[str] = field(default_factory=list)
    spoiled: int = 0

    def next_mode(self) -> str | None:
        if not self.pending:
            return None
        self.spoiled += 1
        return self.pending.pop(0)


class Injector:
    """Injects faults into ``platform``; ``records`` holds what was done, ``on_fault`` hears each one."""

    def __init__(
        self,
        platform: Platform,
        webhook: WebhookFaults,
        *,
        on_fault: Callable[[FaultRecord], None] | None = None,
        ready_timeout_s: float = 120.0,
    ) -> None:
        if platform.infra is None:
            raise ValueError("platform: faults need a private platform that owns its broker and Postgres")
        self.platform = platform
        self.infra = platform.infra
        self.webhook = webhook
        self.on_fault = on_fault
        self.ready_timeout_s = ready_timeout_s
        self.records: list[FaultRecord] = []
        self._gate = _Gate()
        self._env: Mapping[str, str] = {**service_urls(platform.services), **platform.env}

    def _spec(self, name: str) -> ServiceSpec:
        return next(s for s in self.platform.services if s.name == name)

    async def run(self, schedule: Schedule) -> None:
        """Play every fault of ``schedule``; returns when the last one has recovered."""
        began = time.monotonic()
        await asyncio.gather(*(self._at(began, f) for f in schedule.faults))

    async def _at(self, began: float, fault: Fault) -> None:
        wait = began + fault.at_s - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        if fault.kind in _WEBHOOK:
            guard: contextlib.AbstractAsyncContextManager[None] = contextlib.nullcontext()
        elif fault.kind in _INFRA:
            guard = self._gate.infra()
        else:
            guard = self._gate.service(fault.target)
        async with guard:
            start = time.time()
            detail = await self._inject(fault)
        record = FaultRecord(fault.kind.value, fault.target, start, time.time(), detail)
        self.records.append(record)
        log.info("fault %s %s: %s", fault.kind.value, fault.target, detail)
        if self.on_fault is not None:
            self.on_fault(record)

    async def _inject(self, fault: Fault) -> str:
        if fault.kind is FaultKind.KILL_SERVICE:
            spec = self._spec(fault.target)
            pid = await asyncio.to_thread(kill_service, self.platform.paths, spec)
            await asyncio.sleep(fault.duration_s)
            took = await self._restart(spec)
            return f"killed pid {pid}; back in {took:.1f}s"
        if fault.kind is FaultKind.KILL_KAFKA:
            kafka = self.infra.kafka
            assert kafka is not None
            await asyncio.to_thread(kafka.kill)
            await asyncio.sleep(fault.duration_s)
            t0 = time.monotonic()
            await asyncio.to_thread(kafka.start)
            await kafka.wait_ready_async(self.ready_timeout_s)
            return f"broker back in {time.monotonic() - t0:.1f}s"
        if fault.kind is FaultKind.RESTART_POSTGRES:
            pg = self.infra.postgres
            assert pg is not None
            # A clean stop (``fast``): the test stack runs Postgres with synchronous_commit=off and
            # fsync=off, so an ``immediate`` stop there may lose commits it acknowledged, which a
            # durable server never does; that would test the stack's settings, not the platform.
            await asyncio.to_thread(pg.stop, 30, mode="fast")
            await asyncio.sleep(fault.duration_s)
            t0 = time.monotonic()
            await asyncio.to_thread(pg.start, self.ready_timeout_s)
            return f"postgres back in {time.monotonic() - t0:.1f}s"
        if fault.kind is FaultKind.PAUSE_SERVICE:
            spec = self._spec(fault.target)
            pid = signal_service(self.platform.paths, spec, signal.SIGSTOP)
            try:
                await asyncio.sleep(fault.duration_s)
            finally:
                if pid is not None:
                    signal_service(self.platform.paths, spec, signal.SIGCONT)
            return f"paused pid {pid} for {fault.duration_s:.1f}s"
        # webhook faults: the receiver spoils its next deliveries
        mode = "failing" if fault.kind is FaultKind.WEBHOOK_FAILING else "slow"
        self.webhook.pending.extend([mode] * fault.deliveries)
        return f"next {fault.deliveries} deliveries {mode}"

    async def _restart(self, spec: ServiceSpec) -> float:
        t0 = time.monotonic()
        await asyncio.to_thread(
            start_services, self.platform.paths, self._env, [spec], timeout=self.ready_timeout_s
        )
        return time.monotonic() - t0

    def resume_all(self) -> None:
        """Continue any paused service (used when a run is cut short)."""
        for spec in self.platform.services:
            signal_service(self.platform.paths, spec, signal.SIGCONT)
