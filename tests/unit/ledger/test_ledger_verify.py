"""Evidence bundles: written, read back and verified offline; tampering is reported."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from mloop.cli.main import app
from mloop.ledger.bundle import ChainExport, build_proofs, pack_bundle, write_bundle
from mloop.ledger.checkpoint import (
    Checkpoint,
    SignedCheckpoint,
    generate_private_key,
    public_key_to_pem,
    public_key_to_vkey,
    sign,
)
from mloop.ledger.ledger_domain import LedgerHead, LedgerRecord
from mloop.ledger.merkle import root
from mloop.ledger.verify import BundleFormatError, verify_bundle

WHEN = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def main(argv: list[str]) -> tuple[int, str, str]:
    """``mloop audit verify ARGV`` offline (a bundle and a key given): exit status, stdout, stderr."""
    result = CliRunner().invoke(app, ["audit", "verify", *argv])
    return result.exit_code, result.stdout, result.stderr
REGISTRY_SIZES = (8, 16, 25)


def origin(chain: str) -> str:
    return f"mloop.example/audit/{chain}"


def event(chain: str, i: int) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"{chain}-{i}",
        "source": f"/mloop/{chain}",
        "type": f"mloop.{chain}.something_happened.v1",
        "time": "2025-03-01T12:00:00Z",
        "data": {"n": i, "score": i / 7, "note": "ünïcödé"},
    }


def chain_rows(chain: str, n: int) -> list[LedgerRecord]:
    head = LedgerHead(chain)
    return [head.append(event(chain, i))[0] for i in range(n)]


def signed_at(chain: str, records: list[LedgerRecord], size: int, key: Ed25519PrivateKey) -> SignedCheckpoint:
    cp = Checkpoint(origin(chain), size, root([r.leaf_hash for r in records[:size]]), WHEN)
    return sign(cp, key)


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


@pytest.fixture(scope="module")
def registry() -> list[LedgerRecord]:
    return chain_rows("registry", 25)


@pytest.fixture(scope="module")
def rollout() -> list[LedgerRecord]:
    return chain_rows("rollout", 9)


@pytest.fixture
def full_bundle(
    tmp_path: Path,
    key: Ed25519PrivateKey,
    registry: list[LedgerRecord],
    rollout: list[LedgerRecord],
) -> Path:
    return write_bundle(
        tmp_path / "bundle",
        [
            ChainExport(
                "registry",
                origin("registry"),
                [signed_at("registry", registry, s, key) for s in REGISTRY_SIZES],
                registry,
            ),
            ChainExport("rollout", origin("rollout"), [signed_at("rollout", rollout, 9, key)], rollout),
        ],
    )


SUBSET = [3, 4, 5, 17]


@pytest.fixture
def subset_bundle(tmp_path: Path, key: Ed25519PrivateKey, registry: list[LedgerRecord]) -> Path:
    leaves = [r.leaf_hash for r in registry]
    inclusion, consistency = build_proofs("registry", leaves, SUBSET, REGISTRY_SIZES)
    return write_bundle(
        tmp_path / "subset",
        [
            ChainExport(
                "registry",
                origin("registry"),
                [signed_at("registry", registry, s, key) for s in REGISTRY_SIZES],
                [registry[s] for s in SUBSET],
                export="subset",
                inclusion=inclusion,
                consistency=consistency,
            )
        ],
    )


def read_lines(bundle: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (bundle / "records.jsonl").read_text().splitlines()]


def write_lines(bundle: Path, rows: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    (bundle / "records.jsonl").write_text(text)


def edit_json(path: Path, change: Any) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def chain_report(report: Any, chain: str) -> Any:
    return next(c for c in report.chains if c.chain == chain)


# --------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------


def test_full_bundle_round_trip(full_bundle: Path, key: Ed25519PrivateKey, registry: list[LedgerRecord]) -> None:
    report = verify_bundle(full_bundle, key.public_key())
    assert report.ok, report.summary()
    reg = chain_report(report, "registry")
    assert (reg.records, reg.checkpoints, reg.signed_size) == (25, 3, 25)
    assert reg.root == root([r.leaf_hash for r in registry]).hex()
    assert chain_report(report, "rollout").records == 9
    assert "VERIFIED" in report.summary()


def test_records_embed_the_canonical_event_verbatim(full_bundle: Path, registry: list[LedgerRecord]) -> None:
    first_line = (full_bundle / "records.jsonl").read_text(encoding="utf-8").splitlines()[0]
    assert first_line.endswith(',"event":' + registry[0].canonical.decode() + "}")
    row = json.loads(first_line)
    assert row["seq"] == 0
    assert row["event_id"] == "registry-0"
    assert row["leaf_hash"] == registry[0].leaf_hash.hex()


def test_archived_bundle_verifies(full_bundle: Path, key: Ed25519PrivateKey) -> None:
    archive = pack_bundle(full_bundle, full_bundle.parent / "evidence.tar.gz")
    assert verify_bundle(archive, key.public_key()).ok


def test_subset_bundle_round_trip(subset_bundle: Path, key: Ed25519PrivateKey) -> None:
    report = verify_bundle(subset_bundle, key.public_key())
    assert report.ok, report.summary()
    reg = chain_report(report, "registry")
    assert (reg.export, reg.records, reg.signed_size) == ("subset", 4, 25)


def test_any_trusted_key_may_have_signed(full_bundle: Path, key: Ed25519PrivateKey) -> None:
    other = generate_private_key().public_key()
    assert verify_bundle(full_bundle, [other, key.public_key()]).ok
    # The signer's key is what made it verify: the other key alone authenticates nothing.
    assert not verify_bundle(full_bundle, [other]).ok


# --------------------------------------------------------------------------
# Full exports: tampering
# --------------------------------------------------------------------------


def test_wrong_public_key_fails_every_checkpoint(full_bundle: Path) -> None:
    report = verify_bundle(full_bundle, generate_private_key().public_key())
    assert not report.ok
    reg = chain_report(report, "registry")
    assert reg.checkpoints == 0
    assert any("not valid for any trusted key" in p for p in reg.problems)


def test_edited_event_is_named_by_its_seq(full_bundle: Path, key: Ed25519PrivateKey) -> None:
    rows = read_lines(full_bundle)
    rows[11]["event"]["data"]["n"] = 999
    write_lines(full_bundle, rows)
    report = verify_bundle(full_bundle, key.public_key())
    reg = chain_report(report, "registry")
    assert (report.ok, reg.first_bad_seq) == (False, 11)
    assert "leaf hash" in reg.problems[0]
    assert chain_report(report, "rollout").ok


def test_deleted_line_is_named_by_the_missing_seq(full_bundle: Path, key: Ed25519PrivateKey) -> None:
    rows = read_lines(full_bundle)
    del rows[5]
    write_lines(full_bundle, rows)
    reg = chain_report(verify_bundle(full_bundle, key.public_key()), "registry")
    assert (reg.ok, reg.first_bad_seq) == (False, 5)


def test_reordered_lines_are_named(full_bundle: Path, key: Ed25519PrivateKey) -> None:
    rows = read_lines(full_bundle)
    rows[2], rows[3] = rows[3], rows[2]
    write_lines(full_bundle, rows)
    reg = chain_report(verify_bundle(full_bundle, key.public_key()), "registry")
    assert (reg.ok, reg.first_bad_seq) == (False, 2)


def test_truncated_export_is_caught_by_the_last_checkpoint(full_bundle: Path, key: Ed25519PrivateKey) -> None:
    rows = [r for r in read_lines(full_bundle) if not (r["chain"] == "registry" and r["seq"] >= 20)]
    write_lines(full_bundle, rows)
    reg = chain_report(verify_bundle(full_bundle, key.public_key()), "registry")
    assert (reg.ok, reg.first_bad_seq, reg.records) == (False, 20, 20)
    assert "truncated" in reg.problems[0]


def test_event_id_must_match_the_event(full_bundle: Path, key: Ed25519PrivateKey) -> None:
    rows = read_lines(full_bundle)
    rows[4]["event_id"] = "someone-else"
    write_lines(full_bundle, rows)
    reg = chain_report(verify_bundle(full_bundle, key.public_key()), "registry")
    assert (reg.ok, reg.first_bad_seq) == (False, 4)
    assert "event_id" in reg.problems[0]


def test_unparseable_line_is_reported(full_bundle: Path, key: Ed25519PrivateKey) -> None:
    path = full_bundle / "records.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[7] = "{not json\n"
    path.write_text("".join(lines))
    reg = chain_report(verify_bundle(full_bundle, key.public_key()), "registry")
    assert (reg.ok, reg.first_bad_seq) == (False, 7)
    assert "line 8" in reg.problems[0]


def test_edited_checkpoint_no_longer_verifies(full_bundle: Path, key: Ed25519PrivateKey) -> None:
    def change(doc: dict[str, Any]) -> None:
        cp = doc["chains"]["registry"]["checkpoints"][1]
        cp["note"] = cp["note"].replace("\n16\n", "\n15\n")
        del cp["size"]

    edit_json(full_bundle / "checkpoints.json", change)
    reg = chain_report(verify_bundle(full_bundle, key.public_key()), "registry")
    assert not reg.ok
    assert reg.checkpoints == 2
    assert any("size 15" in p for p in reg.problems)


def test_checkpoint_of_another_origin_is_not_trusted(
    full_bundle: Path, key: Ed25519PrivateKey, rollout: list[LedgerRecord]
) -> None:
    foreign = signed_at("rollout", rollout, 9, key).to_dict()
    edit_json(
        full_bundle / "checkpoints.json",
        lambda doc: doc["chains"]["registry"]["checkpoints"].append(foreign),
    )
    reg = chain_report(verify_bundle(full_bundle, key.public_key()), "registry")
    assert not reg.ok
    assert any("origin" in p for p in reg.problems)


def test_two_signed_heads_of_one_size_reveal_a_fork(full_bundle: Path, key: Ed25519PrivateKey) -> None:
    other = sign(Checkpoint(origin("registry"), 16, bytes(32), WHEN), key).to_dict()
    edit_json(
        full_bundle / "checkpoints.json",
        lambda doc: doc["chains"]["registry"]["checkpoints"].append(other),
    )
    reg = chain_report(verify_bundle(full_bundle, key.public_key()), "registry")
    assert not reg.ok
    assert any("forked" in p for p in reg.problems)


def test_records_of_an_undescribed_chain_fail_the_bundle(full_bundle: Path, key: Ed25519PrivateKey) -> None:
    edit_json(full_bundle / "checkpoints.json", lambda doc: doc["chains"].pop("rollout"))
    report = verify_bundle(full_bundle, key.public_key())
    assert not report.ok
    assert any("'rollout'" in p for p in report.problems)


def test_interleaved_chains_are_rejected(full_bundle: Path, key: Ed25519PrivateKey) -> None:
    rows = read_lines(full_bundle)
    rollout_rows = [r for r in rows if r["chain"] == "rollout"]
    registry_rows = [r for r in rows if r["chain"] == "registry"]
    write_lines(full_bundle, registry_rows[:10] + rollout_rows + registry_rows[10:])
    reg = chain_report(verify_bundle(full_bundle, key.public_key()), "registry")
    assert not reg.ok
    assert any("not contiguous" in p for p in reg.problems)


def test_a_full_chain_with_no_records_is_truncated(full_bundle: Path, key: Ed25519PrivateKey) -> None:
    write_lines(full_bundle, [r for r in read_lines(full_bundle) if r["chain"] != "rollout"])
    ro = chain_report(verify_bundle(full_bundle, key.public_key()), "rollout")
    assert (ro.ok, ro.first_bad_seq) == (False, 0)


def test_a_wrong_consistency_proof_fails_even_a_full_export(full_bundle: Path, key: Ed25519PrivateKey) -> None:
    bogus = {"chain": "registry", "old_size": 8, "new_size": 16, "path": ["00" * 32]}
    edit_json(full_bundle / "proofs.json", lambda doc: doc["consistency"].append(bogus))
    reg = chain_report(verify_bundle(full_bundle, key.public_key()), "registry")
    assert not reg.ok
    assert any("not consistent" in p for p in reg.problems)


# --------------------------------------------------------------------------
# Subset exports: tampering
# --------------------------------------------------------------------------


def test_subset_row_without_inclusion_proof_fails(subset_bundle: Path, key: Ed25519PrivateKey) -> None:
    edit_json(
        subset_bundle / "proofs.json",
        lambda doc: doc.update(inclusion=[p for p in doc["inclusion"] if p["seq"] != 17]),
    )
    reg = chain_report(verify_bundle(subset_bundle, key.public_key()), "registry")
    assert (reg.ok, reg.first_bad_seq) == (False, 17)
    assert "no inclusion proof" in reg.problems[0]


def test_subset_row_with_corrupted_proof_fails(subset_bundle: Path, key: Ed25519PrivateKey) -> None:
    def change(doc: dict[str, Any]) -> None:
        proof = next(p for p in doc["inclusion"] if p["seq"] == 4)
        first = proof["path"][0]
        proof["path"][0] = ("0" if first[0] != "0" else "1") + first[1:]

    edit_json(subset_bundle / "proofs.json", change)
    reg = chain_report(verify_bundle(subset_bundle, key.public_key()), "registry")
    assert (reg.ok, reg.first_bad_seq) == (False, 4)
    assert "not included" in reg.problems[0]


def test_subset_row_with_edited_event_fails(subset_bundle: Path, key: Ed25519PrivateKey) -> None:
    rows = read_lines(subset_bundle)
    rows[3]["event"]["data"]["note"] = "edited"
    write_lines(subset_bundle, rows)
    reg = chain_report(verify_bundle(subset_bundle, key.public_key()), "registry")
    assert (reg.ok, reg.first_bad_seq) == (False, 17)


def test_subset_consecutive_rows_must_chain(subset_bundle: Path, key: Ed25519PrivateKey) -> None:
    rows = read_lines(subset_bundle)
    rows[2]["chain_hash"] = rows[1]["chain_hash"]
    write_lines(subset_bundle, rows)
    reg = chain_report(verify_bundle(subset_bundle, key.public_key()), "registry")
    assert (reg.ok, reg.first_bad_seq) == (False, 5)
    assert "chain hash" in reg.problems[0]


def test_subset_needs_consistency_between_checkpoints(subset_bundle: Path, key: Ed25519PrivateKey) -> None:
    edit_json(subset_bundle / "proofs.json", lambda doc: doc.update(consistency=doc["consistency"][:1]))
    reg = chain_report(verify_bundle(subset_bundle, key.public_key()), "registry")
    assert not reg.ok
    assert reg.problems == ("no consistency proof between checkpoints 16 and 25",)


def test_subset_inclusion_against_an_unsigned_size_fails(subset_bundle: Path, key: Ed25519PrivateKey) -> None:
    edit_json(
        subset_bundle / "checkpoints.json",
        lambda doc: doc["chains"]["registry"]["checkpoints"].pop(),
    )
    reg = chain_report(verify_bundle(subset_bundle, key.public_key()), "registry")
    assert not reg.ok
    assert any("no trusted checkpoint" in p for p in reg.problems)


def test_build_proofs_needs_a_checkpoint(registry: list[LedgerRecord]) -> None:
    with pytest.raises(ValueError):
        build_proofs("registry", [r.leaf_hash for r in registry], [1], [])
    with pytest.raises(ValueError):
        build_proofs("registry", [r.leaf_hash for r in registry], [20], [16])


# --------------------------------------------------------------------------
# Unreadable bundles and the command line
# --------------------------------------------------------------------------


def test_unreadable_bundles_raise(tmp_path: Path, full_bundle: Path, key: Ed25519PrivateKey) -> None:
    with pytest.raises(BundleFormatError, match="does not exist"):
        verify_bundle(tmp_path / "nowhere", key.public_key())
    (tmp_path / "junk.bin").write_bytes(b"not an archive")
    with pytest.raises(BundleFormatError, match="tar"):
        verify_bundle(tmp_path / "junk.bin", key.public_key())
    (full_bundle / "checkpoints.json").unlink()
    with pytest.raises(BundleFormatError, match=r"checkpoints\.json"):
        verify_bundle(full_bundle, key.public_key())


def test_cli_verifies_with_a_key_file(full_bundle: Path, key: Ed25519PrivateKey, tmp_path: Path) -> None:
    key_file = tmp_path / "audit.pub"
    key_file.write_bytes(public_key_to_pem(key.public_key()))
    code, out, _ = main(["--bundle", str(full_bundle), "--public-key", str(key_file)])
    assert code == 0
    assert "VERIFIED" in out


def test_cli_accepts_a_literal_vkey_and_prints_json(full_bundle: Path, key: Ed25519PrivateKey) -> None:
    vkey = public_key_to_vkey("mloop.example/audit", key.public_key())
    code, out, _ = main(["--bundle", str(full_bundle), "--public-key", vkey, "--json"])
    assert code == 0
    assert json.loads(out)["ok"] is True


def test_cli_exit_codes_for_failure_and_unusable_input(full_bundle: Path, tmp_path: Path) -> None:
    other = public_key_to_vkey("x", generate_private_key().public_key())
    code, out, _ = main(["--bundle", str(full_bundle), "--public-key", other])
    assert code == 1
    assert "FAILED" in out
    assert main(["--bundle", str(tmp_path / "none"), "--public-key", other])[0] == 2
    code, _, err = main(["--bundle", str(full_bundle), "--public-key", "garbage"])
    assert code == 2
    assert "cannot load public key" in err


def test_a_chain_without_any_signed_checkpoint_proves_nothing(
    tmp_path: Path, key: Ed25519PrivateKey, rollout: list[LedgerRecord]
) -> None:
    bundle = write_bundle(tmp_path / "b", [ChainExport("rollout", origin("rollout"), [], rollout)])
    ro = chain_report(verify_bundle(bundle, key.public_key()), "rollout")
    assert not ro.ok
    assert "nothing is authenticated" in ro.problems[0]


def test_rows_after_the_last_checkpoint_are_counted_as_unsigned(
    tmp_path: Path, key: Ed25519PrivateKey, registry: list[LedgerRecord]
) -> None:
    checkpoints = [signed_at("registry", registry, 16, key)]
    bundle = write_bundle(tmp_path / "b", [ChainExport("registry", origin("registry"), checkpoints, registry)])
    report = verify_bundle(bundle, key.public_key())
    reg = chain_report(report, "registry")
    assert reg.ok
    assert (reg.signed_size, reg.unsigned) == (16, 9)
    assert "9 rows after the last checkpoint" in report.summary()


def test_malformed_proof_documents_are_reported(full_bundle: Path, key: Ed25519PrivateKey) -> None:
    (full_bundle / "proofs.json").write_text('{"inclusion": 5, "consistency": []}')
    report = verify_bundle(full_bundle, key.public_key())
    assert not report.ok
    assert any("must be lists" in p for p in report.problems)


def test_hostile_json_in_records_is_reported_not_raised(full_bundle: Path, key: Ed25519PrivateKey) -> None:
    path = full_bundle / "records.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = '{"chain": "registry", "seq": ' + "9" * 5000 + "}\n"
    lines[2] = "[" * 100_000 + "\n"
    path.write_text("".join(lines))
    reg = chain_report(verify_bundle(full_bundle, key.public_key()), "registry")
    assert (reg.ok, reg.first_bad_seq) == (False, 1)


def test_corrupted_archive_is_unreadable(full_bundle: Path, key: Ed25519PrivateKey) -> None:
    archive = pack_bundle(full_bundle, full_bundle.parent / "evidence.tgz")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleFormatError):
        verify_bundle(archive, key.public_key())


def test_independent_checkpoints_expose_a_bundle_cut_short_with_its_checkpoints(
    tmp_path: Path, key: Ed25519PrivateKey, registry: list[LedgerRecord]
) -> None:
    # The bundle (or the database it came from) lost rows 16.. and the
    # checkpoint at 25 alike: on its own it is consistent.
    bundle = write_bundle(
        tmp_path / "b",
        [ChainExport("registry", origin("registry"), [signed_at("registry", registry, 16, key)], registry[:16])],
    )
    assert verify_bundle(bundle, key.public_key()).ok
    kept_outside = signed_at("registry", registry, 25, key)
    report = verify_bundle(bundle, key.public_key(), [kept_outside])
    reg = chain_report(report, "registry")
    assert (reg.ok, reg.first_bad_seq) == (False, 16)
    assert "truncated" in reg.problems[0]


def test_independent_checkpoints_for_unknown_logs_are_reported(full_bundle: Path, key: Ed25519PrivateKey) -> None:
    stray = sign(Checkpoint("mloop.example/audit/elsewhere", 1, bytes(32), WHEN), key)
    report = verify_bundle(full_bundle, key.public_key(), [stray])
    assert not report.ok
    assert any("matches no chain" in p for p in report.problems)


def test_independent_copy_of_a_bundle_checkpoint_is_harmless(
    full_bundle: Path, key: Ed25519PrivateKey, registry: list[LedgerRecord]
) -> None:
    report = verify_bundle(full_bundle, key.public_key(), [signed_at("registry", registry, 16, key)])
    assert report.ok
    assert chain_report(report, "registry").checkpoints == 3


def test_cli_takes_independent_checkpoint_files(
    tmp_path: Path, key: Ed25519PrivateKey, registry: list[LedgerRecord]
) -> None:
    bundle = write_bundle(
        tmp_path / "b",
        [ChainExport("registry", origin("registry"), [signed_at("registry", registry, 16, key)], registry[:16])],
    )
    vkey = public_key_to_vkey("k", key.public_key())
    note_file = tmp_path / "latest.note"
    note_file.write_text(signed_at("registry", registry, 25, key).to_note())
    list_file = tmp_path / "all.json"
    list_file.write_text(json.dumps([signed_at("registry", registry, n, key).to_dict() for n in (8, 16)]))
    assert main(["--bundle", str(bundle), "--public-key", vkey, "--checkpoint", str(list_file)])[0] == 0
    code, out, _ = main(["--bundle", str(bundle), "--public-key", vkey, "--checkpoint", str(note_file)])
    assert code == 1
    assert "truncated" in out
    (tmp_path / "bad.json").write_text('{"note": "nonsense"}')
    assert main(["--bundle", str(bundle), "--public-key", vkey, "--checkpoint", str(tmp_path / "bad.json")])[0] == 2
    # A folder of checkpoint files, as the audit service writes them, is read the same way.
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "25.json").write_text(signed_at("registry", registry, 25, key).to_json())
    code, out, _ = main(["--bundle", str(bundle), "--public-key", vkey, "--checkpoint-dir", str(folder)])
    assert code == 1
    assert "truncated" in out
