"""Exactly once, for real: the audit service as its own process, killed with
SIGKILL in the middle of a stream of 50,000 events, then restarted."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from typer.testing import CliRunner

from mloop.audit import cli
from mloop.cli.main import app as mloop_cli
from mloop.ledger.checkpoint import generate_private_key, private_key_to_pem, public_key_to_pem
from mloop.runtime.auth import issue_token

from .support import alias_events, publish

pytestmark = pytest.mark.integration

EVENTS = 50_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AuditProcess:
    """``python -m mloop.audit`` with the environment the runtime documents."""

    def __init__(self, infra: Any, tmp_path: Path, signing_key_pem: str, jwt_secret: str) -> None:
        self.port = _free_port()
        self.log = tmp_path / "audit.log"
        self.env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
            "DATABASE_URL": infra.database_url,
            "MLOOP_TOPIC_PREFIX": infra.topic_prefix,
            "MLOOP_HTTP_PORT": str(self.port),
            "MLOOP_JWT_SECRET": jwt_secret,
            "MLOOP_ENVIRONMENT": "test",
            "MLOOP_AUDIT_SIGNING_KEY": signing_key_pem,
            "MLOOP_DATA_DIR": str(tmp_path / "data"),
            "MLOOP_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
            "MLOOP_CHECKPOINT_INTERVAL_S": "1",
            "MLOOP_LOG_JSON": "false",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "mloop.audit"], env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])


async def _count(conn: asyncpg.Connection) -> int:
    try:
        return int(await conn.fetchval("SELECT count(*) FROM audit.ledger"))
    except asyncpg.UndefinedTableError:
        return 0


async def test_a_service_killed_mid_stream_records_every_event_exactly_once_after_restart(
    infra: Any, tmp_path: Path
) -> None:
    started = time.monotonic()
    key = generate_private_key()
    secret = "exactly-once-test-secret-0123456789abcdef"
    service = AuditProcess(infra, tmp_path, private_key_to_pem(key).decode(), secret)
    events = alias_events(EVENTS, models=97)
    conn = await asyncpg.connect(infra.database_url)
    try:
        service.start()
        producing = asyncio.create_task(publish(infra.bootstrap_servers, infra.topic_prefix, events))
        # Kill it once a fair part, but not all, of the stream is recorded.
        deadline = time.monotonic() + 40
        while (n := await _count(conn)) < 8_000:
            assert service.proc is not None and service.proc.poll() is None, service.tail()
            assert time.monotonic() < deadline, f"only {n} rows recorded\n{service.tail()}"
            await asyncio.sleep(0.05)
        service.kill()
        at_kill = await _count(conn)
        assert 0 < at_kill < EVENTS
        service.start()
        await producing
        while (n := await _count(conn)) < EVENTS:
            assert service.proc is not None and service.proc.poll() is None, service.tail()
            assert time.monotonic() < started + 55, f"{n} of {EVENTS} rows recorded\n{service.tail()}"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # anything redelivered late would show up now

        rows = await conn.fetch("SELECT event_id, count(*) OVER (PARTITION BY event_id) AS n FROM audit.ledger")
        assert len(rows) == EVENTS
        assert {r["event_id"] for r in rows} == {e.id for e in events}
        assert all(r["n"] == 1 for r in rows)
        chains = await conn.fetch("SELECT chain, count(*) AS n, max(seq) AS top FROM audit.ledger GROUP BY chain")
        assert len(chains) == 3 and all(c["top"] == c["n"] - 1 for c in chains)
        assert min(c["n"] for c in chains) > 10_000  # many events per partition

        token = issue_token(secret, "oz", ["operator"])
        async with httpx.AsyncClient(base_url=service.url) as client:
            r = await client.post("/checkpoints", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 201, r.text
        pinned = public_key_to_pem(key.public_key()).decode()
        outside = ["--checkpoint-dir", str(tmp_path / "checkpoints")]
        code = await asyncio.to_thread(cli.verify, ["--database-url", infra.database_url, "--public-key", pinned,
                                                    *outside])
        assert code == 0
        # The same through the API (mloop audit verify): the full bundle is downloaded and checked here,
        # with the pinned key.
        result = await asyncio.to_thread(
            CliRunner().invoke, mloop_cli, ["--token", token, "audit", "verify", "--public-key", pinned, *outside],
            env={"MLOOP_AUDIT_URL": service.url},
        )
        assert result.exit_code == 0, result.output
    finally:
        service.stop()
        await conn.close()
