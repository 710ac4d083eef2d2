"""The audit service against the real Kafka and Postgres: ingestion, queries, proofs and evidence."""

from __future__ import annotations

import asyncio
import io
import tarfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from typer.testing import CliRunner

from mloop.audit import cli
from mloop.audit.main import create_app
from mloop.cli.main import app as mloop_cli
from mloop.ledger.checkpoint import load_public_key
from mloop.ledger.merkle import verify_consistency, verify_inclusion
from mloop.ledger.verify import verify_bundle
from mloop.runtime.testing import auth_headers, running_app

from .support import T0, alias_events, audit_settings, publish, version_story


def mloop_audit_verify(argv: list[str]) -> int:
    """The exit status of ``mloop audit verify ARGV`` (the CLI; a bundle and a key given, so offline)."""
    return CliRunner().invoke(mloop_cli, ["audit", "verify", *argv]).exit_code

pytestmark = pytest.mark.integration


async def _wait_rows(database_url: str, n: int, timeout_s: float = 30.0) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while (got := await conn.fetchval("SELECT count(*) FROM audit.ledger")) < n:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{got} of {n} rows recorded")
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def test_governance_events_are_recorded_and_answer_lifecycle_serving_and_approval_queries(
    infra: Any, tmp_path: Path
) -> None:
    settings = audit_settings(infra, tmp_path)
    champion = version_story("credit-risk", "4", start=T0)
    rolled_back = version_story("credit-risk", "5", start=T0 + timedelta(hours=2), previous="4", outcome="rollback")
    noise = alias_events(40)
    await publish(infra.bootstrap_servers, infra.topic_prefix, champion + rolled_back + noise)
    total = len(champion) + len(rolled_back) + len(noise)
    async with running_app(create_app(settings)) as client:
        await _wait_rows(infra.database_url, total)
        h = auth_headers(settings, "ava", "viewer")

        life = (await client.get("/models/credit-risk/versions/4/lifecycle", headers=h)).json()
        stages = [s["stage"] for s in life["steps"]]
        assert stages[:5] == ["registered", "validated", "promotion-requested", "approved", "promoted"]
        assert stages.index("rollout-started") < stages.index("rollout-completed") < stages.index("champion")
        # Version 5's rollout later routes traffic to version 4 as its baseline: part of 4's story too.
        assert stages[stages.index("champion") + 1:] == ["traffic", "traffic", "traffic"]
        assert life["status"] == "champion"
        life5 = (await client.get("/models/credit-risk/versions/5/lifecycle", headers=h)).json()
        assert life5["status"] == "rolled-back"
        assert [s["stage"] for s in life5["steps"]].count("traffic") == 2

        # Version 4 took 5% at minute 6 of its rollout and everything at minute 10.
        served = (await client.get("/models/credit-risk/serving",
                                   params={"at": (T0 + timedelta(minutes=6, seconds=30)).isoformat()},
                                   headers=h)).json()
        assert {r["version"]: r["weight"] for r in served["serving"]} == {"3": 0.95, "4": 0.05}
        served = (await client.get("/models/credit-risk/serving",
                                   params={"at": (T0 + timedelta(hours=1)).isoformat()}, headers=h)).json()
        assert served["serving"] == [{"version": "4", "weight": 1.0}]
        after_rollback = (await client.get("/models/credit-risk/serving",
                                           params={"at": (T0 + timedelta(hours=3)).isoformat()}, headers=h)).json()
        assert after_rollback["serving"] == [{"version": "4", "weight": 1.0}]
        r = await client.get("/models/credit-risk/serving", params={"at": T0.isoformat()}, headers=h)
        assert r.status_code == 404

        approvals = (await client.get("/approvals", params={"model": "credit-risk"}, headers=h)).json()["items"]
        assert [(a["kind"], a["version"], a["approvers"], a["requested_by"]) for a in approvals] == [
            ("review", "4", ["user:rita"], "user:dana"), ("promotion", "4", ["user:rita"], "user:dana"),
            ("review", "5", ["user:rita"], "user:dana"), ("promotion", "5", ["user:rita"], "user:dana"),
        ]

        # Cursor pagination walks every record of a filter exactly once.
        seen: list[str] = []
        token = None
        while True:
            params: dict[str, Any] = {"model": "credit-risk", "page_size": 4}
            if token:
                params["page_token"] = token
            page = (await client.get("/records", params=params, headers=h)).json()
            seen += [item["event_id"] for item in page["items"]]
            token = page["next_page_token"]
            if not token:
                break
        assert sorted(seen) == sorted(e.id for e in champion + rolled_back)
        by_actor = (await client.get("/records", params={"actor": "user:rita", "type": "promotion-reviewed"},
                                     headers=h)).json()["items"]
        assert {i["version"] for i in by_actor} == {"4", "5"}
        window = (await client.get("/records", params={"since": T0.isoformat(),
                                                      "until": (T0 + timedelta(minutes=3)).isoformat(),
                                                      "model": "credit-risk"}, headers=h)).json()["items"]
        assert [i["type"] for i in window] == ["dev.mloop.model-registered.v1", "dev.mloop.model-validated.v1",
                                              "dev.mloop.promotion-requested.v1"]

        # Proofs against signed checkpoints.
        r = await client.post("/checkpoints", headers=auth_headers(settings, "oz", "operator"))
        assert r.status_code == 201, r.text
        # Whether this call or the periodic checkpointer signed them, every chain is now signed at its size.
        chains_now = (await client.get("/chains", headers=h)).json()
        assert sum(c["size"] for c in chains_now) == total
        assert [c["chain"] for c in chains_now if c["signed_size"] != c["size"]] == []
        promoted = next(e for e in champion if e.topic == "model-promoted")
        proof = (await client.get(f"/records/{promoted.id}/proof", headers=h)).json()
        assert proof["verified"] is True
        pem = (await client.get("/public-key")).json()["pem"]
        key = load_public_key(pem)
        root = bytes.fromhex(proof["checkpoint"]["root"])
        assert verify_inclusion(bytes.fromhex(proof["leaf_hash"]), proof["seq"], proof["tree_size"],
                                [bytes.fromhex(x) for x in proof["path"]], root)
        chain = proof["chain"]
        size = proof["tree_size"]
        record = (await client.get(f"/records/{promoted.id}", headers=h)).json()
        assert record["event"]["data"]["approved_by"] == ["user:rita"]
        assert record["event"]["actor"] == "user:rita"

        # More rows on that chain, a new checkpoint, and a consistency proof between the two.
        await publish(infra.bootstrap_servers, infra.topic_prefix, version_story("credit-risk", "6",
                                                                                 start=T0 + timedelta(hours=5)))
        await _wait_rows(infra.database_url, total + 12)
        await client.post("/checkpoints", headers=auth_headers(settings, "oz", "operator"))
        chains = {c["chain"]: c for c in (await client.get("/chains", headers=h)).json()}
        new_size = chains[chain]["signed_size"]
        assert new_size > size
        cps = [c for c in (await client.get("/checkpoints", params={"chain": chain}, headers=h)).json()["items"]]
        roots = {c["size"]: bytes.fromhex(c["root"]) for c in cps}
        cons = (await client.get("/proofs/consistency", params={"chain": chain, "old_size": size,
                                                                "new_size": new_size}, headers=h)).json()
        assert verify_consistency(size, new_size, roots[size], roots[new_size],
                                  [bytes.fromhex(x) for x in cons["path"]])

        live = (await client.get("/verify", headers=h)).json()
        assert live["ok"] is True, live

        # A bundle for one model verifies offline with the pinned key only.
        r = await client.get("/export", params={"model": "credit-risk"}, headers=h)
        assert r.status_code == 200 and r.headers["content-type"] == "application/gzip"
        bundle = tmp_path / "credit-risk.tar.gz"
        bundle.write_bytes(r.content)
        with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
            assert {Path(m.name).name for m in tar.getmembers()} >= {"records.jsonl", "checkpoints.json",
                                                                    "proofs.json"}
        report = verify_bundle(bundle, key)
        assert report.ok, report.summary()
        assert sum(c.records for c in report.chains) == len(champion) + len(rolled_back) + 12
        key_file = tmp_path / "audit.pub"
        key_file.write_text(pem)
        assert mloop_audit_verify(["--bundle", str(bundle), "--public-key", str(key_file)]) == 0

        # A time-range bundle and the full bundle too.
        r = await client.get("/export", params={"since": (T0 + timedelta(hours=2)).isoformat(),
                                                "until": (T0 + timedelta(hours=3)).isoformat()}, headers=h)
        ranged = tmp_path / "range.tar.gz"
        ranged.write_bytes(r.content)
        report = verify_bundle(ranged, key)
        assert report.ok and sum(c.records for c in report.chains) == len(rolled_back)
        r = await client.get("/export", headers=h)
        full = tmp_path / "full.tar.gz"
        full.write_bytes(r.content)
        assert mloop_audit_verify(["--bundle", str(full), "--public-key", pem,
                           "--checkpoint-dir", str(settings.checkpoint_path)]) == 0

        # A key that did not sign the checkpoints authenticates nothing.
        from mloop.ledger.checkpoint import generate_private_key, public_key_to_base64

        other = public_key_to_base64(generate_private_key().public_key())
        assert mloop_audit_verify(["--bundle", str(full), "--public-key", other]) == 1


