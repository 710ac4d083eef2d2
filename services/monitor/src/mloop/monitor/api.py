"""The monitor's HTTP API: status, drift history, configuration, reports, prediction lookups."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

import asyncpg
from fastapi import APIRouter, Body, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from mloop.monitor import service, store
from mloop.monitor.domain import MonitorConfig
from mloop.monitor.report import build_report, render_html
from mloop.runtime.deps import MAX_MODELS_PER_CALL, Ctx, ModelNames, ModelPath, Operator, Pool, SettingReason, Viewer
from mloop.runtime.history import SettingChangeOut
from mloop.runtime.pagination import Page, decode_cursor, encode_cursor
from mloop.runtime.problems import BadRequest, NotFound

__all__ = ["router"]

router = APIRouter(tags=["monitor"])


# --------------------------------------------------------------------------- models


class WindowOut(BaseModel):
    start: datetime
    end: datetime
    size: int


class IncidentOut(BaseModel):
    id: str
    version: str
    signal: str
    topic: str
    opened_window: int = Field(description="Number of the window that opened it (per signal)")
    opened_at: datetime
    resolved_at: datetime | None


class LastWindow(BaseModel):
    window_no: int
    window: WindowOut
    alarm: bool
    severity: str | None


class VersionStatus(BaseModel):
    version: str
    registered: bool
    reference_source: str | None = Field(description="training-profile or first-predictions; null until built")
    reference_rows: int | None
    reference_progress: int = Field(description="Predictions collected towards a first-predictions reference")
    predictions_seen: int
    late_rows: int = Field(0, description="Predictions read after their time pane had closed: counted, not windowed")
    labels_joined: int
    windows_evaluated: int
    traffic_weight: float | None = None
    shadow: bool | None = None
    registered_metrics: dict[str, float] = Field(default_factory=dict)
    profile_error: str | None = None
    last_windows: dict[str, LastWindow] = Field(default_factory=dict)
    open_incidents: list[IncidentOut] = Field(default_factory=list)


class ModelStatus(BaseModel):
    model: str
    configured: bool
    versions: list[VersionStatus]


class FeatureResultOut(BaseModel):
    name: str
    method: str
    statistic: float | None
    p_value: float | None
    threshold: float | None
    effect_size: float | None
    drifted: bool
    detail: dict[str, Any] = Field(default_factory=dict)


class DriftWindowOut(BaseModel):
    id: int
    version: str
    kind: Literal["data", "prediction"]
    window_no: int
    window: WindowOut
    drifted: bool
    severity: str | None
    correction: str | None
    features: list[FeatureResultOut]
    incident_id: str | None = None


class PredictionOut(BaseModel):
    model: str
    request_id: str
    version: str
    timestamp: datetime
    features: dict[str, Any] | None
    prediction: Any
    label: Any = None
    labeled_at: datetime | None = None


class ConfigOut(BaseModel):
    model: str
    configured: bool = Field(description="False when the defaults apply")
    config: MonitorConfig


# --------------------------------------------------------------------------- status


async def _statuses(
    pool: asyncpg.Pool, models: list[str], version: str | None = None
) -> dict[str, list[VersionStatus]]:
    """Each model's version statuses (models the monitor has not seen are absent); four queries for any number."""
    rows = await pool.fetch(
        """SELECT v.model, v.version, v.registered, v.reference_source,
                  (v.reference->>'row_count')::int AS reference_rows, v.metrics, v.profile_error,
                  COALESCE((s.state->>'bootstrap_rows')::int, 0) AS reference_progress,
                  COALESCE((s.state->>'predictions_seen')::bigint, 0) AS predictions_seen,
                  COALESCE((s.state->>'late_rows')::bigint, 0) AS late_rows,
                  COALESCE((s.state->>'labels_joined')::bigint, 0) AS labels_joined,
                  COALESCE((s.state->>'window_no')::int, 0) AS windows_evaluated
           FROM model_versions v LEFT JOIN monitor_state s USING (model, version)
           WHERE v.model = ANY($1::text[]) AND ($2::text IS NULL OR v.version = $2)
           ORDER BY v.model, v.first_seen_at, v.version""",
        models, version,
    )
    splits = await pool.fetch("SELECT model, routes FROM traffic_splits WHERE model = ANY($1::text[])", models)
    route_of = {(s["model"], r["version"]): r for s in splits for r in s["routes"] or []}
    last: dict[tuple[str, str], dict[str, LastWindow]] = {}
    for w in await pool.fetch(
        """SELECT DISTINCT ON (model, version, signal) model, version, signal, window_no, window_start, window_end,
                  size, alarm, severity FROM window_results
           WHERE model = ANY($1::text[]) AND ($2::text IS NULL OR version = $2)
           ORDER BY model, version, signal, id DESC""",
        models, version,
    ):
        last.setdefault((w["model"], w["version"]), {})[w["signal"]] = LastWindow(
            window_no=w["window_no"], alarm=w["alarm"], severity=w["severity"],
            window=WindowOut(start=w["window_start"], end=w["window_end"], size=w["size"]),
        )
    open_incidents: dict[tuple[str, str], list[IncidentOut]] = {}
    for i in await pool.fetch(
        "SELECT model, id, version, signal, topic, opened_window, opened_at, resolved_at FROM incidents "
        "WHERE model = ANY($1::text[]) AND resolved_at IS NULL AND ($2::text IS NULL OR version = $2) "
        "ORDER BY opened_at",
        models, version,
    ):
        fields = dict(i)
        open_incidents.setdefault((fields.pop("model"), i["version"]), []).append(IncidentOut(**fields))
    out: dict[str, list[VersionStatus]] = {}
    for r in rows:
        key = (r["model"], r["version"])
        route = route_of.get(key)
        out.setdefault(r["model"], []).append(VersionStatus(
            version=r["version"], registered=r["registered"], reference_source=r["reference_source"],
            reference_rows=r["reference_rows"], reference_progress=r["reference_progress"],
            predictions_seen=r["predictions_seen"], late_rows=r["late_rows"], labels_joined=r["labels_joined"],
            windows_evaluated=r["windows_evaluated"],
            traffic_weight=route["weight"] if route else None, shadow=route["shadow"] if route else None,
            registered_metrics=dict(r["metrics"]), profile_error=r["profile_error"],
            last_windows=last.get(key, {}), open_incidents=open_incidents.get(key, []),
        ))
    return out


