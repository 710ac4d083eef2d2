"""SQL of the registry: every read and write of its tables, nothing else.

Functions take a connection so the caller decides the transaction; the
service layer (``service.py``) puts a state change and its outbox events in
one. Rows come back as ``asyncpg.Record``; jsonb columns are plain dicts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from asyncpg import Record

from mloop.runtime.history import SettingsHistory

__all__ = [
    "POLICY_HISTORY",
    "lock_policy",
    "MODEL_ORDER",
    "VERSION_ORDER",
    "VersionFilter",
    "add_alias_history",
    "add_review",
    "alias_history",
    "delete_alias",
    "delete_model",
    "delete_policy",
    "delete_version",
    "get_alias",
    "get_model",
    "get_policy",
    "get_request",
    "get_version",
    "insert_model",
    "insert_request",
    "insert_version",
    "latest_versions",
    "list_requests",
    "mark_served",
    "model_aliases",
    "next_alias_seq",
    "next_seq",
    "next_version_number",
    "pending_request",
    "put_policy",
    "rename_model",
    "record_rollout",
    "requests_for_version",
    "reviews_for",
    "rollout_seen_seq",
    "rollouts_for_version",
    "search_models",
    "search_versions",
    "set_alias",
    "set_request_status",
    "set_validation",
    "set_version_status",
    "update_model",
    "update_version",
    "version_aliases",
]




def _merge_patch(current: Mapping[str, Any], patch: Mapping[str, str | None]) -> dict[str, Any]:
    """JSON merge patch of a tags map: a null value removes the key."""
    out = dict(current)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


# --------------------------------------------------------------------------- models


async def insert_model(
    conn: asyncpg.Connection, name: str, description: str | None, tags: Mapping[str, str], created_by: str
) -> Record | None:
    """The new model's row, or None when the name is taken."""
    row: Record | None = await conn.fetchrow(
        "INSERT INTO models (name, description, tags, created_by) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (name) DO NOTHING RETURNING *",
        name, description, dict(tags), created_by,
    )
    return row


async def get_model(conn: asyncpg.Connection, name: str, *, for_update: bool = False) -> Record | None:
    row: Record | None = await conn.fetchrow(
        "SELECT * FROM models WHERE name = $1" + (" FOR UPDATE" if for_update else ""), name
    )
    return row


async def update_model(
    conn: asyncpg.Connection, name: str, *, description: str | None, set_description: bool,
    tags: Mapping[str, str | None] | None,
) -> Record | None:
    current = await get_model(conn, name, for_update=True)
    if current is None:
        return None
    new_tags = _merge_patch(current["tags"], tags) if tags is not None else current["tags"]
    row: Record | None = await conn.fetchrow(
        "UPDATE models SET description = CASE WHEN $2 THEN $3 ELSE description END, tags = $4, "
        "updated_at = clock_timestamp() WHERE name = $1 RETURNING *",
        name, set_description, description, new_tags,
    )
    return row


async def rename_model(conn: asyncpg.Connection, name: str, new_name: str) -> Record | None:
    """The renamed row, or None when ``new_name`` is taken. Only for a model nothing refers to yet."""
    try:
        async with conn.transaction():
            row: Record | None = await conn.fetchrow(
                "UPDATE models SET name = $2, updated_at = clock_timestamp() WHERE name = $1 RETURNING *",
                name, new_name,
            )
    except asyncpg.UniqueViolationError:
        return None
    return row


async def delete_model(conn: asyncpg.Connection, name: str) -> None:
    """Delete a model, its versions and its current policy override (the caller checked they may go)."""
    await conn.execute("DELETE FROM versions WHERE model = $1", name)
    await conn.execute("DELETE FROM policies WHERE scope = $1", f"model:{name}")
    await conn.execute("DELETE FROM models WHERE name = $1", name)


