"""SQL of the monitor. Every function takes the connection of the caller's
transaction; batched statements (``unnest`` arrays, ``COPY`` for predictions)
keep the prediction path to a handful of round trips per batch, whatever its
size."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import asyncpg
import msgspec

from mloop.contracts.payloads import IncidentResolved, ModelRegistered, Payload
from mloop.monitor.domain import MonitorConfig, WindowResult
from mloop.monitor.ingest import PredictionColumns
from mloop.runtime.history import SettingsHistory

__all__ = [
    "JoinedLabel",
    "StagedPrediction",
    "VersionRow",
]


@dataclass(frozen=True)
class VersionRow:
    model: str
    version: str
    rev: int
    state: dict[str, Any] | None
    reference: dict[str, Any] | None
    reference_source: str | None
    feature_schema: list[dict[str, Any]]
    metrics: dict[str, float]


@dataclass(frozen=True)
class JoinedLabel:
    model: str
    request_id: str
    version: str
    prediction: Any
    predicted_at: datetime
    label: Any
    labelled_at: datetime


# --------------------------------------------------------------------------- versions and state


async def register_version(
    conn: asyncpg.Connection,
    reg: ModelRegistered,
    reference: dict[str, Any] | None,
    profile_error: str | None,
) -> bool:
    """Record a registration; False if an equal or newer ``seq`` was applied already."""
    current = await conn.fetchval(
        "SELECT seq FROM model_versions WHERE model = $1 AND version = $2 FOR UPDATE", reg.model, reg.version
    )
    if current is not None and current >= reg.seq:
        return False
    schema = [f.model_dump() for f in reg.lineage.features.schema_]
    await conn.execute(
        """INSERT INTO model_versions (model, version, registered, seq, metrics, feature_schema, reference,
                                       reference_source, profile_error, registered_at)
           VALUES ($1, $2, true, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (model, version) DO UPDATE SET
               registered = true, seq = EXCLUDED.seq, metrics = EXCLUDED.metrics,
               feature_schema = EXCLUDED.feature_schema,
               reference = COALESCE(EXCLUDED.reference, model_versions.reference),
               reference_source = COALESCE(EXCLUDED.reference_source, model_versions.reference_source),
               profile_error = EXCLUDED.profile_error, registered_at = EXCLUDED.registered_at""",
        reg.model, reg.version, reg.seq, dict(reg.metrics), schema, reference,
        "training-profile" if reference is not None else None, profile_error, reg.created_at,
    )
    await conn.execute(
        """INSERT INTO monitor_state (model, version, rev, state) VALUES ($1, $2, 1, NULL)
           ON CONFLICT (model, version) DO UPDATE SET rev = monitor_state.rev + 1, updated_at = now()""",
        reg.model, reg.version,
    )
    return True


async def add_unregistered_version(conn: asyncpg.Connection, model: str, version: str) -> None:
    """A version first seen in traffic (its reference will be its first predictions)."""
    await conn.execute(
        "INSERT INTO model_versions (model, version) VALUES ($1, $2) ON CONFLICT DO NOTHING", model, version
    )
    await conn.execute(
        "INSERT INTO monitor_state (model, version, rev) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING",
        model, version,
    )


async def lock_states(conn: asyncpg.Connection, models: Sequence[str]) -> dict[tuple[str, str], int]:
    """Lock the state rows of every version of ``models``; (model, version) → rev."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT model, version, rev FROM monitor_state WHERE model = ANY($1::text[]) "
        "ORDER BY model, version FOR UPDATE",
        list(models),
    )
    return {(str(r["model"]), str(r["version"])): int(r["rev"]) for r in rows}


async def load_version(conn: asyncpg.Connection, model: str, version: str) -> VersionRow:
    r = await conn.fetchrow(
        """SELECT s.rev, s.state, v.reference, v.reference_source, v.feature_schema, v.metrics
           FROM monitor_state s JOIN model_versions v USING (model, version)
           WHERE s.model = $1 AND s.version = $2""",
        model, version,
    )
    assert r is not None, f"no state row for {model}/{version}"
    return VersionRow(model, version, r["rev"], r["state"], r["reference"], r["reference_source"],
                      list(r["feature_schema"]), dict(r["metrics"]))


