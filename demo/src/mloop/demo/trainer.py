"""The trainer: a small real training pipeline for the demo.

It subscribes to ``retrain-requested``. For a job of its model it reports
``running`` (the scheduler's callback API), waits for the window's labels,
reads the labelled requests of the job's data window from the run's
observations, trains, registers the version with full lineage (the dataset
file's SHA-256, the git commit, the job id) and a training profile, asks for
its promotion, and publishes ``retrain-completed`` (or ``retrain-failed``).

In the rollback scenario the exporter has a bug (see
:func:`mloop.demo.training.export_with_bug`): offline metrics are fine, the
artifact that serves is not.

``python -m mloop.demo.trainer '<config json>'``
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mloop.client import ApiError, RegistryClient, RetrainClient
from mloop.contracts.envelope import EnvelopeError, decode, encode, new_event
from mloop.contracts.payloads import RetrainCompleted, RetrainFailed, RetrainRequested
from mloop.demo.config import DemoConfig, run_process
from mloop.demo.resilient import RetryingTransport
from mloop.demo.training import train_and_register
from mloop.demo.world import FEATURES

__all__ = ["load_window", "main"]

log = logging.getLogger("mloop.demo.trainer")


def load_window(
    path: Path, start: datetime, end: datetime
) -> tuple[dict[str, Any], np.ndarray[Any, Any], list[datetime]]:
    """The labelled requests observed in [start, end): feature columns, labels and request times."""
    rows: list[dict[str, Any]] = []
    labels: list[int] = []
    times: list[datetime] = []
    with contextlib.suppress(FileNotFoundError), path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                obs = json.loads(line)
            except ValueError:  # a line being written
                continue
            at = datetime.fromisoformat(obs["timestamp"])
            if start <= at < end:
                rows.append(obs["features"])
                labels.append(int(obs["label"]))
                times.append(at)
    columns = (
        {
            f: np.asarray([r.get(f) for r in rows], dtype=object if isinstance(rows[0].get(f), str) else float)
            for f in FEATURES
        }
        if rows
        else {}
    )
    return columns, np.asarray(labels, dtype=np.int64), times


class Trainer:
    def __init__(self, cfg: DemoConfig, registry: RegistryClient, retrain: RetrainClient, producer: Any) -> None:
        self.cfg = cfg
        self.registry = registry
        self.retrain = retrain
        self.producer = producer

    def note(self, event: str, **data: Any) -> None:
        line = json.dumps({"event": event, "at": datetime.now(UTC).isoformat(), **data}, default=str)
        with self.cfg.paths.trainer_events.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    async def publish(self, topic: str, payload: RetrainCompleted | RetrainFailed) -> None:
        rec = encode(
            new_event(topic, payload, source="/training/demo-trainer", actor="service:demo-trainer"),
            topic_prefix=self.cfg.topic_prefix,
        )
        await self.producer.send_and_wait(rec.topic, value=rec.value, key=rec.key, headers=rec.headers)

    async def handle(self, job: RetrainRequested) -> None:
        cfg = self.cfg
        received = time.monotonic()
        self.note(
            "job-received",
            job_id=job.job_id,
            window_start=job.data_window.start,
            window_end=job.data_window.end,
            trigger=job.trigger,
        )
        try:
            await self.retrain.report(job.job_id, "running")
        except ApiError as exc:
            log.warning("could not report job %s running: %s", job.job_id, exc)
        # Labels arrive label_delay_s after the prediction: wait for the window's last ones.
        end = job.data_window.end
        wait = (end - datetime.now(UTC)).total_seconds() + cfg.profile.label_delay_s + 1.0
        if wait > 0:
            await asyncio.sleep(min(wait, 60.0))
        columns, labels, times = await asyncio.to_thread(
            load_window, cfg.paths.observations, job.data_window.start, end
        )
        try:
            if labels.size < cfg.profile.min_train_rows:
                raise RuntimeError(
                    f"only {labels.size} labelled rows in the data window (need {cfg.profile.min_train_rows})"
                )
            trained = await train_and_register(
                self.registry,
                cfg.model,
                columns,
                labels,
                work_dir=Path(cfg.root),
                repo=Path(cfg.repo),
                dataset_version=f"job-{job.job_id}",
                retrain_job_id=job.job_id,
                exporter_bug=cfg.scenario == "rollback",
                seed=cfg.seed,
                description=f"retrained on {labels.size} labelled requests for job {job.job_id}",
            )
        except Exception as exc:
            log.exception("job %s failed", job.job_id)
            self.note("job-failed", job_id=job.job_id, reason=str(exc))
            await self.publish(
                "retrain-failed",
                RetrainFailed(job_id=job.job_id, model=cfg.model, reason=str(exc)[:500], finished_at=datetime.now(UTC)),
            )
            return
        self.note(
            "trained",
            job_id=job.job_id,
            version=trained.version,
            rows=trained.rows,
            window_start=job.data_window.start,
            window_end=end,
            first_row_at=min(times),
            last_row_at=max(times),
            train_seconds=round(trained.train_seconds, 3),
            metrics=trained.metrics,
            validation_passed=trained.validation_passed,
            checks=trained.checks,
            dataset_sha256=trained.dataset_sha256,
            job_seconds=round(time.monotonic() - received, 3),
        )
        await self.publish(
            "retrain-completed",
            RetrainCompleted(
                job_id=job.job_id,
                model=cfg.model,
                version=trained.version,
                finished_at=datetime.now(UTC),
                metrics=trained.metrics,
            ),
        )
        if trained.validation_passed:
            request = await self.registry.request_promotion(
                cfg.model,
                trained.version,
                reason=f"retrained after {job.trigger}; cross-validated AUC {trained.metrics['auc']}",
            )
            self.note("promotion-requested", job_id=job.job_id, version=trained.version, request_id=request["id"])

    async def run(self) -> None:
        from aiokafka import AIOKafkaConsumer

        topic = self.cfg.topic_prefix + "retrain-requested"
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=self.cfg.bootstrap_servers,
            group_id=f"demo-trainer-{self.cfg.run_id}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        self.note("ready")
        try:
            while not self.cfg.paths.stop_flag.exists():
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for rec in records:
                        try:
                            event = decode("retrain-requested", rec.key, rec.value, rec.headers)
                        except EnvelopeError as exc:
                            log.warning("skipping a bad retrain-requested record: %s", exc.reason)
                            continue
                        if event.data.model == self.cfg.model:
                            await self.handle(event.data)
                if batch:
                    await consumer.commit()
        finally:
            await consumer.stop()


async def _amain(cfg: DemoConfig) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=cfg.bootstrap_servers, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        async with (
            RegistryClient(cfg.registry_url, cfg.service_token, transport=RetryingTransport()) as registry,
            RetrainClient(cfg.retrain_url, cfg.service_token) as retrain,
        ):
            await Trainer(cfg, registry, retrain, producer).run()
    finally:
        await producer.stop()


def main(argv: list[str] | None = None) -> int:
    return run_process("trainer", _amain, argv)


if __name__ == "__main__":
    raise SystemExit(main())