async def next_version_number(conn: asyncpg.Connection, model: str) -> int | None:
    """Take the model's next version number, locking its row until the transaction ends.

    None when the model does not exist. A rolled-back transaction gives the
    number back, so numbers have no gaps.
    """
    n: int | None = await conn.fetchval(
        "UPDATE models SET last_version = last_version + 1, updated_at = clock_timestamp() "
        "WHERE name = $1 RETURNING last_version",
        model,
    )
    return n


async def next_alias_seq(conn: asyncpg.Connection, model: str) -> int:
    seq: int = await conn.fetchval(
        "UPDATE models SET alias_seq = alias_seq + 1 WHERE name = $1 RETURNING alias_seq", model
    )
    return seq


#: Orderings callers may ask for: a logical key and the column it sorts by.
MODEL_ORDER = {"name": "name", "created_at": "created_at", "updated_at": "updated_at"}
VERSION_ORDER = {"name": "v.model", "version": "v.version", "created_at": "v.created_at",
                 "updated_at": "v.updated_at"}


def _order(columns: Mapping[str, str], order_by: Sequence[tuple[str, bool]], tiebreak: str) -> str:
    """``ORDER BY`` for ``(key, descending)`` pairs; only keys of ``columns`` ever reach SQL."""
    parts = [f"{columns[key]} {'DESC' if desc else 'ASC'}" for key, desc in order_by]
    return "ORDER BY " + ", ".join([*parts, tiebreak])


async def search_models(
    conn: asyncpg.Connection, *, name_like: str | None, tags: Mapping[str, str], tag_keys: Sequence[str],
    after: str | None, limit: int, tags_not: Mapping[str, str] | None = None,
    order_by: Sequence[tuple[str, bool]] = (), offset: int = 0, name: str | None = None,
) -> list[Record]:
    """Models (exactly ``name`` when given) ordered by name, or by ``order_by`` (keys of
    :data:`MODEL_ORDER`, then name); ``name_like`` is a case-insensitive SQL LIKE pattern;
    ``tags_not`` excludes models whose tag has that value; ``after`` is a keyset cursor on
    the name, ``offset`` skips rows."""
    rows: list[Record] = await conn.fetch(
        "SELECT * FROM models WHERE ($1::text IS NULL OR name ILIKE $1) AND tags @> $2::jsonb "
        "AND tags ?& $3::text[] AND ($4::text IS NULL OR name > $4) "
        "AND NOT EXISTS (SELECT 1 FROM jsonb_each_text($6::jsonb) t WHERE tags ->> t.key = t.value) "
        f"AND ($8::text IS NULL OR name = $8) {_order(MODEL_ORDER, order_by, 'name')} LIMIT $5 OFFSET $7",
        name_like, dict(tags), list(tag_keys), after, limit, dict(tags_not or {}), offset, name,
    )
    return rows


async def latest_versions(conn: asyncpg.Connection, names: Sequence[str]) -> dict[str, Record]:
    rows = await conn.fetch(
        "SELECT DISTINCT ON (model) * FROM versions WHERE model = ANY($1::text[]) ORDER BY model, version DESC",
        list(names),
    )
    return {r["model"]: r for r in rows}


# --------------------------------------------------------------------------- versions


async def insert_version(conn: asyncpg.Connection, **values: Any) -> Record:
    cols = list(values)
    placeholders = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
    row: Record = await conn.fetchrow(
        f"INSERT INTO versions ({', '.join(cols)}) VALUES ({placeholders}) RETURNING *", *values.values()
    )
    return row


async def get_version(
    conn: asyncpg.Connection, model: str, version: int, *, for_update: bool = False
) -> Record | None:
    row: Record | None = await conn.fetchrow(
        "SELECT * FROM versions WHERE model = $1 AND version = $2" + (" FOR UPDATE" if for_update else ""),
        model, version,
    )
    return row


async def next_seq(conn: asyncpg.Connection, model: str, version: int) -> int:
    """The version's next event sequence number."""
    seq: int = await conn.fetchval(
        "UPDATE versions SET seq = seq + 1 WHERE model = $1 AND version = $2 RETURNING seq", model, version
    )
    return seq