async def save_states(conn: asyncpg.Connection, rows: Sequence[tuple[str, str, int, dict[str, Any]]]) -> None:
    """Write window states: (model, version, new rev, state)."""
    await conn.executemany(
        "UPDATE monitor_state SET rev = $3, state = $4, updated_at = now() WHERE model = $1 AND version = $2",
        rows,
    )


async def save_reference(
    conn: asyncpg.Connection, model: str, version: str, reference: dict[str, Any], source: str
) -> None:
    await conn.execute(
        "UPDATE model_versions SET reference = $3, reference_source = $4 WHERE model = $1 AND version = $2",
        model, version, reference, source,
    )


async def applied_offsets(conn: asyncpg.Connection, topic: str, partitions: Sequence[int]) -> dict[int, int]:
    """Lock and return the next unapplied offset of each partition of ``topic``."""
    rows = await conn.fetch(
        "SELECT partition, next_offset FROM applied_offsets WHERE topic = $1 AND partition = ANY($2::int[]) "
        "ORDER BY partition FOR UPDATE",
        topic, list(partitions),
    )
    return {int(r["partition"]): int(r["next_offset"]) for r in rows}


async def advance_applied_offsets(conn: asyncpg.Connection, topic: str, next_offsets: dict[int, int]) -> None:
    await conn.executemany(
        """INSERT INTO applied_offsets (topic, partition, next_offset) VALUES ($1, $2, $3)
           ON CONFLICT (topic, partition) DO UPDATE
           SET next_offset = GREATEST(applied_offsets.next_offset, EXCLUDED.next_offset)""",
        [(topic, p, o) for p, o in next_offsets.items()],
    )


# --------------------------------------------------------------------------- configuration and routes


async def load_configs(conn: asyncpg.Connection, models: Sequence[str]) -> dict[str, MonitorConfig]:
    rows = await conn.fetch("SELECT model, config FROM model_config WHERE model = ANY($1::text[])", list(models))
    return {r["model"]: MonitorConfig.model_validate(r["config"]) for r in rows}


async def get_config(conn: asyncpg.Connection | asyncpg.Pool, model: str) -> tuple[MonitorConfig, bool]:
    """The model's configuration, and whether it was set (False: defaults)."""
    raw = await conn.fetchval("SELECT config FROM model_config WHERE model = $1", model)
    return (MonitorConfig.model_validate(raw), True) if raw is not None else (MonitorConfig(), False)


async def configured_models(conn: asyncpg.Connection | asyncpg.Pool, models: list[str]) -> list[str]:
    """Those of ``models`` whose configuration was set (the others run on the defaults)."""
    rows = await conn.fetch("SELECT model FROM model_config WHERE model = ANY($1::text[])", models)
    return [r["model"] for r in rows]


async def put_config(conn: asyncpg.Connection, model: str, config: MonitorConfig, actor: str) -> None:
    """Store a model's configuration; its versions' in-memory windows are then reloaded."""
    await conn.execute(
        """INSERT INTO model_config (model, config, updated_by) VALUES ($1, $2, $3)
           ON CONFLICT (model) DO UPDATE SET config = EXCLUDED.config, updated_by = EXCLUDED.updated_by,
               updated_at = now()""",
        model, config.model_dump(mode="json"), actor,
    )
    await conn.execute("UPDATE monitor_state SET rev = rev + 1 WHERE model = $1", model)


