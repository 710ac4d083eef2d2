"""The demo's orchestrator: set the model up, start the serving simulator and the trainer,
inject drift, play the reviewer, and follow the loop until it closes.

Everything goes through the platform's public surfaces: the services' HTTP
APIs (with role-scoped tokens), Kafka topics, and the SDK.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from mloop.client import ApiError, Endpoints, MloopClient, NotFoundError
from mloop.demo.config import DemoConfig, SizeProfile
from mloop.demo.training import TrainedVersion, train_and_register
from mloop.demo.watch import EventWatcher, Seen, summarise
from mloop.demo.world import CreditRiskWorld

__all__ = ["DemoFailed", "DemoResult", "Stack", "run_demo"]


class DemoFailed(Exception):
    """The loop did not close as the scenario expects; the message says where it stopped."""


@dataclass(frozen=True)
class Stack:
    """Where the platform runs and how to sign tokens for it."""

    bootstrap_servers: str
    endpoints: Endpoints
    jwt_secret: str
    topic_prefix: str = ""


@dataclass
class DemoResult:
    scenario: str
    size: str
    model: str
    run_root: Path
    champion_before: str
    candidate: str | None = None
    champion_after: str | None = None
    outcome: str | None = None
    marks: dict[str, float] = field(default_factory=dict)  # step name -> monotonic time
    events: list[Seen] = field(default_factory=list)
    drift_event: Any = None
    cycle_event: Any = None
    rollout: dict[str, Any] = field(default_factory=dict)
    trainer: list[dict[str, Any]] = field(default_factory=list)
    simulator: dict[str, Any] = field(default_factory=dict)
    offline_quality: dict[str, dict[str, Any]] = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)
    initial: TrainedVersion | None = None
    profile: SizeProfile | None = None
    started: float = 0.0
    scheduler_cycle: dict[str, Any] = field(default_factory=dict)
    trigger: str = ""
    job_id: str | None = None
    job: dict[str, Any] = field(default_factory=dict)  # the retrain job as the scheduler recorded it
    steady: dict[str, Any] = field(default_factory=dict)  # signals and jobs after the rollout ended


def _token(stack: Stack, sub: str, *roles: str) -> str:
    from mloop.contracts.tokens import issue_token

    return issue_token(stack.jwt_secret, sub, list(roles), ttl_s=3600)


class Timeline:
    """The live view: events as they happen and the serving simulator's status."""

    def __init__(self, console: Console, result: DemoResult) -> None:
        self.console = console
        self.result = result
        self.rows: list[tuple[str, str, str]] = []
        self.status: dict[str, Any] = {}
        self.phase = "starting"
        self.live: Live | None = None

    def elapsed(self, at: float | None = None) -> str:
        return f"{(at or time.monotonic()) - self.result.started:6.1f}s"

    def add(self, what: str, detail: str, at: float | None = None) -> None:
        self.rows.append((self.elapsed(at), what, detail))
        if self.live is None:
            self.console.print(f"[dim]{self.elapsed(at)}[/dim] [bold]{what:<22}[/bold] {detail}")
        else:
            self.live.update(self.render())

    def on_event(self, seen: Seen) -> None:
        if seen.topic in ("retrain-job-changed",):
            return
        self.add(seen.topic, summarise(seen), seen.at)

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        if self.live is not None:
            self.live.update(self.render())
        else:
            self.console.print(f"[cyan]== {phase}[/cyan]")

    def render(self) -> Group:
        table = Table(title=f"mloop demo - {self.result.model} ({self.result.scenario})", expand=True)
        table.add_column("t", justify="right", width=8)
        table.add_column("event", style="bold", width=22)
        table.add_column("detail")
        for row in self.rows[-18:]:
            table.add_row(*row)
        st = self.status
        versions = st.get("versions", {})
        lines = [
            f"[cyan]{self.phase}[/cyan]   requests served: {st.get('requests', 0)}"
            f"   drift: {'[red]on[/red]' if st.get('drifted') else 'off'}"
        ]
        routes = ", ".join(
            f"v{r['version']} {r['weight']:.0%}{' (shadow)' if r['shadow'] else ''}" for r in st.get("routes", [])
        )
        lines.append(f"routing: {routes or '-'}")
        for v, c in versions.items():
            acc = c.get("accuracy")
            lines.append(
                f"  v{v}: {c['requests']} served, {c['shadow']} shadow, {c['errors']} errors, "
                f"accuracy {acc if acc is not None else '-'}"
            )
        pl = st.get("predictions_logger", {})
        if pl:
            lines.append(
                f"prediction logger: {pl.get('delivered', 0)} delivered, {pl.get('pending', 0)} pending, "
                f"{pl.get('dropped', 0)} dropped"
            )
        return Group(table, Panel("\n".join(lines), title="serving simulator"))

    def refresh_status(self, path: Path) -> None:
        try:
            self.status = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        if self.live is not None:
            self.live.update(self.render())


