"""SQL for the rollout service's schema.

Every function takes the caller's connection: transactions are opened by the
service layer, never here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from mloop.contracts.payloads import Route
from mloop.rollout.domain.evidence import Evidence, VersionStats
from mloop.rollout.domain.machine import Rollout
from mloop.rollout.domain.plan import RolloutPlan
from mloop.runtime.history import SettingsHistory

__all__ = [
    "PLAN_HISTORY",
    "OPEN_PHASES",
    "OpenRollout",
    "Promotion",
    "StoredPlan",
    "TrafficRow",
    "get_promotion",
    "link_promotion",
    "promotion_used",
    "record_promotion",
    "add_evidence",
    "add_history",
    "drop_awaiting_labels",
    "drop_old_evidence",
    "ANALYSIS_CHANNEL",
    "analyse_now",
    "analysis_channel",
    "due_rollouts",
    "next_analysis_due",
    "rollouts_by_id",
    "wake_analysis",
    "forget_unlabelled",
    "get_plan",
    "get_rollout",
    "history",
    "list_rollouts",
    "load_evidence",
    "model_known",
    "open_rollout",
    "open_rollouts_for",
    "put_plan",
    "remember_predictions",
    "save_rollout",
    "take_predictions",
    "traffic_split",
    "write_traffic_split",
]

OPEN_PHASES = ["initialized", "shadowing", "progressing", "paused", "promoting"]
#: Phases in which live traffic is evidence (paused rollouts keep collecting).
_COLLECTING = ["shadowing", "progressing", "paused", "promoting"]


# --------------------------------------------------------------------------- rollouts


def _rollout(row: asyncpg.Record) -> Rollout:
    return Rollout.model_validate(row["state"])


async def get_rollout(conn: asyncpg.Connection, rollout_id: str, *, for_update: bool = False) -> Rollout | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(f"SELECT state FROM rollouts WHERE id = $1{lock}", rollout_id)
    return _rollout(row) if row else None


async def open_rollout(conn: asyncpg.Connection, model: str, *, for_update: bool = False) -> Rollout | None:
    """The model's unfinished rollout, if there is one."""
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(
        f"SELECT state FROM rollouts WHERE model = $1 AND phase = ANY($2::text[]){lock}", model, OPEN_PHASES
    )
    return _rollout(row) if row else None


async def save_rollout(conn: asyncpg.Connection, r: Rollout, *, next_analysis_at: datetime | None) -> None:
    await conn.execute(
        """INSERT INTO rollouts (id, model, candidate, baseline, phase, attempt, state, next_analysis_at, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (id) DO UPDATE SET phase = EXCLUDED.phase, attempt = EXCLUDED.attempt,
               state = EXCLUDED.state, next_analysis_at = EXCLUDED.next_analysis_at, updated_at = now()""",
        r.id,
        r.model,
        r.candidate,
        r.baseline,
        r.phase,
        r.attempt,
        r.model_dump(mode="json"),
        next_analysis_at,
        r.created_at,
    )


async def list_rollouts(
    conn: asyncpg.Connection,
    *,
    model: str | Sequence[str] | None,
    phase: str | None,
    before: tuple[datetime, str] | None,
    limit: int,
    latest_per_model: bool = False,
) -> list[Rollout]:
    """Newest first, keyset-paginated on ``(created_at, id)``; ``model`` one name or several.

    With ``latest_per_model`` only each model's newest rollout (among those of ``phase``).
    """
    models = [model] if isinstance(model, str) else list(model) if model is not None else None
    source = "rollouts"
    if latest_per_model:
        source = ("(SELECT DISTINCT ON (model) * FROM rollouts WHERE ($1::text[] IS NULL OR model = ANY($1::text[])) "
                  "AND ($2::text IS NULL OR phase = $2) ORDER BY model, created_at DESC, id DESC) AS latest")
    rows = await conn.fetch(
        f"""SELECT state FROM {source}
           WHERE ($1::text[] IS NULL OR model = ANY($1::text[])) AND ($2::text IS NULL OR phase = $2)
             AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
           ORDER BY created_at DESC, id DESC LIMIT $5""",
        models,
        phase,
        before[0] if before else None,
        before[1] if before else "",
        limit,
    )
    return [_rollout(r) for r in rows]


ANALYSIS_CHANNEL = "rollout_analysis_due"


