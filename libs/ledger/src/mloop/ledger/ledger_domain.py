"""The audit ledger's rows and their verification, without I/O.

A *chain* is one partition of the ledger (for example one per producing
service). Its rows are numbered by ``seq`` without gaps, starting at 0, so a
row's ``seq`` is also its leaf index in the chain's RFC 6962 Merkle tree.
Each row carries:

* ``canonical`` -- the canonical JSON of the CloudEvent (``canonical.py``);
* ``leaf_hash`` -- ``SHA-256(0x00 || canonical)``;
* ``chain_hash`` -- ``SHA-256(previous chain_hash || leaf_hash)``, with 32
  zero bytes before the first row.

The chain hash gives cheap, linear tamper evidence row by row; the Merkle
tree gives compact proofs and signed checkpoints. Someone able to rewrite
every row after a change can recompute both, which is why checkpoints are
signed and copied out of the database: ``verify_chain`` compares the
recomputed tree with them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mloop.ledger.canonical import canonicalize
from mloop.ledger.checkpoint import Checkpoint, SignedCheckpoint
from mloop.ledger.merkle import (
    EMPTY_ROOT,
    GENESIS_CHAIN_HASH,
    HASH_SIZE,
    MerkleFrontier,
    SubtreeNode,
    chain_hash,
    leaf_hash,
)

__all__ = [
    "LedgerHead",
    "LedgerRecord",
    "VerifyResult",
    "build_record",
    "verify_chain",
]


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    """One row of the ledger, as stored."""

    chain: str
    seq: int
    event_id: str
    canonical: bytes
    leaf_hash: bytes
    chain_hash: bytes


def build_record(chain: str, seq: int, prev_chain_hash: bytes, event: Mapping[str, Any]) -> LedgerRecord:
    """Build the row for ``event`` (a CloudEvent as a JSON-like mapping).

    ``prev_chain_hash`` is the ``chain_hash`` of row ``seq - 1``, or
    ``GENESIS_CHAIN_HASH`` for the first row. Raises ``ValueError`` when the
    event has no string ``id``, when ``prev_chain_hash`` is not 32 bytes or
    ``seq`` is negative, and ``CanonicalizationError`` (a ``ValueError``)
    when the event has no canonical JSON form.
    """
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise ValueError("a CloudEvent needs a non-empty string 'id'")
    if len(prev_chain_hash) != HASH_SIZE:
        raise ValueError(f"prev_chain_hash must be {HASH_SIZE} bytes")
    if seq < 0:
        raise ValueError(f"seq {seq} is negative")
    canonical = canonicalize(event)
    leaf = leaf_hash(canonical)
    return LedgerRecord(chain, seq, event_id, canonical, leaf, chain_hash(prev_chain_hash, leaf))


@dataclass(slots=True)
class LedgerHead:
    """The tip of one chain: everything needed to append without reading old rows.

    Persist ``size``, ``chain_hash`` and ``frontier.hashes`` next to the
    chain (at most 64 hashes) and update them in the same transaction as the
    row insert.
    """

    chain: str
    size: int = 0
    chain_hash: bytes = GENESIS_CHAIN_HASH
    frontier: MerkleFrontier = field(default_factory=MerkleFrontier)

    def __post_init__(self) -> None:
        if self.frontier.size != self.size:
            raise ValueError(f"frontier size {self.frontier.size} != head size {self.size}")

    def append(self, event: Mapping[str, Any]) -> tuple[LedgerRecord, list[SubtreeNode]]:
        """Build the next row for ``event`` and advance the head.

        Also returns the perfect subtrees completed by the new leaf, for a
        store that keeps them to serve proofs. Raises like ``build_record``;
        the head is unchanged on error.
        """
        record = build_record(self.chain, self.size, self.chain_hash, event)
        nodes = self.frontier.append(record.leaf_hash)
        self.size += 1
        self.chain_hash = record.chain_hash
        return record, nodes

    def root(self) -> bytes:
        """The Merkle root over all ``size`` rows: what a checkpoint signs."""
        return self.frontier.root()


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Outcome of ``verify_chain``.

    ``count`` rows were verified; ``root`` is the Merkle root over them (the
    verified prefix when ``ok`` is False). ``first_bad_seq`` names the first
    row that is wrong or missing, or is None when the chain is fine or when
    the damage can only be bounded (a checkpoint whose root does not match,
    ``reason`` then gives the range).
    """

    ok: bool
    first_bad_seq: int | None
    reason: str
    count: int
    root: bytes


