"""Follows every governance topic for one model, for the live timeline and the report."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mloop.contracts.envelope import EnvelopeError, Event, decode
from mloop.contracts.topics import TOPICS

__all__ = ["EventWatcher", "Seen", "summarise"]

_SKIP = {"prediction-logged", "ground-truth-logged", "dead-letter"}


@dataclass(frozen=True)
class Seen:
    """An event and when this process saw it (monotonic seconds)."""

    at: float
    event: Event[Any]

    @property
    def topic(self) -> str:
        return self.event.topic

    @property
    def data(self) -> Any:
        return self.event.data


class EventWatcher:
    """Reads the governance topics from their current end; keeps the events of ``model``."""

    def __init__(self, bootstrap_servers: str, model: str, *, topic_prefix: str = "") -> None:
        self.bootstrap = bootstrap_servers
        self.model = model
        self.prefix = topic_prefix
        self.events: list[Seen] = []
        self.listeners: list[Callable[[Seen], None]] = []
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="latest"
        )
        await consumer.start()
        tps = [
            TopicPartition(self.prefix + spec.name, p)
            for spec in TOPICS.values()
            if spec.name not in _SKIP
            for p in range(spec.partitions)
        ]
        consumer.assign(tps)
        # Pin the starting offsets now: anything published from here on is seen.
        ends = await consumer.end_offsets(tps)
        for tp, offset in ends.items():
            consumer.seek(tp, offset)
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(), name="demo-event-watcher")

    async def _run(self) -> None:
        n = len(self.prefix)
        while True:
            batch = await self._consumer.getmany(timeout_ms=200)
            for tp, records in batch.items():
                topic = tp.topic[n:]
                for rec in records:
                    try:
                        event = decode(topic, rec.key, rec.value, rec.headers)
                    except EnvelopeError:
                        continue
                    if getattr(event.data, "model", None) != self.model:
                        continue
                    seen = Seen(time.monotonic(), event)
                    self.events.append(seen)
                    for listener in self.listeners:
                        listener(seen)
                    self._changed.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    def find(self, topic: str, where: Callable[[Any], bool] = lambda _: True, *, after: float = 0.0) -> Seen | None:
        for s in self.events:
            if s.topic == topic and s.at >= after and where(s.data):
                return s
        return None

    async def wait_for(
        self, topic: str, where: Callable[[Any], bool] = lambda _: True, *, timeout_s: float, after: float = 0.0
    ) -> Seen | None:
        """The first matching event (already seen or arriving within ``timeout_s``), or None."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.find(topic, where, after=after)
            if found is not None:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 1.0))


def summarise(seen: Seen) -> str:
    """One line about an event for the timeline."""
    d = seen.data
    t = seen.topic
    if t == "drift-detected":
        drifted = [f.name for f in d.features if f.drifted]
        return f"{d.kind} drift on v{d.version}, severity {d.severity}: {', '.join(drifted) or '-'}"
    if t == "performance-degraded":
        return f"v{d.version} {d.metric} {d.value:.3f} (baseline {d.baseline})"
    if t == "data-quality-violated":
        return f"v{d.version}: " + ", ".join(f"{v.kind} {v.feature or ''}".strip() for v in d.violations[:4])
    if t == "retrain-requested":
        return f"job {d.job_id[:8]} ({d.trigger}), window {d.data_window.start:%H:%M:%S}-{d.data_window.end:%H:%M:%S}"
    if t == "retrain-job-changed":
        return f"job {d.job_id[:8]}: {d.previous_state} -> {d.state}"
    if t in ("retrain-completed", "retrain-failed"):
        return f"job {d.job_id[:8]}" + (f" -> v{d.version}" if t == "retrain-completed" else f": {d.reason}")
    if t == "model-registered":
        job = d.lineage.retrain_job_id
        return f"v{d.version} by {d.registered_by}" + (f" (job {job[:8]})" if job else "")
    if t == "model-validated":
        failed = [c.name for c in d.checks if not c.passed]
        return f"v{d.version} {'passed' if d.passed else 'FAILED ' + ', '.join(failed)}"
    if t == "promotion-requested":
        return f"v{d.version} by {d.requested_by}"
    if t == "promotion-reviewed":
        return f"v{d.version} {d.decision} by {d.reviewer}"
    if t == "model-promoted":
        return f"v{d.version} (previous champion {d.previous_champion}), approved by {', '.join(d.approved_by)}"
    if t == "traffic-split-changed":
        return ", ".join(f"v{r.version} {r.weight:.0%}{' shadow' if r.shadow else ''}" for r in d.routes)
    if t.endswith("-changed") and hasattr(d, "changed_by"):  # a governance setting
        reason = getattr(d, "reason", None)
        return f"by {d.changed_by}" + (f" - {reason}" if reason else "")
    if t.startswith("rollout-"):
        fails = [g.name for g in d.gates if g.outcome == "fail"]
        extra = f"; failed: {', '.join(fails)}" if fails else ""
        return f"v{d.version} {d.phase} at {d.weight:.0%}{extra}" + (f" - {d.reason}" if d.reason else "")
    if t == "cycle-time-recorded":
        return f"job {d.job_id[:8]}: {d.outcome} in {d.cycle_seconds:.1f}s"
    if t == "model-alias-changed":
        return f"{d.alias} -> v{d.version} (was {d.previous_version})"
    return ""
