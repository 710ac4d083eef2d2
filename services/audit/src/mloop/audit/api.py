"""The audit service's HTTP API: what an auditor, a regulator or an incident
responder asks, answered from the ledger, and the evidence that proves it.

Queries (cursor pagination): ``/records``, ``/models/{m}/versions/{v}/lifecycle``,
``/models/{m}/serving?at=``, ``/approvals``. Proofs: ``/records/{id}/proof``,
``/proofs/consistency``. Checkpoints: ``/checkpoints``, ``/public-key``.
Evidence: ``/export`` (a ``.tar.gz`` bundle) and ``/verify``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from mloop.audit import store
from mloop.audit.checkpointing import Checkpointer, read_checkpoint_dir
from mloop.audit.domain.lifecycle import approval_of, lifecycle_status, lifecycle_steps, model_steps, serving_split
from mloop.audit.live_verify import verify_ledger
from mloop.audit.service import export_bundle
from mloop.ledger.checkpoint import public_key_to_base64, public_key_to_pem, public_key_to_vkey
from mloop.ledger.merkle import verify_inclusion
from mloop.runtime.deps import Ctx, Operator, Pool, Viewer
from mloop.runtime.pagination import Page, decode_cursor, encode_cursor, keyset_after, keyset_token
from mloop.runtime.problems import NotFound, UnprocessableEntity

__all__ = ["router"]

router = APIRouter(tags=["audit"])

PageSize = Annotated[int, Query(ge=1, le=500)]
Since = Annotated[datetime | None, Query(description="Inclusive lower bound on the event time (RFC 3339)")]
Until = Annotated[datetime | None, Query(description="Exclusive upper bound on the event time (RFC 3339)")]


def _checkpointer(ctx: Ctx) -> Checkpointer:
    found: Checkpointer = ctx.extras["checkpointer"]
    return found


CheckpointerDep = Annotated[Checkpointer, Depends(_checkpointer)]


# --------------------------------------------------------------------------- models


class RecordOut(BaseModel):
    """One ledger row and the CloudEvent it recorded (the exact hashed form)."""

    event_id: str
    chain: str = Field(description="<topic>/<partition>", examples=["model-promoted/1"])
    seq: int = Field(description="Position in the chain; the Merkle leaf index")
    topic: str
    type: str
    source: str
    subject: str | None
    model: str | None
    version: str | None
    actor: str | None
    time: datetime
    recorded_at: datetime
    leaf_hash: str
    chain_hash: str
    event: dict[str, Any]


def _record_out(row: asyncpg.Record) -> RecordOut:
    return RecordOut(
        event_id=row["event_id"], chain=row["chain"], seq=row["seq"], topic=row["topic"],
        type=row["event_type"], source=row["source"], subject=row["subject"], model=row["model"],
        version=row["version"], actor=row["actor"], time=row["event_time"], recorded_at=row["recorded_at"],
        leaf_hash=bytes(row["leaf_hash"]).hex(), chain_hash=bytes(row["chain_hash"]).hex(),
        event=json.loads(bytes(row["canonical"])),
    )


def _next_token(rows: list[asyncpg.Record], page_size: int) -> str | None:
    if len(rows) <= page_size:
        return None
    last = rows[page_size - 1]
    return keyset_token(last["event_time"], last["event_id"])


def _range(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and until <= since:
        raise UnprocessableEntity(
            "until must be after since",
            errors=[{"field": "query.until", "message": "must be after since", "type": "value_error"}],
        )


# --------------------------------------------------------------------------- records


@router.get("/records", summary="Records by model, version, event type, actor or time range")
async def list_records(
    pool: Pool,
    _: Viewer,
    model: str | None = None,
    version: str | None = None,
    type: Annotated[str | None, Query(description="A topic name or a CloudEvents type")] = None,
    actor: str | None = None,
    since: Since = None,
    until: Until = None,
    chain: str | None = None,
    page_token: str | None = None,
    page_size: PageSize = 50,
) -> Page[RecordOut]:
    _range(since, until)
    flt = store.RecordFilter(model, version, type, actor, since, until, chain)
    async with pool.acquire() as conn:
        rows = await store.find_records(conn, flt, after=keyset_after(page_token), limit=page_size + 1)
    return Page[RecordOut](items=[_record_out(r) for r in rows[:page_size]],
                           next_page_token=_next_token(rows, page_size))


@router.get("/records/{event_id}", summary="One record by its event id")
async def get_record(event_id: str, pool: Pool, _: Viewer) -> RecordOut:
    async with pool.acquire() as conn:
        row = await store.get_record(conn, event_id)
    if row is None:
        raise NotFound(f"no record of event {event_id}")
    return _record_out(row)


class CheckpointOut(BaseModel):
    chain: str
    origin: str
    size: int
    root: str
    timestamp: str
    key_name: str
    note: str = Field(description="The C2SP signed note; what the signature covers")


def _checkpoint_out(chain: str, signed: Any) -> CheckpointOut:
    return CheckpointOut(chain=chain, **{k: v for k, v in signed.to_dict().items() if k != "chain"})


class InclusionProofOut(BaseModel):
    event_id: str
    chain: str
    seq: int
    leaf_hash: str
    tree_size: int
    path: list[str]
    checkpoint: CheckpointOut | None = Field(description="The signed checkpoint of tree_size, when one exists")
    verified: bool = Field(description="The path leads from the leaf to the checkpoint's root")


@router.get("/records/{event_id}/proof", summary="Inclusion proof of a record in its chain's Merkle tree")
async def record_proof(
    event_id: str,
    pool: Pool,
    _: Viewer,
    tree_size: Annotated[int | None, Query(ge=1, description="Defaults to the latest checkpoint")] = None,
) -> InclusionProofOut:
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        row = await store.get_record(conn, event_id)
        if row is None:
            raise NotFound(f"no record of event {event_id}")
        chain, seq = row["chain"], int(row["seq"])
        state = (await store.list_chains(conn, chain))[0]
        size = tree_size or state.signed_size
        if size is None:
            raise NotFound(f"chain {chain} has no checkpoint yet; pass tree_size or sign one (POST /checkpoints)")
        if not seq < size <= state.size:
            raise UnprocessableEntity(
                f"tree_size must be in {seq + 1}..{state.size} for seq {seq}",
                errors=[{"field": "query.tree_size", "message": "out of range", "type": "value_error"}],
            )
        path = (await store.inclusion_proofs(conn, chain, [seq], size))[seq]
        signed = [s for _, s in await store.list_checkpoints(conn, chain, after=(chain, size - 1), max_size=size)]
    leaf = bytes(row["leaf_hash"])
    checkpoint = signed[0] if signed else None
    return InclusionProofOut(
        event_id=event_id, chain=chain, seq=seq, leaf_hash=leaf.hex(), tree_size=size, path=[h.hex() for h in path],
        checkpoint=_checkpoint_out(chain, checkpoint) if checkpoint else None,
        verified=bool(checkpoint and verify_inclusion(leaf, seq, size, path, checkpoint.checkpoint.root)),
    )


class ConsistencyProofOut(BaseModel):
    chain: str
    old_size: int
    new_size: int
    path: list[str]


@router.get("/proofs/consistency", summary="Proof that a chain of old_size rows is a prefix of new_size rows",
            responses={404: {"description": "No such chain"}})
async def consistency(
    pool: Pool,
    _: Viewer,
    chain: str,
    old_size: Annotated[int, Query(ge=0)],
    new_size: Annotated[int, Query(ge=0)],
) -> ConsistencyProofOut:
    async with pool.acquire() as conn:
        states = await store.list_chains(conn, chain)
        if not states:
            raise NotFound(f"no chain {chain}")
        if not old_size <= new_size <= states[0].size:
            raise UnprocessableEntity(
                f"need 0 <= old_size <= new_size <= {states[0].size}",
                errors=[{"field": "query.new_size", "message": "out of range", "type": "value_error"}],
            )
        path = await store.consistency_proof(conn, chain, old_size, new_size)
    return ConsistencyProofOut(chain=chain, old_size=old_size, new_size=new_size, path=[h.hex() for h in path])


# --------------------------------------------------------------------------- chains and checkpoints


class ChainOut(BaseModel):
    chain: str
    topic: str
    partition: int
    origin: str
    size: int
    signed_size: int | None


@router.get("/chains", summary="Every chain with its size and latest signed size")
async def list_chains(pool: Pool, _: Viewer) -> list[ChainOut]:
    async with pool.acquire() as conn:
        return [ChainOut(**asdict(s)) for s in await store.list_chains(conn)]


@router.get("/checkpoints", summary="Signed checkpoints, by chain then size")
async def list_checkpoints(
    pool: Pool, _: Viewer, chain: str | None = None, page_token: str | None = None, page_size: PageSize = 100
) -> Page[CheckpointOut]:
    cursor = decode_cursor(page_token, chain=str, size=int)
    after = (cursor["chain"], cursor["size"]) if cursor else None
    async with pool.acquire() as conn:
        found = await store.list_checkpoints(conn, chain, after=after, limit=page_size + 1)
    items = [_checkpoint_out(c, s) for c, s in found[:page_size]]
    token = encode_cursor({"chain": items[-1].chain, "size": items[-1].size}) if len(found) > page_size else None
    return Page[CheckpointOut](items=items, next_page_token=token)


@router.post("/checkpoints", status_code=201, summary="Sign a checkpoint of every chain that grew, now")
async def sign_checkpoints(ctx: Ctx, checkpointer: CheckpointerDep, _: Operator) -> list[CheckpointOut]:
    return [_checkpoint_out(chain, signed) for chain, signed in await checkpointer.checkpoint(ctx.pool)]


class PublicKeyOut(BaseModel):
    algorithm: str = "Ed25519"
    pem: str
    base64: str
    vkey_example: str = Field(description="C2SP verifier key for an origin (one per chain)")


@router.get("/public-key", summary="The public key that verifies every checkpoint (pin it)")
async def public_key(checkpointer: CheckpointerDep) -> PublicKeyOut:
    pub = checkpointer.public_key
    origin = checkpointer.settings.origin("model-promoted/0")
    return PublicKeyOut(pem=public_key_to_pem(pub).decode(), base64=public_key_to_base64(pub),
                        vkey_example=public_key_to_vkey(origin, pub))


# --------------------------------------------------------------------------- lifecycle, serving, approvals


class StepOut(BaseModel):
    stage: str = Field(examples=["promoted"])
    detail: str
    time: str
    actor: str | None
    event_id: str
    event_type: str
    chain: str
    seq: int


class LifecycleOut(BaseModel):
    model: str
    version: str
    status: str = Field(description="registered, validated, approved, promoted, rolling-out, champion, "
                                    "rolled-back, retired, ...")
    steps: list[StepOut]


@router.get("/models/{model}/versions/{version}/lifecycle", summary="A version from registration to champion "
            "or rollback, each step with its record")
async def version_lifecycle(model: str, version: str, pool: Pool, _: Viewer) -> LifecycleOut:
    async with pool.acquire() as conn:
        rows = await store.version_records(conn, model, version)
    if not rows:
        raise NotFound(f"no record of {model} version {version}")
    records = [{"event": json.loads(bytes(r["canonical"])), "chain": r["chain"], "seq": r["seq"]} for r in rows]
    steps = lifecycle_steps(version, records)
    return LifecycleOut(model=model, version=version, status=lifecycle_status(steps),
                        steps=[StepOut(**asdict(s)) for s in steps])


class ModelStepOut(StepOut):
    version: str | None = Field(description="The version the step is about; null for a model-wide step "
                                            "(a governance setting change, a routing table)")


@router.get("/models/{model}/lifecycle", summary="A model's story: every version's steps and every change of "
            "its governance settings (validation policy, monitor configuration, rollout plan, retrain policy)")
async def model_lifecycle(
    model: str, pool: Pool, _: Viewer, since: Since = None, until: Until = None,
    page_token: str | None = None, page_size: PageSize = 100,
) -> Page[ModelStepOut]:
    """Oldest first; a page holds the steps among ``page_size`` records (records that mark no step are skipped).
    Changes of the defaults that apply to every model are under model ``*``."""
    _range(since, until)
    async with pool.acquire() as conn:
        rows = await store.find_records(conn, store.RecordFilter(model=model, since=since, until=until),
                                        after=keyset_after(page_token), limit=page_size + 1)
    records = [{"event": json.loads(bytes(r["canonical"])), "chain": r["chain"], "seq": r["seq"]}
               for r in rows[:page_size]]
    return Page[ModelStepOut](items=[ModelStepOut(**asdict(s)) for s in model_steps(records)],
                              next_page_token=_next_token(rows, page_size))


class ServingOut(BaseModel):
    model: str
    at: datetime
    serving: list[dict[str, Any]] = Field(description="Non-shadow versions with weight > 0")
    shadow: list[dict[str, Any]]
    routes: list[dict[str, Any]]
    since: datetime = Field(description="When this split took effect")
    rollout_id: str | None
    split_seq: int | None
    event_id: str


@router.get("/models/{model}/serving", summary="Which version(s) served a model at time T")
async def serving_at(
    model: str,
    pool: Pool,
    _: Viewer,
    at: Annotated[datetime | None, Query(description="Defaults to now")] = None,
) -> ServingOut:
    when = at or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    async with pool.acquire() as conn:
        row = await store.traffic_split_at(conn, model, when)
    if row is None:
        raise NotFound(f"no traffic split of {model} was recorded at or before {when.isoformat()}")
    data = row["data"]
    split = serving_split(data)
    return ServingOut(model=model, at=when, serving=split.serving, shadow=split.shadow, routes=split.routes,
                      since=row["event_time"], rollout_id=data.get("rollout_id"), split_seq=data.get("seq"),
                      event_id=row["event_id"])


class ApprovalOut(BaseModel):
    time: datetime
    model: str | None
    version: str | None
    kind: str = Field(description="review (promotion-reviewed) or promotion (model-promoted)")
    decision: str | None
    approvers: list[str | None]
    requested_by: str | None
    comment: str | None
    promotion_request_id: str | None
    actor: str | None
    event_id: str
    chain: str
    seq: int


@router.get("/approvals", summary="Who approved (or rejected) what, in time order")
async def approvals(
    pool: Pool,
    _: Viewer,
    model: str | None = None,
    since: Since = None,
    until: Until = None,
    page_token: str | None = None,
    page_size: PageSize = 50,
) -> Page[ApprovalOut]:
    _range(since, until)
    async with pool.acquire() as conn:
        rows = await store.find_approvals(conn, model=model, since=since, until=until,
                                          after=keyset_after(page_token), limit=page_size + 1)
    items = []
    for r in rows[:page_size]:
        event = json.loads(bytes(r["canonical"]))
        items.append(ApprovalOut(
            time=r["event_time"], model=r["model"], version=r["version"], actor=r["actor"],
            promotion_request_id=r["data"].get("promotion_request_id"), event_id=r["event_id"],
            chain=r["chain"], seq=r["seq"], **approval_of(event),
        ))
    return Page[ApprovalOut](items=items, next_page_token=_next_token(rows, page_size))


# --------------------------------------------------------------------------- evidence


@router.get(
    "/export",
    summary="A signed evidence bundle (tar.gz) for a model, a time range, or the whole ledger",
    response_class=FileResponse,
    responses={200: {"content": {"application/gzip": {}}}},
)
async def export(
    ctx: Ctx,
    checkpointer: CheckpointerDep,
    _: Viewer,
    model: str | None = None,
    since: Since = None,
    until: Until = None,
) -> FileResponse:
    _range(since, until)
    workdir = Path(tempfile.mkdtemp(prefix="mloop-audit-export-"))
    try:
        archive, rows = await export_bundle(ctx.pool, checkpointer, workdir, model=model, since=since, until=until)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return FileResponse(
        archive, media_type="application/gzip", filename=f"mloop-audit-evidence-{stamp}.tar.gz",
        headers={"X-Audit-Rows": str(rows)},
        background=BackgroundTask(shutil.rmtree, workdir, ignore_errors=True),
    )


@router.get("/verify", summary="Replay the chains in the database against every signed checkpoint, "
            "including the copies kept outside Postgres")
async def verify(ctx: Ctx, checkpointer: CheckpointerDep, _: Viewer, chain: str | None = None) -> dict[str, Any]:
    outside = await asyncio.to_thread(read_checkpoint_dir, checkpointer.directory)
    async with ctx.pool.acquire() as conn:
        # A chain younger than two checkpoint periods may not have its first checkpoint yet.
        grace = 2 * ctx.settings.checkpoint_interval_s + 5  # type: ignore[attr-defined]
        report = await verify_ledger(conn, checkpointer.public_key, outside, chain=chain, grace_s=grace)
    return report.to_dict()
