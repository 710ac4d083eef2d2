"""Payload models for every topic.

These are the wire contracts between services and with the outside world
(serving systems, labelers, training pipelines). A breaking change to one of
them is a new version of its event type (``dev.mloop.<topic>.v<N>``).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "MAX_ERROR_LENGTH",
    "MAX_MODEL_NAME_LENGTH",
    "MAX_RECORDS_PER_MESSAGE",
    "MAX_REQUEST_ID_LENGTH",
    "MAX_VERSION_LENGTH",
    "MODEL_NAME_PATTERN",
    "AliasChanged",
    "CodeRef",
    "CycleTimeRecorded",
    "DataQualityViolated",
    "DataWindow",
    "DatasetRef",
    "DeadLetter",
    "DriftDetected",
    "EnvironmentRef",
    "FeatureDriftResult",
    "FeatureSchema",
    "FeatureSpec",
    "GateResult",
    "GroundTruthLogged",
    "GroundTruthRecord",
    "IncidentResolved",
    "Lineage",
    "ModelName",
    "ModelPromoted",
    "ModelRegistered",
    "ModelValidated",
    "MonitorConfigChanged",
    "Payload",
    "PerformanceDegraded",
    "PredictionLogged",
    "PredictionRecord",
    "PromotionRequested",
    "PromotionReviewed",
    "QualityViolation",
    "ReferenceInfo",
    "RetrainCompleted",
    "RetrainFailed",
    "RetrainJobChanged",
    "RetrainPolicyChanged",
    "RetrainRequested",
    "RolloutAdvanced",
    "RolloutCompleted",
    "RolloutEvent",
    "RolloutPlanChanged",
    "RolloutPaused",
    "RolloutResumed",
    "RolloutRolledBack",
    "RolloutStarted",
    "Route",
    "SettingChanged",
    "Severity",
    "TrafficSplitChanged",
    "ValidationCheck",
    "ValidationPolicyChanged",
    "VersionId",
    "VersionRetired",
    "Window",
]

#: The most prediction or label records one message may carry. A larger batch
#: is rejected as a whole (it goes to ``dead-letter``) so a consumer's memory
#: stays bounded whatever a producer sends.
MAX_RECORDS_PER_MESSAGE = 20_000
#: Longest model name, version id, request id and serving error code a record may carry
#: (the SDK's fast path and the monitor's decoder check the same limits).
MAX_MODEL_NAME_LENGTH = 128
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
MAX_VERSION_LENGTH = 64
MAX_REQUEST_ID_LENGTH = 256
MAX_ERROR_LENGTH = 128
#: Longest reason given for a governance setting change (kept in its history and its event).
MAX_REASON_LENGTH = 500

ModelName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_MODEL_NAME_LENGTH,
        pattern=MODEL_NAME_PATTERN,
        description="Registered model name; letters, digits, '.', '_' and '-'.",
        examples=["credit-risk"],
    ),
]
VersionId = Annotated[
    str,
    Field(min_length=1, max_length=MAX_VERSION_LENGTH, description="Model version", examples=["3"]),
]
Severity = Literal["low", "medium", "high"]
FeatureValue = float | int | str | bool | None


class Payload(BaseModel):
    """Base of every payload: unknown fields are ignored (forward compatible)."""

    model_config = ConfigDict(extra="ignore", frozen=False, populate_by_name=True)


# --------------------------------------------------------------------------- serving


class PredictionRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    request_id: str = Field(min_length=1, max_length=MAX_REQUEST_ID_LENGTH, examples=["r-000123"])
    version: VersionId
    timestamp: datetime = Field(examples=["2026-11-26T14:00:00.123Z"])
    features: dict[str, FeatureValue] = Field(
        default_factory=dict,
        description="Feature values as served. Numbers, strings (categories), booleans or null.",
        examples=[{"age": 41, "income": 52000.0, "region": "north"}],
    )
    prediction: float | str | list[float] | None = Field(
        default=None,
        description="A number (score or regression output), a class label, or class probabilities.",
        examples=[0.83],
    )
    latency_ms: float | None = Field(default=None, ge=0, examples=[4.2])
    error: str | None = Field(
        default=None, max_length=MAX_ERROR_LENGTH, description="Null, or a short error code when serving failed."
    )


def _cap_records(value: Any) -> Any:
    # Refuse an oversized batch before validating its items, so memory stays bounded.
    if isinstance(value, list) and len(value) > MAX_RECORDS_PER_MESSAGE:
        raise ValueError(f"at most {MAX_RECORDS_PER_MESSAGE} records per message, got {len(value)}")
    return value


class PredictionLogged(Payload):
    """One or more predictions made by a serving system."""

    model: ModelName
    records: list[PredictionRecord] = Field(min_length=1, max_length=MAX_RECORDS_PER_MESSAGE)

    _records_capped = field_validator("records", mode="before")(_cap_records)

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "credit-risk",
                    "records": [
                        {
                            "request_id": "r-000123",
                            "version": "3",
                            "timestamp": "2026-11-26T14:00:00.123Z",
                            "features": {"age": 41, "income": 52000.0, "region": "north"},
                            "prediction": 0.83,
                            "latency_ms": 4.2,
                            "error": None,
                        }
                    ],
                }
            ]
        }
    )


class GroundTruthRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    request_id: str = Field(min_length=1, max_length=MAX_REQUEST_ID_LENGTH, examples=["r-000123"])
    label: float | int | str | bool = Field(examples=[1])
    timestamp: datetime = Field(examples=["2026-11-26T15:00:00Z"])


class GroundTruthLogged(Payload):
    """Observed outcomes, joined to predictions by ``request_id``."""

    model: ModelName
    records: list[GroundTruthRecord] = Field(min_length=1, max_length=MAX_RECORDS_PER_MESSAGE)

    _records_capped = field_validator("records", mode="before")(_cap_records)

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "credit-risk",
                    "records": [
                        {"request_id": "r-000123", "label": 1, "timestamp": "2026-11-26T15:00:00Z"}
                    ],
                }
            ]
        }
    )


# --------------------------------------------------------------------------- lineage


class CodeRef(BaseModel):
    repo: str | None = Field(default=None, max_length=2048, examples=["https://git.example.com/acme/credit"])
    commit: str | None = Field(
        default=None,
        pattern=r"^[0-9a-fA-F]{7,64}$",
        examples=["9fceb02d0ae598e95dc970b74767f19372d61af8"],
    )


class DatasetRef(BaseModel):
    uri: str | None = Field(default=None, max_length=2048, examples=["s3://data/credit/2026-11-20.parquet"])
    version: str | None = Field(default=None, max_length=256, examples=["2026-11-20"])
    sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="SHA-256 of the dataset's content, 64 hex digits.",
    )


FeatureType = Literal["number", "integer", "category", "boolean", "string"]


class FeatureSpec(BaseModel):
    name: str = Field(min_length=1, max_length=256)
    type: FeatureType
    optional: bool = False


class FeatureSchema(BaseModel):
    version: str | None = Field(default=None, max_length=128, examples=["7"])
    schema_: list[FeatureSpec] = Field(default_factory=list, alias="schema")

    model_config = ConfigDict(populate_by_name=True)

    @field_validator("schema_")
    @classmethod
    def _unique_names(cls, v: list[FeatureSpec]) -> list[FeatureSpec]:
        names = [f.name for f in v]
        if len(names) != len(set(names)):
            raise ValueError("feature names must be unique")
        return v


class EnvironmentRef(BaseModel):
    image: str | None = Field(default=None, max_length=2048)
    lock_hash: str | None = Field(default=None, max_length=256)


class Lineage(BaseModel):
    """Where a model version came from. Completeness is checked by a validation gate."""

    code: CodeRef = Field(default_factory=CodeRef)
    dataset: DatasetRef = Field(default_factory=DatasetRef)
    features: FeatureSchema = Field(default_factory=FeatureSchema)
    environment: EnvironmentRef = Field(default_factory=EnvironmentRef)
    params: dict[str, Any] = Field(default_factory=dict)
    retrain_job_id: str | None = Field(default=None, max_length=64)


# --------------------------------------------------------------------------- registry


class ValidationCheck(BaseModel):
    name: str = Field(examples=["lineage-complete"])
    passed: bool
    detail: str = ""


class ModelRegistered(Payload):
    """A new model version with its full lineage and training-data profile."""

    model: ModelName
    version: VersionId
    seq: int = Field(ge=0, description="Per-version aggregate sequence number")
    artifact_uri: str
    lineage: Lineage
    metrics: dict[str, float] = Field(default_factory=dict)
    segment_metrics: dict[str, dict[str, float]] = Field(default_factory=dict)
    training_profile: dict[str, Any] | None = Field(
        default=None, description="Reference profile built by mloop.stats from the training data"
    )
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    registered_by: str
    created_at: datetime


class ModelValidated(Payload):
    """The outcome of every automated validation gate for one version."""

    model: ModelName
    version: VersionId
    seq: int = Field(ge=0)
    passed: bool
    checks: list[ValidationCheck]
    policy: dict[str, Any] = Field(default_factory=dict)


class PromotionRequested(Payload):
    model: ModelName
    version: VersionId
    seq: int = Field(ge=0)
    promotion_request_id: str
    requested_by: str
    reason: str | None = None


class PromotionReviewed(Payload):
    model: ModelName
    version: VersionId
    seq: int = Field(ge=0)
    promotion_request_id: str
    decision: Literal["approved", "rejected"]
    reviewer: str
    requested_by: str
    comment: str | None = None


class ModelPromoted(Payload):
    """A version approved for production; the rollout service starts a rollout."""

    model: ModelName
    version: VersionId
    seq: int = Field(ge=0)
    previous_champion: str | None
    requested_by: str
    approved_by: list[str] = Field(min_length=1)
    promotion_request_id: str


class ValidationPolicyChanged(Payload):
    """A validation or approval policy changed: who loosened or tightened a gate."""

    model: str = Field(description="Model name, or '*' for the default policy")
    scope: Literal["default", "model"]
    policy: dict[str, Any] = Field(description="The stored policy (a model's override holds changed fields only)")
    effective: dict[str, Any] = Field(default_factory=dict, description="The policy now in force")
    removed: bool = False
    changed_by: str
    reason: str | None = Field(default=None, max_length=MAX_REASON_LENGTH,
                               examples=["two approvals for every model after the audit"])


class SettingChanged(Payload):
    """Base of the governance setting events: who changed what, from what, and why."""

    model: str = Field(description="Model name, or '*' for a default that applies to every model",
                       examples=["credit-risk"])
    previous: dict[str, Any] | None = Field(
        default=None, description="The setting before the change; null when none was stored", examples=[None])
    removed: bool = Field(default=False, description="True when a model's own setting was removed")
    changed_by: str = Field(examples=["user:otto"])
    reason: str | None = Field(default=None, max_length=MAX_REASON_LENGTH, examples=["fewer false alarms on weekends"])
    seq: int = Field(ge=1, description="Per-model (or default) sequence of changes of this setting kind")


class MonitorConfigChanged(SettingChanged):
    """A model's monitor configuration (windows, thresholds) changed: who loosened or tightened drift alarms."""

    config: dict[str, Any] = Field(
        description="The configuration now in force", examples=[{"window": {"size": 2000}, "alpha": 0.01}])


