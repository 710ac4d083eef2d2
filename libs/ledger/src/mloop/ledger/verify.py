"""Offline verification of an audit evidence bundle.

An evidence bundle is what leaves the database: ledger rows, the signed
checkpoints that vouch for them and the Merkle proofs that connect the two.
Anyone holding the ledger's public key can check it without Postgres.

The format is described in :mod:`mloop.ledger.bundle`.

What is checked
===============

* Every checkpoint's signature, by one of the trusted public keys, and its
  origin. Checkpoints that fail are reported and not trusted. Checkpoints
  obtained independently of the bundle (kept outside Postgres) can be added;
  they are what reveals a log cut short together with its newest checkpoints.
  Two validly signed checkpoints of one size with different roots are
  reported as a fork.
* ``"full"`` export (every row from ``first_seq`` on): the rows are replayed
  with ``ledger_domain.verify_chain``: seq continuity, leaf and chain hashes,
  and the Merkle root at every checkpoint size; a checkpoint larger than the
  rows present reveals truncation. Rows after the last checkpoint are covered
  by the chain hash only; the report counts them as ``unsigned``. A chain
  with rows but no trusted checkpoint fails: nothing in it is authenticated.
* ``"subset"`` export: each row needs an inclusion proof against a trusted
  checkpoint (its ``tree_size`` names it); chain hashes are checked where
  consecutive rows are present (and for the first row of the chain).
  Consecutive checkpoints need a consistency proof, so that the log is shown
  to be append-only between them.
* Consistency proofs present in a ``"full"`` bundle are checked too (the
  replay already implies them).

``verify_bundle`` raises ``BundleFormatError`` only when the path is not a
readable bundle at all; every problem with the evidence itself is reported in
the returned ``BundleReport``.
"""

from __future__ import annotations

import itertools
import json
import os
import tarfile
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, TypeGuard

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mloop.ledger.bundle import (
    BUNDLE_FORMAT,
    CHECKPOINTS_FILE,
    PROOFS_FILE,
    RECORDS_FILE,
    ConsistencyProof,
)
from mloop.ledger.canonical import canonicalize
from mloop.ledger.checkpoint import (
    CheckpointFormatError,
    SignedCheckpoint,
    key_id,
)
from mloop.ledger.checkpoint import verify as verify_signature
from mloop.ledger.ledger_domain import LedgerRecord, verify_chain
from mloop.ledger.merkle import (
    GENESIS_CHAIN_HASH,
    HASH_SIZE,
    chain_hash,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)

__all__ = [
    "BundleFormatError",
    "BundleReport",
    "ChainReport",
    "verify_bundle",
]

_MAX_PROBLEMS = 20


class BundleFormatError(ValueError):
    """The path is not a readable evidence bundle."""


@dataclass(frozen=True, slots=True)
class ChainReport:
    """What was established about one chain.

    ``signed_size`` is the largest trusted checkpoint size. In a full export
    the ``unsigned`` rows beyond it are protected by the chain hash only:
    they are consistent, but nothing signed vouches for them yet.
    """

    chain: str
    export: str
    ok: bool
    records: int
    checkpoints: int
    signed_size: int
    first_bad_seq: int | None
    problems: tuple[str, ...]
    root: str | None = None
    unsigned: int = 0


@dataclass(frozen=True, slots=True)
class BundleReport:
    ok: bool
    chains: tuple[ChainReport, ...]
    problems: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        lines = [f"evidence bundle: {'VERIFIED' if self.ok else 'FAILED'}"]
        lines += [f"  bundle: {p}" for p in self.problems]
        for c in self.chains:
            status = "ok" if c.ok else "FAILED"
            lines.append(
                f"  chain {c.chain} ({c.export}): {status}; {c.records} records, "
                f"{c.checkpoints} signed checkpoints, signed up to size {c.signed_size}"
            )
            if c.unsigned and c.ok:
                lines.append(f"    {c.unsigned} rows after the last checkpoint are linked by chain hash only")
            if c.first_bad_seq is not None:
                lines.append(f"    first bad seq: {c.first_bad_seq}")
            lines += [f"    {p}" for p in c.problems]
        return "\n".join(lines)


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


