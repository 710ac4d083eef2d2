"""Typed clients of the five services' HTTP APIs, and :class:`MloopClient` bundling them.

Each method is one API call and returns the decoded JSON. They are thin on
purpose: the services' OpenAPI documents (``/openapi.json``) are the reference
for the shapes; the methods exist so callers need not remember paths.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from mloop.client._http import JSON, AsyncClosing, ServiceClient

__all__ = [
    "AuditClient",
    "Endpoints",
    "MloopClient",
    "MonitorClient",
    "RegistryClient",
    "RetrainClient",
    "RolloutClient",
]


def _p(segment: str) -> str:
    return quote(str(segment), safe="")


def _iso(t: datetime | str | None) -> str | None:
    return t.isoformat() if isinstance(t, datetime) else t


class RegistryClient(ServiceClient):
    """Models, versions with lineage, aliases, validation policies and promotions."""

    async def create_model(
        self, name: str, *, description: str | None = None, tags: Mapping[str, str] | None = None
    ) -> JSON:
        body: JSON = {"name": name}
        if description is not None:
            body["description"] = description
        if tags:
            body["tags"] = dict(tags)
        result: JSON = await self.post("/models", body)
        return result

    async def get_model(self, name: str) -> JSON:
        result: JSON = await self.get(f"/models/{_p(name)}")
        return result

    async def list_models(self, *, limit: int | None = None, **filters: Any) -> list[JSON]:
        return await self.list_all("/models", limit=limit, **filters)

    async def register_version(
        self,
        model: str,
        *,
        artifact_uri: str,
        lineage: Mapping[str, Any],
        metrics: Mapping[str, float] | None = None,
        training_profile: Mapping[str, Any] | None = None,
        segment_metrics: Mapping[str, Mapping[str, float]] | None = None,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> JSON:
        """Register a version (``POST /models/{name}/versions``); the answer carries ``version`` and ``validation``."""
        body: JSON = {
            "artifact_uri": artifact_uri,
            "lineage": dict(lineage),
            "metrics": dict(metrics or {}),
            "training_profile": dict(training_profile) if training_profile is not None else None,
            "description": description,
            "tags": dict(tags or {}),
        }
        if segment_metrics:
            body["segment_metrics"] = {k: dict(v) for k, v in segment_metrics.items()}
        result: JSON = await self.post(f"/models/{_p(model)}/versions", body, idempotency_key=idempotency_key)
        return result

    async def get_version(self, model: str, version: str) -> JSON:
        result: JSON = await self.get(f"/models/{_p(model)}/versions/{_p(version)}")
        return result

    async def list_versions(self, model: str, *, limit: int | None = None, **filters: Any) -> list[JSON]:
        return await self.list_all(f"/models/{_p(model)}/versions", limit=limit, **filters)

    async def version_history(self, model: str, version: str) -> JSON:
        """Everything about a version: lineage, gate results, reviews, alias history, rollouts."""
        result: JSON = await self.get(f"/models/{_p(model)}/versions/{_p(version)}/history")
        return result

    async def set_alias(self, model: str, alias: str, version: str, *, reason: str | None = None) -> JSON:
        body: JSON = {"version": version}
        if reason:
            body["reason"] = reason
        result: JSON = await self.put(f"/models/{_p(model)}/aliases/{_p(alias)}", body)
        return result

    async def alias_history(self, model: str) -> list[JSON]:
        result: list[JSON] = await self.get(f"/models/{_p(model)}/alias-history")
        return result

    async def get_alias(self, model: str, alias: str) -> JSON:
        """The version the alias points to (404 when the alias is not set)."""
        result: JSON = await self.get(f"/models/{_p(model)}/aliases/{_p(alias)}")
        return result

    async def champion(self, model: str) -> str | None:
        """The version the ``champion`` alias points at, or None."""
        from mloop.client._exceptions import NotFoundError

        try:
            alias = await self.get_alias(model, "champion")
        except NotFoundError:
            return None
        v = alias.get("version")
        return str(v) if v is not None else None

    async def request_promotion(self, model: str, version: str, *, reason: str | None = None) -> JSON:
        body: JSON = {"reason": reason} if reason else {}
        result: JSON = await self.post(f"/models/{_p(model)}/versions/{_p(version)}/promotion-requests", body)
        return result

    async def get_promotion_request(self, request_id: str) -> JSON:
        result: JSON = await self.get(f"/promotion-requests/{_p(request_id)}")
        return result

    async def approve(self, request_id: str, *, comment: str | None = None) -> JSON:
        body: JSON = {"comment": comment} if comment else {}
        result: JSON = await self.post(f"/promotion-requests/{_p(request_id)}/approve", body)
        return result

    async def reject(self, request_id: str, *, comment: str) -> JSON:
        result: JSON = await self.post(f"/promotion-requests/{_p(request_id)}/reject", {"comment": comment})
        return result

    async def list_promotion_requests(
        self, *, status: str | None = None, model: str | None = None, limit: int | None = None
    ) -> list[JSON]:
        return await self.list_all("/promotion-requests", limit=limit, status=status, model=model)

    async def get_validation_policy(self, model: str) -> JSON:
        result: JSON = await self.get(f"/models/{_p(model)}/validation-policy")
        return result

    async def set_validation_policy(self, model: str, policy: Mapping[str, Any]) -> JSON:
        result: JSON = await self.put(f"/models/{_p(model)}/validation-policy", dict(policy))
        return result


class RolloutClient(ServiceClient):
    """Rollouts, their gate evidence, operator actions and plan defaults."""

    async def list_rollouts(
        self,
        *,
        model: str | Sequence[str] | None = None,
        phase: str | None = None,
        latest_per_model: bool = False,
        limit: int | None = None,
    ) -> list[JSON]:
        """Rollouts, newest first; of one model or several (at most 200 names).

        With ``latest_per_model`` only each model's newest rollout: whether one
        runs for each model of a page, in one call.
        """
        models = [model] if isinstance(model, str) else list(model) if model is not None else None
        if models == []:
            return []
        return await self.list_all("/rollouts", limit=limit, model=models, phase=phase,
                                   latest_per_model="true" if latest_per_model else None)

    async def get_rollout(self, rollout_id: str, *, analyses: int = 20) -> JSON:
        """A rollout with its history (published events) and the latest ``analyses`` gate checks."""
        result: JSON = await self.get(f"/rollouts/{_p(rollout_id)}", analyses=analyses)
        return result

    async def create_rollout(
        self,
        model: str,
        candidate: str,
        *,
        promotion_id: str,
        baseline: str | None = None,
        plan: Mapping[str, Any] | None = None,
        start: bool = True,
        reason: str | None = None,
    ) -> JSON:
        """Start a rollout again for an approved promotion whose rollout was aborted or superseded."""
        body: JSON = {"model": model, "candidate": candidate, "promotion_id": promotion_id, "baseline": baseline,
                      "start": start}
        if plan is not None:
            body["plan"] = dict(plan)
        if reason:
            body["reason"] = reason[:500]
        result: JSON = await self.post("/rollouts", body)
        return result

    async def action(self, rollout_id: str, action: str, *, reason: str | None = None) -> JSON:
        """``pause``, ``resume``, ``abort``, ``promote-step``, ``promote-full`` or ``retry``."""
        body: JSON = {"reason": reason} if reason else {}
        result: JSON = await self.post(f"/rollouts/{_p(rollout_id)}/{_p(action)}", body)
        return result

    async def pause(self, rollout_id: str, *, reason: str | None = None) -> JSON:
        return await self.action(rollout_id, "pause", reason=reason)

    async def resume(self, rollout_id: str, *, reason: str | None = None) -> JSON:
        return await self.action(rollout_id, "resume", reason=reason)

    async def abort(self, rollout_id: str, *, reason: str | None = None) -> JSON:
        return await self.action(rollout_id, "abort", reason=reason)

    async def promote(self, rollout_id: str, *, full: bool = False, reason: str | None = None) -> JSON:
        return await self.action(rollout_id, "promote-full" if full else "promote-step", reason=reason)

    async def traffic(self, model: str) -> JSON:
        """The routing table in force for ``model``."""
        result: JSON = await self.get(f"/models/{_p(model)}/traffic")
        return result

    async def get_plan(self, model: str) -> JSON:
        result: JSON = await self.get(f"/models/{_p(model)}/plan")
        return result

    async def set_plan(self, model: str, plan: Mapping[str, Any]) -> JSON:
        result: JSON = await self.put(f"/models/{_p(model)}/plan", dict(plan))
        return result


class MonitorClient(ServiceClient):
    """Drift status and history, incidents, thresholds, reports and the prediction store."""

    async def status(self, model: str, version: str | None = None) -> JSON:
        """Monitoring status of every version of ``model`` (or of one ``version``)."""
        path = (
            f"/models/{_p(model)}/status" if version is None else f"/models/{_p(model)}/versions/{_p(version)}/status"
        )
        result: JSON = await self.get(path)
        return result

    async def statuses(
        self, models: Sequence[str] | None = None, *, limit: int | None = None, page_size: int | None = None
    ) -> list[JSON]:
        """The monitoring status of many models in few calls, ordered by model name.

        Each item is what :meth:`status` answers for one model. With ``models``
        (at most 200 names) only those; a model the monitor has not seen yet is
        left out, not an error. Without, every model the monitor has seen, one
        page of ``page_size`` (default 50, at most 200) per call.
        """
        names = list(models) if models is not None else None
        if names == []:
            return []
        size = page_size or (min(len(names), 200) if names else None)
        return await self.list_all("/status", limit=limit, model=names, page_size=size)

    async def drift_history(
        self,
        model: str,
        *,
        version: str | None = None,
        kind: str | None = None,
        drifted: bool | None = None,
        limit: int | None = None,
    ) -> list[JSON]:
        """Drift verdicts per window, newest first, with per-feature statistics."""
        return await self.list_all(
            f"/models/{_p(model)}/drift",
            limit=limit,
            version=version,
            kind=kind,
            drifted=None if drifted is None else str(drifted).lower(),
        )

    async def incidents(self, model: str, *, open_only: bool = False) -> list[JSON]:
        result: list[JSON] = await self.get(f"/models/{_p(model)}/incidents", open_only=str(open_only).lower())
        return result

    async def drift_report(self, model: str, *, version: str | None = None, windows: int = 30) -> JSON:
        result: JSON = await self.get(f"/models/{_p(model)}/drift-report", version=version, windows=windows)
        return result

    async def drift_report_html(self, model: str, *, version: str | None = None, windows: int = 30) -> str:
        """The drift report as a self-contained HTML page."""
        return await self.text(f"/models/{_p(model)}/drift-report.html", version=version, windows=windows)

    async def get_config(self, model: str) -> JSON:
        result: JSON = await self.get(f"/models/{_p(model)}/config")
        return result

    async def set_config(self, model: str, config: Mapping[str, Any]) -> JSON:
        result: JSON = await self.put(f"/models/{_p(model)}/config", dict(config))
        return result

    async def prediction(self, request_id: str, *, model: str | None = None) -> list[JSON]:
        """The stored prediction(s) with this request id (one per model), with the label once known."""
        result: list[JSON] = await self.get(f"/predictions/{_p(request_id)}", model=model)
        return result

    async def predictions(self, model: str, *, limit: int | None = 100, **filters: Any) -> list[JSON]:
        """Stored predictions in a time range (``start``, ``end``), oldest first."""
        return await self.list_all(
            f"/models/{_p(model)}/predictions", limit=limit, **{k: _iso(v) for k, v in filters.items()}
        )


class RetrainClient(ServiceClient):
    """Retrain policies, jobs, the training pipelines' callback and cycle time."""

    async def policies(self) -> JSON:
        result: JSON = await self.get("/policies")
        return result

    async def get_policy(self, model: str) -> JSON:
        result: JSON = await self.get(f"/models/{_p(model)}/policy")
        return result

    async def set_policy(self, model: str, override: Mapping[str, Any]) -> JSON:
        result: JSON = await self.put(f"/models/{_p(model)}/policy", dict(override))
        return result

    async def delete_policy(self, model: str) -> None:
        await self.delete(f"/models/{_p(model)}/policy")

    async def list_jobs(
        self,
        *,
        model: str | Sequence[str] | None = None,
        state: str | None = None,
        latest_per_model: bool = False,
        limit: int | None = None,
    ) -> list[JSON]:
        """Jobs, newest first; of one model or several (at most 200 names).

        With ``latest_per_model`` only each model's newest job: the last retrain
        of each model of a page, in one call.
        """
        models = [model] if isinstance(model, str) else list(model) if model is not None else None
        if models == []:
            return []
        return await self.list_all("/jobs", limit=limit, model=models, state=state,
                                   latest_per_model="true" if latest_per_model else None)

    async def get_job(self, job_id: str) -> JSON:
        result: JSON = await self.get(f"/jobs/{_p(job_id)}")
        return result

    async def trigger(self, model: str, *, reason: str = "", data_window: Mapping[str, Any] | None = None) -> JSON:
        body: JSON = {"model": model, "reason": reason}
        if data_window is not None:
            body["data_window"] = {k: _iso(v) for k, v in data_window.items()}
        result: JSON = await self.post("/jobs", body)
        return result

    async def confirm(self, job_id: str) -> JSON:
        result: JSON = await self.post(f"/jobs/{_p(job_id)}/confirm")
        return result

    async def cancel(self, job_id: str, *, reason: str = "") -> JSON:
        result: JSON = await self.post(f"/jobs/{_p(job_id)}/cancel", {"reason": reason})
        return result

    async def report(
        self,
        job_id: str,
        state: str,
        *,
        version: str | None = None,
        reason: str = "",
        metrics: Mapping[str, float] | None = None,
    ) -> JSON:
        """A training pipeline's callback: ``running``, ``completed`` (with ``version``) or ``failed``."""
        body: JSON = {"state": state, "version": version, "reason": reason, "metrics": dict(metrics or {})}
        result: JSON = await self.post(f"/jobs/{_p(job_id)}/status", body)
        return result

    async def cycle_times(self, *, model: str | None = None, limit: int | None = None) -> list[JSON]:
        return await self.list_all("/cycle-times", limit=limit, model=model)

    async def cycle_stats(self, model: str) -> JSON:
        result: JSON = await self.get(f"/models/{_p(model)}/cycle-time")
        return result

    async def cycle_stats_all(self) -> list[JSON]:
        """Cycle-time statistics (p50/p90, step shares, SLA breaches) of every model with recorded cycles."""
        result: list[JSON] = await self.get("/cycle-time")
        return result


