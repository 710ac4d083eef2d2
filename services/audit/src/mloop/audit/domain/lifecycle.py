"""Reading the ledger as a story, without I/O: a version's lifecycle, the
traffic split in force at a moment, and who approved what.

Every function takes recorded CloudEvents (``records.cloudevent_of`` form,
with ``type`` and ``data``) in time order and returns plain data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mloop.contracts.topics import TOPICS

__all__ = [
    "SETTING_TOPICS",
    "LifecycleStep",
    "ModelStep",
    "ServingSplit",
    "approval_of",
    "lifecycle_status",
    "lifecycle_steps",
    "model_steps",
    "serving_split",
]

#: Governance settings of a model; each change is one step of the model's lifecycle.
SETTING_TOPICS = frozenset({
    "validation-policy-changed", "monitor-config-changed", "rollout-plan-changed", "retrain-policy-changed",
})

_TOPIC_BY_TYPE = {spec.event_type: name for name, spec in TOPICS.items()}


def topic_of(event_type: str) -> str | None:
    return _TOPIC_BY_TYPE.get(event_type)


@dataclass(frozen=True, slots=True)
class LifecycleStep:
    """One step in a version's life, with the record that proves it."""

    stage: str
    detail: str
    event_id: str
    event_type: str
    time: str
    actor: str | None
    chain: str
    seq: int


def _setting_detail(data: Mapping[str, Any]) -> str:
    what = "removed" if data.get("removed") else "changed"
    detail = f"{what} by {data.get('changed_by')}"
    if data.get("reason"):
        detail += f": {data.get('reason')}"
    return detail


def _stage(topic: str, data: Mapping[str, Any], version: str) -> tuple[str, str] | None:
    """The stage a record marks for ``version`` and a one-line detail, or None when irrelevant."""
    if topic in SETTING_TOPICS:
        return topic, _setting_detail(data)
    if topic == "model-registered":
        return "registered", f"by {data.get('registered_by')}, artifact {data.get('artifact_uri')}"
    if topic == "model-validated":
        checks = data.get("checks") or []
        failed = [c.get("name") for c in checks if isinstance(c, dict) and not c.get("passed")]
        if data.get("passed"):
            return "validated", f"{len(checks)} gates passed"
        return "validation-failed", f"failed gates: {', '.join(str(f) for f in failed)}"
    if topic == "promotion-requested":
        return "promotion-requested", f"by {data.get('requested_by')}"
    if topic == "promotion-reviewed":
        decision = data.get("decision")
        stage = "approved" if decision == "approved" else "rejected"
        return stage, f"{decision} by {data.get('reviewer')} (requested by {data.get('requested_by')})"
    if topic == "model-promoted":
        approvers = ", ".join(str(a) for a in data.get("approved_by") or [])
        return "promoted", f"approved by {approvers}; previous champion {data.get('previous_champion')}"
    if topic is not None and topic.startswith("rollout-"):
        what = topic.removeprefix("rollout-")
        stage = {"completed": "rollout-completed", "rolled-back": "rolled-back"}.get(what, f"rollout-{what}")
        detail = f"{data.get('phase')} step {data.get('step_index')} at weight {data.get('weight')}"
        if data.get("reason"):
            detail += f": {data.get('reason')}"
        return stage, detail
    if topic == "traffic-split-changed":
        for route in data.get("routes") or []:
            if isinstance(route, dict) and route.get("version") == version:
                kind = "shadow" if route.get("shadow") else "serving"
                return "traffic", f"{kind} weight {route.get('weight')} (split seq {data.get('seq')})"
        return None
    if topic == "model-alias-changed":
        alias = data.get("alias")
        if data.get("version") == version:
            return ("champion" if alias == "champion" else "alias-set"), f"alias {alias} -> {version}"
        if data.get("previous_version") == version:
            stage = "champion-replaced" if alias == "champion" else "alias-moved"
            return stage, f"alias {alias} moved to {data.get('version')}"
        return None
    if topic == "model-version-retired":
        return str(data.get("action")), f"by {data.get('changed_by')}"
    if topic == "retrain-completed":
        return "trained", f"retrain job {data.get('job_id')}"
    if topic in ("drift-detected", "performance-degraded", "data-quality-violated", "incident-resolved"):
        return topic, str(data.get("severity") or data.get("signal") or "")
    return None


