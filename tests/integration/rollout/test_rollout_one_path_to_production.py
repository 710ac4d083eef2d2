"""One path to production: the registry and the rollout service together, tried the ways one person could
route traffic to a version without a second person's approval."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from mloop.contracts.payloads import ModelPromoted
from mloop.registry.main import create_app as create_registry
from mloop.registry.settings import RegistrySettings
from mloop.rollout.main import create_app as create_rollout
from mloop.rollout.settings import RolloutSettings
from mloop.runtime.testing import EventCollector, EventPublisher, auth_headers, running_app

from ..registry.helpers import Caller, registration

pytestmark = pytest.mark.integration

MODEL = "credit-risk"


async def eventually(check: Callable[[], Awaitable[Any]], timeout_s: float = 30.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not (result := await check()):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.1)
    return result


async def counts(database_url: str) -> dict[str, Any]:
    """What the rollout service wrote: outbox rows, rollouts, and the routing table in force."""
    conn = await asyncpg.connect(database_url)
    try:
        return {
            "outbox": await conn.fetchval("SELECT count(*) FROM rollout.outbox"),
            "rollouts": await conn.fetchval("SELECT count(*) FROM rollout.rollouts"),
            "splits": [dict(r) for r in await conn.fetch("SELECT model, seq, routes FROM rollout.traffic_splits")],
        }
    finally:
        await conn.close()


async def test_no_single_person_routes_traffic_to_a_version_without_a_second_persons_approval(infra: Any) -> None:
    rs = RegistrySettings(**infra.settings_kwargs())
    ro = RolloutSettings(**infra.settings_kwargs(analysis_tick_s=0.1))
    topics = ["traffic-split-changed", "rollout-started", "rollout-completed", "model-promoted"]
    async with running_app(create_registry(rs)) as registry, running_app(create_rollout(ro)) as rollout, \
            EventCollector(infra.bootstrap_servers, infra.topic_prefix, topics) as seen:
        ds, rev = Caller(registry, rs, "dana", "data-scientist"), Caller(registry, rs, "rita", "reviewer")
        pipeline = Caller(registry, rs, "trainer", "service")
        operator = auth_headers(ro, "olga", "operator")
        assert (await ds.post("/models", {"name": MODEL})).status_code == 201
        for _ in range(5):
            assert (await pipeline.post(f"/models/{MODEL}/versions", registration())).status_code == 201

        async def request(version: str) -> str:
            r = await ds.post(f"/models/{MODEL}/versions/{version}/promotion-requests", {"reason": "better"})
            assert r.status_code == 201, r.text
            return str(r.json()["id"])

        async def approved(version: str) -> str:
            rid = await request(version)
            assert (await rev.post(f"/promotion-requests/{rid}/approve", {"comment": "ok"})).status_code == 200
            return rid

        # Version 1, the governed way: approved, rolled out by itself, champion as the rollout's outcome.
        first = await approved("1")
        await seen.wait_for("rollout-completed", where=lambda e: e.data.version == "1")

        async def champion_is_1() -> bool:
            return bool((await ds.get(f"/models/{MODEL}")).json()["aliases"].get("champion") == "1")

        await eventually(champion_is_1)
        pending = await request("2")
        rejected = await request("3")
        assert (await rev.post(f"/promotion-requests/{rejected}/reject", {"comment": "no"})).status_code == 200
        # Version 4 is approved; its rollout starts by itself and the operator aborts it.
        fourth = await approved("4")
        await seen.wait_for("rollout-started", where=lambda e: e.data.version == "4")
        items = (await rollout.get("/rollouts", params={"model": MODEL}, headers=operator)).json()["items"]
        [open_4] = [i for i in items if i["candidate"] == "4"]
        r = await rollout.post(f"/rollouts/{open_4['id']}/abort", json={"reason": "not today"}, headers=operator)
        assert r.status_code == 200 and r.json()["phase"] == "aborted"
        await eventually(lambda: _routes_are(infra.database_url, {"1": 1.0}))

        before = await counts(infra.database_url)
        tries: list[tuple[str, dict[str, Any], int]] = [
            ("no promotion at all", {"model": MODEL, "candidate": "5"}, 422),
            ("a promotion nobody approved", {"model": MODEL, "candidate": "5", "promotion_id": "made-up"}, 403),
            ("another version's approval", {"model": MODEL, "candidate": "5", "promotion_id": first}, 403),
            ("another model's approval", {"model": "fraud", "candidate": "1", "promotion_id": first}, 403),
            ("a pending request", {"model": MODEL, "candidate": "2", "promotion_id": pending}, 403),
            ("a rejected request", {"model": MODEL, "candidate": "3", "promotion_id": rejected}, 403),
            ("an unknown model and version", {"model": "ghost", "candidate": "999", "promotion_id": "pr-1"}, 403),
            ("a used approval replayed", {"model": MODEL, "candidate": "1", "promotion_id": first}, 409),
            ("a baseline nobody approved",
             {"model": MODEL, "candidate": "4", "promotion_id": fourth, "baseline": "5"}, 403),
        ]
        people = {
            "operator": operator,
            "admin": auth_headers(ro, "ada", "admin"),
            "one token, every role": auth_headers(ro, "sam", "data-scientist", "reviewer", "operator", "admin"),
        }
        for who, headers in people.items():
            for what, body, status in tries:
                r = await rollout.post("/rollouts", json=body, headers=headers)
                assert r.status_code == status, (who, what, r.text)
                assert r.headers["content-type"] == "application/problem+json", (who, what)
                if status == 422:
                    assert r.json()["errors"][0]["field"] == "body.promotion_id"
                else:
                    assert r.json()["detail"], (who, what)
        # A pipeline's service token is not an operator: refused before any rule.
        for _, body, _ in tries:
            r = await rollout.post("/rollouts", json=body, headers=auth_headers(ro, "ci", "service"))
            assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
        # model-promoted of a used approval seen again (a replay on Kafka) starts nothing either.
        async with EventPublisher(infra.bootstrap_servers, infra.topic_prefix) as kafka:
            [promoted_1] = seen.of("model-promoted")[:1]
            replay_id = await kafka.send("model-promoted", ModelPromoted.model_validate(
                promoted_1.data.model_dump()), source="registry", actor="user:olga")
        await eventually(lambda: _applied(infra.database_url, replay_id))
        assert await counts(infra.database_url) == before  # nothing written, nothing published

        # The governed path still works: the operator starts version 4's unused approval again...
        r = await rollout.post("/rollouts", json={"model": MODEL, "candidate": "4", "promotion_id": fourth},
                               headers=operator)
        assert r.status_code == 201, r.text
        assert (r.json()["candidate"], r.json()["baseline"]) == ("4", "1")
        # ...once: the same approval cannot start a second rollout, whoever asks.
        for headers in people.values():
            again = await rollout.post("/rollouts", json={"model": MODEL, "candidate": "4", "promotion_id": fourth},
                                       headers=headers)
            assert again.status_code == 409 and "already used" in again.json()["detail"]
        # The emergency action removes the candidate's traffic; it never adds any.
        r = await rollout.post(f"/rollouts/{r.json()['id']}/abort", json={"reason": "incident"}, headers=operator)
        assert r.status_code == 200
        await eventually(lambda: _routes_are(infra.database_url, {"1": 1.0}))
        served = {route.version for e in seen.of("traffic-split-changed") for route in e.data.routes}
        assert served <= {"1", "4"}  # only approved versions ever got a route
        assert (await ds.get(f"/models/{MODEL}")).json()["aliases"] == {"champion": "1"}


async def _routes_are(database_url: str, weights: dict[str, float]) -> bool:
    conn = await asyncpg.connect(database_url)
    try:
        routes = await conn.fetchval("SELECT routes FROM rollout.traffic_splits WHERE model = $1", MODEL)
    finally:
        await conn.close()
    if routes is None:
        return False
    return {r["version"]: r["weight"] for r in json.loads(routes) if not r.get("shadow")} == weights


async def _applied(database_url: str, event_id: str) -> bool:
    conn = await asyncpg.connect(database_url)
    try:
        return bool(await conn.fetchval("SELECT 1 FROM rollout.inbox WHERE event_id = $1", event_id))
    finally:
        await conn.close()
