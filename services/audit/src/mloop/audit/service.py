"""The audit service's use cases beyond appending: evidence bundles straight
from the database (format: ``mloop.ledger.bundle``).

Without a filter every chain is exported in full, with all its
checkpoints: the auditor replays each chain. For a model or a time range
only the matching rows go out ("subset"), each with an inclusion proof
against the chain's latest checkpoint. Pending rows are signed first, so
the bundle covers everything recorded when it was asked for.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import asyncpg

from mloop.audit import store
from mloop.audit.checkpointing import Checkpointer
from mloop.audit.live_verify import ThreadBridge, chain_rows
from mloop.ledger.bundle import ChainExport, InclusionProof, pack_bundle, write_bundle

__all__ = ["export_bundle"]


async def _matching_seqs(
    conn: asyncpg.Connection, chain: str, below: int, flt: store.RecordFilter
) -> list[int]:
    params: list[object] = [chain, below]
    conds = ["chain = $1", "seq < $2", *flt.where(params)]
    rows = await conn.fetch(f"SELECT seq FROM ledger WHERE {' AND '.join(conds)} ORDER BY seq", *params)
    return [int(r[0]) for r in rows]


async def export_bundle(
    pool: asyncpg.Pool,
    checkpointer: Checkpointer,
    directory: Path,
    *,
    model: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[Path, int]:
    """Write a bundle under ``directory`` and pack it; return the ``.tar.gz`` and the rows exported."""
    await checkpointer.checkpoint(pool)
    flt = store.RecordFilter(model=model, since=since, until=until)
    full = model is None and since is None and until is None
    bundle_dir = directory / "mloop-audit-evidence"
    loop = asyncio.get_running_loop()
    bridge = ThreadBridge(loop)
    rows = 0
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        exports: list[ChainExport] = []
        for state in await store.list_chains(conn):
            size = state.signed_size or 0
            if size == 0:
                continue
            if full:
                signed = [s for _, s in await store.list_checkpoints(conn, state.chain, max_size=size)]
                exports.append(ChainExport(
                    state.chain, state.origin, signed,
                    bridge.iterate(chain_rows(conn, state.chain, below=size)), export="full",
                ))
                rows += size
                continue
            seqs = await _matching_seqs(conn, state.chain, size, flt)
            if not seqs:
                continue
            latest = [s for _, s in await store.list_checkpoints(conn, state.chain, max_size=size)][-1:]
            paths = await store.inclusion_proofs(conn, state.chain, seqs, size)
            exports.append(ChainExport(
                state.chain, state.origin, latest,
                bridge.iterate(chain_rows(conn, state.chain, seqs=seqs)), export="subset",
                inclusion=[InclusionProof(state.chain, s, size, tuple(paths[s])) for s in seqs],
            ))
            rows += len(seqs)
        try:
            await asyncio.to_thread(write_bundle, bundle_dir, exports)
        finally:
            await bridge.close()
    archive = await asyncio.to_thread(pack_bundle, bundle_dir, directory / "mloop-audit-evidence.tar.gz")
    return archive, rows