async def test_redelivered_events_change_nothing_and_the_live_ledger_verifies(
    infra: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = audit_settings(infra, tmp_path)
    events = alias_events(300)
    await publish(infra.bootstrap_servers, infra.topic_prefix, events)
    async with running_app(create_app(settings)) as client:
        await _wait_rows(infra.database_url, 300)
        # The same events sent again (a producer retrying, a relay republishing) change nothing.
        await publish(infra.bootstrap_servers, infra.topic_prefix, events[:150])
        # New events behind them, one per model key, so on every partition the redelivered
        # copies sit before a new event: once every new one is recorded, the copies were
        # consumed too.
        fresh = alias_events(30, start=300)
        await publish(infra.bootstrap_servers, infra.topic_prefix, fresh)
        await _wait_rows(infra.database_url, 330)
        conn = await asyncpg.connect(infra.database_url)
        try:
            rows = await conn.fetch("SELECT event_id FROM audit.ledger")
        finally:
            await conn.close()
        recorded = [r["event_id"] for r in rows]
        assert len(recorded) == 330
        assert set(recorded) == {e.id for e in events + fresh}
        await client.post("/checkpoints", headers=auth_headers(settings, "oz", "operator"))
        pem = (await client.get("/public-key")).json()["pem"]
    code = await asyncio.to_thread(cli.verify, ["--database-url", infra.database_url, "--public-key", pem,
                                                "--checkpoint-dir", str(settings.checkpoint_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "VERIFIED" in out and "model-alias-changed/0" in out


async def test_a_message_that_cannot_be_decoded_is_recorded_as_its_dead_letter(infra: Any, tmp_path: Path) -> None:
    from aiokafka import AIOKafkaProducer

    settings = audit_settings(infra, tmp_path)
    good = alias_events(3)
    async with running_app(create_app(settings)) as client:
        producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers, enable_idempotence=True, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(infra.topic_prefix + "model-promoted", b"\xff{not json", key=b"m",
                                         headers=[("ce_type", b"dev.mloop.model-promoted.v1"), ("ce_id", b"x-1")])
        finally:
            await producer.stop()
        await publish(infra.bootstrap_servers, infra.topic_prefix, good)
        await _wait_rows(infra.database_url, 4)
        h = auth_headers(settings, "ava", "viewer")
        letters = (await client.get("/records", params={"type": "dead-letter"}, headers=h)).json()["items"]
        # Exactly one letter: a redelivered bad message is not dead-lettered again.
        assert [x["event"]["data"]["value_b64"] for x in letters] == ["/3tub3QganNvbg=="]
        data = letters[0]["event"]["data"]
        assert data["topic"] == "model-promoted" and data["consumer_group"] == "mloop-audit"
        assert data["error_type"] == "UndecodableMessage"
        assert letters[0]["chain"].startswith("dead-letter/")
        assert (await client.get("/records/x-1", headers=h)).status_code == 404


async def test_live_verification_accepts_a_chain_younger_than_the_checkpoint_period_but_offline_is_strict(
    infra: Any, tmp_path: Path
) -> None:
    # Checkpoints every hour: the fresh chain cannot have one yet.
    settings = audit_settings(infra, tmp_path, checkpoint_interval_s=3600, checkpoint_every_events=10_000)
    events = alias_events(5)
    await publish(infra.bootstrap_servers, infra.topic_prefix, events)
    async with running_app(create_app(settings)) as client:
        await _wait_rows(infra.database_url, len(events))
        h = auth_headers(settings, "ava", "viewer")
        live = (await client.get("/verify", headers=h)).json()
        assert live["ok"] is True, live
        assert all(c["signed_size"] == 0 and "not checkpointed yet" in c["reason"] for c in live["chains"])
        key = (await client.get("/public-key", headers=h)).json()["base64"]
        strict = await asyncio.to_thread(
            cli.verify, ["--database-url", infra.database_url, "--public-key", key, "--json"]
        )
        assert strict == 1
        # A row rewritten by a superuser fails even inside the grace period.
        conn = await asyncpg.connect(infra.database_url)
        try:
            await conn.execute("SET session_replication_role = replica")
            await conn.execute("ALTER TABLE audit.ledger DISABLE TRIGGER ALL")
            await conn.execute(
                "UPDATE audit.ledger SET canonical = convert_to(replace(convert_from(canonical, 'UTF8'), "
                "'challenger', 'champion'), 'UTF8') WHERE seq = 0"
            )
        finally:
            await conn.close()
        tampered = (await client.get("/verify", headers=h)).json()
        assert tampered["ok"] is False