class AuditClient(ServiceClient):
    """Ledger queries, lifecycles, proofs, checkpoints, live verification and evidence export."""

    async def records(self, *, limit: int | None = 100, **filters: Any) -> list[JSON]:
        """Records filtered by ``model``, ``version``, ``type``, ``actor``, ``since``, ``until``, ``chain``."""
        return await self.list_all("/records", limit=limit, **{k: _iso(v) for k, v in filters.items()})

    async def record(self, event_id: str) -> JSON:
        result: JSON = await self.get(f"/records/{_p(event_id)}")
        return result

    async def inclusion_proof(self, event_id: str) -> JSON:
        result: JSON = await self.get(f"/records/{_p(event_id)}/proof")
        return result

    async def lifecycle(self, model: str, version: str) -> JSON:
        """A version from registration to champion or rollback: ``status`` and ``steps``."""
        result: JSON = await self.get(f"/models/{_p(model)}/versions/{_p(version)}/lifecycle")
        return result

    async def serving_at(self, model: str, at: datetime | str) -> JSON:
        result: JSON = await self.get(f"/models/{_p(model)}/serving", at=_iso(at))
        return result

    async def approvals(self, *, model: str | None = None, limit: int | None = None) -> list[JSON]:
        return await self.list_all("/approvals", limit=limit, model=model)

    async def chains(self) -> Any:
        return await self.get("/chains")

    async def checkpoints(self) -> Any:
        return await self.get("/checkpoints")

    async def sign_checkpoints(self) -> Any:
        """Sign a checkpoint of every chain that grew, now (operator)."""
        return await self.post("/checkpoints")

    async def public_key(self) -> JSON:
        """``pem``, ``base64`` and a C2SP ``vkey_example`` of the checkpoint signing key."""
        result: JSON = await self.get("/public-key")
        return result

    async def verify(self, *, chain: str | None = None) -> JSON:
        """The service replays its chains against every signed checkpoint (the offline verifier is the proof)."""
        result: JSON = await self.get("/verify", chain=chain)
        return result

    async def export(self, path: str | Path, **filters: Any) -> Path:
        """Download the signed evidence bundle (tar.gz) for a model or time range to ``path``."""
        data = await self.download("/export", **{k: _iso(v) for k, v in filters.items()})
        target = Path(path)
        await asyncio.to_thread(_write_bytes, target, data)
        return target


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@dataclass(frozen=True)
class Endpoints:
    """Where the five services answer. :meth:`local` is the stack of ``make up``."""

    registry: str = "http://127.0.0.1:8101"
    rollout: str = "http://127.0.0.1:8102"
    monitor: str = "http://127.0.0.1:8103"
    retrain: str = "http://127.0.0.1:8104"
    audit: str = "http://127.0.0.1:8105"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Endpoints:
        """From ``MLOOP_REGISTRY_URL`` ... ``MLOOP_AUDIT_URL`` (missing ones keep the local default)."""
        d = cls()
        return cls(
            registry=env.get("MLOOP_REGISTRY_URL", d.registry),
            rollout=env.get("MLOOP_ROLLOUT_URL", d.rollout),
            monitor=env.get("MLOOP_MONITOR_URL", d.monitor),
            retrain=env.get("MLOOP_RETRAIN_SCHEDULER_URL", d.retrain),
            audit=env.get("MLOOP_AUDIT_URL", d.audit),
        )


