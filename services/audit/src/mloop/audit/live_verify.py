"""Verification of the ledger in the database, chain by chain, streaming.

Rows are read in ``seq`` order through a server-side cursor and replayed by
``ledger_domain.verify_chain`` in a worker thread (hashing a million rows
must not stall the event loop), against the checkpoints whose signature
checks out with a pinned public key: those stored in the database and those
kept outside it. A checkpoint from outside whose chain has vanished from the
database is reported as a chain truncated to nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mloop.audit import store
from mloop.ledger.checkpoint import SignedCheckpoint
from mloop.ledger.checkpoint import verify as verify_signature
from mloop.ledger.ledger_domain import LedgerRecord, VerifyResult, verify_chain

__all__ = ["ChainVerification", "LedgerVerification", "ThreadBridge", "chain_rows", "stream_to_thread", "verify_ledger"]

T = TypeVar("T")
R = TypeVar("R")


class ThreadBridge:
    """Lets synchronous code in a worker thread iterate async batches produced on the event loop.

    Each ``iterate`` fetches the next batch on the loop while the thread
    works on the current one. Call ``close`` on the loop afterwards: it waits
    for fetches still in flight and closes the generators.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._pending: list[concurrent.futures.Future[Any]] = []
        self._sources: list[AsyncIterator[Any]] = []

    def iterate(self, batches: AsyncIterator[Sequence[T]]) -> Iterator[T]:
        self._sources.append(batches)

        async def next_batch() -> Sequence[T] | None:
            return await anext(batches, None)

        def submit() -> concurrent.futures.Future[Sequence[T] | None]:
            fut = asyncio.run_coroutine_threadsafe(next_batch(), self.loop)
            self._pending.append(fut)
            return fut

        def items() -> Iterator[T]:
            fut = submit()
            while True:
                batch = fut.result()
                if batch is None:
                    return
                fut = submit()
                yield from batch

        return items()

    async def close(self) -> None:
        for fut in self._pending:
            if not fut.done():
                await asyncio.wrap_future(fut)
        for source in self._sources:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()


async def stream_to_thread(batches: AsyncIterator[Sequence[T]], consume: Callable[[Iterator[T]], R]) -> R:
    """Run ``consume`` in a worker thread over the items of async ``batches``."""
    bridge = ThreadBridge(asyncio.get_running_loop())
    try:
        return await asyncio.to_thread(consume, bridge.iterate(batches))
    finally:
        await bridge.close()


async def chain_rows(
    conn: asyncpg.Connection, chain: str, batch: int = 5000, *, below: int | None = None,
    seqs: Sequence[int] | None = None,
) -> AsyncIterator[list[LedgerRecord]]:
    """Rows of ``chain`` in ``seq`` order through a server-side cursor (``conn`` must be in a
    transaction); only ``seq < below`` and only ``seqs`` when given."""
    cursor = await conn.cursor(
        "SELECT chain, seq, event_id, canonical, leaf_hash, chain_hash FROM ledger "
        "WHERE chain = $1 AND ($2::bigint IS NULL OR seq < $2) AND ($3::bigint[] IS NULL OR seq = ANY($3)) "
        "ORDER BY seq",
        chain, below, None if seqs is None else list(seqs),
    )
    while True:
        rows = await cursor.fetch(batch)
        if not rows:
            return
        yield [store.record_from_row(r) for r in rows]


@dataclass(frozen=True, slots=True)
class ChainVerification:
    chain: str
    origin: str
    ok: bool
    rows: int
    first_bad_seq: int | None
    reason: str
    signed_size: int
    checkpoints: int
    problems: tuple[str, ...] = ()
    root: str | None = None


@dataclass(frozen=True, slots=True)
class LedgerVerification:
    ok: bool
    chains: tuple[ChainVerification, ...]
    problems: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        lines = [f"audit ledger: {'VERIFIED' if self.ok else 'FAILED'}"]
        lines += [f"  {p}" for p in self.problems]
        for c in self.chains:
            lines.append(
                f"  chain {c.chain}: {'ok' if c.ok else 'FAILED'}; {c.rows} rows, "
                f"{c.checkpoints} signed checkpoints, signed up to size {c.signed_size}"
            )
            if c.first_bad_seq is not None:
                lines.append(f"    first bad seq: {c.first_bad_seq}")
            if not c.ok:
                lines.append(f"    {c.reason}")
            lines += [f"    {p}" for p in c.problems]
        return "\n".join(lines)