class RolloutPlanChanged(SettingChanged):
    """A model's default rollout plan (steps, gates, deadlines) changed."""

    plan: dict[str, Any] = Field(
        description="The plan now in force for the model's next rollouts",
        examples=[{"strategy": "canary", "steps": [0.05, 0.25, 0.5], "failure_threshold": 3}])


class RetrainPolicyChanged(SettingChanged):
    """The default retrain policy or a model's override changed: when signals trigger retraining."""

    scope: Literal["default", "model"] = Field(examples=["model"])
    policy: dict[str, Any] = Field(
        description="The stored policy (a model's override holds changed fields only)",
        examples=[{"cooldown": "PT2H", "consecutive_signals": 2}])
    effective: dict[str, Any] = Field(default_factory=dict, description="The policy now in force")


class AliasChanged(Payload):
    model: ModelName
    alias: str
    version: str | None = Field(description="New target; null when the alias was removed")
    previous_version: str | None = None
    seq: int = Field(ge=0, description="Per-model alias sequence")
    reason: str | None = None


class VersionRetired(Payload):
    """A version taken out of the registry's live set: archived (kept, never promotable again) or deleted.

    Only a version that never served traffic, never carried an alias and has
    no promotion trail can be deleted; a deleted model publishes one event per
    version it held.
    """

    model: ModelName
    version: VersionId
    action: Literal["archived", "deleted"]
    changed_by: str = Field(description="Who archived or deleted it", examples=["user:alice"])