async def _version_statuses(pool: asyncpg.Pool, model: str, version: str | None) -> list[VersionStatus]:
    return (await _statuses(pool, [model], version)).get(model, [])


@router.get(
    "/status",
    summary="Monitoring status of many models at once, by model name, one page at a time",
    description="Every model the monitor has seen, or only those named by `model` (repeatable, at most "
    f"{MAX_MODELS_PER_CALL}; names it has not seen are left out). Ordered by model name; each item is what "
    "`/models/{model}/status` answers.",
)
async def model_statuses(
    pool: Pool,
    _: Viewer,
    model: ModelNames = None,
    page_token: str | None = None,
    page_size: int = Query(50, ge=1, le=MAX_MODELS_PER_CALL),
) -> Page[ModelStatus]:
    cursor = decode_cursor(page_token, model=str)
    names = [
        r["model"]
        for r in await pool.fetch(
            """SELECT DISTINCT model FROM model_versions
               WHERE ($1::text[] IS NULL OR model = ANY($1::text[])) AND ($2::text IS NULL OR model > $2)
               ORDER BY model LIMIT $3""",
            model, cursor["model"] if cursor else None, page_size + 1,
        )
    ]
    more, names = len(names) > page_size, names[:page_size]
    versions = await _statuses(pool, names)
    configured = set(await store.configured_models(pool, names))
    items = [ModelStatus(model=n, configured=n in configured, versions=versions.get(n, [])) for n in names]
    return Page[ModelStatus](items=items, next_page_token=encode_cursor({"model": names[-1]}) if more else None)


@router.get("/models/{model}/status", summary="Monitoring status of every version of a model")
async def model_status(model: ModelPath, pool: Pool, _: Viewer) -> ModelStatus:
    versions = await _version_statuses(pool, model, None)
    if not versions:
        raise NotFound(f"the monitor has not seen model {model!r}", model=model)
    configured = (await store.get_config(pool, model))[1]
    return ModelStatus(model=model, configured=configured, versions=versions)


@router.get("/models/{model}/versions/{version}/status", summary="Monitoring status of one version")
async def version_status(model: ModelPath, version: str, pool: Pool, _: Viewer) -> VersionStatus:
    versions = await _version_statuses(pool, model, version)
    if not versions:
        raise NotFound(f"the monitor has not seen version {version!r} of {model!r}", model=model, version=version)
    return versions[0]