async def lock_config(conn: asyncpg.Connection, model: str) -> None:
    """Serialise configuration changes of ``model`` until the transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"monitor-config:{model}")


async def raw_config(conn: asyncpg.Connection, model: str) -> dict[str, Any] | None:
    """The stored configuration document of ``model``, None when it has none."""
    doc: dict[str, Any] | None = await conn.fetchval("SELECT config FROM model_config WHERE model = $1", model)
    return doc


#: Every change of a model's configuration (``service.change_config``).
CONFIG_HISTORY = SettingsHistory("config_history", value_column="config")


async def save_traffic_split(conn: asyncpg.Connection, model: str, seq: int, rollout_id: str | None,
                             routes: list[dict[str, Any]]) -> bool:
    """Keep the newest routing table; False when ``seq`` is not newer."""
    result: str = await conn.execute(
        """INSERT INTO traffic_splits (model, seq, rollout_id, routes) VALUES ($1, $2, $3, $4)
           ON CONFLICT (model) DO UPDATE SET seq = EXCLUDED.seq, rollout_id = EXCLUDED.rollout_id,
               routes = EXCLUDED.routes, updated_at = now()
           WHERE traffic_splits.seq < EXCLUDED.seq""",
        model, seq, rollout_id, routes,
    )
    return result.endswith(" 1")


# --------------------------------------------------------------------------- verdicts


async def insert_results(conn: asyncpg.Connection, model: str, version: str,
                         results: Sequence[WindowResult]) -> None:
    if not results:
        return
    await conn.executemany(
        """INSERT INTO window_results (model, version, signal, window_no, window_start, window_end, size,
                                       alarm, severity, evidence)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING""",
        [(model, version, r.signal, r.window_no, r.window.start, r.window.end, r.window.size, r.alarm,
          r.severity, r.evidence) for r in results],
    )


async def record_incident_events(conn: asyncpg.Connection, events: Sequence[tuple[str, Payload, int]]) -> None:
    """Open or resolve incident rows for the signals about to be published: (topic, payload, window number)."""
    for topic, payload, window_no in events:
        if isinstance(payload, IncidentResolved):
            await conn.execute("UPDATE incidents SET resolved_at = $2 WHERE id = $1",
                               payload.incident_id, payload.resolved_at)
            continue
        iid = getattr(payload, "incident_id", None)
        if iid is None:
            continue
        data = payload.model_dump(mode="json")
        signal = data.get("kind", {"performance-degraded": "performance",
                                   "data-quality-violated": "quality"}.get(topic, topic))
        await conn.execute(
            """INSERT INTO incidents (id, model, version, signal, topic, opened_window, opened_at, evidence)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING""",
            iid, data["model"], data["version"], signal, topic, window_no,
            cast(Any, payload).window.end, data,
        )


# --------------------------------------------------------------------------- prediction store


StagedPrediction = tuple[str, str, str, datetime, str | None, str | None]
"""(model, request_id, version, ts, features as JSON text, prediction as JSON text): one row to copy."""

_STAGE = "prediction_stage"
_STAGE_DDL = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (model text, request_id text, version text, ts timestamptz, "
    "features text, prediction text) ON COMMIT DELETE ROWS"
)
_STAGE_COLUMNS = ("model", "request_id", "version", "ts", "features", "prediction")
# Labels that waited for these predictions are taken in the same statement that
# stores them (one set-based join), and returned for the performance windows.
# Only the rows actually stored are returned: a request's shadow copies in the
# same batch lose the conflict, so a label is joined once, to the prediction
# kept, exactly as a label that arrives after its prediction is.
_FROM_STAGE = f"""
WITH taken AS (
    DELETE FROM pending_labels p USING {_STAGE} s
    WHERE p.model = s.model AND p.request_id = s.request_id
    RETURNING p.model, p.request_id, p.label, p.ts),
stored AS (
    INSERT INTO predictions (model, request_id, version, ts, features, prediction, label, labeled_at)
    SELECT s.model, s.request_id, s.version, s.ts, s.features::json, s.prediction::json, t.label::json, t.ts
    FROM {_STAGE} s LEFT JOIN taken t ON t.model = s.model AND t.request_id = s.request_id
    ON CONFLICT (model, request_id) DO NOTHING
    RETURNING model, request_id, version, prediction, ts, label, labeled_at)
