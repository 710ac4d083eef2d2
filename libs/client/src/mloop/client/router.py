"""Deterministic, sticky traffic routing for serving systems.

The rollout service publishes each model's full routing table on the
compacted ``traffic-split-changed`` topic. :class:`TrafficRouter` applies
those tables (ignoring any older than the one it has, by ``seq``) and decides
in-process which version serves a request key, plus which shadow versions
get a copy.

How a key is placed: ``blake2b(salt, key)`` gives two independent uniform
numbers ``u, s`` in [0, 1). The table's non-shadow routes are laid out on
[0, 1) as contiguous ranges *in table order*; the key goes to the range that
holds ``u``. The rollout service lists the baseline first and the candidate
last, so as the candidate's weight grows its range only extends downwards
from 1 and every key it already serves stays with it. A shadow route with
weight ``f`` receives a copy when ``s < f``. The salt is the model and the
rollout id, so different models (and successive rollouts) pick different
keys for their canaries.

:class:`RouterFollower` keeps a router current from Kafka: a consumer without
a group that reads the compacted topic from the beginning, so a router
started late still gets every model's current table before it serves.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import logging
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from mloop.contracts.envelope import EnvelopeError, decode
from mloop.contracts.payloads import TrafficSplitChanged

__all__ = ["RouteDecision", "RouterFollower", "TrafficRouter", "UnknownModel"]

log = logging.getLogger(__name__)

_TOPIC = "traffic-split-changed"
_SCALE = 2.0**-64
_unpack = struct.Struct(">QQ").unpack
_blake2b = hashlib.blake2b


class UnknownModel(LookupError):
    """No routing table is known for the model (and no default version was given)."""


class RouteDecision(NamedTuple):
    """Where one request goes: the serving ``version`` and the ``shadows`` that get a copy."""

    version: str
    shadows: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Table:
    change: TrafficSplitChanged
    salt: bytes
    bounds: tuple[float, ...]
    versions: tuple[str, ...]
    shadows: tuple[tuple[str, float], ...]
    plain: tuple[RouteDecision, ...]

    @classmethod
    def build(cls, change: TrafficSplitChanged) -> _Table:
        serving = [r for r in change.routes if not r.shadow and r.weight > 0]
        bounds: list[float] = []
        acc = 0.0
        for r in serving:
            acc += r.weight
            bounds.append(acc)
        if bounds:
            bounds[-1] = 1.0  # no gap at the top from rounding
        salt = f"{change.model}\x00{change.rollout_id or ''}\x00".encode()
        return cls(
            change=change,
            salt=salt,
            bounds=tuple(bounds),
            versions=tuple(r.version for r in serving),
            shadows=tuple((r.version, r.weight) for r in change.routes if r.shadow and r.weight > 0),
            plain=tuple(RouteDecision(r.version) for r in serving),
        )


class TrafficRouter:
    """Routing tables per model and the decisions they make. Not thread-safe for writes.

    ``defaults`` maps a model to the version to serve before any table is known.
    """

    def __init__(self, defaults: dict[str, str] | None = None) -> None:
        self._tables: dict[str, _Table] = {}
        self._defaults = dict(defaults or {})

    def apply(self, change: TrafficSplitChanged) -> bool:
        """Install ``change`` unless a table with the same or a newer ``seq`` is installed.

        Returns whether it was installed.
        """
        current = self._tables.get(change.model)
        if current is not None and change.seq <= current.change.seq:
            return False
        self._tables[change.model] = _Table.build(change)
        return True

    def apply_all(self, changes: Iterable[TrafficSplitChanged]) -> int:
        return sum(self.apply(c) for c in changes)

    def table(self, model: str) -> TrafficSplitChanged | None:
        """The routing table in force for ``model``, if any."""
        t = self._tables.get(model)
        return t.change if t is not None else None

    @property
    def models(self) -> list[str]:
        return sorted(self._tables)

    def route(self, model: str, key: str) -> RouteDecision:
        """The version serving ``key`` and the shadow versions that get a copy.

        Deterministic for a given table. Raises :class:`UnknownModel` when no
        table and no default are known for ``model``.
        """
        t = self._tables.get(model)
        if t is None or not t.versions:
            default = self._defaults.get(model)
            if default is None:
                raise UnknownModel(model)
            return RouteDecision(default)
        hi, lo = _unpack(_blake2b(t.salt + key.encode(), digest_size=16).digest())
        i = bisect.bisect_right(t.bounds, hi * _SCALE)
        if not t.shadows:
            return t.plain[i]
        s = lo * _SCALE
        version = t.versions[i]
        shadows = tuple(v for v, f in t.shadows if s < f and v != version)
        return RouteDecision(version, shadows) if shadows else t.plain[i]


class RouterFollower:
    """Keeps a :class:`TrafficRouter` in step with the ``traffic-split-changed`` topic.

    Use as an async context manager, or call :meth:`start` (which returns once
    every table published before it was called has been applied) and
    :meth:`stop`. ``consumer_factory`` builds the consumer (defaults to
    ``aiokafka.AIOKafkaConsumer``); it is the seam for tests and for SASL/TLS
    settings passed through ``consumer_options``.
    """

    def __init__(
        self,
        router: TrafficRouter,
        bootstrap_servers: str,
        *,
        topic_prefix: str = "",
        consumer_options: dict[str, Any] | None = None,
    ) -> None:
        self.router = router
        self._bootstrap = bootstrap_servers
        self._topic = topic_prefix + _TOPIC
        self._options = dict(consumer_options or {})
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None
        self.applied = 0
        self.rejected = 0

    async def __aenter__(self) -> RouterFollower:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, catch_up_within: float = 30.0) -> None:
        """Connect, read the topic from the beginning up to its current end, then follow it.

        Raises ``TimeoutError`` when the topic does not exist or cannot be read
        up to its end within ``catch_up_within`` seconds.
        """
        from aiokafka import AIOKafkaConsumer

        # Subscribed without a group: every partition is ours and, with no
        # committed offsets, reading starts at the earliest retained record.
        consumer = AIOKafkaConsumer(
            self._topic,
            bootstrap_servers=self._bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **self._options,
        )
        await consumer.start()
        self._consumer = consumer
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + catch_up_within
            while not consumer.assignment():
                if loop.time() > deadline:
                    raise TimeoutError(f"topic {self._topic} not found")
                await asyncio.sleep(0.1)
            tps = sorted(consumer.assignment(), key=lambda tp: tp.partition)
            ends: dict[Any, int] = await consumer.end_offsets(tps)
            await asyncio.wait_for(self._catch_up(ends), timeout=max(0.1, deadline - loop.time()))
        except BaseException:
            await consumer.stop()
            self._consumer = None
            raise
        self._task = asyncio.create_task(self._follow(), name="traffic-router-follower")

    async def _catch_up(self, ends: dict[Any, int]) -> None:
        pending = {tp: end for tp, end in ends.items() if end > 0}
        while pending:
            batch = await self._consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for rec in records:
                    self._apply_record(rec)
            for tp in list(pending):
                if await self._consumer.position(tp) >= pending[tp]:
                    del pending[tp]

    async def _follow(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for rec in records:
                    self._apply_record(rec)

    def _apply_record(self, rec: Any) -> None:
        if rec.value is None:  # a tombstone: the model's table was deleted
            return
        try:
            event = decode(_TOPIC, rec.key, rec.value, rec.headers)
        except EnvelopeError as exc:
            self.rejected += 1
            log.warning("ignoring a bad traffic-split-changed record: %s", exc.reason)
            return
        if self.router.apply(event.data):
            self.applied += 1

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