# --------------------------------------------------------------------------- drift history


@router.get("/models/{model}/drift", summary="Drift verdicts per window, newest first, with per-feature statistics")
async def drift_history(
    model: ModelPath,
    pool: Pool,
    _: Viewer,
    version: str | None = None,
    kind: Literal["data", "prediction"] | None = None,
    drifted: bool | None = None,
    page_token: str | None = None,
    page_size: int = Query(50, ge=1, le=500),
) -> Page[DriftWindowOut]:
    cursor = decode_cursor(page_token, id=int)
    before = cursor["id"] if cursor else None
    rows = await pool.fetch(
        """SELECT id, version, signal, window_no, window_start, window_end, size, alarm, severity, evidence
           FROM window_results
           WHERE model = $1 AND signal = ANY($2::text[]) AND ($3::text IS NULL OR version = $3)
             AND ($4::boolean IS NULL OR alarm = $4) AND ($5::bigint IS NULL OR id < $5)
           ORDER BY id DESC LIMIT $6""",
        model, [kind] if kind else ["data", "prediction"], version, drifted, before, page_size + 1,
    )
    items = [
        DriftWindowOut(
            id=r["id"], version=r["version"], kind=r["signal"], window_no=r["window_no"],
            window=WindowOut(start=r["window_start"], end=r["window_end"], size=r["size"]),
            drifted=r["alarm"], severity=r["severity"], correction=r["evidence"].get("correction"),
            features=[FeatureResultOut(**f) for f in r["evidence"].get("features", [])],
            incident_id=r["evidence"].get("incident_id"),
        )
        for r in rows[:page_size]
    ]
    token = encode_cursor({"id": items[-1].id}) if len(rows) > page_size else None
    return Page[DriftWindowOut](items=items, next_page_token=token)


@router.get("/models/{model}/incidents", summary="Drift, performance and quality incidents, newest first")
async def incidents(model: ModelPath, pool: Pool, _: Viewer, open_only: bool = False) -> list[IncidentOut]:
    rows = await pool.fetch(
        "SELECT id, version, signal, topic, opened_window, opened_at, resolved_at FROM incidents WHERE model = $1 "
        "AND (NOT $2 OR resolved_at IS NULL) ORDER BY opened_at DESC LIMIT 500",
        model, open_only,
    )
    return [IncidentOut(**dict(r)) for r in rows]


# --------------------------------------------------------------------------- configuration


@router.get("/models/{model}/config", summary="Windows and thresholds of a model")
async def get_config(model: ModelPath, pool: Pool, _: Viewer) -> ConfigOut:
    config, configured = await store.get_config(pool, model)
    return ConfigOut(model=model, configured=configured, config=config)


@router.put("/models/{model}/config", summary="Set windows and thresholds of a model (operator)")
async def put_config(
    model: ModelPath, pool: Pool, who: Operator, ctx: Ctx, config: Annotated[MonitorConfig, Body()],
    reason: SettingReason = None,
) -> ConfigOut:
    """Every change is kept (``/models/{model}/config/history``) and published as ``monitor-config-changed``."""
    async with pool.acquire() as conn, conn.transaction():
        await service.change_config(conn, model, config, actor=who.actor, reason=reason,
                                          source=ctx.settings.service_name)
    return ConfigOut(model=model, configured=True, config=config)


class ConfigChangeOut(SettingChangeOut):
    value_field: ClassVar[str] = "config"
    config: dict[str, Any] = Field(description="The configuration set")


