"""Signed checkpoints: a tree head that can be copied out of Postgres and checked offline.

The body follows the C2SP ``tlog-checkpoint`` layout, with the timestamp as
the one extension line::

    <origin>\\n
    <size, decimal>\\n
    <root hash, standard base64>\\n
    timestamp <RFC 3339, UTC, microseconds>\\n

and the signed form is a C2SP ``signed-note``: the body, a blank line, then
one signature line ``— <key name> <base64(key id || Ed25519 signature)>``,
where ``key id = SHA-256(key name || 0x0A || 0x01 || public key)[:4]``. The
signature covers the body bytes exactly. Example::

    mloop.example/audit/registry
    1024
    r3Q0jVDm9YG1m2p7L9lQyc2cS3r1mQ8F2+fS7v9P4uQ=
    timestamp 2025-03-01T12:00:00.000000Z

    — mloop.example/audit/registry 3fCm5g...

``SignedCheckpoint.to_json()`` stores that note text verbatim (it is what is
signed) next to the decoded fields for people reading the file.

Keys are Ed25519. They load from PKCS#8/SubjectPublicKeyInfo PEM, from the
standard base64 of the 32 raw key bytes, and (public keys) from a C2SP
verifier key ``<name>+<hex key id>+<base64(0x01 || key)>``.

Errors::

    ValueError
     └── CheckpointFormatError   a body, note, JSON document or key that
                                 does not parse
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from mloop.ledger.merkle import HASH_SIZE

__all__ = [
    "Checkpoint",
    "CheckpointFormatError",
    "KeyEncoding",
    "SignedCheckpoint",
    "generate_private_key",
    "key_id",
    "load_private_key",
    "load_public_key",
    "private_key_to_base64",
    "private_key_to_pem",
    "public_key_to_base64",
    "public_key_to_pem",
    "public_key_to_vkey",
    "read_checkpoint_dir",
    "read_checkpoint_file",
    "read_private_key",
    "read_public_key",
    "resolve_public_key",
    "sign",
    "verify",
    "write_private_key",
    "write_public_key",
]

KeyEncoding = Literal["pem", "base64"]

_ED25519_TYPE = b"\x01"
_SIGNATURE_PREFIX = "\u2014 "
_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_TIMESTAMP_RE = re.compile(r"timestamp (\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z)")
_SIZE_RE = re.compile(r"0|[1-9][0-9]{0,19}")  # fits in a uint64
_NAME_FORBIDDEN = re.compile(r"[\s+]")


class CheckpointFormatError(ValueError):
    """A checkpoint body, signed note, JSON form or key could not be parsed."""


def _check_name(kind: str, name: str) -> None:
    if not name or _NAME_FORBIDDEN.search(name) or not name.isprintable():
        raise CheckpointFormatError(f"{kind} {name!r} must be non-empty, printable and contain no spaces or '+'")


def _b64decode(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CheckpointFormatError(f"{what} is not valid base64") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise CheckpointFormatError(f"{what} is not canonical base64")
    return raw


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The head of one chain's Merkle tree at a moment: ``size`` leaves with root ``root``."""

    origin: str
    size: int
    root: bytes
    timestamp: datetime

    def __post_init__(self) -> None:
        _check_name("origin", self.origin)
        if self.size < 0:
            raise CheckpointFormatError(f"size {self.size} is negative")
        if len(self.root) != HASH_SIZE:
            raise CheckpointFormatError(f"root must be {HASH_SIZE} bytes, got {len(self.root)}")
        if self.timestamp.tzinfo is None:
            raise CheckpointFormatError("timestamp must be timezone-aware")
        object.__setattr__(self, "timestamp", self.timestamp.astimezone(UTC))

    def body(self) -> bytes:
        """Return the exact bytes that are signed."""
        return (
            f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode('ascii')}\n"
            f"timestamp {self.timestamp.strftime(_TIMESTAMP_FORMAT)}\n"
        ).encode()

    @classmethod
    def from_body(cls, body: bytes | str) -> Checkpoint:
        """Parse a body produced by ``body()``; raise ``CheckpointFormatError`` otherwise.

        Parsing is strict so that every accepted body re-serialises to the
        same bytes.
        """
        try:
            text = body.decode("utf-8") if isinstance(body, bytes) else body
        except UnicodeDecodeError as exc:
            raise CheckpointFormatError("checkpoint body is not UTF-8") from exc
        lines = text.split("\n")
        if len(lines) != 5 or lines[4] != "":
            raise CheckpointFormatError("a checkpoint body has exactly four newline-ended lines")
        origin, size_text, root_text, ts_line = lines[:4]
        if not _SIZE_RE.fullmatch(size_text):
            raise CheckpointFormatError(f"size {size_text!r} is not a decimal number")
        root_hash = _b64decode(root_text, "root")
        match = _TIMESTAMP_RE.fullmatch(ts_line)
        if match is None:
            raise CheckpointFormatError(f"timestamp line {ts_line!r} is malformed")
        try:
            ts = datetime.strptime(match.group(1), _TIMESTAMP_FORMAT).replace(tzinfo=UTC)
        except ValueError as exc:
            raise CheckpointFormatError(f"timestamp {match.group(1)!r} is invalid") from exc
        checkpoint = cls(origin, int(size_text), root_hash, ts)
        if checkpoint.body().decode() != text:
            raise CheckpointFormatError("checkpoint body is not in canonical form")
        return checkpoint


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint with one Ed25519 signature in C2SP signed-note form."""

    checkpoint: Checkpoint
    key_name: str
    key_id: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _check_name("key name", self.key_name)
        if len(self.key_id) != 4:
            raise CheckpointFormatError("key id must be 4 bytes")
        if len(self.signature) != 64:
            raise CheckpointFormatError("an Ed25519 signature is 64 bytes")

    def to_note(self) -> str:
        """Return the signed note: body, blank line, signature line."""
        sig = base64.b64encode(self.key_id + self.signature).decode("ascii")
        return f"{self.checkpoint.body().decode()}\n{_SIGNATURE_PREFIX}{self.key_name} {sig}\n"

    @classmethod
    def from_note(cls, note: str) -> SignedCheckpoint:
        """Parse a note with exactly one signature line; raise ``CheckpointFormatError``."""
        body, sep, signatures = note.rpartition("\n\n")
        if not sep:
            raise CheckpointFormatError("a signed note needs a blank line before its signatures")
        sig_lines = signatures.split("\n")
        if len(sig_lines) != 2 or sig_lines[1] != "":
            raise CheckpointFormatError("expected exactly one newline-ended signature line")
        line = sig_lines[0]
        if not line.startswith(_SIGNATURE_PREFIX):
            raise CheckpointFormatError("signature line must start with an em dash and a space")
        name, space, sig_text = line[len(_SIGNATURE_PREFIX) :].partition(" ")
        if not space:
            raise CheckpointFormatError("signature line must be '— <name> <signature>'")
        raw = _b64decode(sig_text, "signature")
        if len(raw) != 4 + 64:
            raise CheckpointFormatError("an Ed25519 note signature is 68 bytes with its key id")
        return cls(Checkpoint.from_body(body + "\n"), name, raw[:4], raw[4:])

    def to_dict(self) -> dict[str, Any]:
        cp = self.checkpoint
        return {
            "origin": cp.origin,
            "size": cp.size,
            "root": cp.root.hex(),
            "timestamp": cp.timestamp.strftime(_TIMESTAMP_FORMAT),
            "key_name": self.key_name,
            "note": self.to_note(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> SignedCheckpoint:
        """Parse ``to_dict()`` output. The ``note`` is authoritative; the other
        fields are for readers and must agree with it when present."""
        if not isinstance(data, dict) or not isinstance(data.get("note"), str):
            raise CheckpointFormatError("a signed checkpoint object needs a 'note' string")
        signed = cls.from_note(data["note"])
        readable = signed.to_dict()
        for key in ("origin", "size", "root", "timestamp", "key_name"):
            if key in data and data[key] != readable[key]:
                raise CheckpointFormatError(f"field {key!r} disagrees with the signed note")
        return signed

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> SignedCheckpoint:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise CheckpointFormatError("signed checkpoint is not valid JSON") from exc
        return cls.from_dict(data)


# --------------------------------------------------------------------------
# Signing
# --------------------------------------------------------------------------


def _raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key_name: str, public_key: Ed25519PublicKey) -> bytes:
    """Return the 4-byte C2SP signed-note key id of an Ed25519 key under ``key_name``."""
    data = key_name.encode() + b"\n" + _ED25519_TYPE + _raw_public(public_key)
    return hashlib.sha256(data).digest()[:4]


def sign(checkpoint: Checkpoint, private_key: Ed25519PrivateKey, key_name: str | None = None) -> SignedCheckpoint:
    """Sign ``checkpoint`` with ``private_key``; the key name defaults to the origin."""
    name = checkpoint.origin if key_name is None else key_name
    return SignedCheckpoint(
        checkpoint=checkpoint,
        key_name=name,
        key_id=key_id(name, private_key.public_key()),
        signature=private_key.sign(checkpoint.body()),
    )


def verify(signed: SignedCheckpoint, public_key: Ed25519PublicKey) -> bool:
    """Return True iff ``signed`` carries a valid signature by ``public_key``.

    The key id in the note must match the key and the key name too.
    """
    if signed.key_id != key_id(signed.key_name, public_key):
        return False
    try:
        public_key.verify(signed.signature, signed.checkpoint.body())
    except InvalidSignature:
        return False
    return True


# --------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_to_pem(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def private_key_to_base64(private_key: Ed25519PrivateKey) -> str:
    raw = private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(raw).decode("ascii")


def public_key_to_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_to_base64(public_key: Ed25519PublicKey) -> str:
    return base64.b64encode(_raw_public(public_key)).decode("ascii")


def public_key_to_vkey(key_name: str, public_key: Ed25519PublicKey) -> str:
    """Return the C2SP verifier key ``<name>+<hex key id>+<base64(0x01 || key)>``."""
    _check_name("key name", key_name)
    encoded = base64.b64encode(_ED25519_TYPE + _raw_public(public_key)).decode("ascii")
    return f"{key_name}+{key_id(key_name, public_key).hex()}+{encoded}"


def _as_text(data: bytes | str) -> str:
    try:
        return (data.decode("ascii") if isinstance(data, bytes) else data).strip()
    except UnicodeDecodeError as exc:
        raise CheckpointFormatError("key material must be ASCII (PEM or base64)") from exc


def load_private_key(data: bytes | str) -> Ed25519PrivateKey:
    """Load an Ed25519 private key from unencrypted PKCS#8 PEM or base64 of the 32-byte seed."""
    text = _as_text(data)
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise CheckpointFormatError("not an unencrypted PEM private key") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise CheckpointFormatError("PEM private key is not an Ed25519 key")
        return key
    raw = _b64decode(text, "private key")
    if len(raw) != 32:
        raise CheckpointFormatError("a raw Ed25519 private key is 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(raw)


def load_public_key(data: bytes | str) -> Ed25519PublicKey:
    """Load an Ed25519 public key from PEM, base64 of the 32 raw bytes, or a C2SP vkey."""
    text = _as_text(data)
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode())
        except (ValueError, TypeError) as exc:
            raise CheckpointFormatError("not a PEM public key") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise CheckpointFormatError("PEM public key is not an Ed25519 key")
        return key
    if text.count("+") >= 2 and not text.endswith("="):
        # A vkey: the base64 part may itself contain '+', so split from the left.
        name, hex_id, encoded = text.split("+", 2)
        raw = _b64decode(encoded, "verifier key")
        if len(raw) != 33 or raw[:1] != _ED25519_TYPE:
            raise CheckpointFormatError("verifier key is not an Ed25519 key")
        key = Ed25519PublicKey.from_public_bytes(raw[1:])
        if key_id(name, key).hex() != hex_id:
            raise CheckpointFormatError("verifier key id does not match its name and key")
        return key
    raw = _b64decode(text, "public key")
    if len(raw) != 32:
        raise CheckpointFormatError("a raw Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def read_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    return load_private_key(Path(path).read_bytes())


def read_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    return load_public_key(Path(path).read_bytes())


def write_private_key(
    path: str | os.PathLike[str], private_key: Ed25519PrivateKey, encoding: KeyEncoding = "pem"
) -> None:
    """Write the key readable by its owner only (mode 0600)."""
    data = (
        private_key_to_pem(private_key) if encoding == "pem" else (private_key_to_base64(private_key) + "\n").encode()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def write_public_key(path: str | os.PathLike[str], public_key: Ed25519PublicKey, encoding: KeyEncoding = "pem") -> None:
    data = public_key_to_pem(public_key) if encoding == "pem" else (public_key_to_base64(public_key) + "\n").encode()
    Path(path).write_bytes(data)


def resolve_public_key(value: str) -> Ed25519PublicKey:
    """A key given on a command line: a file holding one, or a literal (PEM, base64 of the raw key, or vkey).

    Raises ``CheckpointFormatError`` when it is no Ed25519 public key, ``OSError`` when the file cannot be read.
    """
    candidate = Path(value)
    return load_public_key(candidate.read_bytes() if candidate.is_file() else value)


def read_checkpoint_file(path: str | os.PathLike[str]) -> list[SignedCheckpoint]:
    """The signed checkpoints of a file: one (JSON or signed note) or a JSON list of them.

    Raises ``CheckpointFormatError``, ``OSError`` or ``UnicodeDecodeError`` when it cannot be read.
    """
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except ValueError:
        return [SignedCheckpoint.from_note(text)]
    items = data if isinstance(data, list) else [data]
    return [SignedCheckpoint.from_dict(item) for item in items]


def read_checkpoint_dir(
    directory: str | os.PathLike[str], *, skipped: list[tuple[Path, str]] | None = None
) -> list[SignedCheckpoint]:
    """Every signed checkpoint in the ``*.json`` files under ``directory`` (none if it does not exist).

    A file that cannot be read is left out and, when ``skipped`` is given, listed there with the reason:
    verification then simply has less independent evidence.
    """
    root = Path(directory)
    found: list[SignedCheckpoint] = []
    if not root.is_dir():
        return found
    for path in sorted(root.rglob("*.json")):
        try:
            found += read_checkpoint_file(path)
        except (CheckpointFormatError, OSError, UnicodeDecodeError) as exc:
            if skipped is not None:
                skipped.append((path, str(exc)))
    return found
