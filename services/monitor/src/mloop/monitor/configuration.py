"""The service layer of monitor configuration: every change kept and published.

A model's windows and thresholds decide when drift is an alarm, so changing
them is a governance act: :func:`change_config` stores the new
configuration, appends the change (who, when, old -> new, why) to the
model's history and enqueues ``monitor-config-changed`` — one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from mloop.contracts.envelope import new_event
from mloop.contracts.payloads import MonitorConfigChanged
from mloop.monitor import store
from mloop.monitor.domain import MonitorConfig
from mloop.runtime import outbox

__all__ = ["ConfigChange", "change_config", "config_history"]


@dataclass(frozen=True)
class ConfigChange:
    id: int
    model: str
    seq: int
    config: dict[str, Any]
    previous: dict[str, Any] | None
    actor: str
    reason: str | None
    at: datetime


async def change_config(
    conn: asyncpg.Connection, model: str, config: MonitorConfig, *, actor: str, reason: str | None, source: str
) -> ConfigChange:
    """Set ``model``'s configuration in the caller's transaction; returns the recorded change."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"monitor-config:{model}")
    previous: dict[str, Any] | None = await conn.fetchval(
        "SELECT config FROM model_config WHERE model = $1", model)
    await store.put_config(conn, model, config, actor)
    doc = config.model_dump(mode="json")
    row = await conn.fetchrow(
        """INSERT INTO config_history (model, seq, config, previous, actor, reason)
           VALUES ($1, COALESCE((SELECT max(seq) FROM config_history WHERE model = $1), 0) + 1, $2, $3, $4, $5)
           RETURNING *""",
        model, doc, previous, actor, reason,
    )
    assert row is not None
    change = ConfigChange(**dict(row))
    await outbox.enqueue(conn, new_event("monitor-config-changed", MonitorConfigChanged(
        model=model, config=doc, previous=previous, changed_by=actor, reason=reason, seq=change.seq,
    ), source=source, actor=actor))
    return change


async def config_history(
    conn: asyncpg.Connection | asyncpg.Pool, model: str, *, after: int, limit: int
) -> list[ConfigChange]:
    """The model's configuration changes with an id above ``after``, oldest first."""
    rows = await conn.fetch(
        "SELECT * FROM config_history WHERE model = $1 AND id > $2 ORDER BY id LIMIT $3", model, after, limit)
    return [ConfigChange(**dict(r)) for r in rows]
