"""The demo's settings and the files its processes share.

The orchestrator, the serving simulator and the trainer are separate
processes. They talk to the platform through Kafka and HTTP like any serving
system or training pipeline would; among themselves they share only a few
files in the run's folder (observed outcomes for the trainer, status for the
live timeline, and a flag that turns the drift on).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["SIZES", "DemoConfig", "RunPaths", "SizeProfile"]


@dataclass(frozen=True)
class SizeProfile:
    """How big and how long one demo run is."""

    rate: float  # requests per second from the serving simulator
    label_delay_s: float  # when ground truth arrives after a prediction
    initial_rows: int  # training rows of the first champion
    monitor_window: int  # predictions per drift window
    warmup_s: float  # clean traffic before the drift
    retrain_window_s: float  # longest a retraining job waits for post-signal data
    post_signal_rows: int  # predictions after the signal a retraining job waits for (its training set)
    shadow_s: float
    steps: tuple[float, ...]
    step_min_s: float
    step_min_samples: int
    analysis_interval_s: float
    min_train_rows: int
    deadline_s: float  # the loop must close within this, or the demo fails
    settle_s: float  # serving the drifted world after the rollout ended: the steady state


SIZES: dict[str, SizeProfile] = {
    "small": SizeProfile(
        rate=120.0,
        label_delay_s=2.0,
        initial_rows=4000,
        monitor_window=600,
        warmup_s=8.0,
        retrain_window_s=25.0,
        post_signal_rows=800,
        shadow_s=6.0,
        steps=(0.25, 0.5),
        step_min_s=5.0,
        step_min_samples=60,
        analysis_interval_s=2.0,
        min_train_rows=600,
        deadline_s=240.0,
        settle_s=10.0,
    ),
    "default": SizeProfile(
        rate=200.0,
        label_delay_s=3.0,
        initial_rows=8000,
        monitor_window=2000,
        warmup_s=25.0,
        retrain_window_s=60.0,
        post_signal_rows=4000,
        shadow_s=15.0,
        steps=(0.1, 0.25, 0.5),
        step_min_s=10.0,
        step_min_samples=200,
        analysis_interval_s=3.0,
        min_train_rows=2000,
        deadline_s=600.0,
        settle_s=30.0,
    ),
}


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def observations(self) -> Path:
        """Labelled requests as JSON lines (what a feature store would keep); the trainer reads them."""
        return self.root / "observations.jsonl"

    @property
    def simulator_status(self) -> Path:
        return self.root / "simulator-status.json"

    @property
    def trainer_events(self) -> Path:
        return self.root / "trainer-events.jsonl"

    @property
    def drift_flag(self) -> Path:
        return self.root / "drift.on"

    @property
    def stop_flag(self) -> Path:
        return self.root / "stop"

    @property
    def logs(self) -> Path:
        return self.root / "logs"


@dataclass(frozen=True)
class DemoConfig:
    run_id: str
    model: str
    scenario: Literal["happy", "rollback"]
    size: str
    root: str
    repo: str
    bootstrap_servers: str
    topic_prefix: str
    registry_url: str
    retrain_url: str
    service_token: str  # the simulator and trainer act as service:demo-*
    seed: int = 7
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def paths(self) -> RunPaths:
        return RunPaths(Path(self.root))

    @property
    def profile(self) -> SizeProfile:
        return SIZES[self.size]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> DemoConfig:
        return cls(**json.loads(text))


def run_process(name: str, amain: Callable[[DemoConfig], Coroutine[Any, Any, None]], argv: list[str] | None) -> int:
    """The entry point of a demo process: its configuration is the JSON given first on the command line.

    Logs at INFO with ``name`` in each line (aiokafka's own retries are not
    logged), runs ``amain`` to its end and returns the exit status.
    """
    args = sys.argv[1:] if argv is None else argv
    cfg = DemoConfig.from_json(args[0])
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    asyncio.run(amain(cfg))
    return 0