# What reading a damaged file or compressed archive can raise.
_ARCHIVE_ERRORS = (OSError, EOFError, tarfile.TarError, zlib.error)


class _Source:
    """Opens the bundle's files from a directory or a tar archive."""

    def __init__(self, path: Path) -> None:
        self._dir: Path | None = None
        self._tar: tarfile.TarFile | None = None
        self._members: dict[str, tarfile.TarInfo] = {}
        if path.is_dir():
            self._dir = path
        elif path.is_file():
            try:
                # Kept open while the bundle is read; closed by close().
                self._tar = tarfile.open(path, "r:*")  # noqa: SIM115
            except (tarfile.TarError, OSError) as exc:
                raise BundleFormatError(f"{path} is neither a directory nor a tar archive") from exc
            try:
                members = self._tar.getmembers()
            except _ARCHIVE_ERRORS as exc:
                self._tar.close()
                raise BundleFormatError(f"{path} is a damaged archive: {exc}") from exc
            for info in members:
                parts = Path(info.name).parts
                if info.isfile() and 1 <= len(parts) <= 2:
                    if parts[-1] in self._members:
                        self._tar.close()
                        raise BundleFormatError(f"archive holds {parts[-1]} more than once")
                    self._members[parts[-1]] = info
        else:
            raise BundleFormatError(f"{path} does not exist")

    def exists(self, name: str) -> bool:
        if self._dir is not None:
            return (self._dir / name).is_file()
        return name in self._members

    def open(self, name: str) -> IO[bytes]:
        if not self.exists(name):
            raise BundleFormatError(f"bundle has no {name}")
        if self._dir is not None:
            return (self._dir / name).open("rb")
        assert self._tar is not None
        fh = self._tar.extractfile(self._members[name])
        if fh is None:
            raise BundleFormatError(f"cannot read {name} from the archive")
        return fh

    def load_json(self, name: str) -> Any:
        with self.open(name) as fh:
            try:
                return json.load(fh)
            except (ValueError, RecursionError) as exc:
                raise BundleFormatError(f"{name} is not valid JSON: {exc}") from exc

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()


class _BadRow(Exception):
    """A records.jsonl line that cannot be turned into a ledger row."""


