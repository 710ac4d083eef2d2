"""The registry's HTTP bodies: what callers send and what they get back.

Registration (:class:`VersionRegistration`) is the stable contract
that training pipelines build against.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mloop.contracts.payloads import Lineage, ModelName, ValidationCheck
from mloop.registry.domain import Policy, VersionStatus
from mloop.runtime.history import SettingChangeOut

__all__ = [
    "RequestBody",
    "AliasMoveOut",
    "AliasName",
    "AliasOut",
    "AliasSet",
    "ModelCreate",
    "ModelOut",
    "ModelPatch",
    "PolicyChange",
    "PolicyView",
    "PromotionRequestCreate",
    "PromotionRequestOut",
    "RegistrationOut",
    "ReviewBody",
    "ReviewOut",
    "RolloutOut",
    "TagPatch",
    "Tags",
    "ValidationOut",
    "VersionDetail",
    "VersionOut",
    "VersionPatch",
    "VersionRegistration",
    "unstorable",
]

TagKey = Annotated[str, Field(min_length=1, max_length=250)]
Tags = Annotated[dict[TagKey, Annotated[str, Field(max_length=5000)]], Field(max_length=100)]
TagPatch = Annotated[
    dict[TagKey, Annotated[str, Field(max_length=5000)] | None],
    Field(max_length=100, description="Merge patch: a value sets the tag, null removes it"),
]
AliasName = Annotated[
    str,
    Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9._-]*$", examples=["champion", "challenger"]),
]
Description = Annotated[str, Field(max_length=10_000)]

SHA_EXAMPLE = "5f7c1e0b9a3d4c2e8f6a7b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e"

REGISTRATION_EXAMPLE: dict[str, Any] = {
    "artifact_uri": "s3://models/credit-risk/42/model.pkl",
    "lineage": {
        "code": {"repo": "https://git.example.com/acme/credit", "commit": "9fceb02d0ae598e95dc970b74767f19372d61af8"},
        "dataset": {"uri": "s3://data/credit/2026-11-20.parquet", "version": "2026-11-20", "sha256": SHA_EXAMPLE},
        "features": {
            "version": "7",
            "schema": [
                {"name": "age", "type": "number"},
                {"name": "income", "type": "number"},
                {"name": "region", "type": "category", "optional": True},
            ],
        },
        "environment": {"image": "registry.example.com/train@sha256:" + SHA_EXAMPLE, "lock_hash": "b1946ac9"},
        "params": {"C": 1.0},
        "retrain_job_id": None,
    },
    "metrics": {"auc": 0.91, "log_loss": 0.32},
    "segment_metrics": {"region=north": {"recall": 0.81}, "region=south": {"recall": 0.78}},
    "training_profile": None,
    "description": "weekly retrain",
    "tags": {"team": "risk"},
}


def unstorable(value: Any, path: str = "") -> str | None:
    """The path of the first value Postgres cannot store — text with a NUL
    character, a NaN or infinite number — or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return path or "(root)"
    if isinstance(value, str) and "\x00" in value:
        return path or "(root)"
    if isinstance(value, dict):
        for k, v in value.items():
            where = f"{path}.{k}" if path else str(k)
            if isinstance(k, str) and "\x00" in k:
                return where
            found = unstorable(v, where)
            if found is not None:
                return found
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = unstorable(v, f"{path}.{i}" if path else str(i))
            if found is not None:
                return found
    return None


class RequestBody(BaseModel):
    """A request body; refuses what Postgres could not store, naming where it is."""

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        where = unstorable(data)
        if where is not None:
            raise ValueError(f"{where}: NUL characters, NaN and infinite numbers are not allowed")
        return data


class ModelCreate(RequestBody):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "credit-risk", "description": "Probability of default", "tags": {"team": "risk"}}]
        },
    )

    name: ModelName
    description: Description | None = None
    tags: Tags = Field(default_factory=dict)


class ModelPatch(RequestBody):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"description": "PD model, v2 features", "tags": {"tier": "1", "old": None}}]},
    )

    description: Description | None = None
    tags: TagPatch | None = None


class ModelOut(BaseModel):
    name: str
    description: str | None
    tags: dict[str, str]
    created_by: str
    created_at: datetime
    updated_at: datetime
    latest_version: str | None = None
    aliases: dict[str, str] = Field(default_factory=dict, description="alias → version")


