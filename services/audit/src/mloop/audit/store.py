"""SQL for the audit ledger: appending to chains, tree heads and proofs,
checkpoints, and the queries behind the API.

Every function takes a connection (the caller owns the transaction). The
ledger tables only ever see INSERT and SELECT; the database rejects anything
else (see ``migrations/0001_ledger.sql``).

Errors::

    AuditStoreError
     └── LedgerIntegrityError   a Merkle node or row a tree head needs is
                                missing (the ledger was tampered with)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from mloop.audit.domain.records import LedgerEntry, append_entry, chain_of
from mloop.contracts.envelope import Event
from mloop.contracts.topics import TOPICS
from mloop.ledger.checkpoint import SignedCheckpoint
from mloop.ledger.ledger_domain import LedgerHead, LedgerRecord
from mloop.ledger.merkle import (
    EMPTY_ROOT,
    MerkleFrontier,
    SubtreeNode,
    consistency_proof_ranges,
    inclusion_proof_ranges,
    node_hash,
    perfect_subtrees,
)

__all__ = [
    "AuditStoreError",
    "ChainState",
    "ChainWriter",
    "LedgerIntegrityError",
    "RecordFilter",
    "checkpoint_sizes",
    "chains_present",
    "consistency_proof",
    "fetch_nodes",
    "find_records",
    "get_record",
    "inclusion_proofs",
    "insert_checkpoint",
    "list_chains",
    "list_checkpoints",
    "load_head",
    "record_from_row",
    "tree_root",
]

NodeKey = tuple[int, int]  # (level, index)

RECORD_COLUMNS = (
    "chain, seq, event_id, canonical, leaf_hash, chain_hash, topic, kafka_offset, event_type, source, "
    "subject, model, version, actor, event_time, recorded_at"
)


class AuditStoreError(Exception):
    """Base of the store's errors."""


class LedgerIntegrityError(AuditStoreError):
    """Something a tree head or proof needs is not in the database."""


