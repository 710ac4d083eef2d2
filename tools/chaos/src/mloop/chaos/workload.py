"""The workload: the demo's loop at small size, driven through the platform's public surfaces.

A model and its first champion (requested by ``dana``, approved by ``rita``),
the demo's serving simulator routing, scoring and logging predictions and
labels through the SDK, drift after a warm-up, the retrain scheduler calling
the webhook of the training pipeline (:mod:`mloop.chaos.webhook`), the
reviewer ``rita`` approving the retrained version's promotion (four eyes), and
the rollout. Every HTTP call rides out service restarts
(:class:`~mloop.demo.resilient.RetryingTransport`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mloop.chaos.faults import WebhookFaults
from mloop.chaos.webhook import WebhookReceiver
from mloop.client import MloopClient
from mloop.contracts.payloads import RetrainCompleted, RetrainFailed
from mloop.contracts.tokens import issue_token
from mloop.demo.config import SIZES, DemoConfig
from mloop.demo.resilient import RetryingTransport
from mloop.demo.run import Stack
from mloop.demo.trainer import Trainer
from mloop.demo.training import train_and_register
from mloop.demo.world import CreditRiskWorld

__all__ = ["LoopOutcome", "Workload", "WorkloadFailed"]

log = logging.getLogger(__name__)

#: The scheduler's webhook request timeout in a chaos run; a slow receiver answers later than this.
WEBHOOK_TIMEOUT_S = 2.0


class WorkloadFailed(Exception):
    """The workload could not drive the loop (the message says where)."""


@dataclass
class LoopOutcome:
    """How the loop went: its model, the first champion, the retrained candidate and how its rollout ended."""

    model: str
    root: Path
    champion_before: str = ""
    candidate: str | None = None
    outcome: str | None = None
    job_id: str | None = None
    marks: dict[str, float] = field(default_factory=dict)  # step -> wall-clock time
    simulator: dict[str, Any] = field(default_factory=dict)  # the simulator's last status (SDK logger stats)
    deliveries: list[dict[str, Any]] = field(default_factory=list)  # webhook deliveries as the receiver saw them


class _PatientTrainer(Trainer):
    """The demo's trainer, publishing its report until the broker takes it (the broker may be restarting)."""

    async def publish(self, topic: str, payload: RetrainCompleted | RetrainFailed) -> None:
        deadline = time.monotonic() + 120
        while True:
            try:
                await super().publish(topic, payload)
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise
                log.info("publishing %s failed (%r); retrying", topic, exc)
                await asyncio.sleep(1.0)


