"""Evidence bundles: the format, and writing one.

An evidence bundle is what leaves the database: ledger rows, the signed
checkpoints that vouch for them and the Merkle proofs that connect the two.
:mod:`mloop.ledger.verify` checks one offline.

Bundle format (version ``mloop-audit-bundle/1``)
================================================

A directory, or a tar archive of one (``.tar``, ``.tar.gz``, ``.tgz``; the
files may sit at the top of the archive or under a single directory), with::

    records.jsonl       the exported rows, one JSON object per line
    checkpoints.json    the chains in the bundle and their signed checkpoints
    proofs.json         Merkle proofs (may be absent when every chain is "full")

``records.jsonl``: rows grouped by chain, ascending ``seq`` within a chain::

    {"chain": "registry", "seq": 0, "event_id": "…",
     "leaf_hash": "<64 hex>", "chain_hash": "<64 hex>", "event": {…CloudEvent…}}

``event`` is the full CloudEvent; the verifier recomputes its canonical JSON
(``canonical.py``), hence ``leaf_hash = SHA-256(0x00 || canonical)`` and
``chain_hash = SHA-256(previous chain_hash || leaf_hash)`` (32 zero bytes
before the chain's first row). ``event_id`` must equal ``event["id"]``.
Writers should emit the stored canonical bytes verbatim as ``event``.

``checkpoints.json``::

    {"format": "mloop-audit-bundle/1",
     "chains": {
       "registry": {
         "origin": "mloop.example/audit/registry",
         "first_seq": 0,
         "export": "full" | "subset",
         "checkpoints": [<SignedCheckpoint.to_dict()>, …]}}}

Each checkpoint is a C2SP signed note (``checkpoint.py``) whose origin must
equal the chain's ``origin``. Leaf index = ``seq - first_seq``.

``proofs.json``::

    {"inclusion":   [{"chain": "registry", "seq": 17, "tree_size": 1024,
                      "path": ["<64 hex>", …]}, …],
     "consistency": [{"chain": "registry", "old_size": 512, "new_size": 1024,
                      "path": ["<64 hex>", …]}, …]}
"""

from __future__ import annotations

import itertools
import json
import os
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mloop.ledger.checkpoint import SignedCheckpoint
from mloop.ledger.ledger_domain import LedgerRecord
from mloop.ledger.merkle import consistency_proof, inclusion_proof

__all__ = [
    "BUNDLE_FORMAT",
    "CHECKPOINTS_FILE",
    "PROOFS_FILE",
    "RECORDS_FILE",
    "ChainExport",
    "ConsistencyProof",
    "ExportKind",
    "InclusionProof",
    "build_proofs",
    "pack_bundle",
    "write_bundle",
]

BUNDLE_FORMAT = "mloop-audit-bundle/1"
RECORDS_FILE = "records.jsonl"
CHECKPOINTS_FILE = "checkpoints.json"
PROOFS_FILE = "proofs.json"

ExportKind = Literal["full", "subset"]


@dataclass(frozen=True, slots=True)
class InclusionProof:
    chain: str
    seq: int
    tree_size: int
    path: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    chain: str
    old_size: int
    new_size: int
    path: tuple[bytes, ...]


@dataclass(slots=True)
class ChainExport:
    """One chain's part of a bundle, as handed to ``write_bundle``."""

    chain: str
    origin: str
    checkpoints: Sequence[SignedCheckpoint]
    records: Iterable[LedgerRecord]
    export: ExportKind = "full"
    first_seq: int = 0
    inclusion: Sequence[InclusionProof] = ()
    consistency: Sequence[ConsistencyProof] = ()


def _record_line(record: LedgerRecord) -> str:
    head = json.dumps(
        {
            "chain": record.chain,
            "seq": record.seq,
            "event_id": record.event_id,
            "leaf_hash": record.leaf_hash.hex(),
            "chain_hash": record.chain_hash.hex(),
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )
    # The stored canonical bytes are valid JSON: embed them verbatim.
    return f'{head[:-1]},"event":{record.canonical.decode("utf-8")}}}\n'


def write_bundle(directory: str | os.PathLike[str], exports: Iterable[ChainExport]) -> Path:
    """Write a bundle directory (created if needed); records are streamed to disk."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    chains: dict[str, Any] = {}
    inclusion: list[dict[str, Any]] = []
    consistency: list[dict[str, Any]] = []
    with (out / RECORDS_FILE).open("w", encoding="utf-8") as fh:
        for ex in exports:
            if ex.chain in chains:
                raise ValueError(f"chain {ex.chain!r} exported twice")
            chains[ex.chain] = {
                "origin": ex.origin,
                "first_seq": ex.first_seq,
                "export": ex.export,
                "checkpoints": [c.to_dict() for c in ex.checkpoints],
            }
            for record in ex.records:
                if record.chain != ex.chain:
                    raise ValueError(f"record of chain {record.chain!r} in export of {ex.chain!r}")
                fh.write(_record_line(record))
            inclusion += [
                {
                    "chain": p.chain,
                    "seq": p.seq,
                    "tree_size": p.tree_size,
                    "path": [h.hex() for h in p.path],
                }
                for p in ex.inclusion
            ]
            consistency += [
                {
                    "chain": p.chain,
                    "old_size": p.old_size,
                    "new_size": p.new_size,
                    "path": [h.hex() for h in p.path],
                }
                for p in ex.consistency
            ]
    doc = {"format": BUNDLE_FORMAT, "chains": chains}
    (out / CHECKPOINTS_FILE).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    proofs = {"inclusion": inclusion, "consistency": consistency}
    (out / PROOFS_FILE).write_text(json.dumps(proofs, indent=1) + "\n")
    return out


def pack_bundle(directory: str | os.PathLike[str], archive: str | os.PathLike[str]) -> Path:
    """Pack a bundle directory into a gzip-compressed tar file."""
    src, dst = Path(directory).resolve(), Path(archive)
    with tarfile.open(dst, "w:gz") as tar:
        for name in (RECORDS_FILE, CHECKPOINTS_FILE, PROOFS_FILE):
            if (src / name).exists():
                tar.add(src / name, arcname=f"{src.name or 'bundle'}/{name}")
    return dst


def build_proofs(
    chain: str,
    leaf_hashes: Sequence[bytes],
    seqs: Iterable[int],
    checkpoint_sizes: Iterable[int],
    first_seq: int = 0,
) -> tuple[list[InclusionProof], list[ConsistencyProof]]:
    """Compute the proofs a subset export needs, from the chain's leaf hashes in memory.

    Each row in ``seqs`` is proven against the largest checkpoint size, and
    consistency proofs link consecutive checkpoint sizes. Raises
    ``ValueError`` when a row is not covered by the largest checkpoint. Costs
    O(n) hashing per proof; a store should rather serve proofs from stored
    subtree nodes (see ``merkle.perfect_subtrees``).
    """
    sizes = sorted({s for s in checkpoint_sizes if s > 0})
    inclusion = []
    if sizes:
        top = sizes[-1]
        inclusion = [
            InclusionProof(chain, seq, top, tuple(inclusion_proof(leaf_hashes, seq - first_seq, top))) for seq in seqs
        ]
    elif any(True for _ in seqs):
        raise ValueError("rows can only be proven against a checkpoint")
    consistency = [
        ConsistencyProof(chain, a, b, tuple(consistency_proof(leaf_hashes, a, b))) for a, b in itertools.pairwise(sizes)
    ]
    return inclusion, consistency