SELECT model, request_id, version, prediction, ts, label, labeled_at AS labelled_at
FROM stored WHERE labeled_at IS NOT NULL
"""

# Without a label waiting for any of the batch's models (the common case: labels come after their
# predictions), the join above is work for nothing: the rows are stored on their own.
_INTO_STORE = f"""
INSERT INTO predictions (model, request_id, version, ts, features, prediction)
SELECT model, request_id, version, ts, features::json, prediction::json FROM {_STAGE}
ON CONFLICT (model, request_id) DO NOTHING
"""

_encode = msgspec.json.Encoder().encode


def staged_predictions(model: str, version: str, cols: PredictionColumns, keep: Sequence[int] | range,
                       *, with_features: bool) -> list[StagedPrediction]:
    """Rows to copy for the records at ``keep``; features left out unless ``with_features``.

    Values are encoded to JSON text once here; the database casts them to
    ``json`` in one set-based statement. Non-finite numbers become null.
    """
    enc = _encode
    ids, times, feats, preds = cols.request_ids, cols.times, cols.features, cols.predictions
    out: list[StagedPrediction] = []
    append = out.append
    for i in keep:
        p = preds[i]
        append((model, ids[i], version, times[i], enc(feats[i]).decode() if with_features else None,
                None if p is None else (repr(p) if type(p) is float and math.isfinite(p) else enc(p).decode())))
    return out


async def copy_predictions(conn: asyncpg.Connection, rows: Sequence[StagedPrediction]) -> list[JoinedLabel]:
    """Store predictions with ``COPY`` (a request id seen before is kept as first stored).

    Labels that arrived before their prediction are attached and removed from
    the pending ones in the same statement; the pairs joined are returned.
    Runs in the caller's transaction (the staging table empties at commit),
    which holds the models' state locks: a label of these models cannot be
    added to the pending ones while it runs.
    """
    if not rows:
        return []
    await conn.execute(_STAGE_DDL)
    await conn.copy_records_to_table(_STAGE, records=rows, columns=_STAGE_COLUMNS)
    models = sorted({r[0] for r in rows})
    if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pending_labels WHERE model = ANY($1::text[]))", models):
        await conn.execute(_INTO_STORE)
        return []
    found = await conn.fetch(_FROM_STAGE)
    return [JoinedLabel(r["model"], r["request_id"], r["version"], r["prediction"], r["ts"], r["label"],
                        r["labelled_at"]) for r in found]


async def join_labels(
    conn: asyncpg.Connection,
    model: str,
    labels: Sequence[tuple[str, Any, datetime]],
    horizon_s: float,
) -> tuple[list[JoinedLabel], list[tuple[str, Any, datetime]], int]:
    """Attach labels to stored predictions.

    Returns the joined pairs, the labels with no prediction yet (to keep
    pending), and how many were refused: too late or already labelled.
    """
    if not labels:
        return [], [], 0
    ids = [r for r, _, _ in labels]
    rows = await conn.fetch(
        """WITH u AS (SELECT * FROM unnest($2::text[], $3::jsonb[], $4::timestamptz[]) AS u(request_id, label, ts))
           UPDATE predictions p SET label = u.label::json, labeled_at = u.ts
           FROM u
           WHERE p.model = $1 AND p.request_id = u.request_id AND p.label IS NULL
             AND u.ts <= p.ts + make_interval(secs => $5)
           RETURNING p.request_id, p.version, p.prediction, p.ts, u.label, u.ts AS labelled_at""",
        model, ids, [lab for _, lab, _ in labels], [ts for _, _, ts in labels], horizon_s,
    )
    joined = [JoinedLabel(model, r["request_id"], r["version"], r["prediction"], r["ts"], r["label"],
                          r["labelled_at"]) for r in rows]
    done = {j.request_id for j in joined}
    rest = [x for x in labels if x[0] not in done]
    if not rest:
        return joined, [], 0
    existing = {
        r["request_id"]
        for r in await conn.fetch(
            "SELECT request_id FROM predictions WHERE model = $1 AND request_id = ANY($2::text[])",
            model, [x[0] for x in rest],
        )
    }
    pending = [x for x in rest if x[0] not in existing]
    return joined, pending, len(rest) - len(pending)


async def add_pending_labels(conn: asyncpg.Connection, model: str,
                             labels: Sequence[tuple[str, Any, datetime]]) -> None:
    if not labels:
        return
    await conn.execute(
        """INSERT INTO pending_labels (model, request_id, label, ts)
           SELECT $1, * FROM unnest($2::text[], $3::jsonb[], $4::timestamptz[])
           ON CONFLICT DO NOTHING""",
        model, [r for r, _, _ in labels], [lab for _, lab, _ in labels], [ts for _, _, ts in labels],
    )


async def prune(pool: asyncpg.Pool, retention_s: float, horizon_s: float) -> tuple[int, int]:
    """Delete predictions past retention and pending labels past the horizon."""
    now = datetime.now(UTC)
    async with pool.acquire() as conn:
        a = await conn.execute(
            "DELETE FROM predictions WHERE ts < $1::timestamptz - make_interval(secs => $2::float8)",
            now, retention_s)
        b = await conn.execute(
            "DELETE FROM pending_labels WHERE received_at < $1::timestamptz - make_interval(secs => $2::float8)",
            now, horizon_s)
    return int(a.split()[-1]), int(b.split()[-1])
