"""The serving simulator: a small real serving system for the demo.

It serves credit-risk applications at a steady rate. Each request is routed
with the SDK's :class:`~mloop.client.TrafficRouter` (kept current from
``traffic-split-changed``), scored by the routed version's artifact (loaded
from the registry's ``artifact_uri``), shadow versions score a copy, and
every prediction is logged with :class:`~mloop.client.PredictionLogger`.
Outcomes arrive ``label_delay_s`` later and are logged with
:class:`~mloop.client.GroundTruthLogger` and kept (with the features) in the
run's observations file, which the trainer reads like a feature store.

When the run's drift flag appears, applicants come from the drifted world.

``python -m mloop.demo.simulator '<config json>'``
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mloop.client import (
    GroundTruthLogger,
    NotFoundError,
    PredictionLogger,
    RegistryClient,
    RouterFollower,
    TrafficRouter,
)
from mloop.demo.config import DemoConfig, run_process
from mloop.demo.model import LogisticModel, ServingError
from mloop.demo.resilient import RetryingTransport
from mloop.demo.world import CreditRiskWorld

__all__ = ["Simulator", "main"]

log = logging.getLogger("mloop.demo.simulator")
TICK_S = 0.1


@dataclass
class VersionCounters:
    requests: int = 0
    shadow: int = 0
    errors: int = 0
    labelled: int = 0
    correct: int = 0
    latency_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "shadow": self.shadow,
            "errors": self.errors,
            "labelled": self.labelled,
            "correct": self.correct,
            "accuracy": round(self.correct / self.labelled, 4) if self.labelled else None,
            "mean_latency_ms": round(self.latency_ms / max(1, self.requests + self.shadow), 3),
        }


@dataclass
class Pending:
    due: float
    request_id: str
    label: int
    at: datetime
    features: dict[str, Any]
    scored: list[tuple[str, float | None, bool]]  # (version, prediction, shadow)


@dataclass
class Timeline:
    """Per-second traffic and per-5-second quality, for the report."""

    traffic: list[dict[str, Any]] = field(default_factory=list)
    quality: list[dict[str, Any]] = field(default_factory=list)


def artifact_path(uri: str) -> Path:
    parsed = urlparse(uri)
    if parsed.scheme not in ("file", ""):
        raise ValueError(f"the demo serves local artifacts only, not {uri}")
    return Path(parsed.path)


class Simulator:
    def __init__(self, cfg: DemoConfig, registry: RegistryClient) -> None:
        self.cfg = cfg
        self.registry = registry
        self.paths = cfg.paths
        self.profile = cfg.profile
        self.world = CreditRiskWorld(cfg.seed + 1)
        self.router = TrafficRouter()
        self.models: dict[str, LogisticModel] = {}
        self.counters: dict[str, VersionCounters] = collections.defaultdict(VersionCounters)
        self.second: dict[str, int] = collections.Counter()
        self.window_quality: dict[str, list[int]] = {}
        self.pending: collections.deque[Pending] = collections.deque()
        self.timeline = Timeline()
        self.started = time.monotonic()
        self.sent = 0
        self.drifted = False
        self.drift_started_at: float | None = None

    async def model(self, version: str) -> LogisticModel:
        m = self.models.get(version)
        if m is None:
            detail = await self.registry.get_version(self.cfg.model, version)
            m = await asyncio.to_thread(LogisticModel.load, artifact_path(str(detail["artifact_uri"])))
            self.models[version] = m
        return m

    async def score(self, version: str, rows: list[dict[str, Any]]) -> list[tuple[float | None, str | None, float]]:
        """(probability or None, error code or None, latency ms) per row."""
        m = await self.model(version)
        began = time.perf_counter()
        cols = {k: [r[k] for r in rows] for k in rows[0]}
        try:
            p = m.predict_proba(cols).tolist()
            each = (time.perf_counter() - began) * 1000 / len(rows)
            return [(float(v), None, each) for v in p]
        except ServingError:
            pass
        out: list[tuple[float | None, str | None, float]] = []
        for r in rows:
            t0 = time.perf_counter()
            try:
                v = m.predict_row(r)
                out.append((v, None, (time.perf_counter() - t0) * 1000))
            except ServingError as exc:
                out.append((None, exc.code, (time.perf_counter() - t0) * 1000))
        return out

    async def tick(self, n: int, predictions: PredictionLogger) -> None:
        if not self.drifted and self.paths.drift_flag.exists():
            self.drifted = True
            self.drift_started_at = time.monotonic()
            log.info("drift injected")
        sample = self.world.sample(n, drifted=self.drifted)
        rows = sample.rows()
        labels = sample.labels.tolist()
        now = datetime.now(UTC)
        due = time.monotonic() + self.profile.label_delay_s
        by_version: dict[str, list[int]] = collections.defaultdict(list)
        shadows: dict[str, list[int]] = collections.defaultdict(list)
        ids = []
        for i in range(n):
            rid = f"{self.cfg.run_id}-{self.sent + i:07d}"
            ids.append(rid)
            decision = self.router.route(self.cfg.model, rid)
            by_version[decision.version].append(i)
            for s in decision.shadows:
                shadows[s].append(i)
        self.sent += n
        scored: list[list[tuple[str, float | None, bool]]] = [[] for _ in range(n)]
        for group, is_shadow in ((by_version, False), (shadows, True)):
            for version, idx in group.items():
                try:
                    results = await self.score(version, [rows[i] for i in idx])
                except NotFoundError:
                    results = [(None, "unknown-version", 0.0)] * len(idx)
                c = self.counters[version]
                for i, (p, err, ms) in zip(idx, results, strict=True):
                    latency = round(1.0 + ms + float(self.world.rng.gamma(2.0, 0.15)), 3)  # + feature lookup
                    await predictions.log(
                        ids[i],
                        version=version,
                        features=rows[i],
                        prediction=p,
                        timestamp=now,
                        latency_ms=latency,
                        error=err,
                    )
                    scored[i].append((version, p, is_shadow))
                    if is_shadow:
                        c.shadow += 1
                    else:
                        c.requests += 1
                        self.second[version] += 1
                    c.errors += err is not None
                    c.latency_ms += latency
        for i in range(n):
            self.pending.append(Pending(due, ids[i], int(labels[i]), now, rows[i], scored[i]))

    async def deliver_labels(self, truths: GroundTruthLogger, observations: Any) -> None:
        now = time.monotonic()
        lines = []
        while self.pending and self.pending[0].due <= now:
            p = self.pending.popleft()
            await truths.log(p.request_id, p.label)
            served = next((v for v, _, shadow in p.scored if not shadow), None)
            lines.append(
                json.dumps(
                    {
                        "request_id": p.request_id,
                        "timestamp": p.at.isoformat(),
                        "features": p.features,
                        "label": p.label,
                        "version": served,
                    }
                )
            )
            for version, prob, _shadow in p.scored:
                if prob is None:
                    continue
                c = self.counters[version]
                c.labelled += 1
                ok = int((prob >= 0.5) == (p.label == 1))
                c.correct += ok
                w = self.window_quality.setdefault(version, [0, 0])
                w[0] += 1
                w[1] += ok
        if lines:
            observations.write("\n".join(lines) + "\n")
            observations.flush()

    def write_status(self, predictions: PredictionLogger, truths: GroundTruthLogger) -> None:
        table = self.router.table(self.cfg.model)
        status = {
            "t": round(time.monotonic() - self.started, 2),
            "at": datetime.now(UTC).isoformat(),
            "requests": self.sent,
            "drifted": self.drifted,
            "routes": [r.model_dump() for r in table.routes] if table else [],
            "versions": {v: c.as_dict() for v, c in sorted(self.counters.items())},
            "predictions_logger": predictions.stats.as_dict(),
            "ground_truth_logger": truths.stats.as_dict(),
        }
        tmp = self.paths.simulator_status.with_suffix(".tmp")
        tmp.write_text(json.dumps(status))
        tmp.replace(self.paths.simulator_status)

    async def run(self) -> None:
        cfg, prof = self.cfg, self.profile
        follower = RouterFollower(self.router, cfg.bootstrap_servers, topic_prefix=cfg.topic_prefix)
        await follower.start()
        opts: dict[str, Any] = {
            "topic_prefix": cfg.topic_prefix,
            "source": "/serving/demo-simulator",
            "actor": "service:demo-simulator",
            "linger_ms": 100,
        }
        predictions = PredictionLogger(cfg.bootstrap_servers, cfg.model, **opts)
        truths = GroundTruthLogger(cfg.bootstrap_servers, cfg.model, **opts)
        await predictions.start()
        await truths.start()
        per_tick = max(1, round(prof.rate * TICK_S))
        next_tick = time.monotonic()
        last_second = time.monotonic()
        last_quality = time.monotonic()
        try:
            with self.paths.observations.open("a", encoding="utf-8") as observations:
                while not self.paths.stop_flag.exists():
                    if self.router.table(cfg.model) is not None:
                        await self.tick(per_tick, predictions)
                    await self.deliver_labels(truths, observations)
                    now = time.monotonic()
                    if now - last_second >= 1.0:
                        t = round(now - self.started, 1)
                        self.timeline.traffic.append({"t": t, "counts": dict(self.second), "drifted": self.drifted})
                        self.second.clear()
                        self.write_status(predictions, truths)
                        last_second = now
                    if now - last_quality >= 5.0:
                        self.timeline.quality.append(
                            {
                                "t": round(now - self.started, 1),
                                "drifted": self.drifted,
                                "accuracy": {v: round(c / n, 4) for v, (n, c) in self.window_quality.items() if n},
                                "labelled": {v: n for v, (n, _) in self.window_quality.items()},
                            }
                        )
                        self.window_quality.clear()
                        last_quality = now
                    next_tick += TICK_S
                    await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
                    if time.monotonic() - next_tick > 1.0:  # fell behind (a slow machine): do not burst
                        next_tick = time.monotonic()
        finally:
            await follower.stop()
            await predictions.close(timeout_s=15)
            await truths.close(timeout_s=15)
            self.write_status(predictions, truths)
            (self.paths.root / "simulator-timeline.json").write_text(
                json.dumps(
                    {
                        "traffic": self.timeline.traffic,
                        "quality": self.timeline.quality,
                        "versions": {v: c.as_dict() for v, c in self.counters.items()},
                    }
                )
            )


async def _amain(cfg: DemoConfig) -> None:
    # The registry may restart while a new version starts serving: its artifact is fetched again until it answers.
    async with RegistryClient(cfg.registry_url, cfg.service_token, transport=RetryingTransport()) as registry:
        await Simulator(cfg, registry).run()


def main(argv: list[str] | None = None) -> int:
    return run_process("simulator", _amain, argv)


if __name__ == "__main__":
    raise SystemExit(main())