async def _wait(
    watcher: EventWatcher, topic: str, where: Callable[[Any], bool], deadline: float, step: str, *, after: float = 0
) -> Seen:
    left = deadline - time.monotonic()
    found = await watcher.wait_for(topic, where, timeout_s=max(0.0, left), after=after)
    if found is None:
        raise DemoFailed(f"the loop did not close: no {topic} ({step}) before the deadline")
    return found


async def _wait_champion(api: MloopClient, model: str, version: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await api.registry.champion(model) == version:
            return
        await asyncio.sleep(0.5)
    raise DemoFailed(f"version {version} of {model} did not become champion within {timeout_s:.0f}s")


def _spawn(module: str, cfg: DemoConfig, log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module, cfg.to_json()],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


async def _configure(api_ops: MloopClient, model: str, prof: SizeProfile, scenario: str) -> None:
    """Per-model policies sized for the demo: small windows, short rollout steps, one retrain job."""
    await api_ops.monitor.set_config(
        model,
        {
            "window": {"mode": "tumbling", "by": "count", "size": prof.monitor_window},
            "reference_size": 200,
            # Thresholds that keep clean traffic quiet over a long warm-up (the defaults suit hourly windows).
            "performance": {
                "window_labels": max(200, prof.monitor_window // 2),
                "tolerance": 0.15,
                "page_hinkley_delta": 0.02,
                "page_hinkley_threshold": 50.0,
            },
            "resolve_after_windows": 2,
        },
    )
    # A retrained model is cross-validated on recent, drifted data and the champion on its own
    # (older) data: the metrics are not strictly comparable, so the gate tolerates 0.05, and AUC is required.
    await api_ops.registry.set_validation_policy(model, {"metric_tolerance": 0.05, "required_metrics": ["auc"]})
    await api_ops.retrain.set_policy(
        model,
        {
            "consecutive_signals": 1,
            # The happy path has no cooldown: only the storm guard and a converged
            # loop keep a second job away, and the steady state shows it. After a
            # rollback the drift is still there and retraining again would be right;
            # the demo stops at one job.
            "cooldown": "PT0S" if scenario == "happy" else "PT1H",
            # Train on the new world only: wait for post-signal predictions, then ask
            # for the window from the first signal to now.
            "post_signal_data": {
                "enabled": True,
                "triggers": ["drift-detected", "performance-degraded"],
                "min_rows": prof.post_signal_rows,
                "max_wait": f"PT{int(prof.retrain_window_s)}S",
                "window_start": "signal",
            },
            "cycle_time_sla": f"PT{int(prof.deadline_s)}S",
        },
    )
    await api_ops.rollout.set_plan(
        model,
        {
            "strategy": "canary",
            "shadow_duration_s": prof.shadow_s,
            "steps": list(prof.steps),
            "step_min_duration_s": prof.step_min_s,
            "step_min_samples": prof.step_min_samples,
            "analysis_interval_s": prof.analysis_interval_s,
            "failure_threshold": 2,
            "progress_deadline_s": prof.deadline_s,
            "inconclusive_timeout_s": prof.deadline_s,
            "gates": [
                {"metric": "error-rate", "sequential": "guard", "threshold": {"max": 0.05}, "min_samples": 50},
                {"metric": "latency-p95", "relative": {"max": 3.0}, "min_samples": 50, "required": False},
                # A retrained model is meant to predict differently after drift: a loose bound only.
                {"metric": "prediction-distance", "threshold": {"max": 0.6}, "min_samples": 100, "required": False},
                {"metric": "accuracy", "sequential": "guard", "min_samples": 100, "required": False},
            ],
        },
    )


async def run_demo(
    stack: Stack,
    *,
    scenario: str,
    size: str,
    repo: Path,
    work_root: Path,
    console: Console,
    live: bool,
    settle_s: float | None = None,
) -> DemoResult:
    """Run one scenario end to end; raises :class:`DemoFailed` when the loop does not close as expected.

    After the rollout ends the simulator keeps serving the drifted world for
    ``settle_s`` seconds (default: the size's ``settle_s``); the result's
    ``steady`` counts the signals and jobs of that period.
    """
    from dataclasses import replace

    from mloop.demo.config import SIZES

    prof = SIZES[size]
    if settle_s is not None:
        if settle_s < 0:
            raise ValueError("the settle period cannot be negative")
        prof = replace(prof, settle_s=settle_s)
    run_id = secrets.token_hex(3)
    model = f"credit-risk-{run_id}"
    root = work_root / run_id
    root.mkdir(parents=True, exist_ok=True)
    result = DemoResult(scenario, size, model, root, champion_before="", profile=prof, started=time.monotonic())
    timeline = Timeline(console, result)

    ep = stack.endpoints
    dana = MloopClient(ep, _token(stack, "dana", "data-scientist"))
    rita = dana.with_token(_token(stack, "rita", "reviewer"))
    ops = dana.with_token(_token(stack, "omar", "operator"))
    service_token = _token(stack, "demo-trainer", "service", "data-scientist")
    cfg = DemoConfig(
        run_id=run_id,
        model=model,
        scenario="rollback" if scenario == "rollback" else "happy",
        size=size,
        root=str(root),
        repo=str(repo),
        bootstrap_servers=stack.bootstrap_servers,
        topic_prefix=stack.topic_prefix,
        registry_url=ep.registry,
        retrain_url=ep.retrain,
        service_token=service_token,
    )
    procs: list[subprocess.Popen[bytes]] = []
    watcher = EventWatcher(stack.bootstrap_servers, model, topic_prefix=stack.topic_prefix)
    live_view = Live(timeline.render(), console=console, refresh_per_second=4) if live else None
    try:
        ready = await dana.ready()
        missing = [name for name, ok in ready.items() if not ok]
        if missing:
            raise DemoFailed(f"services not ready: {', '.join(missing)} (is the stack up? `make up`)")
        await watcher.start()
        watcher.listeners.append(timeline.on_event)
        if live_view is not None:
            live_view.start()
            timeline.live = live_view

        # ---------------------------------------------------------------- the first champion
        timeline.set_phase("setting up the model and its first champion")
        await dana.registry.create_model(
            model, description="Probability of default of a consumer loan", tags={"team": "risk", "demo": run_id}
        )
        await _configure(ops, model, prof, scenario)
        world = CreditRiskWorld(cfg.seed)
        initial = world.sample(prof.initial_rows)
        registry_as_trainer = dana.with_token(service_token).registry
        result.initial = await train_and_register(
            registry_as_trainer,
            model,
            initial.columns,
            initial.labels,
            work_dir=root,
            repo=repo,
            dataset_version="initial",
            description="first champion",
        )
        v1 = result.initial.version
        if not result.initial.validation_passed:
            raise DemoFailed(f"the first version failed validation: {result.initial.checks}")
        request = await dana.registry.request_promotion(model, v1, reason="first production model")
        await rita.registry.approve(request["id"], comment="lineage and cross-validated metrics checked")
        await _wait_champion(dana, model, v1, 60)
        result.champion_before = v1
        timeline.add("champion", f"v{v1} serves 100%")

        # ---------------------------------------------------------------- serving and training
        timeline.set_phase("serving: the simulator routes, scores and logs; the trainer waits for jobs")
        procs.append(_spawn("mloop.demo.simulator", cfg, cfg.paths.logs / "simulator.log"))
        procs.append(_spawn("mloop.demo.trainer", cfg, cfg.paths.logs / "trainer.log"))

        async def reviewer() -> None:
            """The demo's reviewer approves promotion requests of retrained versions (four eyes)."""
            done: set[str] = set()
            while True:
                for seen in list(watcher.events):
                    d = seen.data
                    if seen.topic == "promotion-requested" and d.version != v1 and d.promotion_request_id not in done:
                        done.add(d.promotion_request_id)
                        await rita.registry.approve(
                            d.promotion_request_id, comment="retrained version: gates passed, lineage complete"
                        )
                await asyncio.sleep(0.2)

        async def status_loop() -> None:
            while True:
                timeline.refresh_status(cfg.paths.simulator_status)
                for p in procs:
                    if p.poll() is not None:
                        raise DemoFailed(f"a demo process exited with {p.returncode}; see {cfg.paths.logs}")
                await asyncio.sleep(0.5)

        helpers = [asyncio.create_task(reviewer()), asyncio.create_task(status_loop())]
        try:
            # Warm up on clean traffic, then change the world.
            t0 = time.monotonic()
            while not cfg.paths.simulator_status.exists():
                # Starting a Python process with numpy and Kafka clients takes seconds; on a
                # loaded machine far more.
                if time.monotonic() - t0 > prof.deadline_s:
                    raise DemoFailed(f"the serving simulator did not start serving within {prof.deadline_s:g}s")
                await asyncio.sleep(0.2)
            await asyncio.sleep(prof.warmup_s)
            cfg.paths.drift_flag.touch()
            result.marks["drift_injected"] = time.monotonic()
            timeline.add("drift injected", "income -30%, utilisation +0.25, label relationship changed")
            timeline.set_phase("waiting for the monitor to detect the drift")
            deadline = time.monotonic() + prof.deadline_s
            after = result.marks["drift_injected"]
            await _loop(watcher, result, timeline, deadline, after, v1, scenario)
        finally:
            for h in helpers:
                h.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)

        # ---------------------------------------------------------------- steady state
        timeline.set_phase(f"steady state: serving the drifted world for {prof.settle_s:g}s")
        await asyncio.sleep(prof.settle_s)
        result.steady = _steady_state(watcher, result, prof.settle_s)
        timeline.add(
            "steady state",
            f"{result.steady['drift_signals']} drift signal(s), {result.steady['retrain_jobs']} retrain job(s) "
            f"in {prof.settle_s:g}s after the rollout ended",
        )
        result.champion_after = await dana.registry.champion(model)
        expected = result.candidate if scenario == "happy" else v1
        if result.champion_after != expected:
            raise DemoFailed(
                f"expected v{expected} to be champion after the {scenario} scenario, found v{result.champion_after}"
            )
        cycle = await watcher.wait_for("cycle-time-recorded", timeout_s=20, after=after)
        result.cycle_event = cycle.data if cycle else None
        if result.rollout.get("id"):
            result.rollout = await ops.rollout.get_rollout(result.rollout["id"], analyses=200)
        if result.job_id:
            try:
                result.job = await ops.retrain.get_job(result.job_id)
            except ApiError:
                result.job = {}
        try:
            stats = await ops.retrain.cycle_times(model=model, limit=5)
            result.scheduler_cycle = stats[0] if stats else {}
        except ApiError:
            result.scheduler_cycle = {}
        timeline.set_phase("verifying the audit ledger")
        result.events = list(watcher.events)
        result.audit = await _verify_audit(ops, model, result, root)
        timeline.add("audit", "ledger verifies" if result.audit.get("ok") else "ledger DOES NOT verify")
        return result
    finally:
        cfg.paths.stop_flag.touch()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        if live_view is not None:
            live_view.stop()
        await watcher.stop()
        result.events = list(watcher.events)
        result.trainer = _read_jsonl(cfg.paths.trainer_events)
        try:
            result.simulator = json.loads((root / "simulator-timeline.json").read_text())
        except (OSError, ValueError):
            result.simulator = {}
        result.offline_quality = _offline_quality(result, cfg)
        await dana.aclose()


async def _loop(
    watcher: EventWatcher,
    result: DemoResult,
    timeline: Timeline,
    deadline: float,
    after: float,
    v1: str,
    scenario: str,
) -> None:
    model = result.model
    first = await _wait(watcher, "drift-detected", lambda d: d.version == v1, deadline, "monitor", after=after)
    result.marks["first_signal"] = first.at
    timeline.set_phase("drift detected: waiting for the retrain scheduler")
    early = watcher.find("retrain-requested", lambda d: True)
    if early is not None and early.at < after:
        raise DemoFailed(
            f"a retraining job was requested before the drift was injected ({summarise(early)}): "
            "a false alarm on clean traffic"
        )
    job = await _wait(watcher, "retrain-requested", lambda d: True, deadline, "retrain scheduler", after=after)
    result.marks["retrain_requested"] = job.at
    job_id = job.data.job_id
    result.job_id = job_id
    # The cycle starts at the first signal the scheduler counted for this job.
    triggers = set(job.data.trigger_event_ids)
    signal = next((s for s in watcher.events if s.event.id in triggers), first)
    result.marks["drift_detected"] = min(signal.at, job.at)
    result.trigger = f"{signal.topic} ({summarise(signal)})"
    drifts = [s for s in watcher.events if s.topic == "drift-detected" and s.data.version == v1 and s.at >= after]
    rank = {"low": 0, "medium": 1, "high": 2}
    data_drifts = [s for s in drifts if s.data.kind == "data"] or drifts
    result.drift_event = max(data_drifts, key=lambda s: (rank[s.data.severity], -s.at)).data
    timeline.set_phase(f"job {job_id[:8]}: the trainer trains on the requested window")
    reg = await _wait(
        watcher,
        "model-registered",
        lambda d: d.lineage.retrain_job_id == job_id,
        deadline,
        "trainer registering the retrained version",
    )
    result.candidate = reg.data.version
    result.marks["registered"] = reg.at
    val = await _wait(watcher, "model-validated", lambda d: d.version == result.candidate, deadline, "validation gates")
    result.marks["validated"] = val.at
    if not val.data.passed:
        failed = [f"{c.name}: {c.detail}" for c in val.data.checks if not c.passed]
        raise DemoFailed(f"v{result.candidate} failed validation: {'; '.join(failed)}")
    timeline.set_phase(f"v{result.candidate} validated: promotion request and review")
    req = await _wait(
        watcher, "promotion-requested", lambda d: d.version == result.candidate, deadline, "promotion request"
    )
    result.marks["promotion_requested"] = req.at
    promoted = await _wait(
        watcher, "model-promoted", lambda d: d.version == result.candidate, deadline, "reviewer approval"
    )
    result.marks["promoted"] = promoted.at
    started = await _wait(
        watcher, "rollout-started", lambda d: d.version == result.candidate, deadline, "rollout start"
    )
    result.marks["rollout_started"] = started.at
    result.rollout = {"id": started.data.rollout_id}
    timeline.set_phase(f"rollout of v{result.candidate}: shadow, canary, gates")
    left = max(0.0, deadline - time.monotonic())
    while True:
        done = watcher.find("rollout-completed", lambda d: d.version == result.candidate, after=after) or watcher.find(
            "rollout-rolled-back", lambda d: d.version == result.candidate, after=after
        )
        if done is not None:
            break
        if time.monotonic() > deadline:
            phase = watcher.find("rollout-advanced", lambda d: d.version == result.candidate, after=after)
            raise DemoFailed(
                f"the rollout of v{result.candidate} did not finish within the deadline "
                f"(last seen: {summarise(phase) if phase else 'started'})"
            )
        await asyncio.sleep(0.2)
        left -= 0.2
    result.marks["rollout_finished"] = done.at
    result.outcome = "completed" if done.topic == "rollout-completed" else "rolled-back"
    expected = "completed" if scenario == "happy" else "rolled-back"
    if result.outcome != expected:
        reason = getattr(done.data, "reason", "")
        raise DemoFailed(
            f"the rollout of v{result.candidate} ended {result.outcome} ({reason}); "
            f"the {scenario} scenario expects {expected}"
        )
    timeline.set_phase(f"rollout {result.outcome}")
    _ = model


def _steady_state(watcher: EventWatcher, result: DemoResult, settle_s: float) -> dict[str, Any]:
    """What the platform did while the drifted world kept being served after the rollout ended.

    A converged loop is quiet: the new champion was trained on the new world,
    so it raises no drift, and no second retraining job is requested.
    """
    since = result.marks.get("rollout_finished")
    if since is None:
        return {}
    after = [s for s in watcher.events if s.at > since]
    champion = result.candidate if result.outcome == "completed" else result.champion_before
    drifts = [s for s in after if s.topic == "drift-detected"]
    perf = [s for s in after if s.topic == "performance-degraded"]
    requested = [s for s in after if s.topic == "retrain-requested"]
    jobs = [s for s in after if s.topic == "retrain-job-changed" and s.data.previous_state is None]
    return {
        "settle_seconds": settle_s,
        "champion": champion,
        "drift_signals": len(drifts),
        "drift_signals_champion": sum(1 for s in drifts if s.data.version == champion),
        "performance_signals": len(perf),
        "retrain_jobs": len(jobs),
        "retrain_requested": len(requested),
        "signals": [{"t": round(s.at - since, 2), "topic": s.topic, "detail": summarise(s)} for s in (*drifts, *perf)],
    }


async def _verify_audit(ops: MloopClient, model: str, result: DemoResult, root: Path) -> dict[str, Any]:
    """Wait for the audit ledger to hold this run's events, then verify it live and offline."""
    out: dict[str, Any] = {"ok": False}
    expected = {s.event.id for s in result.events if s.topic not in ("traffic-split-changed",)}
    deadline = time.monotonic() + 30
    recorded: set[str] = set()
    while time.monotonic() < deadline:
        try:
            rows = await ops.audit.records(model=model, limit=2000)
        except ApiError as exc:
            out["error"] = str(exc)
            return out
        recorded = {r["event_id"] for r in rows}
        if expected <= recorded:
            break
        await asyncio.sleep(1.0)
    out["events_expected"] = len(expected)
    out["events_recorded"] = len(expected & recorded)
    out["records_for_model"] = len(recorded)
    try:
        await ops.audit.sign_checkpoints()
    except ApiError as exc:
        out["checkpoint_error"] = str(exc)
    live = await ops.audit.verify()
    out["live"] = live
    bundle = await ops.audit.export(root / "evidence" / f"{model}.tar.gz", model=model)
    key = await ops.audit.public_key()
    out["bundle"] = str(bundle)
    out["public_key"] = key.get("base64")
    try:
        from mloop.ledger.checkpoint import load_public_key
        from mloop.ledger.verify import verify_bundle

        report = await asyncio.to_thread(verify_bundle, bundle, load_public_key(key["base64"]))
        out["offline"] = report.to_dict()
        offline_ok = bool(report.ok)
    except ImportError:
        out["offline"] = {"skipped": "the offline verifier (mloop-audit) is not installed"}
        offline_ok = True
    try:
        lifecycle = await ops.audit.lifecycle(model, result.candidate or result.champion_before)
        out["lifecycle"] = lifecycle
    except (ApiError, NotFoundError) as exc:
        out["lifecycle_error"] = str(exc)
    out["ok"] = bool(live.get("ok")) and offline_ok and out["events_recorded"] == len(expected)
    return out


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


def _offline_quality(result: DemoResult, cfg: DemoConfig) -> dict[str, dict[str, Any]]:
    """Each version's artifact scored on fresh applicants from the world before and after the drift."""
    from mloop.demo.model import LogisticModel, ServingError, evaluate

    world = CreditRiskWorld(cfg.seed + 99)
    before, after = world.sample(4000), world.sample(4000, drifted=True)
    out: dict[str, dict[str, Any]] = {}
    artifacts = sorted((Path(cfg.root) / "artifacts" / result.model).glob("*.json"))
    by_version = {"initial": result.champion_before}
    for t in result.trainer:
        if t.get("event") == "trained":
            by_version[f"job-{t['job_id']}"] = str(t["version"])
    for path in artifacts:
        version = by_version.get(path.stem)
        if not version:
            continue
        m = LogisticModel.load(path)
        row: dict[str, Any] = {}
        for name, sample in (("before_drift", before), ("after_drift", after)):
            # Score what the artifact can score; requests it refuses count as errors, as in serving.
            ok = np.ones(len(sample), dtype=bool)
            for feature, cats in m.encoder.categories.items():
                ok &= np.isin(np.asarray(sample.columns[feature]).astype(str), np.asarray(cats))
            cols = {k: np.asarray(v)[ok] for k, v in sample.columns.items()}
            try:
                row[name] = {**evaluate(m, cols, sample.labels[ok]), "error_rate": round(1 - ok.mean(), 4)}
            except ServingError as exc:
                row[name] = {"error": exc.code}
        out[version] = row
    return out


def now_iso() -> str:
    return datetime.now(UTC).isoformat()