class VersionRegistration(RequestBody):
    """A new version and everything it came from."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [REGISTRATION_EXAMPLE]})

    artifact_uri: str = Field(min_length=1, max_length=2048, examples=["s3://models/credit-risk/42/model.pkl"])
    lineage: Lineage = Field(description="Code, dataset, features, environment, parameters, retrain job")
    metrics: dict[Annotated[str, Field(min_length=1, max_length=128)], float] = Field(default_factory=dict)
    segment_metrics: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Per-segment metrics (e.g. fairness groups): segment → metric → value"
    )
    training_profile: dict[str, Any] | None = Field(
        None, description="Reference profile built by mloop.stats from the training data"
    )
    description: Description | None = None
    tags: Tags = Field(default_factory=dict)

    @field_validator("metrics")
    @classmethod
    def _finite(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [k for k, x in v.items() if not math.isfinite(x)]
        if bad:
            raise ValueError(f"metrics must be finite numbers: {', '.join(bad)}")
        return v


class ValidationOut(BaseModel):
    passed: bool
    checks: list[ValidationCheck]


class VersionOut(BaseModel):
    model: str
    version: str
    status: VersionStatus
    artifact_uri: str
    description: str | None
    tags: dict[str, str]
    metrics: dict[str, float]
    validation_passed: bool
    served_traffic: bool
    aliases: list[str] = Field(default_factory=list)
    registered_by: str
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None = None


class RegistrationOut(VersionOut):
    validation: ValidationOut


class VersionPatch(RequestBody):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"description": "candidate for Q4", "tags": {"qa": "ok"}}]}
    )

    description: Description | None = None
    tags: TagPatch | None = None


class AliasSet(RequestBody):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"version": "4", "reason": "A/B test with the champion"}]}
    )

    version: str = Field(pattern=r"^[1-9][0-9]{0,8}$", description="Target version")
    reason: str | None = Field(None, max_length=2000)


class AliasOut(BaseModel):
    model: str
    alias: str
    version: str | None
    previous_version: str | None
    seq: int


class AliasMoveOut(BaseModel):
    alias: str
    version: str | None
    previous_version: str | None
    seq: int
    actor: str
    reason: str | None
    at: datetime


class PromotionRequestCreate(RequestBody):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "beats the champion on AUC; fairness OK"}]}
    )

    reason: str | None = Field(None, max_length=4000)


class ReviewBody(RequestBody):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"comment": "lineage and gates checked"}]}
    )

    comment: str | None = Field(None, max_length=4000, description="Required when rejecting")


class ReviewOut(BaseModel):
    reviewer: str
    decision: Literal["approved", "rejected"]
    comment: str | None
    at: datetime


class PromotionRequestOut(BaseModel):
    id: str
    model: str
    version: str
    status: Literal["pending", "approved", "rejected"]
    requested_by: str
    reason: str | None
    required_approvals: int
    approved_by: list[str] = Field(default_factory=list)
    previous_champion: str | None = None
    reviews: list[ReviewOut] = Field(default_factory=list)
    created_at: datetime
    decided_at: datetime | None = None


class RolloutOut(BaseModel):
    rollout_id: str
    outcome: Literal["completed", "rolled-back"]
    version: str
    baseline_version: str | None
    seq: int
    reason: str
    at: datetime


class VersionDetail(RegistrationOut):
    """Everything about one version in one document."""

    seq: int = Field(description="Sequence number of the version's latest event")
    lineage: Lineage
    segment_metrics: dict[str, dict[str, float]]
    training_profile: dict[str, Any] | None
    policy: dict[str, Any] = Field(default_factory=dict, description="The policy the gates ran with")
    promotion_requests: list[PromotionRequestOut]
    alias_history: list[AliasMoveOut]
    rollouts: list[RolloutOut]
    run_id: str | None = None


class PolicyChange(SettingChangeOut):
    value_field: ClassVar[str] = "policy"
    policy: dict[str, Any] | None = Field(description="The stored policy (a model's override); null when removed")


class PolicyView(BaseModel):
    model: str | None = None
    default: Policy
    override: dict[str, Any] = Field(default_factory=dict, description="The fields the model overrides")
    effective: Policy
