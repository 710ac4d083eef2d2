"""Signing checkpoints: the key, the periodic loop, and the copies outside Postgres.

Every ``checkpoint_every_events`` new rows or ``checkpoint_interval_s``
seconds, each chain that grew gets a checkpoint ``(origin, size, root,
time)`` signed with the service's Ed25519 key. It is stored in
``ledger_checkpoints`` and written as ``SignedCheckpoint.to_json()`` to
``<checkpoint_dir>/<topic>/<partition>/<size>.json``, a place an operator
can ship elsewhere (object storage with retention lock, another machine):
those copies are what expose a ledger that was cut short or rewritten in
the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mloop.audit import store
from mloop.audit.settings import AuditSettings
from mloop.ledger.checkpoint import (
    Checkpoint,
    CheckpointFormatError,
    SignedCheckpoint,
    generate_private_key,
    load_private_key,
    read_private_key,
    sign,
    write_private_key,
)
from mloop.ledger.checkpoint import read_checkpoint_dir as read_checkpoints_in
from mloop.runtime.errors import ConfigurationError

__all__ = ["Checkpointer", "load_signing_key", "read_checkpoint_dir", "write_checkpoint_file"]

log = logging.getLogger(__name__)

DEV_KEY_FILE = "signing-key.pem"


def load_signing_key(settings: AuditSettings) -> Ed25519PrivateKey:
    """The checkpoint signing key: from ``MLOOP_AUDIT_SIGNING_KEY``, or in
    development and test from ``<data_dir>/signing-key.pem`` (generated once).

    Raises ``ConfigurationError`` for a key that does not parse (its value is
    never part of the message).
    """
    if settings.audit_signing_key is not None and settings.audit_signing_key.get_secret_value().strip():
        try:
            return load_private_key(settings.audit_signing_key.get_secret_value())
        except CheckpointFormatError as exc:
            raise ConfigurationError(f"MLOOP_AUDIT_SIGNING_KEY is not a usable Ed25519 private key: {exc}") from None
    if settings.environment not in ("development", "test"):
        raise ConfigurationError("MLOOP_AUDIT_SIGNING_KEY is required outside development")
    path = settings.data_dir / DEV_KEY_FILE
    if path.exists():
        try:
            return read_private_key(path)
        except CheckpointFormatError as exc:
            raise ConfigurationError(f"{path} does not hold an Ed25519 private key: {exc}") from None
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    key = generate_private_key()
    write_private_key(path, key)
    log.warning("generated a development checkpoint signing key in %s", path)
    return key


def _checkpoint_file(directory: Path, chain: str, size: int) -> Path:
    topic, _, partition = chain.rpartition("/")
    return directory / topic / partition / f"{size:012d}.json"


def write_checkpoint_file(directory: Path, chain: str, signed: SignedCheckpoint) -> Path:
    """Write ``signed`` under ``directory`` atomically; return its path."""
    path = _checkpoint_file(directory, chain, signed.checkpoint.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(signed.to_json())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def read_checkpoint_dir(directory: Path) -> list[SignedCheckpoint]:
    """Every signed checkpoint written under ``directory``; unreadable files are skipped with a warning."""
    skipped: list[tuple[Path, str]] = []
    found = read_checkpoints_in(directory, skipped=skipped)
    for path, reason in skipped:
        log.warning("skipping %s: %s", path, reason)
    return found
    for path in sorted(directory.rglob("*.json")):
        try:
            found.append(SignedCheckpoint.from_json(path.read_bytes()))
        except (CheckpointFormatError, OSError) as exc:
            log.warning("skipping %s: %s", path, exc)
    return found


class Checkpointer:
    """Signs, stores and writes out checkpoints of the chains that grew."""

    def __init__(self, settings: AuditSettings, key: Ed25519PrivateKey, *, writer_role: str | None = None) -> None:
        self.settings = settings
        self.writer_role = writer_role
        self.key = key
        self.public_key = key.public_key()
        self.directory = settings.checkpoint_path
        self.wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self.pending = 0

    def note_appended(self, count: int) -> None:
        """Called after ingestion: wake the loop once enough rows wait for a checkpoint."""
        self.pending += count
        if self.pending >= self.settings.checkpoint_every_events:
            self.wake.set()

    async def checkpoint(
        self, pool: asyncpg.Pool, chains: Iterable[str] | None = None
    ) -> list[tuple[str, SignedCheckpoint]]:
        """Sign every chain (or those named) whose size passed its latest checkpoint;
        return the new ones as ``(chain, signed)``."""
        wanted = None if chains is None else set(chains)
        async with self._lock:
            self.pending = 0
            made: list[tuple[str, SignedCheckpoint]] = []
            async with pool.acquire() as conn, conn.transaction():
                if self.writer_role:
                    await conn.execute(f"SET LOCAL ROLE {store.quote_ident(self.writer_role)}")
                for state in await store.list_chains(conn):
                    if wanted is not None and state.chain not in wanted:
                        continue
                    if state.size == 0 or (state.signed_size is not None and state.signed_size >= state.size):
                        continue
                    try:
                        root = await store.tree_root(conn, state.chain, state.size)
                        if state.signed_size and not await self._extends_last(conn, state.chain, state.signed_size):
                            log.error("refusing to sign chain %s: the tree no longer matches its checkpoint at "
                                      "size %d (the ledger was altered)", state.chain, state.signed_size)
                            continue
                    except store.LedgerIntegrityError:
                        log.exception("cannot sign chain %s: its Merkle nodes are damaged", state.chain)
                        continue
                    signed = sign(Checkpoint(state.origin, state.size, root, datetime.now(UTC)), self.key)
                    if await store.insert_checkpoint(conn, state.chain, signed):
                        made.append((state.chain, signed))
            for chain, signed in made:
                try:
                    await asyncio.to_thread(write_checkpoint_file, self.directory, chain, signed)
                except OSError as exc:
                    # The checkpoint is signed and stored; only its outside copy is missing.
                    log.error("cannot write checkpoint %s/%d outside Postgres: %s", chain,
                              signed.checkpoint.size, exc)
            if made:
                log.info("signed %d checkpoints", len(made))
            return made

    async def _extends_last(self, conn: asyncpg.Connection, chain: str, size: int) -> bool:
        """Whether the stored tree still has the root signed at ``size``: a new checkpoint must
        extend the old one, never paper over an altered ledger."""
        last = await store.list_checkpoints(conn, chain, after=(chain, size - 1), max_size=size)
        return bool(last) and await store.tree_root(conn, chain, size) == last[0][1].checkpoint.root

    async def run(self, pool: asyncpg.Pool) -> None:
        """Sign every ``checkpoint_interval_s`` seconds, or sooner when enough rows are pending."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.settings.checkpoint_interval_s)
            self.wake.clear()
            await self.checkpoint(pool)