# --------------------------------------------------------------------------- rollout


class Route(BaseModel):
    version: VersionId
    weight: float = Field(ge=0.0, le=1.0)
    shadow: bool = False


class TrafficSplitChanged(Payload):
    """The full routing table of a model. Compacted: the latest per model wins."""

    model: ModelName
    seq: int = Field(ge=0)
    rollout_id: str | None = None
    routes: list[Route] = Field(min_length=1)

    @model_validator(mode="after")
    def _weights_sum_to_one(self) -> TrafficSplitChanged:
        total = sum(r.weight for r in self.routes if not r.shadow)
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"weights of non-shadow routes must sum to 1, got {total}")
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "credit-risk",
                    "seq": 17,
                    "rollout_id": "0193a5c2-7d1e-7c44-b2a1-3f6f0d9b7e10",
                    "routes": [
                        {"version": "3", "weight": 0.95, "shadow": False},
                        {"version": "4", "weight": 0.05, "shadow": False},
                    ],
                }
            ]
        }
    )


class GateResult(BaseModel):
    name: str = Field(examples=["error-rate"])
    outcome: Literal["pass", "fail", "inconclusive"]
    value: float | None = None
    baseline: float | None = None
    threshold: float | None = None
    detail: str = ""


class RolloutEvent(Payload):
    model: ModelName
    rollout_id: str
    seq: int = Field(ge=0, description="Per-rollout sequence")
    version: VersionId = Field(description="Candidate version")
    baseline_version: str | None
    strategy: str
    phase: str
    step_index: int = Field(ge=0)
    weight: float = Field(ge=0.0, le=1.0)
    reason: str = ""
    actor: str = ""
    gates: list[GateResult] = Field(default_factory=list)