def _replay(checkpoints: Sequence[SignedCheckpoint], chain: str, rows: Iterator[LedgerRecord]) -> VerifyResult:
    return verify_chain(rows, 0, checkpoints, chain=chain)


def _trusted(signed: SignedCheckpoint, keys: Sequence[Ed25519PublicKey]) -> bool:
    return any(verify_signature(signed, k) for k in keys)


async def verify_ledger(
    conn: asyncpg.Connection,
    public_keys: Ed25519PublicKey | Sequence[Ed25519PublicKey],
    independent: Sequence[SignedCheckpoint] = (),
    *,
    chain: str | None = None,
    batch: int = 5000,
    grace_s: float | None = None,
) -> LedgerVerification:
    """Verify every chain (or one) of the ledger reachable through ``conn``.

    ``public_keys`` are the pinned keys; checkpoints not signed by one of
    them are reported and ignored. ``independent`` are checkpoints kept
    outside Postgres, matched to chains by origin. ``ok`` is True when every
    chain replays and matches every trusted checkpoint, and every chain has
    at least one (nothing unsigned goes unnoticed: see ``signed_size``).

    ``grace_s`` is for a live ledger: a chain whose every row was recorded
    within the last ``grace_s`` seconds (younger than the checkpoint period)
    may have no checkpoint yet; its rows must still replay. Offline checks
    leave it None and stay strict.
    """
    keys = [public_keys] if isinstance(public_keys, Ed25519PublicKey) else list(public_keys)
    problems: list[str] = []
    results: list[ChainVerification] = []
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        chains = await store.list_chains(conn, chain)
        known_origins = {c.origin for c in chains}
        if chain is None:
            unlisted = await store.chains_present(conn) - {c.chain for c in chains}
            problems += [f"chain {name} has rows or checkpoints but is missing from ledger_chains"
                         for name in sorted(unlisted)]
        outside: dict[str, list[SignedCheckpoint]] = {}
        for signed in independent:
            outside.setdefault(signed.checkpoint.origin, []).append(signed)
        for state in chains:
            chain_problems: list[str] = []
            trusted: list[SignedCheckpoint] = []
            stored = [s for _, s in await store.list_checkpoints(conn, state.chain)]
            for signed in stored + outside.get(state.origin, []):
                if signed.checkpoint.origin != state.origin:
                    chain_problems.append(f"checkpoint at size {signed.checkpoint.size} names origin "
                                          f"{signed.checkpoint.origin!r}, not {state.origin!r}")
                elif not _trusted(signed, keys):
                    chain_problems.append(f"checkpoint at size {signed.checkpoint.size} is not signed by a "
                                          "trusted key")
                else:
                    trusted.append(signed)
            result = await stream_to_thread(
                chain_rows(conn, state.chain, batch), functools.partial(_replay, trusted, state.chain)
            )
            signed_size = max((s.checkpoint.size for s in trusted), default=0)
            ok = result.ok and not chain_problems
            reason = result.reason
            if ok and result.count and signed_size == 0:
                oldest_age = None
                if grace_s is not None:
                    oldest_age = await conn.fetchval(
                        "SELECT extract(epoch FROM now() - min(recorded_at)) FROM ledger WHERE chain = $1",
                        state.chain,
                    )
                if grace_s is not None and oldest_age is not None and float(oldest_age) <= grace_s:
                    reason = (f"{result.count} rows not checkpointed yet (all recorded within the last "
                              f"{grace_s:.0f} s); they replay consistently")
                else:
                    ok, reason = False, "no trusted checkpoint covers these rows: nothing is authenticated"
            results.append(ChainVerification(
                state.chain, state.origin, ok, result.count, result.first_bad_seq, reason, signed_size,
                len({s.checkpoint.size for s in trusted}), tuple(chain_problems), result.root.hex(),
            ))
        if chain is None:
            for origin, signed_list in sorted(outside.items()):
                if origin in known_origins:
                    continue
                valid = [s for s in signed_list if _trusted(s, keys)]
                if not valid:
                    continue
                size = max(s.checkpoint.size for s in valid)
                if size == 0:
                    continue
                results.append(ChainVerification(
                    origin, origin, False, 0, 0,
                    f"truncated: a checkpoint was signed at size {size} but the chain is gone from the database",
                    size, len(valid),
                ))
    ok = all(c.ok for c in results) and not problems
    return LedgerVerification(ok, tuple(results), tuple(problems))
