"""Ledger rows and chain verification: every kind of tampering is named."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime
from typing import Any

import pytest

from mloop.ledger.canonical import CanonicalizationError, canonicalize
from mloop.ledger.checkpoint import Checkpoint, generate_private_key, sign
from mloop.ledger.ledger_domain import (
    LedgerHead,
    LedgerRecord,
    build_record,
    verify_chain,
)
from mloop.ledger.merkle import (
    EMPTY_ROOT,
    GENESIS_CHAIN_HASH,
    MerkleFrontier,
    chain_hash,
    leaf_hash,
    root,
)

CHAIN = "registry"
ORIGIN = "mloop.example/audit/registry"
WHEN = datetime(2025, 3, 1, tzinfo=UTC)


def event(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"evt-{i}",
        "source": "/mloop/registry",
        "type": "mloop.registry.model_version_registered.v1",
        "time": "2025-03-01T12:00:00Z",
        "data": {"model": "churn", "version": i, "metrics": {"auc": 0.8 + i / 1000}, **extra},
    }


def build_chain(n: int) -> list[LedgerRecord]:
    head = LedgerHead(CHAIN)
    return [head.append(event(i))[0] for i in range(n)]


def checkpoint_at(records: list[LedgerRecord], size: int) -> Checkpoint:
    return Checkpoint(ORIGIN, size, root([r.leaf_hash for r in records[:size]]), WHEN)


def rehash_from(records: list[LedgerRecord], start: int) -> list[LedgerRecord]:
    """What someone with write access would do to hide an edit: recompute
    every leaf and chain hash from ``start`` on."""
    out = list(records[:start])
    prev = out[-1].chain_hash if out else GENESIS_CHAIN_HASH
    for r in records[start:]:
        leaf = leaf_hash(r.canonical)
        prev = chain_hash(prev, leaf)
        out.append(dataclasses.replace(r, leaf_hash=leaf, chain_hash=prev))
    return out


# --------------------------------------------------------------------------
# Building rows
# --------------------------------------------------------------------------


def test_build_record_hashes_the_canonical_event() -> None:
    ev = event(0)
    record = build_record(CHAIN, 0, GENESIS_CHAIN_HASH, ev)
    assert record.chain == CHAIN
    assert record.seq == 0
    assert record.event_id == "evt-0"
    assert record.canonical == canonicalize(ev)
    assert record.leaf_hash == leaf_hash(record.canonical)
    assert record.chain_hash == chain_hash(GENESIS_CHAIN_HASH, record.leaf_hash)


def test_build_record_refuses_events_it_cannot_log() -> None:
    with pytest.raises(ValueError, match="id"):
        build_record(CHAIN, 0, GENESIS_CHAIN_HASH, {"type": "x"})
    with pytest.raises(ValueError, match="32 bytes"):
        build_record(CHAIN, 0, b"short", event(0))
    with pytest.raises(ValueError, match="negative"):
        build_record(CHAIN, -1, GENESIS_CHAIN_HASH, event(0))
    with pytest.raises(CanonicalizationError):
        build_record(CHAIN, 0, GENESIS_CHAIN_HASH, event(0, score=float("nan")))


def test_ledger_head_links_rows_and_tracks_the_tree() -> None:
    head = LedgerHead(CHAIN)
    records = [head.append(event(i))[0] for i in range(5)]
    assert [r.seq for r in records] == [0, 1, 2, 3, 4]
    for prev, r in itertools.pairwise(records):
        assert r.chain_hash == chain_hash(prev.chain_hash, r.leaf_hash)
    assert head.size == 5
    assert head.chain_hash == records[-1].chain_hash
    assert head.root() == root([r.leaf_hash for r in records])


def test_ledger_head_resumes_from_persisted_state() -> None:
    first = LedgerHead(CHAIN)
    records = [first.append(event(i))[0] for i in range(6)]
    resumed = LedgerHead(CHAIN, first.size, first.chain_hash, MerkleFrontier(first.size, list(first.frontier.hashes)))
    records += [resumed.append(event(i))[0] for i in range(6, 9)]
    assert verify_chain(records).ok
    assert resumed.root() == root([r.leaf_hash for r in records])
    with pytest.raises(ValueError):
        LedgerHead(CHAIN, 3)


def test_ledger_head_is_unchanged_when_an_event_is_refused() -> None:
    head = LedgerHead(CHAIN)
    head.append(event(0))
    before = (head.size, head.chain_hash, head.root())
    with pytest.raises(ValueError):
        head.append({"no": "id"})
    assert (head.size, head.chain_hash, head.root()) == before


# --------------------------------------------------------------------------
# Verifying an intact chain
# --------------------------------------------------------------------------


def test_intact_chain_verifies_and_yields_its_root() -> None:
    records = build_chain(21)
    result = verify_chain(iter(records))
    assert result.ok
    assert result.first_bad_seq is None
    assert result.count == 21
    assert result.root == root([r.leaf_hash for r in records])


def test_empty_chain_verifies_to_the_empty_root() -> None:
    result = verify_chain([])
    assert result.ok
    assert result.count == 0
    assert result.root == EMPTY_ROOT


def test_intact_chain_matches_every_signed_checkpoint() -> None:
    records = build_chain(21)
    key = generate_private_key()
    checkpoints = [sign(checkpoint_at(records, n), key) for n in (0, 1, 8, 13, 21)]
    result = verify_chain(records, checkpoints=checkpoints)
    assert result.ok, result.reason


def test_chain_numbered_from_one_verifies_with_expected_first_seq() -> None:
    records = [dataclasses.replace(r, seq=r.seq + 1) for r in build_chain(4)]
    assert verify_chain(records, expected_first_seq=1).ok
    assert verify_chain(records).first_bad_seq == 0


# --------------------------------------------------------------------------
# Tampering
# --------------------------------------------------------------------------


def test_updated_payload_is_named_by_its_seq() -> None:
    records = build_chain(10)
    forged = canonicalize(event(4, model="fraud"))
    records[4] = dataclasses.replace(records[4], canonical=forged)
    result = verify_chain(records)
    assert not result.ok
    assert result.first_bad_seq == 4
    assert "leaf hash" in result.reason
    assert result.count == 4
    assert result.root == root([r.leaf_hash for r in records[:4]])


def test_updated_payload_with_recomputed_leaf_hash_breaks_the_chain_hash() -> None:
    records = build_chain(10)
    forged = canonicalize(event(4, model="fraud"))
    records[4] = dataclasses.replace(records[4], canonical=forged, leaf_hash=leaf_hash(forged))
    result = verify_chain(records)
    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert "chain hash" in result.reason


def test_fully_rehashed_forgery_is_caught_by_the_signed_checkpoint() -> None:
    records = build_chain(30)
    checkpoints = [checkpoint_at(records, 10), checkpoint_at(records, 20)]
    forged = list(records)
    forged[14] = dataclasses.replace(forged[14], canonical=canonicalize(event(14, model="fraud")))
    forged = rehash_from(forged, 14)
    assert verify_chain(forged).ok  # invisible without checkpoints
    result = verify_chain(forged, checkpoints=checkpoints)
    assert not result.ok
    assert result.first_bad_seq is None
    assert "seq 10..19" in result.reason
    assert result.count == 20


def test_deleted_row_leaves_a_gap_named_by_the_missing_seq() -> None:
    records = build_chain(10)
    del records[6]
    result = verify_chain(records)
    assert (result.ok, result.first_bad_seq) == (False, 6)
    assert "seq 6 is missing" in result.reason
    assert result.count == 6


def test_deleted_and_renumbered_rows_break_the_chain_hash() -> None:
    records = build_chain(10)
    del records[6]
    records = [dataclasses.replace(r, seq=i) for i, r in enumerate(records)]
    result = verify_chain(records)
    assert (result.ok, result.first_bad_seq) == (False, 6)
    assert "chain hash" in result.reason


def test_reordered_rows_are_named_by_the_first_out_of_place_seq() -> None:
    records = build_chain(10)
    records[3], records[7] = records[7], records[3]
    result = verify_chain(records)
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert "found seq 7" in result.reason


def test_swapped_payloads_under_kept_seqs_are_named() -> None:
    records = build_chain(10)
    a, b = records[3], records[7]
    records[3] = dataclasses.replace(b, seq=3)
    records[7] = dataclasses.replace(a, seq=7)
    result = verify_chain(records)
    assert (result.ok, result.first_bad_seq) == (False, 3)


def test_duplicated_row_is_named() -> None:
    records = build_chain(5)
    records.insert(3, records[2])
    result = verify_chain(records)
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert "repeated or out of order" in result.reason


def test_truncation_is_detected_against_a_larger_checkpoint() -> None:
    records = build_chain(20)
    checkpoint = checkpoint_at(records, 20)
    result = verify_chain(records[:15], checkpoints=[checkpoint])
    assert not result.ok
    assert result.first_bad_seq == 15
    assert "truncated" in result.reason
    assert result.count == 15
    # Without the checkpoint the shorter chain looks fine: that is what
    # copying checkpoints out of the database is for.
    assert verify_chain(records[:15]).ok


def test_rows_of_another_chain_are_rejected() -> None:
    records = build_chain(5)
    records[2] = dataclasses.replace(records[2], chain="rollout")
    result = verify_chain(records)
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert verify_chain(build_chain(3), chain="rollout").first_bad_seq == 0


def test_conflicting_checkpoints_are_reported() -> None:
    records = build_chain(8)
    good = checkpoint_at(records, 4)
    fork = Checkpoint(ORIGIN, 4, EMPTY_ROOT, WHEN)
    result = verify_chain(records, checkpoints=[good, fork])
    assert not result.ok
    assert "different roots" in result.reason


def test_a_size_zero_checkpoint_must_have_the_empty_root() -> None:
    records = build_chain(2)
    bad = Checkpoint(ORIGIN, 0, records[0].leaf_hash, WHEN)
    assert not verify_chain(records, checkpoints=[bad]).ok