class Workload:
    """One run of the loop on ``stack``; :meth:`run` returns when the candidate's rollout ended or time is up."""

    def __init__(
        self,
        stack: Stack,
        *,
        work_root: Path,
        repo: Path,
        webhook_secret_ref: str,
        webhook_secret: str,
        webhook_faults: WebhookFaults,
        deadline_s: float = 300.0,
        note: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.stack = stack
        self.prof = SIZES["small"]
        self.run_id = secrets.token_hex(3)
        self.model = f"credit-risk-{self.run_id}"
        self.root = work_root / self.run_id
        self.repo = repo
        self.secret_ref = webhook_secret_ref
        self.secret = webhook_secret
        self.webhook_faults = webhook_faults
        self.deadline_s = deadline_s
        self.note = note
        self.result = LoopOutcome(self.model, self.root)
        self.serving = asyncio.Event()  # set once the simulator serves: the fault phase may begin
        #: Set by the caller when serving may stop (the fault phase is over): until then the simulator
        #: keeps serving the drifted world after the cycle ended, so late faults still meet traffic.
        self.may_stop = asyncio.Event()

    def _token(self, sub: str, *roles: str) -> str:
        return issue_token(self.stack.jwt_secret, sub, list(roles), ttl_s=3600)

    async def _configure(self, ops: MloopClient, webhook_url: str) -> None:
        prof, model = self.prof, self.model
        await ops.monitor.set_config(model, {
            "window": {"mode": "tumbling", "by": "count", "size": prof.monitor_window},
            "reference_size": 200,
            "performance": {"window_labels": max(200, prof.monitor_window // 2), "tolerance": 0.15,
                            "page_hinkley_delta": 0.02, "page_hinkley_threshold": 50.0},
            "resolve_after_windows": 2,
        })
        await ops.registry.set_validation_policy(model, {"metric_tolerance": 0.05, "required_metrics": ["auc"]})
        await ops.retrain.set_policy(model, {
            "consecutive_signals": 1,
            # One job per run: the loop under test is one cycle.
            "cooldown": "PT1H",
            "post_signal_data": {"enabled": True, "triggers": ["drift-detected", "performance-degraded"],
                                 "min_rows": prof.post_signal_rows, "max_wait": f"PT{int(prof.retrain_window_s)}S",
                                 "window_start": "signal"},
            "webhook": {"url": webhook_url, "secret_ref": self.secret_ref},
            "dispatch": {"max_attempts": 20, "backoff_initial": "PT1S", "backoff_max": "PT2S",
                         "request_timeout": f"PT{int(WEBHOOK_TIMEOUT_S)}S"},
            "job_timeout": f"PT{int(self.deadline_s)}S",
            "cycle_time_sla": f"PT{int(self.deadline_s)}S",
        })
        await ops.rollout.set_plan(model, {
            "strategy": "canary", "shadow_duration_s": prof.shadow_s, "steps": list(prof.steps),
            "step_min_duration_s": prof.step_min_s, "step_min_samples": prof.step_min_samples,
            "analysis_interval_s": prof.analysis_interval_s, "failure_threshold": 2,
            "progress_deadline_s": self.deadline_s, "inconclusive_timeout_s": self.deadline_s,
            "gates": [
                {"metric": "error-rate", "sequential": "guard", "threshold": {"max": 0.05}, "min_samples": 50},
                {"metric": "prediction-distance", "threshold": {"max": 0.6}, "min_samples": 100, "required": False},
                {"metric": "accuracy", "sequential": "guard", "min_samples": 100, "required": False},
            ],
        })

    async def run(self) -> LoopOutcome:
        """Set up, serve, drift, and follow the loop until the retrained version's rollout ends.

        Raises :class:`WorkloadFailed` when a step cannot be driven; a loop that
        does not close in time is not an error here (the checker judges it).
        """
        res, prof, model = self.result, self.prof, self.model
        self.root.mkdir(parents=True, exist_ok=True)
        ep = self.stack.endpoints
        dana = MloopClient(ep, self._token("dana", "data-scientist"), transport=RetryingTransport())
        rita = dana.with_token(self._token("rita", "reviewer"))
        ops = dana.with_token(self._token("omar", "operator"))
        service_token = self._token("chaos-trainer", "service", "data-scientist")
        trainer_api = dana.with_token(service_token)
        cfg = DemoConfig(
            run_id=self.run_id, model=model, scenario="happy", size="small", root=str(self.root), repo=str(self.repo),
            bootstrap_servers=self.stack.bootstrap_servers, topic_prefix=self.stack.topic_prefix,
            registry_url=ep.registry, retrain_url=ep.retrain, service_token=service_token,
        )
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=self.stack.bootstrap_servers, enable_idempotence=True, acks="all")
        await producer.start()
        receiver = WebhookReceiver(
            _PatientTrainer(cfg, trainer_api.registry, trainer_api.retrain, producer),
            self.secret, self.webhook_faults, slow_s=WEBHOOK_TIMEOUT_S + 1.5,
        )
        await receiver.start()
        sim: subprocess.Popen[bytes] | None = None
        try:
            await dana.registry.create_model(model, description="Probability of default (chaos run)",
                                             tags={"chaos": self.run_id})
            await self._configure(ops, receiver.url)
            initial = CreditRiskWorld(cfg.seed).sample(prof.initial_rows)
            first = await train_and_register(trainer_api.registry, model, initial.columns, initial.labels,
                                             work_dir=self.root, repo=self.repo, dataset_version="initial",
                                             description="first champion")
            v1 = res.champion_before = first.version
            request = await dana.registry.request_promotion(model, v1, reason="first production model")
            await rita.registry.approve(request["id"], comment="lineage and holdout metrics checked")
            await self._until(lambda: self._is_champion(dana, v1), 120, f"v{v1} to become champion")
            self.note(f"v{v1} is champion; starting the serving simulator")

            sim = _spawn_simulator(cfg)
            # Starting a process with numpy and the Kafka clients takes seconds, on a loaded machine minutes.
            await self._until(lambda: _exists(cfg.paths.simulator_status), 300, "the simulator to serve", sim)
            self.serving.set()
            res.marks["serving"] = time.time()
            reviewer = asyncio.create_task(self._review(rita, v1))
            try:
                await asyncio.sleep(prof.warmup_s)
                cfg.paths.drift_flag.touch()
                res.marks["drift_injected"] = time.time()
                self.note("drift injected")
                await self._follow(ops, v1, sim)
                await self._until(self.may_stop.is_set, self.deadline_s, "the fault phase to end", sim)
            finally:
                reviewer.cancel()
                await asyncio.gather(reviewer, return_exceptions=True)
            return res
        finally:
            cfg.paths.stop_flag.touch()
            if sim is not None:
                await asyncio.to_thread(_wait_or_kill, sim, 45)
            res.simulator = _read_json(cfg.paths.simulator_status)
            res.deliveries = list(receiver.deliveries)
            await receiver.stop()
            await producer.stop()
            await dana.aclose()

    async def _follow(self, ops: MloopClient, v1: str, sim: subprocess.Popen[bytes]) -> None:
        """Poll the rollouts until one of a retrained version ends (or the deadline passes)."""
        res = self.result
        deadline = time.monotonic() + self.deadline_s
        while time.monotonic() < deadline:
            if sim.poll() is not None:
                raise WorkloadFailed(f"the serving simulator exited with {sim.returncode}; see {self.root / 'logs'}")
            rollouts = await ops.rollout.list_rollouts(model=self.model)
            mine = [r for r in rollouts if str(r["candidate"]) != v1]
            if mine and res.candidate is None:
                res.candidate = str(mine[0]["candidate"])
                res.marks["rollout_started"] = time.time()
                self.note(f"rollout of v{res.candidate} started")
            ended = [r for r in mine if r["phase"] in ("completed", "rolled-back", "aborted")]
            if ended:
                res.outcome = str(ended[0]["phase"])
                res.marks["rollout_finished"] = time.time()
                self.note(f"rollout of v{res.candidate} {res.outcome}")
                return
            jobs = await ops.retrain.list_jobs(model=self.model)
            if jobs:
                res.job_id = str(jobs[0]["id"])
                failed = [j for j in jobs if j["state"] in ("failed", "timed-out", "cancelled")]
                if failed and not mine:
                    res.outcome = f"retrain-{failed[0]['state']}"
                    self.note(f"retrain job {failed[0]['id']} {failed[0]['state']}: {failed[0].get('detail')}")
                    return
            await asyncio.sleep(1.0)
        self.note(f"the loop did not close within {self.deadline_s:g}s")

    async def _review(self, rita: MloopClient, v1: str) -> None:
        """The reviewer approves every pending promotion of a retrained version; errors are retried."""
        done: set[str] = set()
        while True:
            try:
                pending = await rita.registry.list_promotion_requests(status="pending", model=self.model)
                for p in pending:
                    if p["id"] not in done and str(p["version"]) != v1 and p["requested_by"] != "rita":
                        await rita.registry.approve(p["id"], comment="retrained version: gates passed")
                        done.add(p["id"])
                        self.note(f"rita approved v{p['version']} ({p['id']})")
            except Exception as exc:
                log.info("reviewer: %r; trying again", exc)
            await asyncio.sleep(0.5)

    async def _is_champion(self, api: MloopClient, version: str) -> bool:
        return await api.registry.champion(self.model) == version

    async def _until(
        self, check: Callable[[], Any], timeout_s: float, what: str, proc: subprocess.Popen[bytes] | None = None
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            outcome = check()
            if asyncio.iscoroutine(outcome):
                outcome = await outcome
            if outcome:
                return
            if proc is not None and proc.poll() is not None:
                raise WorkloadFailed(f"waiting for {what}: the process exited with {proc.returncode}")
            await asyncio.sleep(0.3)
        raise WorkloadFailed(f"timed out after {timeout_s:g}s waiting for {what}")


def _exists(path: Path) -> bool:
    return path.exists()


def _spawn_simulator(cfg: DemoConfig) -> subprocess.Popen[bytes]:
    log_path = cfg.paths.logs / "simulator.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "mloop.demo.simulator", cfg.to_json()],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def _wait_or_kill(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