def lifecycle_steps(version: str, records: Sequence[Mapping[str, Any]]) -> list[LifecycleStep]:
    """The steps of ``version`` from its records (each: ``event`` CloudEvent, ``chain``, ``seq``)."""
    steps: list[LifecycleStep] = []
    for rec in records:
        event = rec["event"]
        topic = topic_of(str(event.get("type")))
        data = _data(event)
        found = _stage(topic or "", data, version)
        if found is None:
            continue
        stage, detail = found
        steps.append(LifecycleStep(
            stage, detail, str(event.get("id")), str(event.get("type")), str(event.get("time")),
            event.get("actor"), str(rec["chain"]), int(rec["seq"]),
        ))
    return steps


@dataclass(frozen=True, slots=True)
class ModelStep:
    """One step in a model's life: a version's step (``version`` set) or a governance setting change."""

    version: str | None
    stage: str
    detail: str
    event_id: str
    event_type: str
    time: str
    actor: str | None
    chain: str
    seq: int


def model_steps(records: Sequence[Mapping[str, Any]]) -> list[ModelStep]:
    """The steps of a model from its records (each: ``event`` CloudEvent, ``chain``, ``seq``), in their order.

    Every version's registration, validation, review, promotion, rollout
    events, alias moves and traffic splits, and every change of its
    governance settings (validation policy, monitor configuration, rollout
    plan, retrain policy).
    """
    steps: list[ModelStep] = []
    for rec in records:
        event = rec["event"]
        topic = topic_of(str(event.get("type"))) or ""
        data = _data(event)
        if topic in SETTING_TOPICS:
            found: tuple[str, str] | None = (topic, _setting_detail(data))
            version = None
        elif topic == "traffic-split-changed":
            routes = [r for r in data.get("routes") or [] if isinstance(r, dict)]
            found = ("traffic", ", ".join(
                f"v{r.get('version')} {'shadow' if r.get('shadow') else 'serving'} weight {r.get('weight')}"
                for r in routes) + f" (split seq {data.get('seq')})")
            version = None
        else:
            version = str(data.get("version") or "") or None
            found = _stage(topic, data, version) if version is not None else None
        if found is None:
            continue
        steps.append(ModelStep(
            version, found[0], found[1], str(event.get("id")), str(event.get("type")), str(event.get("time")),
            event.get("actor"), str(rec["chain"]), int(rec["seq"]),
        ))
    return steps


_STATUS_OF = {
    "registered": "registered",
    "validated": "validated",
    "validation-failed": "validation-failed",
    "promotion-requested": "awaiting-review",
    "approved": "approved",
    "rejected": "rejected",
    "promoted": "promoted",
    "rollout-started": "rolling-out",
    "rollout-advanced": "rolling-out",
    "rollout-paused": "rollout-paused",
    "rollout-resumed": "rolling-out",
    "rollout-completed": "rollout-completed",
    "rolled-back": "rolled-back",
    "champion": "champion",
    "champion-replaced": "retired",
    "archived": "archived",
    "deleted": "deleted",
}


def lifecycle_status(steps: Sequence[LifecycleStep]) -> str:
    """Where the version stands after ``steps``: the latest step that changes its status."""
    status = "unknown"
    for step in steps:
        status = _STATUS_OF.get(step.stage, status)
    return status


@dataclass(frozen=True, slots=True)
class ServingSplit:
    serving: list[dict[str, Any]]
    shadow: list[dict[str, Any]]
    routes: list[dict[str, Any]] = field(default_factory=list)


def serving_split(data: Mapping[str, Any]) -> ServingSplit:
    """Versions serving (non-shadow, weight > 0) and shadowing in a ``traffic-split-changed`` payload."""
    routes = [r for r in data.get("routes") or [] if isinstance(r, dict)]
    serving = [{"version": r.get("version"), "weight": r.get("weight")}
               for r in routes if not r.get("shadow") and (r.get("weight") or 0) > 0]
    shadow = [{"version": r.get("version"), "weight": r.get("weight")} for r in routes if r.get("shadow")]
    return ServingSplit(serving, shadow, routes)


def _data(event: Mapping[str, Any]) -> dict[str, Any]:
    data = event.get("data")
    return data if isinstance(data, dict) else {}


def approval_of(event: Mapping[str, Any]) -> dict[str, Any]:
    """One "who approved what" line from a promotion-reviewed or model-promoted CloudEvent."""
    data = _data(event)
    topic = topic_of(str(event.get("type")))
    if topic == "promotion-reviewed":
        return {
            "kind": "review",
            "decision": data.get("decision"),
            "approvers": [data.get("reviewer")],
            "requested_by": data.get("requested_by"),
            "comment": data.get("comment"),
        }
    return {
        "kind": "promotion",
        "decision": "promoted",
        "approvers": list(data.get("approved_by") or []),
        "requested_by": data.get("requested_by"),
        "comment": None,
    }
