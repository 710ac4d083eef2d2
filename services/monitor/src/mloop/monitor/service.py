"""The monitor's use cases, between the entry points and the pure domain.

* :class:`Monitoring` applies batches of predictions and labels (one
  partition at a time, inside the transaction that stores its offsets) to
  the per-version monitors of ``domain``.
* :func:`on_model_registered` and :func:`on_traffic_split_changed` keep each
  version's registration and the newest routing table.
* :func:`change_config`: a model's windows and
  thresholds decide when drift is an alarm, so changing them is a governance
  act: the new configuration, the change (who, when, old -> new, why) in the
  model's history and ``monitor-config-changed``, in one transaction.

The windows of each (model, version) are kept in memory between batches.
Each state row carries a ``rev`` that every write bumps; a batch locks the
rows it touches and reloads any copy whose rev differs, so a rolled-back
transaction, another instance or a configuration change never leaves a
stale copy in use.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg
from prometheus_client import Counter, Gauge

from mloop.contracts.envelope import Event, new_event
from mloop.contracts.payloads import (
    GroundTruthLogged,
    ModelRegistered,
    MonitorConfigChanged,
    TrafficSplitChanged,
)
from mloop.contracts.topics import spec_for
from mloop.monitor import store
from mloop.monitor.domain import (
    LabelledPrediction,
    MonitorConfig,
    Outcome,
    PredictionBatch,
    VersionMonitor,
)
from mloop.monitor.ingest import PredictionColumns, PredictionMessage
from mloop.runtime import outbox
from mloop.runtime.errors import PermanentError
from mloop.runtime.history import SettingChange
from mloop.runtime.metrics import ServiceMetrics
from mloop.stats import ProfileFormatError
from mloop.stats.profile import ReferenceProfile

__all__ = [
    "Monitoring",
    "change_config",
    "on_model_registered",
    "on_traffic_split_changed",
]

log = logging.getLogger(__name__)

Key = tuple[str, str]
StoreMode = Literal["full", "minimal", "off"]


@dataclass
class _Cached:
    rev: int
    monitor: VersionMonitor
    config: MonitorConfig


class _Metrics:
    def __init__(self, metrics: ServiceMetrics | None) -> None:
        reg = metrics.registry if metrics is not None else None
        kw: dict[str, Any] = {"registry": reg} if reg is not None else {"registry": None}
        self.records = Counter("mloop_monitor_records_total", "Prediction records counted into windows",
                               ["model"], **kw)
        self.labels = Counter("mloop_monitor_labels_total", "Labels received, by outcome",
                              ["model", "outcome"], **kw)
        self.windows = Counter("mloop_monitor_windows_total", "Windows evaluated, by signal and verdict",
                               ["model", "signal", "alarm"], **kw)
        self.drift_statistic = Gauge("mloop_monitor_drift_effect_size", "Effect size of the last window",
                                     ["model", "version", "feature"], **kw)


class Monitoring:
    """The service layer between Kafka batches and the per-version monitors."""

    def __init__(
        self,
        *,
        source: str,
        store_mode: StoreMode = "full",
        unknown_models: Literal["dead-letter", "monitor"] = "dead-letter",
        max_versions_per_model: int = 100,
        store_sample_rate: float = 1.0,
        prediction_partitions: int = spec_for("prediction-logged").partitions,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.source = source
        # A model whose traffic is spread (not keyed by its name) reaches every partition, and its
        # time windows wait for all of them: the topic is created with the contract's partitions.
        self.spread_over = tuple(range(prediction_partitions))
        self.store_mode = store_mode
        # Which request ids are stored is a function of the id alone, so a
        # label makes the same decision as its prediction did.
        self._sample_below = int(store_sample_rate * 2**32) if store_sample_rate < 1.0 else None
        self.unknown_models = unknown_models
        self.max_versions_per_model = max_versions_per_model
        self.cache: dict[Key, _Cached] = {}
        self.metrics = _Metrics(metrics)

    async def on_batch(self, events: Sequence[Event[Any] | PredictionMessage], conn: asyncpg.Connection) -> None:
        """Apply a batch of one partition; called inside the transaction that stores its offsets.

        Events at or below the highest offset already applied are skipped: the
        window state must count every record once, whatever is redelivered.
        """
        events = await self._unapplied(events, conn)
        predictions = [e for e in events if isinstance(e, PredictionMessage)]
        labels = [e for e in events if isinstance(e, Event) and e.topic == "ground-truth-logged"]
        if predictions:
            await self._on_predictions(predictions, conn)
        if labels:
            await self._on_labels(labels, conn)

    async def _unapplied(self, events: Sequence[Event[Any] | PredictionMessage],
                         conn: asyncpg.Connection) -> list[Event[Any] | PredictionMessage]:
        fresh: list[Event[Any] | PredictionMessage] = []
        by_topic: dict[str, list[Event[Any] | PredictionMessage]] = defaultdict(list)
        for e in events:
            by_topic[e.topic].append(e)
        for topic, evs in by_topic.items():
            partitions = sorted({e.partition or 0 for e in evs})
            applied = await store.applied_offsets(conn, topic, partitions)
            kept = [e for e in evs if (e.offset or 0) >= applied.get(e.partition or 0, -1)]
            if len(kept) < len(evs):
                log.warning("skipped %d %s events applied before", len(evs) - len(kept), topic)
            fresh.extend(kept)
            nexts: dict[int, int] = {}
            for e in kept:
                p = e.partition or 0
                nexts[p] = max(nexts.get(p, 0), (e.offset or 0) + 1)
            if nexts:
                await store.advance_applied_offsets(conn, topic, nexts)
        return fresh

    # -- predictions ------------------------------------------------------------------------

    async def _on_predictions(self, messages: Sequence[PredictionMessage], conn: asyncpg.Connection) -> None:
        # A batch comes from one partition; grouped by it all the same, since each partition's
        # records move that partition's event-time watermark.
        parts: dict[tuple[Key, int], list[PredictionColumns]] = defaultdict(list)
        spread: set[tuple[Key, int]] = set()
        for m in messages:
            for version, cols in m.columns.by_version().items():
                parts[((m.model, version), m.partition)].append(cols)
                if m.spread:
                    spread.add(((m.model, version), m.partition))
        by_partition = {kp: PredictionColumns.concat(p) for kp, p in parts.items()}
        keys = dict.fromkeys(k for k, _ in by_partition)
        revs = await self._lock(conn, {m for m, _ in keys}, keys)
        touched: dict[Key, Outcome] = {}
        for (key, partition), cols in by_partition.items():
            entry = await self._entry(conn, key, revs[key]) if key not in touched else self.cache[key]
            batch = PredictionBatch(cols.request_ids, cols.timestamps, cols.features, cols.predictions,
                                    sum(cols.errors), partition,
                                    self.spread_over if (key, partition) in spread else (partition,))
            touched.setdefault(key, Outcome()).extend(entry.monitor.observe(batch, entry.config))
            self.metrics.records.labels(model=key[0]).inc(len(cols))
        if self.store_mode != "off":
            await self._store_predictions(conn, by_partition, touched)
        await self._write(conn, touched)

    async def _store_predictions(self, conn: asyncpg.Connection, parts: dict[tuple[Key, int], PredictionColumns],
                                 touched: dict[Key, Outcome]) -> None:
        """Copy the (sampled) predictions of each (version, partition) into the store and join the labels
        that waited for them."""
        rows: list[store.StagedPrediction] = []
        full = self.store_mode == "full"
        for ((model, version), _), cols in parts.items():
            keep = range(len(cols)) if self._sample_below is None else [
                i for i, r in enumerate(cols.request_ids) if self._stored(r)]
            rows.extend(store.staged_predictions(model, version, cols, keep, with_features=full))
        if not rows:
            return
        joined: dict[Key, list[LabelledPrediction]] = defaultdict(list)
        for j in await store.copy_predictions(conn, rows):
            joined[(j.model, j.version)].append(LabelledPrediction(
                j.request_id, j.prediction, j.label, j.predicted_at.timestamp(), j.labelled_at.timestamp()))
        for key, pairs in joined.items():
            entry = self.cache[key]
            horizon = entry.config.performance.label_horizon_s
            fresh = [p for p in pairs if p.labelled_at - p.predicted_at <= horizon]
            self.metrics.labels.labels(model=key[0], outcome="joined").inc(len(fresh))
            touched[key].extend(entry.monitor.observe_labels(fresh, entry.config))

    def _stored(self, request_id: str) -> bool:
        return self._sample_below is None or zlib.crc32(request_id.encode()) < self._sample_below

    # -- ground truth ----------------------------------------------------------------------------

    async def _on_labels(self, events: Sequence[Event[GroundTruthLogged]], conn: asyncpg.Connection) -> None:
        by_model: dict[str, list[tuple[str, Any, datetime]]] = defaultdict(list)
        for e in events:
            for r in e.data.records:
                if not self._stored(r.request_id):
                    continue
                if isinstance(r.label, float) and not math.isfinite(r.label):
                    self.metrics.labels.labels(model=e.data.model, outcome="invalid").inc()
                    continue
                by_model[e.data.model].append((r.request_id, r.label, r.timestamp))
        if self.store_mode == "off":
            for model, labels in by_model.items():
                self.metrics.labels.labels(model=model, outcome="no-store").inc(len(labels))
            return
        revs = await self._lock(conn, set(by_model), {})
        touched: dict[Key, Outcome] = {}
        for model, labels in by_model.items():
            config = (await store.load_configs(conn, [model])).get(model, MonitorConfig())
            joined, pending, refused = await store.join_labels(conn, model, labels,
                                                               config.performance.label_horizon_s)
            await store.add_pending_labels(conn, model, pending)
            self.metrics.labels.labels(model=model, outcome="joined").inc(len(joined))
            self.metrics.labels.labels(model=model, outcome="pending").inc(len(pending))
            self.metrics.labels.labels(model=model, outcome="refused").inc(refused)
            by_version: dict[str, list[LabelledPrediction]] = defaultdict(list)
            for j in joined:
                by_version[j.version].append(LabelledPrediction(
                    j.request_id, j.prediction, j.label, j.predicted_at.timestamp(), j.labelled_at.timestamp()))
            for version, pairs in by_version.items():
                key = (model, version)
                entry = await self._entry(conn, key, revs[key])
                touched[key] = entry.monitor.observe_labels(pairs, entry.config)
        await self._write(conn, touched)

    # -- state --------------------------------------------------------------------------------------

    async def _lock(self, conn: asyncpg.Connection, models: set[str],
                    wanted: dict[Key, Any]) -> dict[Key, int]:
        """Lock the state rows of ``models``; add versions first seen now. Unknown models are refused."""
        revs: dict[Key, int] = await store.lock_states(conn, sorted(models))
        known = {m for m, _ in revs}
        unknown = sorted(models - known)
        if unknown and self.unknown_models == "dead-letter":
            raise PermanentError(f"unknown model {unknown[0]!r}: no version of it was registered")
        for key in wanted:
            if key in revs:
                continue
            versions = sum(1 for m, _ in revs if m == key[0])
            if versions >= self.max_versions_per_model:
                raise PermanentError(f"model {key[0]!r} already has {versions} versions monitored; "
                                     f"refusing version {key[1]!r}")
            await store.add_unregistered_version(conn, *key)
            revs[key] = 0
        return revs

    async def _entry(self, conn: asyncpg.Connection, key: Key, rev: int) -> _Cached:
        """The monitor of ``key`` for this batch, reloaded unless the copy in memory is current.

        The copy is marked with the rev this batch will write *before* it is
        changed: should anything fail before the commit, the stored rev stays
        behind and the retry reloads instead of reusing a half-applied copy.
        """
        cached = self.cache.get(key)
        if cached is None or cached.rev != rev:
            row = await store.load_version(conn, *key)
            config = (await store.load_configs(conn, [key[0]])).get(key[0], MonitorConfig())
            reference = ReferenceProfile.from_dict(row.reference) if row.reference is not None else None
            monitor = VersionMonitor.from_state(
                key[0], key[1], row.state, reference=reference,
                reference_source="training-profile" if row.reference_source == "training-profile"
                else "first-predictions",
                schema=row.feature_schema, metrics=row.metrics,
            )
            cached = _Cached(row.rev, monitor, config)
            self.cache[key] = cached
        cached.rev = rev + 1
        return cached

    async def _write(self, conn: asyncpg.Connection, touched: dict[Key, Outcome]) -> None:
        states: list[tuple[str, str, int, dict[str, Any]]] = []
        for key, outcome in touched.items():
            entry = self.cache[key]
            m = entry.monitor
            states.append((key[0], key[1], entry.rev, m.to_state()))
            if m.reference_changed and m.reference is not None:
                await store.save_reference(conn, key[0], key[1], m.reference.to_dict(), m.reference_source)
                m.reference_changed = False
            await store.insert_results(conn, key[0], key[1], outcome.results)
            for r in outcome.results:
                self.metrics.windows.labels(model=key[0], signal=r.signal, alarm=str(r.alarm).lower()).inc()
                if r.signal == "data":
                    for f in r.evidence.get("features", []):
                        if f.get("effect_size") is not None:
                            self.metrics.drift_statistic.labels(model=key[0], version=key[1],
                                                                feature=f["name"]).set(f["effect_size"])
            if outcome.emissions:
                await store.record_incident_events(conn, [(e.topic, e.payload, e.window_no) for e in outcome.emissions])
                await outbox.enqueue(conn, *[
                    new_event(e.topic, e.payload, source=self.source, actor=f"service:{self.source}")
                    for e in outcome.emissions
                ])
        await store.save_states(conn, states)


# --------------------------------------------------------------------------- inbox handlers


async def on_model_registered(event: Event[ModelRegistered], conn: asyncpg.Connection) -> None:
    """Remember the version's metrics and schema; its training profile becomes the reference."""
    reg = event.data
    reference: dict[str, Any] | None = None
    error: str | None = None
    if reg.training_profile is not None:
        try:
            reference = ReferenceProfile.from_dict(reg.training_profile).to_dict(sample_digits=None)
        except ProfileFormatError as exc:
            error = f"training_profile unusable, falling back to first predictions: {exc}"
            log.warning("%s/%s: %s", reg.model, reg.version, error)
    applied = await store.register_version(conn, reg, reference, error)
    if applied and reference is not None:
        # Windows counted against a first-predictions reference start afresh.
        row = await store.load_version(conn, reg.model, reg.version)
        if row.state is not None:
            monitor = VersionMonitor.from_state(
                reg.model, reg.version, row.state, reference=None, reference_source="first-predictions",
                schema=row.feature_schema, metrics=row.metrics)
            monitor.set_training_profile(ReferenceProfile.from_dict(reference))
            await store.save_states(conn, [(reg.model, reg.version, row.rev + 1, monitor.to_state())])


async def on_traffic_split_changed(event: Event[TrafficSplitChanged], conn: asyncpg.Connection) -> None:
    """Keep the newest routing table (shown with each version's status)."""
    split = event.data
    await store.save_traffic_split(conn, split.model, split.seq, split.rollout_id,
                                   [r.model_dump() for r in split.routes])


# --------------------------------------------------------------------------- configuration


async def change_config(
    conn: asyncpg.Connection, model: str, config: MonitorConfig, *, actor: str, reason: str | None, source: str
) -> SettingChange:
    """Set ``model``'s configuration in the caller's transaction; returns the recorded change."""
    await store.lock_config(conn, model)
    previous = await store.raw_config(conn, model)
    await store.put_config(conn, model, config, actor)
    doc = config.model_dump(mode="json")
    change = await store.CONFIG_HISTORY.append(conn, model, doc, previous, actor=actor, reason=reason)
    await outbox.enqueue(conn, new_event("monitor-config-changed", MonitorConfigChanged(
        model=model, config=doc, previous=previous, changed_by=actor, reason=reason, seq=change.seq,
    ), source=source, actor=actor))
    return change