def _lock_key(chain: str) -> int:
    digest = hashlib.sha256(b"mloop-audit-chain\x00" + chain.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --------------------------------------------------------------------------
# Tree heads and proofs from stored nodes
# --------------------------------------------------------------------------


async def fetch_nodes(conn: asyncpg.Connection, chain: str, keys: Iterable[NodeKey]) -> dict[NodeKey, bytes]:
    """The stored hashes of perfect subtrees ``(level, index)`` of ``chain``, in one query.

    Level 0 is a row's leaf hash. Raises ``LedgerIntegrityError`` when one is missing.
    """
    wanted = set(keys)
    if not wanted:
        return {}
    leaves = [i for lv, i in wanted if lv == 0]
    inner = [(lv, i) for lv, i in wanted if lv > 0]
    rows = await conn.fetch(
        """SELECT 0::smallint AS level, seq AS index, leaf_hash AS hash
             FROM ledger WHERE chain = $1 AND seq = ANY($2::bigint[])
           UNION ALL
           SELECT n.level, n.index, n.hash
             FROM ledger_nodes n
             JOIN unnest($3::smallint[], $4::bigint[]) AS k(level, index)
               ON n.level = k.level AND n.index = k.index
            WHERE n.chain = $1""",
        chain, leaves, [lv for lv, _ in inner], [i for _, i in inner],
    )
    found = {(r["level"], r["index"]): bytes(r["hash"]) for r in rows}
    missing = wanted - found.keys()
    if missing:
        level, index = min(missing)
        raise LedgerIntegrityError(f"chain {chain}: Merkle node level {level} index {index} is missing")
    return found


def _fold(hashes: Sequence[bytes]) -> bytes:
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = node_hash(left, h)
    return h


async def _range_hashes(conn: asyncpg.Connection, chain: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    split = [perfect_subtrees(a, b) for a, b in ranges]
    nodes = await fetch_nodes(conn, chain, (k for keys in split for k in keys))
    return [_fold([nodes[k] for k in keys]) for keys in split]


async def tree_root(conn: asyncpg.Connection, chain: str, size: int) -> bytes:
    """The Merkle root over the first ``size`` rows of ``chain``."""
    if size == 0:
        return EMPTY_ROOT
    return (await _range_hashes(conn, chain, [(0, size)]))[0]


async def load_head(conn: asyncpg.Connection, chain: str) -> LedgerHead:
    """The tip of ``chain`` rebuilt from its last row and the frontier nodes."""
    row = await conn.fetchrow(
        "SELECT seq, chain_hash FROM ledger WHERE chain = $1 ORDER BY seq DESC LIMIT 1", chain
    )
    if row is None:
        return LedgerHead(chain)
    size = int(row["seq"]) + 1
    keys = perfect_subtrees(0, size)
    nodes = await fetch_nodes(conn, chain, keys)
    frontier = MerkleFrontier(size, [nodes[k] for k in keys])
    return LedgerHead(chain, size, bytes(row["chain_hash"]), frontier)


async def inclusion_proofs(
    conn: asyncpg.Connection, chain: str, seqs: Sequence[int], size: int
) -> dict[int, list[bytes]]:
    """Audit paths of rows ``seqs`` in the tree of the first ``size`` rows, from one node query.

    Raises ``ValueError`` for a row outside the tree.
    """
    plan = {seq: [perfect_subtrees(a, b) for a, b in inclusion_proof_ranges(seq, size)] for seq in seqs}
    nodes = await fetch_nodes(conn, chain, (k for parts in plan.values() for keys in parts for k in keys))
    return {seq: [_fold([nodes[k] for k in keys]) for keys in parts] for seq, parts in plan.items()}


async def consistency_proof(conn: asyncpg.Connection, chain: str, old_size: int, new_size: int) -> list[bytes]:
    """The proof that the tree of ``old_size`` rows is a prefix of the one of ``new_size``."""
    return await _range_hashes(conn, chain, consistency_proof_ranges(old_size, new_size))


# --------------------------------------------------------------------------
# Appending
# --------------------------------------------------------------------------


class ChainWriter:
    """Appends events to their chains, one writer per chain at a time.

    Inside the caller's transaction: take the chain's advisory lock (so two
    writers, in this process or another, never fork a chain), drop events
    already recorded (redeliveries: ``event_id`` is unique), read the tip,
    assign the next ``seq`` values and insert rows and Merkle nodes in bulk.

    Tips are cached per chain and checked against the last row on every
    batch, so a rolled-back transaction or another writer only costs a
    reload.
    """

    def __init__(self, origin_prefix: str, writer_role: str | None = None) -> None:
        self.origin_prefix = origin_prefix
        self.writer_role = writer_role or None
        self._heads: dict[str, LedgerHead] = {}
        self.appended = 0

    async def append(self, conn: asyncpg.Connection, events: Sequence[Event[Any]]) -> list[LedgerEntry]:
        """Record ``events`` (read from Kafka: each has a partition); return the new rows.

        Raises ``ValueError`` when an event has no canonical form (nothing
        of the batch is then written by the caller's rolled-back transaction).
        """
        if self.writer_role is not None:
            await conn.execute(f"SET LOCAL ROLE {quote_ident(self.writer_role)}")
        by_chain: dict[str, list[Event[Any]]] = {}
        for e in events:
            by_chain.setdefault(chain_of(e.topic, e.partition or 0), []).append(e)
        written: list[LedgerEntry] = []
        for chain in sorted(by_chain):  # one lock order: no deadlock between writers
            written += await self._append_chain(conn, chain, by_chain[chain])
        self.appended += len(written)
        return written

    async def _tip(self, conn: asyncpg.Connection, chain: str) -> LedgerHead:
        row = await conn.fetchrow(
            "SELECT seq, chain_hash FROM ledger WHERE chain = $1 ORDER BY seq DESC LIMIT 1", chain
        )
        cached = self._heads.get(chain)
        if row is None:
            return LedgerHead(chain)
        if cached is not None and cached.size == row["seq"] + 1 and cached.chain_hash == bytes(row["chain_hash"]):
            return cached
        return await load_head(conn, chain)

    async def _append_chain(self, conn: asyncpg.Connection, chain: str, events: list[Event[Any]]) -> list[LedgerEntry]:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(chain))
        ids = [e.id for e in events]
        known = {r["event_id"] for r in await conn.fetch(
            "SELECT event_id FROM ledger WHERE event_id = ANY($1::text[])", ids
        )}
        fresh: list[Event[Any]] = []
        for e in events:
            if e.id not in known:
                known.add(e.id)
                fresh.append(e)
        if not fresh:
            return []
        tip = await self._tip(conn, chain)
        head = LedgerHead(chain, tip.size, tip.chain_hash, tip.frontier.copy())
        if head.size == 0:
            first = fresh[0]
            await conn.execute(
                "INSERT INTO ledger_chains (chain, topic, partition, origin) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT DO NOTHING",
                chain, first.topic, first.partition or 0, f"{self.origin_prefix}/{chain}",
            )
        entries: list[LedgerEntry] = []
        nodes: list[SubtreeNode] = []
        for e in fresh:
            entry, completed = append_entry(head, e)
            entries.append(entry)
            nodes += completed
        await insert_entries(conn, entries)
        if nodes:
            await conn.execute(
                "INSERT INTO ledger_nodes (chain, level, index, hash) "
                "SELECT $1, * FROM unnest($2::smallint[], $3::bigint[], $4::bytea[])",
                chain, [n.level for n in nodes], [n.index for n in nodes], [n.hash for n in nodes],
            )
        self._heads[chain] = head
        return entries


async def insert_entries(conn: asyncpg.Connection, entries: Sequence[LedgerEntry]) -> None:
    """Insert rows in bulk (one statement)."""
    await conn.execute(
        """INSERT INTO ledger (chain, seq, event_id, canonical, leaf_hash, chain_hash, topic, kafka_offset,
                               event_type, source, subject, model, version, actor, event_time, data)
           SELECT c, s, i, cn, lh, ch, t, o, et, src, sub, m, v, a, tm, d::jsonb
             FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bytea[], $5::bytea[], $6::bytea[],
                         $7::text[], $8::bigint[], $9::text[], $10::text[], $11::text[], $12::text[],
                         $13::text[], $14::text[], $15::timestamptz[], $16::text[])
                  AS u(c, s, i, cn, lh, ch, t, o, et, src, sub, m, v, a, tm, d)""",
        [x.record.chain for x in entries],
        [x.record.seq for x in entries],
        [x.record.event_id for x in entries],
        [x.record.canonical for x in entries],
        [x.record.leaf_hash for x in entries],
        [x.record.chain_hash for x in entries],
        [x.topic for x in entries],
        [x.kafka_offset for x in entries],
        [x.event_type for x in entries],
        [x.source for x in entries],
        [x.subject for x in entries],
        [x.model for x in entries],
        [x.version for x in entries],
        [x.actor for x in entries],
        [x.event_time for x in entries],
        [json.dumps(x.data, separators=(",", ":")) for x in entries],
    )


# --------------------------------------------------------------------------
# Chains and checkpoints
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChainState:
    chain: str
    topic: str
    partition: int
    origin: str
    size: int
    signed_size: int | None


async def list_chains(conn: asyncpg.Connection, chain: str | None = None) -> list[ChainState]:
    """Every chain (or one) with its size and the size of its latest checkpoint."""
    rows = await conn.fetch(
        """SELECT c.chain, c.topic, c.partition, c.origin,
                  COALESCE(l.seq + 1, 0) AS size, cp.size AS signed_size
             FROM ledger_chains c
             LEFT JOIN LATERAL (SELECT seq FROM ledger WHERE chain = c.chain
                                 ORDER BY seq DESC LIMIT 1) l ON true
             LEFT JOIN LATERAL (SELECT size FROM ledger_checkpoints WHERE chain = c.chain
                                 ORDER BY size DESC LIMIT 1) cp ON true
            WHERE $1::text IS NULL OR c.chain = $1
            ORDER BY c.chain""",
        chain,
    )
    return [
        ChainState(r["chain"], r["topic"], r["partition"], r["origin"], int(r["size"]),
                   None if r["signed_size"] is None else int(r["signed_size"]))
        for r in rows
    ]


async def chains_present(conn: asyncpg.Connection) -> set[str]:
    """Every chain that has rows or checkpoints, whether or not ``ledger_chains`` lists it
    (a loose index scan: one probe per chain, not a pass over the rows)."""
    rows = await conn.fetch(
        """WITH RECURSIVE c AS (
               (SELECT chain FROM ledger ORDER BY chain LIMIT 1)
               UNION ALL
               SELECT (SELECT l.chain FROM ledger l WHERE l.chain > c.chain ORDER BY l.chain LIMIT 1)
                 FROM c WHERE c.chain IS NOT NULL)
           SELECT chain FROM c WHERE chain IS NOT NULL
           UNION
           SELECT DISTINCT chain FROM ledger_checkpoints"""
    )
    return {r["chain"] for r in rows}


async def insert_checkpoint(conn: asyncpg.Connection, chain: str, signed: SignedCheckpoint) -> bool:
    """Store a signed checkpoint; False when one of that size exists already."""
    cp = signed.checkpoint
    inserted = await conn.fetchval(
        "INSERT INTO ledger_checkpoints (chain, size, root, origin, signed_at, key_name, note) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING true",
        chain, cp.size, cp.root, cp.origin, cp.timestamp, signed.key_name, signed.to_note(),
    )
    return bool(inserted)


async def list_checkpoints(
    conn: asyncpg.Connection,
    chain: str | None = None,
    *,
    after: tuple[str, int] | None = None,
    limit: int | None = None,
    max_size: int | None = None,
) -> list[tuple[str, SignedCheckpoint]]:
    """Stored checkpoints as ``(chain, signed)``, ordered by chain then size."""
    rows = await conn.fetch(
        """SELECT chain, note FROM ledger_checkpoints
            WHERE ($1::text IS NULL OR chain = $1)
              AND ($2::text IS NULL OR (chain, size) > ($2, $3::bigint))
              AND ($4::bigint IS NULL OR size <= $4)
            ORDER BY chain, size
            LIMIT $5""",
        chain, after[0] if after else None, after[1] if after else 0, max_size, limit,
    )
    return [(r["chain"], SignedCheckpoint.from_note(r["note"])) for r in rows]


async def checkpoint_sizes(conn: asyncpg.Connection, chain: str) -> list[int]:
    return [int(r[0]) for r in await conn.fetch(
        "SELECT size FROM ledger_checkpoints WHERE chain = $1 ORDER BY size", chain
    )]


# --------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------


def record_from_row(row: asyncpg.Record) -> LedgerRecord:
    return LedgerRecord(
        row["chain"], int(row["seq"]), row["event_id"], bytes(row["canonical"]),
        bytes(row["leaf_hash"]), bytes(row["chain_hash"]),
    )


def event_type_of(value: str) -> str:
    """Accept a topic name (``model-promoted``) or a CloudEvents type."""
    spec = TOPICS.get(value)
    return spec.event_type if spec is not None else value


@dataclass(frozen=True, slots=True)
class RecordFilter:
    model: str | None = None
    version: str | None = None
    event_type: str | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    chain: str | None = None

    def where(self, params: list[Any]) -> list[str]:
        """SQL conditions for this filter; appends their parameters to ``params``."""
        conds: list[str] = []

        def add(sql: str, value: Any) -> None:
            params.append(value)
            conds.append(sql.format(f"${len(params)}"))

        if self.model is not None:
            add("model = {}", self.model)
        if self.version is not None:
            add("version = {}", self.version)
        if self.event_type is not None:
            add("event_type = {}", event_type_of(self.event_type))
        if self.actor is not None:
            add("actor = {}", self.actor)
        if self.since is not None:
            add("event_time >= {}", self.since)
        if self.until is not None:
            add("event_time < {}", self.until)
        if self.chain is not None:
            add("chain = {}", self.chain)
        return conds


async def find_records(
    conn: asyncpg.Connection,
    flt: RecordFilter,
    *,
    after: tuple[datetime, str] | None = None,
    limit: int = 50,
    extra: Sequence[tuple[str, Any]] = (),
) -> list[asyncpg.Record]:
    """Rows matching ``flt`` in (event_time, event_id) order, after the keyset cursor ``after``.

    ``extra`` adds conditions written with ``{}`` for their one parameter.
    """
    params: list[Any] = []
    conds = flt.where(params)
    for sql, value in extra:
        params.append(value)
        conds.append(sql.format(f"${len(params)}"))
    if after is not None:
        params += [after[0], after[1]]
        conds.append(f"(event_time, event_id) > (${len(params) - 1}, ${len(params)})")
    params.append(limit)
    where = " AND ".join(conds) or "true"
    return list(await conn.fetch(
        f"SELECT {RECORD_COLUMNS} FROM ledger WHERE {where} ORDER BY event_time, event_id LIMIT ${len(params)}",
        *params,
    ))


async def get_record(conn: asyncpg.Connection, event_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {RECORD_COLUMNS} FROM ledger WHERE event_id = $1", event_id
    )
    return row


async def version_records(conn: asyncpg.Connection, model: str, version: str) -> list[asyncpg.Record]:
    """Every record about one version: its own events, the traffic splits that
    route to it, and alias moves away from it; in time order."""
    return list(await conn.fetch(
        f"""SELECT {RECORD_COLUMNS} FROM ledger
             WHERE model = $1
               AND (version = $2
                    OR (event_type = $3
                        AND data->'routes' @> jsonb_build_array(jsonb_build_object('version', $2::text)))
                    OR (event_type = $4 AND data->>'previous_version' = $2))
             ORDER BY event_time, chain, seq""",
        model, version, TOPICS["traffic-split-changed"].event_type, TOPICS["model-alias-changed"].event_type,
    ))


async def traffic_split_at(conn: asyncpg.Connection, model: str, at: datetime) -> asyncpg.Record | None:
    """The latest ``traffic-split-changed`` record of ``model`` at or before ``at``."""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"""SELECT {RECORD_COLUMNS}, data FROM ledger
             WHERE model = $1 AND event_type = $2 AND event_time <= $3
             ORDER BY event_time DESC, (data->>'seq')::bigint DESC NULLS LAST, event_id DESC
             LIMIT 1""",
        model, TOPICS["traffic-split-changed"].event_type, at,
    )
    return row


APPROVAL_TYPES = [TOPICS["promotion-reviewed"].event_type, TOPICS["model-promoted"].event_type]


async def find_approvals(
    conn: asyncpg.Connection,
    *,
    model: str | None,
    since: datetime | None,
    until: datetime | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Reviews and promotions (who approved what), in time order."""
    params: list[Any] = [APPROVAL_TYPES]
    conds = ["event_type = ANY($1::text[])"]
    conds += RecordFilter(model=model, since=since, until=until).where(params)
    if after is not None:
        params += [after[0], after[1]]
        conds.append(f"(event_time, event_id) > (${len(params) - 1}, ${len(params)})")
    params.append(limit)
    return list(await conn.fetch(
        f"SELECT {RECORD_COLUMNS}, data FROM ledger WHERE {' AND '.join(conds)} "
        f"ORDER BY event_time, event_id LIMIT ${len(params)}",
        *params,
    ))