async def set_version_status(
    conn: asyncpg.Connection, model: str, version: int, status: str, *, served_traffic: bool = False
) -> None:
    await conn.execute(
        "UPDATE versions SET status = $3, served_traffic = served_traffic OR $4, updated_at = clock_timestamp(), "
        "archived_at = CASE WHEN $3 = 'archived' THEN clock_timestamp() ELSE archived_at END "
        "WHERE model = $1 AND version = $2",
        model, version, status, served_traffic,
    )


async def set_validation(
    conn: asyncpg.Connection, model: str, version: int, validation: Mapping[str, Any], *, passed: bool, status: str
) -> Record:
    row: Record = await conn.fetchrow(
        "UPDATE versions SET validation = $3, validation_passed = $4, status = $5, updated_at = clock_timestamp() "
        "WHERE model = $1 AND version = $2 RETURNING *",
        model, version, dict(validation), passed, status,
    )
    return row


async def mark_served(conn: asyncpg.Connection, model: str, version: int) -> None:
    """Remember that a version served traffic: it can then never be deleted."""
    await conn.execute(
        "UPDATE versions SET served_traffic = true WHERE model = $1 AND version = $2", model, version
    )


async def update_version(
    conn: asyncpg.Connection, model: str, version: int, *, description: str | None, set_description: bool,
    tags: Mapping[str, str | None] | None,
) -> Record | None:
    current = await get_version(conn, model, version, for_update=True)
    if current is None:
        return None
    new_tags = _merge_patch(current["tags"], tags) if tags is not None else current["tags"]
    row: Record | None = await conn.fetchrow(
        "UPDATE versions SET description = CASE WHEN $3 THEN $4 ELSE description END, tags = $5, "
        "updated_at = clock_timestamp() WHERE model = $1 AND version = $2 RETURNING *",
        model, version, set_description, description, new_tags,
    )
    return row


async def delete_version(conn: asyncpg.Connection, model: str, version: int) -> None:
    await conn.execute("DELETE FROM versions WHERE model = $1 AND version = $2", model, version)


@dataclass(frozen=True)
class VersionFilter:
    model: str | None = None
    model_like: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    tag_keys: Sequence[str] = ()
    tags_not: Mapping[str, str] = field(default_factory=dict)
    alias: str | None = None
    status: Sequence[str] = ()
    created_after: datetime | None = None
    created_before: datetime | None = None
    run_id: str | None = None


async def search_versions(
    conn: asyncpg.Connection, f: VersionFilter, *, after_id: int | None, limit: int, newest_first: bool = False,
    order_by: Sequence[tuple[str, bool]] = (), offset: int = 0,
) -> list[Record]:
    """Versions matching every filter, in creation order (keyset on ``id``), or
    by ``order_by`` (keys of :data:`VERSION_ORDER`, then creation order) from ``offset``."""
    order = "DESC" if newest_first else "ASC"
    cmp = "<" if newest_first else ">"
    rows: list[Record] = await conn.fetch(
        f"""SELECT v.* FROM versions v
            WHERE ($1::text IS NULL OR v.model = $1)
              AND ($2::text IS NULL OR v.model ILIKE $2)
              AND v.tags @> $3::jsonb AND v.tags ?& $4::text[]
              AND ($5::text IS NULL OR EXISTS (SELECT 1 FROM aliases a WHERE a.model = v.model
                                                AND a.version = v.version AND a.alias = $5))
              AND (cardinality($6::text[]) = 0 OR v.status = ANY($6::text[]))
              AND ($7::timestamptz IS NULL OR v.created_at >= $7)
              AND ($8::timestamptz IS NULL OR v.created_at < $8)
              AND ($9::text IS NULL OR v.run_id = $9)
              AND ($10::bigint IS NULL OR v.id {cmp} $10)
              AND NOT EXISTS (SELECT 1 FROM jsonb_each_text($12::jsonb) t WHERE v.tags ->> t.key = t.value)
            {_order(VERSION_ORDER, order_by, f"v.id {order}")} LIMIT $11 OFFSET $13""",
        f.model, f.model_like, dict(f.tags), list(f.tag_keys), f.alias, list(f.status), f.created_after,
        f.created_before, f.run_id, after_id, limit, dict(f.tags_not), offset,
    )
    return rows


