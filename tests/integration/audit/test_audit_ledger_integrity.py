"""The ledger in Postgres: append-only enforcement, tamper detection naming the
first bad seq, and concurrent writers that never fork a chain."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mloop.audit import cli
from mloop.audit.checkpointing import Checkpointer
from mloop.audit.settings import AuditSettings
from mloop.audit.store import ChainWriter
from mloop.ledger.checkpoint import public_key_to_pem
from mloop.ledger.merkle import chain_hash, leaf_hash

from .support import alias_events, audit_settings, checkpointer_for, ledger_pool, positioned, record

pytestmark = pytest.mark.integration

CHAIN = "model-alias-changed/0"


@dataclass
class Ledger:
    url: str
    pool: asyncpg.Pool
    settings: AuditSettings
    writer: ChainWriter
    checkpointer: Checkpointer

    @property
    def public_key_pem(self) -> str:
        return public_key_to_pem(self.checkpointer.public_key).decode()

    async def superuser(self, *sql: str) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            for statement in sql:
                await conn.execute(statement)
        finally:
            await conn.close()

    def verify(self, *, outside: bool = True) -> dict[str, Any]:
        """``mloop audit verify`` on the live database (with the checkpoint files unless
        ``outside`` is False); the report and the exit status."""
        import contextlib
        import io

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            files = ["--checkpoint-dir", str(self.settings.checkpoint_path)] if outside else []
            code = cli.verify(["--database-url", self.url, "--public-key", self.public_key_pem, "--json", *files])
        report: dict[str, Any] = json.loads(out.getvalue())
        report["exit_status"] = code
        return report


@pytest.fixture
async def ledger(infra: Any, tmp_path: Path) -> AsyncIterator[Ledger]:
    """40 rows on one chain, signed at size 40 (stored and written outside Postgres)."""
    settings = audit_settings(infra, tmp_path)
    async with ledger_pool(infra.database_url) as pool:
        writer = ChainWriter(settings.origin_prefix, writer_role=settings.writer_role)
        checkpointer = checkpointer_for(settings)
        await record(pool, writer, positioned(alias_events(40)), batch=7)
        assert [c for c, _ in await checkpointer.checkpoint(pool)] == [CHAIN]
        yield Ledger(infra.database_url, pool, settings, writer, checkpointer)


def _chain(report: dict[str, Any], name: str = CHAIN) -> dict[str, Any]:
    return next(c for c in report["chains"] if c["chain"] == name or c["origin"].endswith(name))


async def test_an_untouched_ledger_verifies(ledger: Ledger) -> None:
    report = await asyncio.to_thread(ledger.verify)
    assert report["exit_status"] == 0 and report["ok"] is True
    assert _chain(report)["rows"] == 40 and _chain(report)["signed_size"] == 40


async def test_a_payload_updated_by_a_superuser_is_detected_at_its_seq(ledger: Ledger) -> None:
    await ledger.superuser(
        "ALTER TABLE audit.ledger DISABLE TRIGGER ledger_append_only",
        """UPDATE audit.ledger SET canonical = convert_to(replace(convert_from(canonical, 'UTF8'),
               '"challenger"', '"champion"'), 'UTF8') WHERE chain = 'model-alias-changed/0' AND seq = 17""",
        "ALTER TABLE audit.ledger ENABLE ALWAYS TRIGGER ledger_append_only",
    )
    report = await asyncio.to_thread(ledger.verify)
    assert report["exit_status"] == 1
    assert _chain(report)["first_bad_seq"] == 17
    assert "seq 17" in _chain(report)["reason"]


async def test_a_payload_rewritten_with_recomputed_hashes_is_caught_by_the_signed_checkpoint(ledger: Ledger) -> None:
    conn = await asyncpg.connect(ledger.url)
    try:
        await conn.execute("ALTER TABLE audit.ledger DISABLE TRIGGER ledger_append_only")
        rows = await conn.fetch("SELECT seq, canonical, chain_hash FROM audit.ledger WHERE chain = $1 ORDER BY seq",
                                CHAIN)
        prev = bytes(rows[16]["chain_hash"])
        for r in rows[17:]:
            canonical = bytes(r["canonical"]).replace(b'"challenger"', b'"champion"')
            leaf = leaf_hash(canonical)
            prev = chain_hash(prev, leaf)
            await conn.execute("UPDATE audit.ledger SET canonical = $1, leaf_hash = $2, chain_hash = $3 "
                               "WHERE chain = $4 AND seq = $5", canonical, leaf, prev, CHAIN, r["seq"])
        await conn.execute("ALTER TABLE audit.ledger ENABLE ALWAYS TRIGGER ledger_append_only")
    finally:
        await conn.close()
    report = await asyncio.to_thread(ledger.verify)
    assert report["exit_status"] == 1
    assert "does not match the signed checkpoint at size 40" in _chain(report)["reason"]


async def test_a_deleted_row_is_detected_at_its_seq(ledger: Ledger) -> None:
    await ledger.superuser(
        "ALTER TABLE audit.ledger DISABLE TRIGGER ledger_append_only",
        "DELETE FROM audit.ledger WHERE chain = 'model-alias-changed/0' AND seq = 23",
        "ALTER TABLE audit.ledger ENABLE ALWAYS TRIGGER ledger_append_only",
    )
    report = await asyncio.to_thread(ledger.verify)
    assert report["exit_status"] == 1
    assert _chain(report)["first_bad_seq"] == 23
    assert "seq 23 is missing" in _chain(report)["reason"]


async def test_reordered_rows_are_detected_at_the_first_moved_seq(ledger: Ledger) -> None:
    where = "chain = 'model-alias-changed/0'"
    await ledger.superuser(
        "ALTER TABLE audit.ledger DISABLE TRIGGER ledger_append_only",
        f"UPDATE audit.ledger SET seq = 1000000 WHERE {where} AND seq = 10",
        f"UPDATE audit.ledger SET seq = 10 WHERE {where} AND seq = 11",
        f"UPDATE audit.ledger SET seq = 11 WHERE {where} AND seq = 1000000",
        "ALTER TABLE audit.ledger ENABLE ALWAYS TRIGGER ledger_append_only",
    )
    report = await asyncio.to_thread(ledger.verify)
    assert report["exit_status"] == 1
    assert _chain(report)["first_bad_seq"] == 10


async def test_a_truncated_ledger_is_detected_through_the_checkpoints_kept_outside_postgres(ledger: Ledger) -> None:
    tables = ["ledger", "ledger_nodes", "ledger_checkpoints", "ledger_chains"]
    await ledger.superuser(
        *(f"ALTER TABLE audit.{t} DISABLE TRIGGER {t}_no_truncate" for t in tables),
        "TRUNCATE " + ", ".join(f"audit.{t}" for t in tables),
        *(f"ALTER TABLE audit.{t} ENABLE ALWAYS TRIGGER {t}_no_truncate" for t in tables),
    )
    report = await asyncio.to_thread(ledger.verify)
    assert report["exit_status"] == 1
    assert _chain(report)["first_bad_seq"] == 0
    assert "truncated" in _chain(report)["reason"] and "40" in _chain(report)["reason"]


async def test_the_tail_cut_together_with_its_checkpoints_is_detected_outside_postgres(ledger: Ledger) -> None:
    await record(ledger.pool, ledger.writer, positioned(alias_events(10, start=40)))
    await ledger.checkpointer.checkpoint(ledger.pool)
    await ledger.superuser(
        "ALTER TABLE audit.ledger DISABLE TRIGGER ledger_append_only",
        "ALTER TABLE audit.ledger_checkpoints DISABLE TRIGGER ledger_checkpoints_append_only",
        "DELETE FROM audit.ledger WHERE seq >= 40",
        "DELETE FROM audit.ledger_checkpoints WHERE size > 40",
        "ALTER TABLE audit.ledger ENABLE ALWAYS TRIGGER ledger_append_only",
        "ALTER TABLE audit.ledger_checkpoints ENABLE ALWAYS TRIGGER ledger_checkpoints_append_only",
    )
    inside_only = await asyncio.to_thread(ledger.verify, outside=False)
    assert inside_only["ok"] is True  # what is left in the database is self-consistent ...
    report = await asyncio.to_thread(ledger.verify)  # ... the copies outside are not fooled
    assert report["exit_status"] == 1
    assert _chain(report)["first_bad_seq"] == 40


async def test_a_chain_dropped_from_the_chain_list_is_still_noticed(ledger: Ledger) -> None:
    await ledger.superuser(
        "ALTER TABLE audit.ledger_chains DISABLE TRIGGER ledger_chains_append_only",
        "DELETE FROM audit.ledger_chains",
        "ALTER TABLE audit.ledger_chains ENABLE ALWAYS TRIGGER ledger_chains_append_only",
    )
    report = await asyncio.to_thread(ledger.verify, outside=False)
    assert report["exit_status"] == 1
    assert any(CHAIN in problem for problem in report["problems"])


@pytest.mark.parametrize("statement", [
    "UPDATE audit.ledger SET actor = 'user:mallory'",
    "DELETE FROM audit.ledger WHERE seq = 0",
    "TRUNCATE audit.ledger",
    "UPDATE audit.ledger_checkpoints SET size = 1",
    "DELETE FROM audit.ledger_nodes",
])
async def test_the_writer_role_may_not_change_or_remove_ledger_rows(ledger: Ledger, statement: str) -> None:
    conn = await asyncpg.connect(ledger.url)
    try:
        await conn.execute("SET ROLE mloop_audit_writer")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.mark.parametrize("statement", [
    "UPDATE audit.ledger SET actor = 'user:mallory'",
    "DELETE FROM audit.ledger WHERE seq = 0",
    "TRUNCATE audit.ledger",
    "DELETE FROM audit.ledger_checkpoints",
])
async def test_append_only_triggers_fire_even_for_a_superuser_in_replica_mode(ledger: Ledger, statement: str) -> None:
    conn = await asyncpg.connect(ledger.url)
    try:
        assert await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        await conn.execute("SET session_replication_role = replica")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute(statement)
    finally:
        await conn.close()
    assert (await asyncio.to_thread(ledger.verify))["ok"] is True


async def test_concurrent_writers_to_one_chain_never_fork_it(infra: Any, tmp_path: Path) -> None:
    settings = audit_settings(infra, tmp_path)
    events = positioned(alias_events(400))
    async with ledger_pool(infra.database_url) as pool_a, ledger_pool(infra.database_url) as pool_b:
        writers = [ChainWriter(settings.origin_prefix, writer_role=settings.writer_role) for _ in range(2)]

        async def write(pool: asyncpg.Pool, writer: ChainWriter, mine: list[Any]) -> None:
            for i in range(0, len(mine), 5):
                async with pool.acquire() as conn, conn.transaction():
                    await writer.append(conn, mine[i:i + 5])
                await asyncio.sleep(0)

        # Each writer gets every even event, plus the odd ones from its own half: the
        # two race on the same chain and both try to append the even events.
        evens = events[0::2]
        await asyncio.gather(
            write(pool_a, writers[0], evens + events[1:200:2]),
            write(pool_b, writers[1], evens + events[201::2]),
        )
        rows = await pool_a.fetch("SELECT seq, event_id FROM ledger WHERE chain = $1 ORDER BY seq", CHAIN)
        assert [r["seq"] for r in rows] == list(range(400))
        assert sorted(r["event_id"] for r in rows) == sorted(e.id for e in events)
        checkpointer = checkpointer_for(settings)
        await checkpointer.checkpoint(pool_a)
    report = await asyncio.to_thread(
        cli.verify, ["--database-url", infra.database_url, "--public-key",
                     public_key_to_pem(checkpointer.public_key).decode()])
    assert report == 0


async def test_no_new_checkpoint_is_signed_over_an_altered_tree(ledger: Ledger) -> None:
    await ledger.superuser(
        "ALTER TABLE audit.ledger_nodes DISABLE TRIGGER ledger_nodes_append_only",
        "UPDATE audit.ledger_nodes SET hash = sha256(hash) WHERE level = 5 AND index = 0",
        "ALTER TABLE audit.ledger_nodes ENABLE ALWAYS TRIGGER ledger_nodes_append_only",
    )
    await record(ledger.pool, ledger.writer, positioned(alias_events(5, start=40)))
    assert await ledger.checkpointer.checkpoint(ledger.pool) == []
    assert await ledger.pool.fetchval("SELECT max(size) FROM ledger_checkpoints") == 40
