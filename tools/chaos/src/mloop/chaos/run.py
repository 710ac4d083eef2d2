"""One chaos run: a private platform, the workload, the fault schedule, settling, the checker, the report."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mloop.chaos.checker import Verdict, check, explain
from mloop.chaos.collect import collect, settle
from mloop.chaos.faults import Injector, WebhookFaults
from mloop.chaos.history import FaultRecord, History
from mloop.chaos.schedule import Schedule, plan
from mloop.chaos.workload import LoopOutcome, Workload, WorkloadFailed
from mloop.client import MloopClient
from mloop.contracts.tokens import issue_token
from mloop.demo.resilient import RetryingTransport
from mloop.demo.sandbox import Platform, private_platform

__all__ = ["ChaosReport", "run_chaos", "run_on"]

log = logging.getLogger(__name__)

_SECRET_REF = "chaos-trainer"


@dataclass
class ChaosReport:
    """Everything a run produced: the schedule, the faults as injected, the loop's outcome, the verdicts."""

    seed: int
    schedule: Schedule
    loop: LoopOutcome | None = None
    history: History | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.verdicts) and all(v.ok for v in self.verdicts)

    def injected(self) -> dict[str, int]:
        """Faults actually injected, per kind (every kind listed)."""
        counts = dict.fromkeys(self.schedule.counts(), 0)
        for f in self.history.faults if self.history else []:
            counts[f.kind] = counts.get(f.kind, 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "ok": self.ok,
            "error": self.error,
            "outcome": self.loop.outcome if self.loop else None,
            "candidate": self.loop.candidate if self.loop else None,
            "faults_injected": self.injected(),
            "webhook_deliveries": self.loop.deliveries if self.loop else [],
            "seconds": self.seconds,
            "schedule": self.schedule.to_dict(),
            "verdicts": [v.to_dict() for v in self.verdicts],
            "history": self.history.to_dict() if self.history else None,
        }

    def render(self) -> str:
        lines = [self.schedule.render(), ""]
        t0 = self.history.started_at if self.history else 0.0
        if self.history:
            lines.append("faults as injected:")
            lines += [f"  t+{f.started_at - t0:6.1f}s..{f.ended_at - t0:6.1f}s  {f.kind:<17} {f.target:<18} {f.detail}"
                      for f in self.history.faults]
            lines.append("")
        lines.append(f"loop: {self.loop.outcome if self.loop else None} "
                     f"(candidate v{self.loop.candidate if self.loop else None})")
        if self.loop and self.loop.deliveries:
            spoiled = [d for d in self.loop.deliveries if d.get("mode")]
            lines.append(f"webhook: {len(self.loop.deliveries)} deliveries, {len(spoiled)} spoiled "
                         f"({', '.join(str(d['mode']) for d in spoiled) or 'none'})")
        if self.error:
            lines.append(f"ERROR: {self.error}")
        for v in self.verdicts:
            if v.ok:
                lines.append(f"  ok   {v.invariant}: {v.detail}")
            elif self.history is not None:
                lines += ["  " + line for line in explain(v, self.history).splitlines()]
        took = ", ".join(f"{k} {v:.0f}s" for k, v in self.seconds.items())
        lines.append(f"{'PASS' if self.ok else 'FAIL'} seed {self.seed}: {took}")
        return "\n".join(lines)

    def write(self, folder: Path) -> tuple[Path, Path]:
        """``chaos-<seed>.json`` and ``chaos-<seed>.txt`` in ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        js, txt = folder / f"chaos-{self.seed}.json", folder / f"chaos-{self.seed}.txt"
        js.write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n")
        txt.write_text(self.render() + "\n")
        return js, txt


async def run_on(
    platform: Platform,
    schedule: Schedule,
    *,
    webhook_secret: str,
    work_root: Path,
    repo: Path,
    deadline_s: float = 300.0,
    say: Callable[[str], None] = print,
) -> ChaosReport:
    """Drive the loop on ``platform`` while ``schedule`` plays, settle, collect and check."""
    report = ChaosReport(schedule.seed, schedule)
    began, wall = time.monotonic(), time.time()
    webhook = WebhookFaults()

    def heard(f: FaultRecord) -> None:
        say(f"  t+{f.started_at - wall:6.1f}s  fault {f.kind} {f.target}: {f.detail}")

    injector = Injector(platform, webhook, on_fault=heard)
    workload = Workload(platform.stack, work_root=work_root, repo=repo, webhook_secret_ref=_SECRET_REF,
                        webhook_secret=webhook_secret, webhook_faults=webhook, deadline_s=deadline_s,
                        note=lambda m: say(f"  t+{time.time() - wall:6.1f}s  {m}"))
    loop_task = asyncio.create_task(workload.run())

    async def faults() -> None:
        try:
            await workload.serving.wait()
            say("  fault phase begins")
            await injector.run(schedule)
            say("  fault phase over")
        finally:
            workload.may_stop.set()

    fault_task = asyncio.create_task(faults())
    try:
        report.loop = await loop_task
    except WorkloadFailed as exc:
        report.error = f"workload: {exc}"
        report.loop = workload.result
        workload.may_stop.set()
    finally:
        if not loop_task.done():
            loop_task.cancel()
    report.seconds["loop"] = time.monotonic() - began
    if not workload.serving.is_set():
        fault_task.cancel()  # the loop never started serving: there is nothing to put under faults
        await asyncio.gather(fault_task, return_exceptions=True)
    else:
        # The schedule always plays to its end, so every run holds every fault.
        try:
            await asyncio.wait_for(fault_task, timeout=max(120.0, schedule.span_s * 4))
        except Exception as exc:
            report.error = report.error or f"fault injection: {exc!r}"
            injector.resume_all()
    report.seconds["faults"] = time.monotonic() - began

    token = issue_token(platform.stack.jwt_secret, "omar", ["operator"], ttl_s=3600)
    ops = MloopClient(platform.stack.endpoints, token, transport=RetryingTransport())
    try:
        delivered = int(report.loop.simulator.get("predictions_logger", {}).get("delivered", 0))
        t = await settle(ops, platform.database_url, platform.stack.bootstrap_servers, report.loop.model, delivered)
        report.seconds["settle"] = t
        say(f"  settled in {t:.1f}s; collecting the history")
        report.history = await collect(ops, bootstrap=platform.stack.bootstrap_servers,
                                       database_url=platform.database_url, loop=report.loop,
                                       faults=injector.records, seed=schedule.seed, started_at=wall,
                                       work_dir=workload.root)
        report.verdicts = check(report.history)
    finally:
        await ops.aclose()
    report.seconds["total"] = time.monotonic() - began
    return report


def run_chaos(
    seed: int,
    *,
    span_s: float = 60.0,
    work_root: Path,
    repo: Path,
    deadline_s: float = 300.0,
    say: Callable[[str], None] = print,
    hold_s: float = 0.0,
) -> ChaosReport:
    """Start a private platform, play ``plan(seed)`` on it, and stop everything; returns the report.

    ``hold_s`` keeps the platform up that long after the checker ran, to inspect it.
    """
    schedule = plan(seed, span_s=span_s)
    say(schedule.render())
    secret = secrets.token_urlsafe(24)
    began = time.monotonic()
    env = {"MLOOP_WEBHOOK_SECRETS": json.dumps({_SECRET_REF: secret})}
    with private_platform(extra_env=env) as platform:
        say(f"platform up in {platform.startup_seconds:.0f}s")
        report = asyncio.run(run_on(platform, schedule, webhook_secret=secret, work_root=work_root, repo=repo,
                                    deadline_s=deadline_s, say=say))
        report.seconds["platform_start"] = platform.startup_seconds
        if not report.ok:
            # The platform's folder goes with it: keep the services' logs next to the report.
            logs = work_root / f"logs-seed-{seed}"
            shutil.copytree(platform.paths.logs_dir, logs, dirs_exist_ok=True)
            say(f"the services' logs are kept in {logs}")
        if hold_s > 0:
            say(report.render())
            say(f"holding the platform for {hold_s:g}s: DATABASE_URL={platform.database_url} "
                f"KAFKA_BOOTSTRAP_SERVERS={platform.stack.bootstrap_servers}")
            time.sleep(hold_s)
    report.seconds["wall"] = time.monotonic() - began
    return report