# --------------------------------------------------------------------------- aliases


async def get_alias(conn: asyncpg.Connection, model: str, alias: str) -> int | None:
    v: int | None = await conn.fetchval("SELECT version FROM aliases WHERE model = $1 AND alias = $2", model, alias)
    return v


async def model_aliases(conn: asyncpg.Connection, models: Sequence[str]) -> dict[str, dict[str, int]]:
    """``{model: {alias: version}}``."""
    out: dict[str, dict[str, int]] = {m: {} for m in models}
    for r in await conn.fetch(
        "SELECT model, alias, version FROM aliases WHERE model = ANY($1::text[]) ORDER BY alias", list(models)
    ):
        out[r["model"]][r["alias"]] = r["version"]
    return out


async def version_aliases(conn: asyncpg.Connection, model: str, version: int) -> list[str]:
    rows = await conn.fetch(
        "SELECT alias FROM aliases WHERE model = $1 AND version = $2 ORDER BY alias", model, version
    )
    return [r["alias"] for r in rows]


async def set_alias(conn: asyncpg.Connection, model: str, alias: str, version: int, by: str) -> None:
    await conn.execute(
        "INSERT INTO aliases (model, alias, version, updated_by) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (model, alias) DO UPDATE SET version = EXCLUDED.version, updated_by = EXCLUDED.updated_by, "
        "updated_at = clock_timestamp()",
        model, alias, version, by,
    )


async def delete_alias(conn: asyncpg.Connection, model: str, alias: str) -> None:
    await conn.execute("DELETE FROM aliases WHERE model = $1 AND alias = $2", model, alias)


async def add_alias_history(
    conn: asyncpg.Connection, *, model: str, alias: str, version: int | None, previous_version: int | None,
    seq: int, actor: str, reason: str | None,
) -> None:
    await conn.execute(
        "INSERT INTO alias_history (model, alias, version, previous_version, seq, actor, reason) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7)",
        model, alias, version, previous_version, seq, actor, reason,
    )


async def alias_history(conn: asyncpg.Connection, model: str, version: int | None = None) -> list[Record]:
    """A model's alias moves, oldest first; with ``version``, only moves to or from it."""
    rows: list[Record] = await conn.fetch(
        "SELECT * FROM alias_history WHERE model = $1 AND ($2::int IS NULL OR version = $2 OR previous_version = $2) "
        "ORDER BY id",
        model, version,
    )
    return rows


# --------------------------------------------------------------------------- policies


async def get_policy(conn: asyncpg.Connection, scope: str) -> dict[str, Any] | None:
    p: dict[str, Any] | None = await conn.fetchval("SELECT policy FROM policies WHERE scope = $1", scope)
    return p


