"""The topic registry: the single source of truth for every Kafka topic.

Topic creation (local stack, docker-compose, Kubernetes), the AsyncAPI
documents, the audit subscription list and the README's topics table are all
derived from :data:`TOPICS`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from mloop.contracts import payloads as p

__all__ = [
    "SERVICES",
    "TOPICS",
    "ServiceName",
    "TopicSpec",
    "audited_topics",
    "consumed_by",
    "produced_by",
    "spec_for",
    "spec_for_type",
]

ServiceName = Literal["registry", "rollout", "monitor", "retrain-scheduler", "audit"]
SERVICES: tuple[ServiceName, ...] = ("registry", "rollout", "monitor", "retrain-scheduler", "audit")

_DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    """Everything about one topic.

    ``key`` names the payload field used as the Kafka key, so every event of
    one model (or job) keeps its order within the topic.
    """

    name: str
    payload: type[p.Payload]
    description: str
    version: int = 1
    partitions: int = 3
    key: str = "model"
    compacted: bool = False
    retention_ms: int | None = 30 * _DAY_MS
    producers: tuple[str, ...] = ()
    consumers: tuple[ServiceName, ...] = ()
    audited: bool = True
    external: bool = False
    extra_config: dict[str, str] = field(default_factory=dict)

    @property
    def event_type(self) -> str:
        return f"dev.mloop.{self.name}.v{self.version}"

    def accepts_type(self, ce_type: str) -> bool:
        """Whether a consumer of this topic understands ``ce_type`` (the versions we know)."""
        return ce_type == self.event_type

    @property
    def config(self) -> dict[str, str]:
        """Kafka topic configuration."""
        cfg: dict[str, str] = {}
        if self.compacted:
            cfg["cleanup.policy"] = "compact"
            cfg["min.compaction.lag.ms"] = "0"
            cfg["segment.ms"] = str(3600 * 1000)
        elif self.retention_ms is not None:
            cfg["retention.ms"] = str(self.retention_ms)
        cfg.update(self.extra_config)
        return cfg


_governance_rollout: tuple[ServiceName, ...] = ("registry", "retrain-scheduler", "audit")
_audit_only: tuple[ServiceName, ...] = ("audit",)
# The scheduler learns which version is a shadow or canary candidate from rollout-started.
_rollout_started: tuple[ServiceName, ...] = ("retrain-scheduler", "audit")

_SPECS: tuple[TopicSpec, ...] = (
    TopicSpec(
        "prediction-logged",
        p.PredictionLogged,
        "Predictions made by serving systems; 1..N records per message.",
        partitions=12,
        retention_ms=7 * _DAY_MS,
        producers=("serving systems",),
        consumers=("monitor", "rollout", "retrain-scheduler"),
        audited=False,
        external=True,
        extra_config={"max.message.bytes": str(16 * 1024 * 1024)},
    ),
    TopicSpec(
        "ground-truth-logged",
        p.GroundTruthLogged,
        "Observed labels, joined to predictions by request_id.",
        partitions=12,
        retention_ms=7 * _DAY_MS,
        producers=("serving systems", "labelers"),
        consumers=("monitor", "rollout", "retrain-scheduler"),
        audited=False,
        external=True,
        extra_config={"max.message.bytes": str(16 * 1024 * 1024)},
    ),
    TopicSpec(
        "model-registered",
        p.ModelRegistered,
        "A version with its full lineage and training-data profile (the monitor's reference).",
        producers=("registry",),
        consumers=("monitor", "retrain-scheduler", "audit"),
        retention_ms=None,
        # Training profiles can be large.
        extra_config={"max.message.bytes": str(8 * 1024 * 1024)},
    ),
    TopicSpec(
        "model-validated",
        p.ModelValidated,
        "The result of every automated validation gate.",
        producers=("registry",),
        consumers=("audit",),
    ),
    TopicSpec(
        "promotion-requested",
        p.PromotionRequested,
        "A request to promote a version to production (four-eyes trail).",
        producers=("registry",),
        consumers=("audit",),
    ),
    TopicSpec(
        "promotion-reviewed",
        p.PromotionReviewed,
        "A reviewer's approval or rejection (four-eyes trail).",
        producers=("registry",),
        consumers=("audit",),
    ),
    TopicSpec(
        "model-promoted",
        p.ModelPromoted,
        "A version approved for production; starts a rollout.",
        producers=("registry",),
        consumers=("rollout", "audit"),
    ),
    TopicSpec(
        "model-alias-changed",
        p.AliasChanged,
        "An alias (champion, challenger, ...) moved to another version.",
        producers=("registry",),
        consumers=("audit",),
    ),
    TopicSpec(
        "model-version-retired",
        p.VersionRetired,
        "A version archived or deleted (deletion only for versions that never served).",
        producers=("registry",),
        consumers=("audit",),
    ),
    TopicSpec(
        "validation-policy-changed",
        p.ValidationPolicyChanged,
        "A validation or auto-approval policy changed (default or per model).",
        producers=("registry",),
        consumers=("audit",),
    ),
    TopicSpec(
        "monitor-config-changed",
        p.MonitorConfigChanged,
        "A model's monitor configuration (windows, drift and quality thresholds) changed.",
        producers=("monitor",),
        consumers=("audit",),
    ),
    TopicSpec(
        "rollout-plan-changed",
        p.RolloutPlanChanged,
        "A model's default rollout plan (steps, gates, deadlines) changed.",
        producers=("rollout",),
        consumers=("audit",),
    ),
    TopicSpec(
        "retrain-policy-changed",
        p.RetrainPolicyChanged,
        "A retrain policy changed (default or per model).",
        producers=("retrain-scheduler",),
        consumers=("audit",),
    ),
    TopicSpec(
        "traffic-split-changed",
        p.TrafficSplitChanged,
        "The full routing table of a model; serving SDKs follow it.",
        compacted=True,
        retention_ms=None,
        producers=("rollout",),
        consumers=("monitor", "audit"),
    ),
    *(
        TopicSpec(
            f"rollout-{what}",
            payload,
            f"Rollout {what.replace('-', ' ')}, with gate results and the reason.",
            producers=("rollout",),
            consumers=consumers,
        )
        for what, payload, consumers in (
            ("started", p.RolloutStarted, _rollout_started),
            ("advanced", p.RolloutAdvanced, _audit_only),
            ("paused", p.RolloutPaused, _audit_only),
            ("resumed", p.RolloutResumed, _audit_only),
            ("completed", p.RolloutCompleted, _governance_rollout),
            ("rolled-back", p.RolloutRolledBack, _governance_rollout),
        )
    ),
    TopicSpec(
        "drift-detected",
        p.DriftDetected,
        "Data or prediction drift, with tests, statistics, thresholds and windows.",
        producers=("monitor",),
        consumers=("retrain-scheduler", "audit"),
    ),
    TopicSpec(
        "performance-degraded",
        p.PerformanceDegraded,
        "Model performance from joined ground truth fell below its baseline.",
        producers=("monitor",),
        consumers=("retrain-scheduler", "audit"),
    ),
    TopicSpec(
        "data-quality-violated",
        p.DataQualityViolated,
        "Missing values, type errors, out-of-range values, unseen categories, schema skew.",
        producers=("monitor",),
        consumers=("retrain-scheduler", "audit"),
    ),
    TopicSpec(
        "incident-resolved",
        p.IncidentResolved,
        "A drift, performance or quality incident cleared.",
        producers=("monitor",),
        consumers=("audit",),
    ),
    TopicSpec(
        "retrain-requested",
        p.RetrainRequested,
        "A retraining job: job id, trigger event ids, data window.",
        key="model",
        producers=("retrain-scheduler",),
        consumers=("audit",),
    ),
    TopicSpec(
        "retrain-job-changed",
        p.RetrainJobChanged,
        "Every state transition of a retrain job.",
        producers=("retrain-scheduler",),
        consumers=("audit",),
    ),
    TopicSpec(
        "cycle-time-recorded",
        p.CycleTimeRecorded,
        "Time from the first signal to a redeployed (or rolled back) model; SLA breaches.",
        producers=("retrain-scheduler",),
        consumers=("audit",),
    ),
    TopicSpec(
        "retrain-completed",
        p.RetrainCompleted,
        "A training pipeline finished a job.",
        producers=("training pipelines", "retrain-scheduler"),
        consumers=("retrain-scheduler", "audit"),
        external=True,
    ),
    TopicSpec(
        "retrain-failed",
        p.RetrainFailed,
        "A training pipeline (or the scheduler's dispatch) failed a job.",
        producers=("training pipelines", "retrain-scheduler"),
        consumers=("retrain-scheduler", "audit"),
        external=True,
    ),
    TopicSpec(
        "dead-letter",
        p.DeadLetter,
        "Messages a consumer could not decode or validate: original bytes, topic, reason.",
        key="topic",
        producers=("any service",),
        consumers=("audit",),
    ),
)

TOPICS: dict[str, TopicSpec] = {s.name: s for s in _SPECS}
_BY_TYPE: dict[str, TopicSpec] = {s.event_type: s for s in _SPECS}


def spec_for(topic: str) -> TopicSpec:
    """The spec of ``topic``; raises ``KeyError`` for an unknown topic."""
    return TOPICS[topic]


def spec_for_type(ce_type: str) -> TopicSpec | None:
    return _BY_TYPE.get(ce_type)


def consumed_by(service: ServiceName) -> list[TopicSpec]:
    return [s for s in _SPECS if service in s.consumers]


def produced_by(service: ServiceName) -> list[TopicSpec]:
    return [s for s in _SPECS if service in s.producers]


def audited_topics() -> list[TopicSpec]:
    """The audit service's subscription list: every governance topic and dead-letter."""
    return [s for s in _SPECS if s.audited]


def names(specs: Iterable[TopicSpec]) -> list[str]:
    return [s.name for s in specs]