def analysis_channel(schema: str) -> str:
    """The NOTIFY channel that wakes this schema's analysis loop."""
    return f"{schema}_{ANALYSIS_CHANNEL}"


async def wake_analysis(conn: asyncpg.Connection) -> None:
    """Wake the analysis loop when the caller's transaction commits (NOTIFY is transactional)."""
    await conn.execute("SELECT pg_notify(current_schema() || '_' || $1, '')", ANALYSIS_CHANNEL)


async def next_analysis_due(conn: asyncpg.Connection) -> datetime | None:
    due: datetime | None = await conn.fetchval(
        "SELECT min(next_analysis_at) FROM rollouts WHERE phase IN ('shadowing', 'progressing', 'promoting')"
    )
    return due


async def rollouts_by_id(conn: asyncpg.Connection, ids: list[str]) -> list[Rollout]:
    rows = await conn.fetch("SELECT state FROM rollouts WHERE id = ANY($1::text[])", ids)
    return [Rollout.model_validate(r["state"]) for r in rows]


async def analyse_now(conn: asyncpg.Connection, ids: list[str], now: datetime) -> bool:
    """Bring the next analysis of ``ids`` forward to ``now``; whether any moved."""
    status: str = await conn.execute(
        "UPDATE rollouts SET next_analysis_at = $2 WHERE id = ANY($1::text[]) AND next_analysis_at > $2",
        ids,
        now,
    )
    return not status.endswith(" 0")


async def due_rollouts(conn: asyncpg.Connection, now: datetime, limit: int = 100) -> list[str]:
    rows = await conn.fetch(
        """SELECT id FROM rollouts
           WHERE phase IN ('shadowing', 'progressing', 'promoting') AND next_analysis_at <= $1
           ORDER BY next_analysis_at LIMIT $2""",
        now,
        limit,
    )
    return [r["id"] for r in rows]


async def add_history(
    conn: asyncpg.Connection, rollout_id: str, at: datetime, kind: str, actor: str | None, data: Mapping[str, Any]
) -> None:
    await conn.execute(
        "INSERT INTO rollout_history (rollout_id, at, kind, actor, data) VALUES ($1, $2, $3, $4, $5)",
        rollout_id,
        at,
        kind,
        actor,
        dict(data),
    )


async def history(
    conn: asyncpg.Connection, rollout_id: str, *, kinds: Sequence[str] | None = None, limit: int = 500
) -> list[dict[str, Any]]:
    """The rollout's history, oldest first (the last ``limit`` entries)."""
    rows = await conn.fetch(
        """SELECT id, at, kind, actor, data FROM (
               SELECT * FROM rollout_history WHERE rollout_id = $1 AND ($2::text[] IS NULL OR kind = ANY($2))
               ORDER BY id DESC LIMIT $3) h ORDER BY id""",
        rollout_id,
        list(kinds) if kinds is not None else None,
        limit,
    )
    return [dict(r) for r in rows]


# --------------------------------------------------------------------------- traffic


@dataclass(frozen=True)
class TrafficRow:
    model: str
    seq: int
    rollout_id: str | None
    routes: list[Route]
    updated_at: datetime


async def write_traffic_split(
    conn: asyncpg.Connection, model: str, rollout_id: str | None, routes: Sequence[Route]
) -> int:
    """Store the model's new routing table and return its ``seq`` (one more than the last)."""
    seq: int = await conn.fetchval(
        """INSERT INTO traffic_splits (model, seq, rollout_id, routes) VALUES ($1, 1, $2, $3)
           ON CONFLICT (model) DO UPDATE SET seq = traffic_splits.seq + 1, rollout_id = EXCLUDED.rollout_id,
               routes = EXCLUDED.routes, updated_at = now()
           RETURNING seq""",
        model,
        rollout_id,
        [r.model_dump(mode="json") for r in routes],
    )
    return seq


async def traffic_split(conn: asyncpg.Connection, model: str) -> TrafficRow | None:
    row = await conn.fetchrow(
        "SELECT model, seq, rollout_id, routes, updated_at FROM traffic_splits WHERE model = $1", model
    )
    if row is None:
        return None
    return TrafficRow(
        model=row["model"],
        seq=row["seq"],
        rollout_id=row["rollout_id"],
        routes=[Route.model_validate(r) for r in row["routes"]],
        updated_at=row["updated_at"],
    )


# --------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class StoredPlan:
    plan: RolloutPlan
    updated_by: str
    updated_at: datetime


