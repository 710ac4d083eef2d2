"""Signed checkpoints: body format, C2SP signed notes, Ed25519 keys."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mloop.ledger.checkpoint import (
    Checkpoint,
    CheckpointFormatError,
    KeyEncoding,
    SignedCheckpoint,
    generate_private_key,
    key_id,
    load_private_key,
    load_public_key,
    private_key_to_base64,
    private_key_to_pem,
    public_key_to_base64,
    public_key_to_pem,
    public_key_to_vkey,
    read_private_key,
    read_public_key,
    sign,
    verify,
    write_private_key,
    write_public_key,
)
from mloop.ledger.merkle import EMPTY_ROOT

ORIGIN = "mloop.example/audit/registry"
ROOT = hashlib.sha256(b"some tree").digest()
WHEN = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(scope="module")
def private_key() -> Ed25519PrivateKey:
    # A fixed seed keeps failures reproducible.
    return Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


@pytest.fixture
def checkpoint() -> Checkpoint:
    return Checkpoint(ORIGIN, 1024, ROOT, WHEN)


def test_body_is_origin_size_base64_root_and_timestamp(checkpoint: Checkpoint) -> None:
    root_b64 = base64.b64encode(ROOT).decode()
    assert checkpoint.body() == (f"{ORIGIN}\n1024\n{root_b64}\ntimestamp 2025-03-01T12:00:00.123456Z\n".encode())
    assert Checkpoint.from_body(checkpoint.body()) == checkpoint


def test_timestamps_are_normalised_to_utc() -> None:
    local = datetime(2025, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    cp = Checkpoint(ORIGIN, 0, EMPTY_ROOT, local)
    assert cp.timestamp == datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert b"timestamp 2025-03-01T12:00:00.000000Z" in cp.body()


@pytest.mark.parametrize(
    ("origin", "size", "root", "when"),
    [
        ("", 1, ROOT, WHEN),
        ("has space", 1, ROOT, WHEN),
        ("has+plus", 1, ROOT, WHEN),
        ("new\nline", 1, ROOT, WHEN),
        (ORIGIN, -1, ROOT, WHEN),
        (ORIGIN, 1, ROOT[:31], WHEN),
        (ORIGIN, 1, ROOT, datetime(2025, 3, 1)),
    ],
)
def test_invalid_checkpoints_cannot_be_built(origin: str, size: int, root: bytes, when: datetime) -> None:
    with pytest.raises(CheckpointFormatError):
        Checkpoint(origin, size, root, when)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b.replace(b"\n1024\n", b"\n01024\n"),
        lambda b: b.replace(b"\n1024\n", b"\n+1024\n"),
        lambda b: b.replace(b"\n1024\n", b"\n1024 \n"),
        lambda b: b[:-1],
        lambda b: b + b"extra\n",
        lambda b: b.replace(b"timestamp ", b"timestamp: "),
        lambda b: b.replace(b".123456Z", b"Z"),
        lambda b: b.replace(b"=\n", b"\n"),
        lambda b: b.replace(b"2025-03-01", b"2025-02-30"),
    ],
)
def test_non_canonical_bodies_are_rejected(checkpoint: Checkpoint, mutate: Callable[[bytes], bytes]) -> None:
    with pytest.raises(CheckpointFormatError):
        Checkpoint.from_body(mutate(checkpoint.body()))


def test_sign_then_verify(checkpoint: Checkpoint, private_key: Ed25519PrivateKey) -> None:
    signed = sign(checkpoint, private_key)
    assert signed.key_name == ORIGIN
    assert signed.key_id == key_id(ORIGIN, private_key.public_key())
    assert verify(signed, private_key.public_key())


def test_a_different_key_is_rejected(checkpoint: Checkpoint, private_key: Ed25519PrivateKey) -> None:
    signed = sign(checkpoint, private_key)
    other = generate_private_key().public_key()
    assert not verify(signed, other)
    # Even when the key id is forged to match the other key.
    forged = SignedCheckpoint(checkpoint, ORIGIN, key_id(ORIGIN, other), signed.signature)
    assert not verify(forged, other)


@pytest.mark.parametrize(
    "changed",
    [
        Checkpoint(ORIGIN, 1025, ROOT, WHEN),
        Checkpoint(ORIGIN, 1024, EMPTY_ROOT, WHEN),
        Checkpoint(ORIGIN, 1024, ROOT, WHEN + timedelta(microseconds=1)),
        Checkpoint(ORIGIN + "x", 1024, ROOT, WHEN),
    ],
)
def test_any_change_to_a_signed_checkpoint_breaks_the_signature(
    checkpoint: Checkpoint, private_key: Ed25519PrivateKey, changed: Checkpoint
) -> None:
    signed = sign(checkpoint, private_key)
    tampered = SignedCheckpoint(changed, signed.key_name, signed.key_id, signed.signature)
    assert not verify(tampered, private_key.public_key())


def test_a_renamed_key_does_not_verify(checkpoint: Checkpoint, private_key: Ed25519PrivateKey) -> None:
    signed = sign(checkpoint, private_key, key_name="witness.example")
    assert verify(signed, private_key.public_key())
    renamed = SignedCheckpoint(checkpoint, "other.example", signed.key_id, signed.signature)
    assert not verify(renamed, private_key.public_key())


def test_signed_note_has_the_c2sp_layout(checkpoint: Checkpoint, private_key: Ed25519PrivateKey) -> None:
    signed = sign(checkpoint, private_key)
    note = signed.to_note()
    body, blank, sig_line = note.rpartition("\n\n")
    assert blank
    assert (body + "\n").encode() == checkpoint.body()
    assert sig_line.startswith(f"\u2014 {ORIGIN} ")
    raw = base64.b64decode(sig_line.split(" ")[-1])
    assert raw[:4] == signed.key_id
    assert raw[4:] == signed.signature
    private_key.public_key().verify(raw[4:], checkpoint.body())
    assert SignedCheckpoint.from_note(note) == signed


@pytest.mark.parametrize(
    "mutate",
    [
        lambda n: n.replace("\n\n", "\n"),
        lambda n: n.replace("\u2014 ", "-- "),
        lambda n: n + "\u2014 second.example AAAA\n",
        lambda n: n[:-1],
        lambda n: n.replace("=\n", "\n"),
    ],
)
def test_malformed_notes_are_rejected(
    checkpoint: Checkpoint, private_key: Ed25519PrivateKey, mutate: Callable[[str], str]
) -> None:
    with pytest.raises(CheckpointFormatError):
        SignedCheckpoint.from_note(mutate(sign(checkpoint, private_key).to_note()))


def test_json_round_trip_keeps_the_signed_note(checkpoint: Checkpoint, private_key: Ed25519PrivateKey) -> None:
    signed = sign(checkpoint, private_key)
    text = signed.to_json()
    data = json.loads(text)
    assert data["size"] == 1024
    assert data["root"] == ROOT.hex()
    assert data["note"] == signed.to_note()
    restored = SignedCheckpoint.from_json(text)
    assert restored == signed
    assert verify(restored, private_key.public_key())


def test_json_fields_that_contradict_the_note_are_rejected(
    checkpoint: Checkpoint, private_key: Ed25519PrivateKey
) -> None:
    data = sign(checkpoint, private_key).to_dict()
    data["size"] = 5
    with pytest.raises(CheckpointFormatError, match="size"):
        SignedCheckpoint.from_dict(data)
    with pytest.raises(CheckpointFormatError):
        SignedCheckpoint.from_json("not json")
    with pytest.raises(CheckpointFormatError):
        SignedCheckpoint.from_dict({"size": 1})


def test_keys_load_from_pem_base64_and_vkey(private_key: Ed25519PrivateKey) -> None:
    public = private_key.public_key()
    raw_public = public_key_to_base64(public)
    for encoded in (
        public_key_to_pem(public),
        public_key_to_pem(public).decode(),
        raw_public,
        raw_public + "\n",
        public_key_to_vkey(ORIGIN, public),
    ):
        assert public_key_to_base64(load_public_key(encoded)) == raw_public
    for encoded_private in (private_key_to_pem(private_key), private_key_to_base64(private_key)):
        loaded = load_private_key(encoded_private)
        assert private_key_to_base64(loaded) == private_key_to_base64(private_key)


def test_vkey_has_name_key_id_and_typed_key(private_key: Ed25519PrivateKey) -> None:
    public = private_key.public_key()
    name, hex_id, encoded = public_key_to_vkey(ORIGIN, public).split("+", 2)
    assert name == ORIGIN
    assert bytes.fromhex(hex_id) == key_id(ORIGIN, public)
    assert base64.b64decode(encoded) == b"\x01" + base64.b64decode(public_key_to_base64(public))


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "not base64 !",
        base64.b64encode(bytes(31)).decode(),
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        "name+00000000+" + base64.b64encode(b"\x01" + bytes(32)).decode(),
        b"\xff\xfe",
    ],
)
def test_bad_public_keys_are_rejected(bad: str | bytes) -> None:
    with pytest.raises(CheckpointFormatError):
        load_public_key(bad)


def test_bad_private_keys_are_rejected(private_key: Ed25519PrivateKey) -> None:
    with pytest.raises(CheckpointFormatError):
        load_private_key(base64.b64encode(bytes(16)).decode())
    with pytest.raises(CheckpointFormatError):
        load_private_key(public_key_to_pem(private_key.public_key()))


@pytest.mark.parametrize("encoding", ["pem", "base64"])
def test_keys_written_to_files_read_back(tmp_path: Path, private_key: Ed25519PrivateKey, encoding: KeyEncoding) -> None:
    priv_path, pub_path = tmp_path / "audit.key", tmp_path / "audit.pub"
    write_private_key(priv_path, private_key, encoding)
    write_public_key(pub_path, private_key.public_key(), encoding)
    assert stat.S_IMODE(priv_path.stat().st_mode) == 0o600
    signed = sign(Checkpoint(ORIGIN, 1, ROOT, WHEN), read_private_key(priv_path))
    assert verify(signed, read_public_key(pub_path))


def test_hostile_bodies_fail_with_a_format_error(checkpoint: Checkpoint) -> None:
    huge = checkpoint.body().replace(b"\n1024\n", b"\n" + b"9" * 5000 + b"\n")
    with pytest.raises(CheckpointFormatError):
        Checkpoint.from_body(huge)
    with pytest.raises(CheckpointFormatError):
        Checkpoint.from_body(b"\xff\xfe\n1\n\n\n")
    with pytest.raises(CheckpointFormatError):
        SignedCheckpoint.from_json("[" * 100_000)
