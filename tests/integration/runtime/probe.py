"""A tiny service built on the shared runtime, used to test the runtime itself.

``POST /aliases`` moves an alias (state + event in one transaction);
``POST /aliases?fail=1`` writes both and then rolls back; ``GET /boom`` is a bug (a 500). The service also
consumes ``model-alias-changed`` and counts each event's effect; the alias ``poison`` and the
model ``poison`` are refused for good (:class:`PermanentError`), so they go to ``dead-letter``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from mloop.contracts.envelope import Event, new_event
from mloop.contracts.payloads import AliasChanged
from mloop.runtime import outbox
from mloop.runtime.auth import Principal, require_roles
from mloop.runtime.deps import Pool
from mloop.runtime.errors import PermanentError
from mloop.runtime.messaging import ServiceRouter
from mloop.runtime.outbox import AfterPublish
from mloop.runtime.service import ServiceContext, create_service_app
from mloop.runtime.settings import ServiceSettings


class ProbeSettings(ServiceSettings):
    service_name: str = "probe"


class AliasMove(BaseModel):
    model: str = Field(pattern=r"^[a-z0-9-]+$")
    alias: str
    version: str = Field(min_length=1)


router = APIRouter()


@router.post("/aliases", status_code=201)
async def move_alias(
    body: AliasMove,
    pool: Pool,
    who: Annotated[Principal, Depends(require_roles("operator"))],
    fail: Annotated[bool, Query()] = False,
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        seq = await conn.fetchval(
            "INSERT INTO probe_aliases (model, alias, version, seq) VALUES ($1, $2, $3, 1) "
            "ON CONFLICT (model, alias) DO UPDATE SET version = EXCLUDED.version, seq = probe_aliases.seq + 1 "
            "RETURNING seq",
            body.model, body.alias, body.version,
        )
        event = new_event(
            "model-alias-changed",
            AliasChanged(model=body.model, alias=body.alias, version=body.version, seq=seq),
            source="probe", actor=who.actor,
        )
        await outbox.enqueue(conn, event)
        if fail:
            await tx.rollback()
            return {"rolled_back": True, "event_id": event.id}
        await tx.commit()
    return {"seq": seq, "event_id": event.id}


@router.get("/boom")
async def boom(where: Annotated[Literal["route", "after-answer"], Query()] = "route") -> dict[str, Any]:
    """A bug in a route: the runtime must answer a 500 problem and keep the connection."""
    raise RuntimeError(f"a bug in the {where}")


async def on_alias_changed(event: Event[AliasChanged], conn: asyncpg.Connection) -> None:
    if event.data.alias == "poison":
        raise PermanentError("a poisoned alias")
    await conn.execute(
        "INSERT INTO probe_effects (event_id, alias, version) VALUES ($1, $2, $3)",
        event.id, event.data.alias, event.data.version,
    )


async def count_predictions(events: Any, conn: asyncpg.Connection) -> None:
    if any(e.data.model == "poison" for e in events):
        raise PermanentError("a poisoned model")
    n = sum(len(e.data.records) for e in events)
    await conn.execute("UPDATE probe_counts SET records = records + $1, messages = messages + $2", n, len(events))


async def create_tables(ctx: ServiceContext) -> None:
    async with ctx.pool.acquire() as conn:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS probe_aliases (model text, alias text, version text, seq int,
                   PRIMARY KEY (model, alias));
               CREATE TABLE IF NOT EXISTS probe_effects (event_id text, alias text, version text,
                   at timestamptz DEFAULT clock_timestamp());
               CREATE TABLE IF NOT EXISTS probe_counts (records bigint NOT NULL, messages bigint NOT NULL);
               INSERT INTO probe_counts SELECT 0, 0 WHERE NOT EXISTS (SELECT 1 FROM probe_counts);"""
        )


def create_probe_app(
    settings: ProbeSettings, *, after_publish: AfterPublish | None = None, batch: bool = False
) -> Any:
    def kafka(_: ServiceContext) -> ServiceRouter:
        kafka_router = ServiceRouter(settings)
        kafka_router.inbox({"model-alias-changed": on_alias_changed})
        if batch:
            kafka_router.stored_offsets(["prediction-logged"], count_predictions, group_suffix="-predictions")
        return kafka_router

    return create_service_app(
        settings,
        title="probe",
        routers=[router],
        on_startup=create_tables,
        kafka=kafka,
        relay_after_publish=after_publish,
    )