async def lock_policy(conn: asyncpg.Connection, scope: str) -> None:
    """Serialise changes of one policy until the transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"registry-policy:{scope}")


async def put_policy(conn: asyncpg.Connection, scope: str, policy: Mapping[str, Any], by: str) -> None:
    """Store a policy; the service layer keeps the change in ``POLICY_HISTORY``."""
    await conn.execute(
        "INSERT INTO policies (scope, policy, updated_by) VALUES ($1, $2, $3) ON CONFLICT (scope) DO UPDATE "
        "SET policy = EXCLUDED.policy, updated_by = EXCLUDED.updated_by, updated_at = clock_timestamp()",
        scope, dict(policy), by,
    )


async def delete_policy(conn: asyncpg.Connection, scope: str) -> bool:
    """Remove a policy; False when there was none."""
    return bool(await conn.fetchval("DELETE FROM policies WHERE scope = $1 RETURNING true", scope))


#: Every change of the default policy or a model's override (``policy`` null when removed).
POLICY_HISTORY = SettingsHistory("policy_history", value_column="policy", subject_column="scope")


# --------------------------------------------------------------------------- promotion


async def insert_request(conn: asyncpg.Connection, **values: Any) -> Record:
    cols = list(values)
    placeholders = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
    row: Record = await conn.fetchrow(
        f"INSERT INTO promotion_requests ({', '.join(cols)}) VALUES ({placeholders}) RETURNING *",
        *values.values(),
    )
    return row


async def get_request(conn: asyncpg.Connection, request_id: str, *, for_update: bool = False) -> Record | None:
    row: Record | None = await conn.fetchrow(
        "SELECT * FROM promotion_requests WHERE id = $1" + (" FOR UPDATE" if for_update else ""), request_id
    )
    return row


async def pending_request(conn: asyncpg.Connection, model: str, version: int) -> str | None:
    rid: str | None = await conn.fetchval(
        "SELECT id FROM promotion_requests WHERE model = $1 AND version = $2 AND status = 'pending'", model, version
    )
    return rid


async def set_request_status(
    conn: asyncpg.Connection, request_id: str, status: str, *, previous_champion: int | None = None
) -> Record:
    """Set a request's status; an approval also records the champion it replaces."""
    row: Record = await conn.fetchrow(
        "UPDATE promotion_requests SET status = $2, previous_champion = coalesce($3, previous_champion), "
        "decided_at = CASE WHEN $2 = 'pending' THEN NULL ELSE clock_timestamp() END WHERE id = $1 RETURNING *",
        request_id, status, previous_champion,
    )
    return row


async def list_requests(
    conn: asyncpg.Connection, *, status: str | None, model: str | None, after_id: str | None, limit: int
) -> list[Record]:
    """Requests in filing order (ids are time-ordered UUIDv7)."""
    rows: list[Record] = await conn.fetch(
        "SELECT * FROM promotion_requests WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR model = $2) "
        "AND ($3::text IS NULL OR id > $3) ORDER BY id LIMIT $4",
        status, model, after_id, limit,
    )
    return rows


async def requests_for_version(conn: asyncpg.Connection, model: str, version: int) -> list[Record]:
    rows: list[Record] = await conn.fetch(
        "SELECT * FROM promotion_requests WHERE model = $1 AND version = $2 ORDER BY id", model, version
    )
    return rows


async def add_review(
    conn: asyncpg.Connection, *, request_id: str, reviewer: str, reviewer_sub: str, decision: str,
    comment: str | None,
) -> None:
    await conn.execute(
        "INSERT INTO reviews (request_id, reviewer, reviewer_sub, decision, comment) VALUES ($1, $2, $3, $4, $5)",
        request_id, reviewer, reviewer_sub, decision, comment,
    )


async def reviews_for(conn: asyncpg.Connection, request_ids: Sequence[str]) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {rid: [] for rid in request_ids}
    for r in await conn.fetch(
        "SELECT * FROM reviews WHERE request_id = ANY($1::text[]) ORDER BY id", list(request_ids)
    ):
        out[r["request_id"]].append(r)
    return out


# --------------------------------------------------------------------------- rollouts


async def rollout_seen_seq(conn: asyncpg.Connection, rollout_id: str) -> int | None:
    seq: int | None = await conn.fetchval("SELECT max(seq) FROM rollouts_seen WHERE rollout_id = $1", rollout_id)
    return seq


async def record_rollout(conn: asyncpg.Connection, **values: Any) -> None:
    cols = list(values)
    placeholders = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
    await conn.execute(
        f"INSERT INTO rollouts_seen ({', '.join(cols)}) VALUES ({placeholders}) ON CONFLICT DO NOTHING",
        *values.values(),
    )


async def rollouts_for_version(conn: asyncpg.Connection, model: str, version: int) -> list[Record]:
    rows: list[Record] = await conn.fetch(
        "SELECT * FROM rollouts_seen WHERE model = $1 AND (version = $2 OR baseline_version = $3) ORDER BY at",
        model, version, str(version),
    )
    return rows