async def get_plan(conn: asyncpg.Connection, model: str) -> StoredPlan | None:
    row = await conn.fetchrow("SELECT plan, updated_by, updated_at FROM plans WHERE model = $1", model)
    if row is None:
        return None
    return StoredPlan(RolloutPlan.model_validate(row["plan"]), row["updated_by"], row["updated_at"])


async def put_plan(conn: asyncpg.Connection, model: str, plan: RolloutPlan, actor: str) -> StoredPlan:
    """Store the model's plan; the service layer keeps its history and publishes the change."""
    row = await conn.fetchrow(
        """INSERT INTO plans (model, plan, updated_by) VALUES ($1, $2, $3)
           ON CONFLICT (model) DO UPDATE SET plan = EXCLUDED.plan, updated_by = EXCLUDED.updated_by,
               updated_at = now()
           RETURNING updated_at""",
        model,
        plan.model_dump(mode="json"),
        actor,
    )
    assert row is not None
    return StoredPlan(plan, actor, row["updated_at"])


#: Every change of a model's plan (``Rollouts.put_plan``).
PLAN_HISTORY = SettingsHistory("plan_history", value_column="plan")


# --------------------------------------------------------------------------- promotions


@dataclass(frozen=True)
class Promotion:
    promotion_request_id: str
    model: str
    version: str
    previous_champion: str | None
    requested_by: str
    approved_by: list[str]


async def record_promotion(conn: asyncpg.Connection, p: Promotion, event_id: str) -> Promotion:
    """Remember a consumed ``model-promoted``; returns what is stored under its id (the first one seen)."""
    await conn.execute(
        """INSERT INTO promotions (promotion_request_id, model, version, previous_champion, requested_by,
                                   approved_by, event_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (promotion_request_id) DO NOTHING""",
        p.promotion_request_id, p.model, p.version, p.previous_champion, p.requested_by, list(p.approved_by),
        event_id,
    )
    stored = await get_promotion(conn, p.promotion_request_id)
    assert stored is not None
    return stored


async def get_promotion(conn: asyncpg.Connection, promotion_id: str) -> Promotion | None:
    row = await conn.fetchrow(
        """SELECT promotion_request_id, model, version, previous_champion, requested_by, approved_by
             FROM promotions WHERE promotion_request_id = $1 FOR UPDATE""",
        promotion_id,
    )
    if row is None:
        return None
    return Promotion(**{**dict(row), "approved_by": list(row["approved_by"])})


async def link_promotion(conn: asyncpg.Connection, rollout_id: str, promotion_id: str) -> None:
    await conn.execute("UPDATE rollouts SET promotion_id = $2 WHERE id = $1", rollout_id, promotion_id)


async def promotion_used(conn: asyncpg.Connection, promotion_id: str) -> tuple[str, str] | None:
    """A rollout of the promotion that is running or completed (id, phase), or None."""
    row = await conn.fetchrow(
        """SELECT id, phase FROM rollouts WHERE promotion_id = $1 AND phase = ANY($2::text[])
            ORDER BY created_at DESC LIMIT 1""",
        promotion_id, [*OPEN_PHASES, "completed"],
    )
    return (row["id"], row["phase"]) if row else None