class MloopClient(AsyncClosing):
    """All five service clients over one connection pool::

    async with MloopClient(Endpoints.from_env(os.environ), token) as api:
        await api.registry.create_model("credit-risk")
    """

    def __init__(
        self,
        endpoints: Endpoints | None = None,
        token: str | None = None,
        *,
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.endpoints = endpoints or Endpoints()
        self._http = httpx.AsyncClient(timeout=timeout_s, transport=transport)
        self.registry = RegistryClient(self.endpoints.registry, token, http=self._http)
        self.rollout = RolloutClient(self.endpoints.rollout, token, http=self._http)
        self.monitor = MonitorClient(self.endpoints.monitor, token, http=self._http)
        self.retrain = RetrainClient(self.endpoints.retrain, token, http=self._http)
        self.audit = AuditClient(self.endpoints.audit, token, http=self._http)

    def with_token(self, token: str) -> MloopClient:
        """The same endpoints and connection pool, acting as another principal."""
        other = object.__new__(MloopClient)
        other.endpoints = self.endpoints
        other._http = self._http
        other.registry = RegistryClient(self.endpoints.registry, token, http=self._http)
        other.rollout = RolloutClient(self.endpoints.rollout, token, http=self._http)
        other.monitor = MonitorClient(self.endpoints.monitor, token, http=self._http)
        other.retrain = RetrainClient(self.endpoints.retrain, token, http=self._http)
        other.audit = AuditClient(self.endpoints.audit, token, http=self._http)
        return other

    async def aclose(self) -> None:
        await self._http.aclose()

    async def ready(self) -> dict[str, bool]:
        """``/readyz`` of each service."""
        return {
            "registry": await self.registry.ready(),
            "rollout": await self.rollout.ready(),
            "monitor": await self.monitor.ready(),
            "retrain-scheduler": await self.retrain.ready(),
            "audit": await self.audit.ready(),
        }