@router.get("/models/{model}/config/history", summary="Every change of a model's configuration, oldest first")
async def config_history(
    model: ModelPath, pool: Pool, _: Viewer,
    page_token: Annotated[str | None, Query(max_length=512)] = None,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Page[ConfigChangeOut]:
    changes, token = await store.CONFIG_HISTORY.page(pool, model, page_token, page_size)
    return Page[ConfigChangeOut](items=[ConfigChangeOut.of(c) for c in changes], next_page_token=token)


# --------------------------------------------------------------------------- reports


async def _report(pool: asyncpg.Pool, model: str, version: str | None, windows: int) -> dict[str, Any]:
    if version is None:
        version = await pool.fetchval(
            "SELECT version FROM window_results WHERE model = $1 AND signal IN ('data', 'prediction') "
            "ORDER BY id DESC LIMIT 1", model)
    if version is None:
        raise NotFound(f"no drift windows evaluated for {model!r} yet", model=model)
    ref = await pool.fetchrow("SELECT reference, reference_source FROM model_versions WHERE model = $1 "
                              "AND version = $2", model, version)
    if ref is None:
        raise NotFound(f"the monitor has not seen version {version!r} of {model!r}", model=model, version=version)
    rows = await pool.fetch(
        """SELECT signal, window_no, window_start, window_end, size, alarm, severity, evidence FROM window_results
           WHERE model = $1 AND version = $2 AND signal IN ('data', 'prediction') ORDER BY id DESC LIMIT $3""",
        model, version, windows * 2,
    )
    incident_rows = await pool.fetch(
        "SELECT id, signal, topic, opened_at::text, resolved_at::text FROM incidents WHERE model = $1 "
        "AND version = $2 ORDER BY opened_at DESC LIMIT 50", model, version)
    report: dict[str, Any] = build_report(model, version, ref["reference"], ref["reference_source"],
                                          [dict(r) for r in rows], [dict(i) for i in incident_rows])
    return report


@router.get("/models/{model}/drift-report", summary="Drift report of a version as JSON")
async def drift_report(model: ModelPath, pool: Pool, _: Viewer, version: str | None = None,
                       windows: int = Query(30, ge=1, le=500)) -> dict[str, Any]:
    report: dict[str, Any] = await _report(pool, model, version, windows)
    return report


@router.get("/models/{model}/drift-report.html", response_class=HTMLResponse,
            summary="Drift report as a self-contained HTML page with plots")
async def drift_report_html(model: ModelPath, pool: Pool, _: Viewer, version: str | None = None,
                            windows: int = Query(30, ge=1, le=500)) -> HTMLResponse:
    return HTMLResponse(render_html(await _report(pool, model, version, windows)))


# --------------------------------------------------------------------------- prediction store


def _prediction(r: asyncpg.Record) -> PredictionOut:
    return PredictionOut(model=r["model"], request_id=r["request_id"], version=r["version"], timestamp=r["ts"],
                         features=r["features"], prediction=r["prediction"], label=r["label"],
                         labeled_at=r["labeled_at"])


_PREDICTION_COLUMNS = "model, request_id, version, ts, features, prediction, label, labeled_at"


@router.get("/predictions/{request_id}", summary="A stored prediction by request id (one per model)")
async def prediction_by_request(request_id: str, pool: Pool, _: Viewer,
                                model: str | None = None) -> list[PredictionOut]:
    rows = await pool.fetch(
        f"SELECT {_PREDICTION_COLUMNS} FROM predictions WHERE request_id = $1 AND ($2::text IS NULL OR model = $2)",
        request_id, model,
    )
    if not rows:
        raise NotFound(f"no stored prediction with request id {request_id!r}", request_id=request_id)
    return [_prediction(r) for r in rows]


@router.get("/models/{model}/predictions", summary="Stored predictions of a model in a time range, oldest first")
async def predictions_in_range(
    model: ModelPath,
    pool: Pool,
    _: Viewer,
    start: datetime,
    end: datetime,
    version: str | None = None,
    page_token: str | None = None,
    page_size: int = Query(100, ge=1, le=1000),
) -> Page[PredictionOut]:
    if end <= start:
        raise BadRequest("end must be after start", errors=[{"field": "query.end", "message": "end <= start",
                                                             "type": "value_error"}])
    cursor = decode_cursor(page_token, ts=datetime, rid=str)
    after_ts = cursor["ts"] if cursor else None
    after_id = cursor["rid"] if cursor else ""
    rows = await pool.fetch(
        f"""SELECT {_PREDICTION_COLUMNS} FROM predictions
            WHERE model = $1 AND ts >= $2 AND ts < $3 AND ($4::text IS NULL OR version = $4)
              AND ($5::timestamptz IS NULL OR (ts, request_id) > ($5, $6))
            ORDER BY ts, request_id LIMIT $7""",
        model, start, end, version, after_ts, after_id, page_size + 1,
    )
    items = [_prediction(r) for r in rows[:page_size]]
    token = (encode_cursor({"ts": items[-1].timestamp.isoformat(), "rid": items[-1].request_id})
             if len(rows) > page_size else None)
    return Page[PredictionOut](items=items, next_page_token=token)