def _hash_from_hex(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * HASH_SIZE:
        raise _BadRow(f"{what} is not {2 * HASH_SIZE} hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise _BadRow(f"{what} is not hex") from None


def _path_from_hex(value: Any) -> tuple[bytes, ...] | None:
    """A proof path, or None when it is not a list of 32-byte hex hashes."""
    if not isinstance(value, list):
        return None
    try:
        return tuple(_hash_from_hex(v, "proof element") for v in value)
    except _BadRow:
        return None


def _is_count(value: Any) -> TypeGuard[int]:
    return type(value) is int and value >= 0


@dataclass(slots=True)
class _Line:
    lineno: int
    chain: str | None
    data: dict[str, Any] | None
    error: str | None = None


def _read_lines(fh: IO[bytes]) -> Iterator[_Line]:
    chain: str | None = None
    for lineno, raw in enumerate(fh, start=1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            yield _Line(lineno, chain, None, f"line {lineno}: not valid JSON ({exc})")
            continue
        if not isinstance(data, dict) or not isinstance(data.get("chain"), str):
            yield _Line(lineno, chain, None, f"line {lineno}: not a record object with a chain")
            continue
        chain = data["chain"]
        yield _Line(lineno, chain, data)


def _to_record(line: _Line) -> LedgerRecord:
    if line.data is None:
        raise _BadRow(line.error or f"line {line.lineno}: unreadable")
    d = line.data
    seq, event, event_id = d.get("seq"), d.get("event"), d.get("event_id")
    if not _is_count(seq):
        raise _BadRow(f"line {line.lineno}: seq is not a non-negative integer")
    if not isinstance(event, dict):
        raise _BadRow(f"line {line.lineno}: event is not a JSON object")
    if not isinstance(event_id, str) or event.get("id") != event_id:
        raise _BadRow(f"line {line.lineno}: event_id does not match the event's id")
    try:
        leaf = _hash_from_hex(d.get("leaf_hash"), "leaf_hash")
        link = _hash_from_hex(d.get("chain_hash"), "chain_hash")
        canonical = canonicalize(event)
    except _BadRow as exc:
        raise _BadRow(f"line {line.lineno}: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise _BadRow(f"line {line.lineno}: event has no canonical form ({exc})") from None
    return LedgerRecord(str(line.chain), seq, event_id, canonical, leaf, link)


@dataclass(slots=True)
class _ChainState:
    """Everything known about one chain before its rows are read."""

    chain: str
    origin: str
    export: str
    first_seq: int
    trusted: dict[int, bytes] = field(default_factory=dict)  # size -> root
    signed: list[SignedCheckpoint] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    first_bad_seq: int | None = None
    records: int = 0
    root: str | None = None
    seen_records: bool = False

    def problem(self, message: str, seq: int | None = None) -> None:
        if seq is not None and (self.first_bad_seq is None or seq < self.first_bad_seq):
            self.first_bad_seq = seq
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(message)
        elif len(self.problems) == _MAX_PROBLEMS:
            self.problems.append("further problems not listed")

    def report(self) -> ChainReport:
        signed = max(self.trusted, default=0)
        return ChainReport(
            chain=self.chain,
            export=self.export,
            ok=not self.problems,
            records=self.records,
            checkpoints=len(self.signed),
            signed_size=signed,
            first_bad_seq=self.first_bad_seq,
            problems=tuple(self.problems),
            root=self.root,
            unsigned=max(0, self.records - signed) if self.export == "full" else 0,
        )


def _pick_key(signed: SignedCheckpoint, keys: Sequence[Ed25519PublicKey]) -> Ed25519PublicKey | None:
    for key in keys:
        if key_id(signed.key_name, key) == signed.key_id:
            return key
    return None


def _load_chains(doc: Any, keys: Sequence[Ed25519PublicKey], bundle_problems: list[str]) -> dict[str, _ChainState]:
    if not isinstance(doc, dict) or doc.get("format") != BUNDLE_FORMAT:
        raise BundleFormatError(f"{CHECKPOINTS_FILE} is not a {BUNDLE_FORMAT} document")
    chains_doc = doc.get("chains")
    if not isinstance(chains_doc, dict):
        raise BundleFormatError(f"{CHECKPOINTS_FILE} has no 'chains' object")
    states: dict[str, _ChainState] = {}
    for name, spec in chains_doc.items():
        if not isinstance(spec, dict):
            bundle_problems.append(f"chain {name!r}: description is not an object")
            continue
        origin, export = spec.get("origin"), spec.get("export")
        first_seq, checkpoints = spec.get("first_seq", 0), spec.get("checkpoints")
        if (
            not isinstance(origin, str)
            or export not in ("full", "subset")
            or not _is_count(first_seq)
            or not isinstance(checkpoints, list)
        ):
            bundle_problems.append(
                f"chain {name!r}: needs origin, export ('full' or 'subset'), first_seq and a checkpoints list"
            )
            continue
        state = _ChainState(name, origin, export, first_seq)
        states[name] = state
        for i, item in enumerate(checkpoints):
            try:
                signed = SignedCheckpoint.from_dict(item)
            except CheckpointFormatError as exc:
                state.problem(f"checkpoint #{i}: unreadable ({exc})")
                continue
            _admit_checkpoint(state, signed, keys)
    return states


def _admit_checkpoint(state: _ChainState, signed: SignedCheckpoint, keys: Sequence[Ed25519PublicKey]) -> None:
    """Trust ``signed`` for ``state``'s chain if its signature and origin check out."""
    cp = signed.checkpoint
    key = _pick_key(signed, keys)
    if key is None or not verify_signature(signed, key):
        state.problem(
            f"checkpoint at size {cp.size}: signature by {signed.key_name!r} is not valid for any trusted key"
        )
        return
    if cp.origin != state.origin:
        state.problem(f"checkpoint at size {cp.size}: origin {cp.origin!r} is not the chain's origin {state.origin!r}")
        return
    known = state.trusted.get(cp.size)
    if known is None:
        state.trusted[cp.size] = cp.root
        state.signed.append(signed)
    elif known != cp.root:
        state.problem(f"two validly signed checkpoints at size {cp.size} disagree: the log has forked")


def _admit_independent(
    states: Mapping[str, _ChainState],
    checkpoints: Iterable[SignedCheckpoint],
    keys: Sequence[Ed25519PublicKey],
    bundle_problems: list[str],
) -> None:
    by_origin = {s.origin: s for s in states.values()}
    for signed in checkpoints:
        state = by_origin.get(signed.checkpoint.origin)
        if state is None:
            bundle_problems.append(
                f"independent checkpoint for {signed.checkpoint.origin!r} matches no chain in the bundle"
            )
        else:
            _admit_checkpoint(state, signed, keys)


def _load_proofs(
    doc: Any, states: Mapping[str, _ChainState], bundle_problems: list[str]
) -> tuple[dict[tuple[str, int], tuple[int, tuple[bytes, ...]]], list[ConsistencyProof]]:
    inclusion: dict[tuple[str, int], tuple[int, tuple[bytes, ...]]] = {}
    consistency: list[ConsistencyProof] = []
    if not isinstance(doc, dict):
        bundle_problems.append(f"{PROOFS_FILE} is not a JSON object")
        return inclusion, consistency
    inclusion_doc, consistency_doc = doc.get("inclusion", []), doc.get("consistency", [])
    if not isinstance(inclusion_doc, list) or not isinstance(consistency_doc, list):
        bundle_problems.append(f"{PROOFS_FILE}: 'inclusion' and 'consistency' must be lists")
        return inclusion, consistency
    for i, p in enumerate(inclusion_doc):
        path = _path_from_hex(p.get("path")) if isinstance(p, dict) else None
        if (
            path is None
            or p.get("chain") not in states
            or not _is_count(p.get("seq"))
            or not _is_count(p.get("tree_size"))
        ):
            bundle_problems.append(f"inclusion proof #{i} is malformed or names an unknown chain")
            continue
        inclusion[(p["chain"], p["seq"])] = (p["tree_size"], path)
    for i, p in enumerate(consistency_doc):
        path = _path_from_hex(p.get("path")) if isinstance(p, dict) else None
        if (
            path is None
            or p.get("chain") not in states
            or not _is_count(p.get("old_size"))
            or not _is_count(p.get("new_size"))
        ):
            bundle_problems.append(f"consistency proof #{i} is malformed or names an unknown chain")
            continue
        consistency.append(ConsistencyProof(p["chain"], p["old_size"], p["new_size"], path))
    return inclusion, consistency


def _check_consistency(state: _ChainState, proofs: Sequence[ConsistencyProof]) -> None:
    provided = {(p.old_size, p.new_size): p.path for p in proofs if p.chain == state.chain}
    for (old, new), path in provided.items():
        old_root, new_root = state.trusted.get(old), state.trusted.get(new)
        if old_root is None or new_root is None:
            state.problem(f"consistency proof {old} -> {new} does not join two trusted checkpoints")
        elif not verify_consistency(old, new, old_root, new_root, path):
            state.problem(f"checkpoints at sizes {old} and {new} are not consistent")
    if state.export == "subset":
        sizes = sorted(s for s in state.trusted if s > 0)
        for old, new in itertools.pairwise(sizes):
            if (old, new) not in provided:
                state.problem(f"no consistency proof between checkpoints {old} and {new}")


def _verify_full(state: _ChainState, lines: Iterable[_Line]) -> None:
    bad: list[_BadRow] = []

    def rows() -> Iterator[LedgerRecord]:
        for line in lines:
            try:
                yield _to_record(line)
            except _BadRow as exc:
                bad.append(exc)
                return

    result = verify_chain(rows(), state.first_seq, [s.checkpoint for s in state.signed], chain=state.chain)
    state.records = result.count
    state.root = result.root.hex()
    if bad:
        state.problem(str(bad[0]), state.first_seq + result.count)
    elif not result.ok:
        state.problem(result.reason, result.first_bad_seq)
    elif result.count and max(state.trusted, default=0) == 0:
        state.problem("no validly signed checkpoint covers these rows: nothing is authenticated")


def _verify_subset(
    state: _ChainState,
    lines: Iterable[_Line],
    inclusion: Mapping[tuple[str, int], tuple[int, tuple[bytes, ...]]],
) -> None:
    prev: LedgerRecord | None = None
    for line in lines:
        try:
            record = _to_record(line)
        except _BadRow as exc:
            state.problem(str(exc))
            continue
        seq = record.seq
        if prev is not None and seq <= prev.seq:
            state.problem(f"seq {seq} follows seq {prev.seq}: rows out of order", seq)
        leaf = leaf_hash(record.canonical)
        if leaf != record.leaf_hash:
            state.problem(f"seq {seq}: event does not match its leaf hash", seq)
            prev = None
            continue
        if seq == state.first_seq:
            if record.chain_hash != chain_hash(GENESIS_CHAIN_HASH, leaf):
                state.problem(f"seq {seq}: chain hash does not start from genesis", seq)
        elif prev is not None and prev.seq == seq - 1 and record.chain_hash != chain_hash(prev.chain_hash, leaf):
            state.problem(f"seq {seq}: chain hash does not follow from seq {seq - 1}", seq)
        proof = inclusion.get((state.chain, seq))
        if proof is None:
            state.problem(f"seq {seq}: no inclusion proof", seq)
        else:
            size, path = proof
            root = state.trusted.get(size)
            if root is None:
                state.problem(
                    f"seq {seq}: inclusion proof targets size {size}, for which there is no trusted checkpoint",
                    seq,
                )
            elif not verify_inclusion(leaf, seq - state.first_seq, size, path, root):
                state.problem(f"seq {seq}: not included in the checkpoint at size {size}", seq)
        state.records += 1
        prev = record


def verify_bundle(
    path: str | os.PathLike[str],
    public_key: Ed25519PublicKey | Sequence[Ed25519PublicKey],
    independent_checkpoints: Iterable[SignedCheckpoint] = (),
) -> BundleReport:
    """Verify the evidence bundle at ``path`` against trusted public key(s).

    ``independent_checkpoints`` are signed checkpoints obtained elsewhere
    than the bundle (the copy kept outside Postgres); they are matched to
    chains by origin and checked like the bundle's own. Supplying the latest
    ones is what exposes a bundle, or a database, that was cut short together
    with its newest checkpoints.

    Returns a ``BundleReport``; ``ok`` is True only when every chain and
    every proof checked out. Raises ``BundleFormatError`` when ``path`` is not
    a readable bundle (missing files, not a directory or tar archive).
    """
    keys = [public_key] if isinstance(public_key, Ed25519PublicKey) else list(public_key)
    source = _Source(Path(path))
    try:
        return _verify_source(source, keys, list(independent_checkpoints))
    except _ARCHIVE_ERRORS as exc:
        raise BundleFormatError(f"cannot read bundle: {exc}") from exc
    finally:
        source.close()


def _verify_source(
    source: _Source, keys: Sequence[Ed25519PublicKey], independent: Sequence[SignedCheckpoint]
) -> BundleReport:
    problems: list[str] = []
    states = _load_chains(source.load_json(CHECKPOINTS_FILE), keys, problems)
    _admit_independent(states, independent, keys, problems)
    if source.exists(PROOFS_FILE):
        inclusion, consistency = _load_proofs(source.load_json(PROOFS_FILE), states, problems)
    else:
        inclusion, consistency = {}, []
    for described in states.values():
        _check_consistency(described, consistency)

    with source.open(RECORDS_FILE) as fh:
        for chain, group in itertools.groupby(_read_lines(fh), key=lambda ln: ln.chain):
            state = states.get(chain) if chain is not None else None
            if state is None:
                first = next(group)
                problems.append(
                    first.error
                    if first.chain is None and first.error
                    else f"line {first.lineno}: records of chain {chain!r}, which {CHECKPOINTS_FILE} does not describe"
                )
                continue
            if state.seen_records:
                state.problem("records of this chain are not contiguous in records.jsonl")
                continue
            state.seen_records = True
            if state.export == "full":
                _verify_full(state, group)
            else:
                _verify_subset(state, group, inclusion)

    for described in states.values():
        if described.export == "full" and not described.seen_records:
            _verify_full(described, ())
    reports = tuple(s.report() for s in states.values())
    return BundleReport(
        ok=not problems and all(r.ok for r in reports) and bool(reports),
        chains=reports,
        problems=tuple(problems) if reports else (*problems, "the bundle describes no chain"),
    )