class RolloutStarted(RolloutEvent):
    pass


class RolloutAdvanced(RolloutEvent):
    pass


class RolloutPaused(RolloutEvent):
    pass


class RolloutResumed(RolloutEvent):
    pass


class RolloutCompleted(RolloutEvent):
    pass


class RolloutRolledBack(RolloutEvent):
    pass


# --------------------------------------------------------------------------- monitor


class Window(BaseModel):
    start: datetime
    end: datetime
    size: int = Field(ge=0)


class ReferenceInfo(BaseModel):
    kind: Literal["training-profile", "first-predictions"]
    size: int = Field(ge=0)


class FeatureDriftResult(BaseModel):
    """One test of one column: of its distribution, or of its share of missing values."""

    name: str
    method: str = Field(examples=["omnibus"])
    statistic: float
    p_value: float | None = None
    threshold: float
    drifted: bool
    effect_size: float | None = None
    kind: Literal["distribution", "missing"] = Field(
        default="distribution",
        description="What was tested: the values' distribution, or the share of missing values (null or absent)",
    )


class DriftDetected(Payload):
    """Evidence that the input (data) or output (prediction) distribution moved."""

    model: ModelName
    version: VersionId
    kind: Literal["data", "prediction"]
    severity: Severity
    window: Window
    reference: ReferenceInfo | None = None
    features: list[FeatureDriftResult]
    incident_id: str | None = None
    correction: str | None = Field(default=None, examples=["benjamini-hochberg"])