def _root_of(stack: list[bytes]) -> bytes:
    if not stack:
        return EMPTY_ROOT
    h = stack[-1]
    for left in reversed(stack[:-1]):
        h = hashlib.sha256(b"\x01" + left + h).digest()
    return h


def verify_chain(
    records: Iterable[LedgerRecord],
    expected_first_seq: int = 0,
    checkpoints: Iterable[Checkpoint | SignedCheckpoint] = (),
    *,
    chain: str | None = None,
) -> VerifyResult:
    """Recompute and check one whole chain, streaming, from its first row.

    ``records`` must be the chain's rows in ``seq`` order starting at
    ``expected_first_seq``. For every row the leaf hash is recomputed from
    ``canonical`` and the chain hash from its predecessor; ``seq`` must
    increase by one. The Merkle tree is grown incrementally and its root is
    compared with every checkpoint at the moment the chain reaches that
    checkpoint's size; a checkpoint larger than the chain means rows were
    removed from the end.

    ``checkpoints`` must belong to this chain and their signatures must
    already have been checked (``checkpoint.verify``). ``chain`` defaults to
    the chain of the first record. Stops at the first problem. Memory stays
    constant apart from the Merkle frontier (at most 64 hashes).
    """
    heads = sorted(
        (c.checkpoint if isinstance(c, SignedCheckpoint) else c for c in checkpoints),
        key=lambda c: c.size,
    )
    seen: dict[int, bytes] = {}
    for cp in heads:
        if seen.setdefault(cp.size, cp.root) != cp.root:
            return VerifyResult(
                False,
                None,
                f"two checkpoints at size {cp.size} have different roots",
                0,
                EMPTY_ROOT,
            )
    sizes = [cp.size for cp in heads]
    roots = [cp.root for cp in heads]

    sha = hashlib.sha256
    stack: list[bytes] = []
    n = 0
    prev = GENESIS_CHAIN_HASH
    expected = expected_first_seq
    good_size = 0  # largest checkpoint size confirmed so far
    cp_i = 0
    while cp_i < len(sizes) and sizes[cp_i] == 0:
        if roots[cp_i] != EMPTY_ROOT:
            return VerifyResult(False, None, "checkpoint at size 0 has a non-empty root", 0, EMPTY_ROOT)
        cp_i += 1
    next_size = sizes[cp_i] if cp_i < len(sizes) else -1

    def failed(seq: int | None, reason: str) -> VerifyResult:
        return VerifyResult(False, seq, reason, n, _root_of(stack))

    for rec in records:
        if chain is None:
            chain = rec.chain
        elif rec.chain != chain:
            return failed(expected, f"row seq {rec.seq} belongs to chain {rec.chain!r}, not {chain!r}")
        if rec.seq != expected:
            if rec.seq > expected:
                why = f"seq {expected} is missing or out of order (found seq {rec.seq} in its place)"
            else:
                why = f"seq {rec.seq} repeated or out of order where seq {expected} belongs"
            return failed(expected, why)
        leaf = sha(b"\x00" + rec.canonical).digest()
        if leaf != rec.leaf_hash:
            return failed(expected, f"seq {expected}: event does not match its stored leaf hash")
        link = sha(prev + leaf).digest()
        if link != rec.chain_hash:
            return failed(expected, f"seq {expected}: chain hash does not follow from seq {expected - 1}")
        prev = link
        # Append to the frontier (inlined: this loop is the hot path).
        m = n
        while m & 1:
            leaf = sha(b"\x01" + stack.pop() + leaf).digest()
            m >>= 1
        stack.append(leaf)
        n += 1
        expected += 1
        if n == next_size:
            if _root_of(stack) != roots[cp_i]:
                first, last = expected_first_seq + good_size, expected - 1
                return failed(
                    None,
                    f"Merkle root over {n} rows does not match the signed checkpoint at size {n}: "
                    f"rows were altered somewhere in seq {first}..{last}",
                )
            good_size = n
            while cp_i < len(sizes) and sizes[cp_i] == n:
                cp_i += 1
            next_size = sizes[cp_i] if cp_i < len(sizes) else -1

    if cp_i < len(sizes):
        return failed(
            expected,
            f"truncated: a checkpoint was signed at size {sizes[-1]} but only {n} rows are present",
        )
    return VerifyResult(True, None, "ok", n, _root_of(stack))