async def model_known(conn: asyncpg.Connection, model: str) -> bool:
    """Whether the service has a plan, a promotion, a rollout or a traffic split for ``model``."""
    known: bool = await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM plans WHERE model = $1)
               OR EXISTS (SELECT 1 FROM promotions WHERE model = $1)
               OR EXISTS (SELECT 1 FROM rollouts WHERE model = $1)
               OR EXISTS (SELECT 1 FROM traffic_splits WHERE model = $1)""",
        model,
    )
    return known


# --------------------------------------------------------------------------- evidence


@dataclass(frozen=True)
class OpenRollout:
    """What the evidence consumer needs to know about a collecting rollout."""

    id: str
    model: str
    attempt: int
    candidate: str
    baseline: str | None
    created_at: datetime
    wants_labels: bool

    def role_of(self, version: str) -> str | None:
        if version == self.candidate:
            return "candidate"
        if self.baseline is not None and version == self.baseline:
            return "baseline"
        return None


async def open_rollouts_for(conn: asyncpg.Connection, models: Iterable[str]) -> dict[str, OpenRollout]:
    rows = await conn.fetch(
        """SELECT id, model, attempt, candidate, baseline, created_at,
                  EXISTS (SELECT 1 FROM jsonb_array_elements(state -> 'plan' -> 'gates') g
                          WHERE g ->> 'metric' = 'accuracy') AS wants_labels
           FROM rollouts WHERE model = ANY($1::text[]) AND phase = ANY($2::text[])""",
        sorted(set(models)),
        _COLLECTING,
    )
    return {
        r["model"]: OpenRollout(
            r["id"], r["model"], r["attempt"], r["candidate"], r["baseline"], r["created_at"], r["wants_labels"]
        )
        for r in rows
    }


async def add_evidence(
    conn: asyncpg.Connection, deltas: Mapping[tuple[str, int, str], VersionStats]
) -> dict[tuple[str, int, str], VersionStats]:
    """Merge ``deltas`` into the stored evidence, keyed ``(rollout_id, attempt, role)``;
    the merged (cumulative) evidence of every key."""
    merged_all: dict[tuple[str, int, str], VersionStats] = {}
    for key in sorted(deltas):  # one lock order for every writer
        rollout_id, attempt, role = key
        await conn.execute(
            "INSERT INTO evidence (rollout_id, attempt, role, stats) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            rollout_id,
            attempt,
            role,
            VersionStats().model_dump(mode="json"),
        )
        stored = await conn.fetchval(
            "SELECT stats FROM evidence WHERE rollout_id = $1 AND attempt = $2 AND role = $3 FOR UPDATE",
            rollout_id,
            attempt,
            role,
        )
        merged = VersionStats.model_validate(stored).merge(deltas[key])
        await conn.execute(
            "UPDATE evidence SET stats = $4, updated_at = now() WHERE rollout_id = $1 AND attempt = $2 AND role = $3",
            rollout_id,
            attempt,
            role,
            merged.model_dump(mode="json"),
        )
        merged_all[key] = merged
    return merged_all


async def load_evidence(conn: asyncpg.Connection, rollout_id: str, attempt: int) -> Evidence:
    rows = await conn.fetch(
        "SELECT role, stats FROM evidence WHERE rollout_id = $1 AND attempt = $2", rollout_id, attempt
    )
    sides = {r["role"]: VersionStats.model_validate(r["stats"]) for r in rows}
    return Evidence(baseline=sides.get("baseline", VersionStats()), candidate=sides.get("candidate", VersionStats()))


async def drop_old_evidence(conn: asyncpg.Connection, rollout_id: str, attempt: int) -> None:
    """Forget the evidence of earlier attempts (a retry starts afresh)."""
    await conn.execute("DELETE FROM evidence WHERE rollout_id = $1 AND attempt < $2", rollout_id, attempt)
    await conn.execute("DELETE FROM awaiting_labels WHERE rollout_id = $1 AND attempt < $2", rollout_id, attempt)


async def drop_awaiting_labels(conn: asyncpg.Connection, rollout_id: str) -> None:
    await conn.execute("DELETE FROM awaiting_labels WHERE rollout_id = $1", rollout_id)


async def remember_predictions(conn: asyncpg.Connection, rows: Sequence[tuple[str, int, str, str, Any]]) -> None:
    """Keep ``(rollout_id, attempt, request_id, role, prediction)`` until the label arrives."""
    if rows:
        await conn.executemany(
            "INSERT INTO awaiting_labels (rollout_id, attempt, request_id, role, prediction) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            [(a, b, c, d, {"p": e}) for a, b, c, d, e in rows],
        )


async def forget_unlabelled(conn: asyncpg.Connection, older_than: datetime) -> int:
    """Drop predictions that waited too long for a label; returns how many."""
    status: str = await conn.execute("DELETE FROM awaiting_labels WHERE logged_at < $1", older_than)
    return int(status.split()[-1])


async def take_predictions(
    conn: asyncpg.Connection, rollout_id: str, attempt: int, request_ids: Sequence[str]
) -> list[tuple[str, str, Any]]:
    """Remove and return ``(request_id, role, prediction)`` for the labelled requests."""
    rows = await conn.fetch(
        "DELETE FROM awaiting_labels WHERE rollout_id = $1 AND attempt = $2 AND request_id = ANY($3::text[]) "
        "RETURNING request_id, role, prediction",
        rollout_id,
        attempt,
        list(request_ids),
    )
    return [(r["request_id"], r["role"], r["prediction"].get("p")) for r in rows]