class PerformanceDegraded(Payload):
    model: ModelName
    version: VersionId
    metric: str = Field(examples=["accuracy"])
    value: float
    baseline: float | None = None
    threshold: float | None = None
    severity: Severity
    window: Window
    detector: str = Field(default="threshold", examples=["page-hinkley"])
    incident_id: str | None = None


class QualityViolation(BaseModel):
    kind: Literal[
        "missing-rate",
        "type-error",
        "out-of-range",
        "unseen-category",
        "schema-mismatch",
        "invalid-value",
    ]
    feature: str | None = None
    value: float | None = None
    threshold: float | None = None
    detail: str = ""


class DataQualityViolated(Payload):
    model: ModelName
    version: VersionId
    severity: Severity
    window: Window
    violations: list[QualityViolation] = Field(min_length=1)
    incident_id: str | None = None


class IncidentResolved(Payload):
    """A drift, performance or quality incident that has cleared (hysteresis)."""

    model: ModelName
    version: VersionId
    incident_id: str
    signal: Literal["drift-detected", "performance-degraded", "data-quality-violated"]
    kind: Literal["data", "prediction"] | None = Field(
        default=None, description="For drift incidents: data or prediction drift"
    )
    opened_at: datetime
    resolved_at: datetime


# --------------------------------------------------------------------------- retraining


class DataWindow(BaseModel):
    start: datetime
    end: datetime


class RetrainRequested(Payload):
    job_id: str
    model: ModelName
    seq: int = Field(ge=0)
    trigger_event_ids: list[str]
    trigger: str = Field(examples=["drift-detected"])
    data_window: DataWindow
    policy: dict[str, Any] = Field(default_factory=dict)
    base_version: str | None = None
    requested_at: datetime


class RetrainCompleted(Payload):
    """Reported by a training pipeline when a job produced a version."""

    job_id: str
    model: ModelName
    version: str | None = None
    finished_at: datetime
    metrics: dict[str, float] = Field(default_factory=dict)


class RetrainFailed(Payload):
    job_id: str
    model: ModelName
    reason: str
    finished_at: datetime


class RetrainJobChanged(Payload):
    """Every state transition of a retrain job."""

    job_id: str
    model: ModelName
    seq: int = Field(ge=0)
    state: str
    previous_state: str | None
    at: datetime
    detail: str = ""


class CycleTimeRecorded(Payload):
    """From the first triggering signal to a completed or rolled-back rollout."""

    job_id: str
    model: ModelName
    version: str | None
    outcome: Literal["completed", "rolled-back", "failed"]
    started_at: datetime
    finished_at: datetime
    cycle_seconds: float = Field(ge=0)
    sla_seconds: float | None = None
    sla_breached: bool = False
    steps: dict[str, float] = Field(default_factory=dict, description="Seconds spent per step")


# --------------------------------------------------------------------------- dead letter


class DeadLetter(Payload):
    """A message a consumer could not decode or validate, kept byte for byte."""

    topic: str
    partition: int
    offset: int
    key_b64: str | None
    value_b64: str
    headers: list[tuple[str, str]] = Field(
        default_factory=list, description="Original headers; values base64-encoded"
    )
    reason: str
    error_type: str
    service: str
    consumer_group: str
    failed_at: datetime
