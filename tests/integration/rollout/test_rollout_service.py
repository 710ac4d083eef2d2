"""The rollout service on the real Kafka and Postgres."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest

from mloop.client.router import RouterFollower, TrafficRouter
from mloop.contracts.payloads import (
    GroundTruthLogged,
    GroundTruthRecord,
    ModelPromoted,
    PredictionLogged,
    PredictionRecord,
)
from mloop.devstack import create_topics
from mloop.rollout.main import create_app
from mloop.rollout.settings import RolloutSettings
from mloop.runtime.testing import EventCollector, EventPublisher, auth_headers, running_app

pytestmark = pytest.mark.integration

INTERVAL_S = 0.5
FAST_PLAN: dict[str, Any] = {
    "strategy": "canary",
    "steps": [0.1, 0.5],
    "step_min_duration_s": 1.0,
    "step_min_samples": 30,
    "analysis_interval_s": INTERVAL_S,
    "failure_threshold": 2,
    "inconclusive_timeout_s": 60,
    "progress_deadline_s": 120,
    "gates": [
        {"metric": "error-rate", "sequential": "guard", "min_samples": 30},
        {"metric": "latency-p95", "relative": {"max": 3.0}, "min_samples": 30},
    ],
}
OUR_TOPICS = [
    "traffic-split-changed",
    "rollout-started",
    "rollout-advanced",
    "rollout-paused",
    "rollout-resumed",
    "rollout-completed",
    "rollout-rolled-back",
]


def _settings(infra: Any) -> RolloutSettings:
    return RolloutSettings(**infra.settings_kwargs(analysis_tick_s=0.1))


@dataclass
class SharedInfra:
    """Like the ``infra`` fixture, but shared by the tests of this module (one model each)."""

    bootstrap_servers: str
    database_url: str
    topic_prefix: str

    def settings_kwargs(self, **overrides: Any) -> dict[str, Any]:
        return {
            "environment": "test",
            "kafka_bootstrap_servers": self.bootstrap_servers,
            "database_url": self.database_url,
            "topic_prefix": self.topic_prefix,
            "jwt_secret": "rollout-tests-secret-long-enough-for-hs256-0123",
            "outbox_poll_interval_s": 0.2,
            "log_json": False,
            **overrides,
        }


@dataclass
class Running:
    infra: SharedInfra
    settings: RolloutSettings
    client: httpx.AsyncClient

    @property
    def operator(self) -> dict[str, str]:
        return auth_headers(self.settings, "olga", "operator")

    def collector(self, *topics: str) -> EventCollector:
        return EventCollector(self.infra.bootstrap_servers, self.infra.topic_prefix, topics or OUR_TOPICS)


@pytest.fixture(scope="module")
async def running(stack: Any) -> AsyncIterator[Running]:
    """One rollout service for the module's tests; starting and stopping one takes seconds."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    await create_topics(stack.bootstrap_servers, prefix=prefix)
    infra = SharedInfra(stack.bootstrap_servers, stack.new_database(), prefix)
    settings = _settings(infra)
    async with running_app(create_app(settings)) as client:
        yield Running(infra, settings, client)


def of_model(model: str) -> Callable[[Any], bool]:
    return lambda e: bool(e.data.model == model)


def promotion_id(model: str, version: str) -> str:
    """The id of the promotion request the test's registry approved for ``model`` ``version``."""
    return f"pr-{model}-{version}"


class Kafka(EventPublisher):
    """Publishes events the way the registry and serving systems do."""

    def __init__(self, infra: Any) -> None:
        super().__init__(infra.bootstrap_servers, infra.topic_prefix)

    async def promote(self, model: str, version: str, previous: str | None) -> None:
        await self.send(
            "model-promoted",
            ModelPromoted(
                model=model,
                version=version,
                seq=1,
                previous_champion=previous,
                requested_by="dana",
                approved_by=["rey"],
                promotion_request_id=promotion_id(model, version),
            ),
            source="registry",
            actor="user:rey",
        )

    async def predictions(self, model: str, per_version: dict[str, tuple[int, float]]) -> None:
        """Log ``n`` predictions per version with the given error rate."""
        now = datetime.now(UTC)
        records = []
        for version, (n, error_rate) in per_version.items():
            for _ in range(n):
                failed = random.random() < error_rate
                records.append(
                    PredictionRecord(
                        request_id=f"r-{random.getrandbits(64):x}",
                        version=version,
                        timestamp=now,
                        features={"x": 1.0},
                        prediction=None if failed else random.random(),
                        latency_ms=random.uniform(3.0, 6.0),
                        error="timeout" if failed else None,
                    )
                )
        await self.send("prediction-logged", PredictionLogged(model=model, records=records), source="serving")


@contextlib.asynccontextmanager
async def live_traffic(
    kafka: Kafka, model: str, per_version: dict[str, tuple[int, float]], every_s: float = 0.2
) -> AsyncIterator[None]:
    async def run() -> None:
        while True:
            await kafka.predictions(model, per_version)
            await asyncio.sleep(every_s)

    task = asyncio.create_task(run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def eventually(check: Callable[[], Awaitable[Any]], timeout_s: float = 20.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.1)


async def put_plan(client: httpx.AsyncClient, headers: dict[str, str], model: str, **overrides: Any) -> None:
    r = await client.put(f"/models/{model}/plan", json={**FAST_PLAN, **overrides}, headers=headers)
    assert r.status_code == 200, r.text


async def open_rollout(client: httpx.AsyncClient, headers: dict[str, str], model: str) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        r = await client.get("/rollouts", params={"model": model}, headers=headers)
        items: list[dict[str, Any]] = r.json()["items"]
        return items[0] if items else None

    rollout: dict[str, Any] = await eventually(found)
    return rollout


def weights(event: Any) -> dict[str, float]:
    return {r.version: r.weight for r in event.data.routes if not r.shadow}


async def test_model_promoted_starts_a_canary_and_a_good_candidate_reaches_full_traffic(running: Running) -> None:
    client, op, m = running.client, running.operator, "credit-risk"
    async with Kafka(running.infra) as kafka, running.collector() as seen:
        await put_plan(client, op, m)
        await kafka.promote(m, "4", previous="3")

        started = (await seen.wait_for("rollout-started", where=of_model(m)))[0]
        assert started.data.version == "4" and started.data.baseline_version == "3"
        assert started.data.phase == "progressing" and started.data.weight == 0.1
        assert started.actor == "user:rey"
        first_split = (await seen.wait_for("traffic-split-changed", where=of_model(m)))[0]
        assert weights(first_split) == {"3": 0.9, "4": 0.1}
        assert [r.version for r in first_split.data.routes] == ["3", "4"]  # candidate last: sticky growth

        async with live_traffic(kafka, m, {"3": (40, 0.01), "4": (40, 0.01)}):
            done = await seen.wait_for("rollout-completed", where=of_model(m), timeout_s=30)
        assert done[0].data.weight == 1.0
        splits = [e for e in seen.of("traffic-split-changed") if e.data.model == m]
        assert [weights(e) for e in splits] == [{"3": 0.9, "4": 0.1}, {"3": 0.5, "4": 0.5}, {"4": 1.0}]
        assert [e.data.seq for e in splits] == [1, 2, 3]
        assert len([e for e in seen.of("rollout-advanced") if e.data.model == m]) == 2

        rollout = await open_rollout(client, op, m)
        detail = (await client.get(f"/rollouts/{rollout['id']}", headers=op)).json()
        assert detail["phase"] == "completed"
        kinds = [h["kind"] for h in detail["history"]]
        assert kinds[0] == "traffic-split-changed" and "rollout-completed" in kinds
        assert detail["analyses"] and detail["analyses"][-1]["data"]["gates"][0]["name"] == "error-rate"
        traffic = (await client.get(f"/models/{m}/traffic", headers=op)).json()
        assert traffic["seq"] == 3 and traffic["routes"] == [{"version": "4", "weight": 1.0, "shadow": False}]
        metrics = (await client.get("/metrics")).text
        assert 'mloop_rollout_gate_results_total{gate="error-rate",outcome="pass"}' in metrics
        assert 'mloop_rollout_events_total{topic="rollout-completed"}' in metrics


async def test_a_bad_candidate_is_rolled_back_within_one_analysis_interval(running: Running) -> None:
    client, op, m, settings = running.client, running.operator, "fraud", running.settings
    async with Kafka(running.infra) as kafka, running.collector() as seen:
        await put_plan(client, op, m, step_min_duration_s=60)
        await kafka.promote(m, "8", previous="7")
        started = (await seen.wait_for("rollout-started", where=of_model(m)))[0]
        # One batch with the injected errors: the next analysis must see them and roll back.
        loop = asyncio.get_running_loop()
        await kafka.predictions(m, {"7": (2000, 0.01), "8": (300, 0.25)})
        injected = loop.time()
        back = await seen.wait_for(
            "traffic-split-changed", where=lambda e: of_model(m)(e) and weights(e) == {"7": 1.0}, timeout_s=20
        )
        assert loop.time() - injected < 20
        assert back[0].data.routes[0].weight == 1.0
        # From the moment the evidence was stored, the baseline-only table was
        # decided at the next analysis: within one interval (plus a loop tick).
        conn = await asyncpg.connect(running.infra.database_url, server_settings={"search_path": settings.schema_name})
        try:
            rollout_id = started.data.rollout_id
            stored_at = await conn.fetchval(
                "SELECT max(updated_at) FROM evidence WHERE rollout_id = $1 AND role = 'candidate'", rollout_id
            )
            decided_at = await conn.fetchval(
                "SELECT min(at) FROM rollout_history WHERE rollout_id = $1 AND kind = 'traffic-split-changed' "
                "AND jsonb_array_length(data -> 'routes') = 1",
                rollout_id,
            )
        finally:
            await conn.close()
        assert (decided_at - stored_at).total_seconds() <= INTERVAL_S + settings.analysis_tick_s + 0.3
        rolled = (await seen.wait_for("rollout-rolled-back", where=of_model(m)))[0]
        assert rolled.data.phase == "rolled-back"
        assert "error-rate" in rolled.data.reason
        gate = next(g for g in rolled.data.gates if g.name == "error-rate")
        assert gate.outcome == "fail" and gate.value is not None and gate.value > 0.1
        assert rolled.actor == "service:rollout"


async def test_a_challenger_proven_more_accurate_by_joined_labels_is_promoted(running: Running) -> None:
    client, op, m = running.client, running.operator, "churn-cc"
    plan = {
        **FAST_PLAN,
        "strategy": "champion-challenger",
        "steps": [0.5],
        "gates": [
            {"metric": "accuracy", "sequential": "decide", "min_samples": 50},
            {"metric": "error-rate", "sequential": "guard", "min_samples": 30},
        ],
    }
    async with Kafka(running.infra) as kafka, running.collector() as seen:
        r = await client.put(f"/models/{m}/plan", json=plan, headers=op)
        assert r.status_code == 200, r.text
        await kafka.promote(m, "2", previous="1")
        await seen.wait_for("rollout-started", where=of_model(m))
        now = datetime.now(UTC)
        records, labels = [], []
        for i in range(400):
            version = "1" if i % 2 else "2"
            right = random.random() < (0.7 if version == "1" else 0.95)
            records.append(
                PredictionRecord(
                    request_id=f"{m}-{i}", version=version, timestamp=now, prediction="yes", latency_ms=4.0
                )
            )
            labels.append(GroundTruthRecord(request_id=f"{m}-{i}", label="yes" if right else "no", timestamp=now))
        await kafka.send("prediction-logged", PredictionLogged(model=m, records=records), source="serving")
        await asyncio.sleep(1.0)  # labels come later than predictions
        await kafka.send("ground-truth-logged", GroundTruthLogged(model=m, records=labels), source="labeler")

        promoted = await seen.wait_for(
            "rollout-advanced", where=lambda e: of_model(m)(e) and e.data.phase == "promoting", timeout_s=20
        )
        gate = next(g for g in promoted[0].data.gates if g.name == "accuracy")
        assert gate.outcome == "pass" and "candidate-better" in gate.detail
        assert gate.value is not None and gate.baseline is not None and gate.value > gate.baseline
        await seen.wait_for("rollout-completed", where=of_model(m), timeout_s=20)


async def test_a_router_started_late_gets_the_current_table(running: Running) -> None:
    client, op, m = running.client, running.operator, "pricing"
    async with Kafka(running.infra) as kafka, running.collector("traffic-split-changed") as seen:
        await put_plan(client, op, m)
        await kafka.promote(m, "4", previous="3")
        rollout = await open_rollout(client, op, m)
        r = await client.post(f"/rollouts/{rollout['id']}/promote-step", headers=op, json={"reason": "looks fine"})
        assert r.status_code == 200, r.text
        assert r.json()["weight"] == 0.5
        await seen.wait_for("traffic-split-changed", 2, where=of_model(m))  # both tables are on the topic

        router = TrafficRouter()
        async with RouterFollower(router, running.infra.bootstrap_servers, topic_prefix=running.infra.topic_prefix):
            table = router.table(m)
            assert table is not None and table.seq == 2
            assert {x.version: x.weight for x in table.routes} == {"3": 0.5, "4": 0.5}
            assert router.route(m, "user-1").version in {"3", "4"}
            # ...and it follows what comes next.
            r = await client.post(f"/rollouts/{rollout['id']}/abort", headers=op)
            assert r.status_code == 200, r.text

            async def back_to_baseline() -> bool:
                t = router.table(m)
                return t is not None and t.seq == 3

            await eventually(back_to_baseline)
            assert router.route(m, "user-1").version == "3"


async def _open_of(client: httpx.AsyncClient, headers: dict[str, str], model: str,
                   candidate: str) -> dict[str, Any] | None:
    """The model's open rollout of ``candidate``, if there is one now."""
    r = await client.get("/rollouts", params={"model": model}, headers=headers)
    items = [i for i in r.json()["items"] if i["candidate"] == candidate and i["phase"] not in ("aborted",)]
    return items[0] if items else None


async def test_bad_input_gets_problem_documents(running: Running) -> None:
    client, op = running.client, running.operator
    viewer = auth_headers(running.settings, "vic", "viewer")
    r = await client.get("/rollouts/nope", headers=op)
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    assert (await client.post("/rollouts/nope/pause", headers=op)).status_code == 404
    assert (await client.get("/models/unknown/plan", headers=op)).status_code == 404
    assert (await client.get("/models/unknown/traffic", headers=op)).status_code == 404

    r = await client.put("/models/m/plan", json={**FAST_PLAN, "steps": [0.5, 0.2]}, headers=op)
    assert r.status_code == 422 and "step weights must increase" in r.text
    r = await client.put("/models/m/plan", json={**FAST_PLAN, "failure_threshold": 0}, headers=op)
    assert r.status_code == 422
    assert any("failure_threshold" in e["field"] for e in r.json()["errors"])
    assert (await client.put("/models/m/plan", json=FAST_PLAN, headers=viewer)).status_code == 403

    # Rollouts of "m" only through approved promotions: v2's starts by itself, v3's supersedes it, and the
    # operator aborts v3's; v2's approval is then unused and may be started again by hand.
    async with Kafka(running.infra) as kafka:
        await kafka.promote("m", "2", previous="1")
        first = await open_rollout(client, op, "m")
        await kafka.promote("m", "3", previous="1")

        async def superseded() -> bool:
            return bool((await client.get(f"/rollouts/{first['id']}", headers=op)).json()["phase"] == "aborted")

        await eventually(superseded)
    third = await eventually(lambda: _open_of(client, op, "m", "3"))
    assert (await client.post(f"/rollouts/{third['id']}/abort", headers=op)).status_code == 200
    r = await client.post("/rollouts", json={"model": "m", "candidate": "2", "baseline": "1",
                                             "promotion_id": promotion_id("m", "2")}, headers=op)
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    assert (await client.get("/models/m/plan", headers=op)).json()["source"] == "built-in"  # known now
    r = await client.post(f"/rollouts/{rid}/resume", headers=op)
    assert r.status_code == 409
    problem = r.json()
    assert problem["phase"] == "progressing" and "progressing" in problem["detail"]
    assert (await client.post(f"/rollouts/{rid}/pause", headers=viewer)).status_code == 403
    assert (await client.post(f"/rollouts/{rid}/explode", headers=op)).status_code == 422
    r = await client.post("/rollouts", json={"model": "m", "candidate": "3", "baseline": "1",
                                             "promotion_id": promotion_id("m", "3")}, headers=op)
    assert r.status_code == 409  # one open rollout per model
    assert "open rollout" in r.json()["detail"]
    assert (await client.post(f"/rollouts/{rid}/abort", headers=op)).json()["phase"] == "aborted"
    r = await client.post(f"/rollouts/{rid}/abort", headers=op)
    assert r.status_code == 409 and r.json()["phase"] == "aborted"


async def test_first_champion_completes_at_full_traffic(running: Running) -> None:
    m = "new-model"
    async with Kafka(running.infra) as kafka, running.collector() as seen:
        await kafka.promote(m, "1", previous=None)
        done = (await seen.wait_for("rollout-completed", where=of_model(m)))[0]
        assert done.data.baseline_version is None and done.data.weight == 1.0
        split = (await seen.wait_for("traffic-split-changed", where=of_model(m)))[0]
        assert weights(split) == {"1": 1.0}


async def test_a_restarted_service_resumes_the_rollout_where_it_was(infra: Any) -> None:
    settings = _settings(infra)
    op = auth_headers(settings, "olga", "operator")
    async with (
        Kafka(infra) as kafka,
        EventCollector(infra.bootstrap_servers, infra.topic_prefix, OUR_TOPICS) as seen,
    ):
        async with running_app(create_app(settings)) as client:
            await put_plan(client, op, "churn")
            await kafka.promote("churn", "2", previous="1")
            await seen.wait_for("rollout-started")
            async with live_traffic(kafka, "churn", {"1": (40, 0.0), "2": (40, 0.0)}):
                await seen.wait_for("rollout-advanced", timeout_s=20)
            rollout = await open_rollout(client, op, "churn")
        assert rollout["step_index"] == 1 and rollout["weight"] == 0.5

        # A new process: same database, same topics.
        async with running_app(create_app(settings)) as client:
            async with live_traffic(kafka, "churn", {"1": (40, 0.0), "2": (40, 0.0)}):
                await seen.wait_for("rollout-completed", timeout_s=30)
            after = (await client.get(f"/rollouts/{rollout['id']}", headers=op)).json()
        assert after["phase"] == "completed" and after["attempt"] == 1
        assert len(seen.of("rollout-started")) == 1  # resumed, not restarted
        # Delivery is at least once (a relay stopped mid-publish sends again); ids tell copies apart.
        distinct = {e.id: e for e in seen.events if e.topic.startswith("rollout-")}
        seqs = [e.data.seq for e in distinct.values()]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), [(e.id, e.topic, e.data.seq) for e in seen.events]


async def test_each_models_newest_rollout_for_a_page_of_models_in_one_call(running: Running) -> None:
    client, op = running.client, running.operator
    viewer = auth_headers(running.settings, "vic", "viewer")
    a, b = "latest-alpha", "latest-bravo"
    async with Kafka(running.infra) as kafka, running.collector() as seen:
        await put_plan(client, op, a, step_min_duration_s=3600, progress_deadline_s=7200)
        await kafka.promote(a, "1", previous=None)
        await seen.wait_for("rollout-completed", where=of_model(a))
        await kafka.promote(a, "2", previous="1")  # stays running: nobody sends it traffic
        await seen.wait_for("rollout-started", where=lambda e: e.data.model == a and e.data.version == "2")
        await kafka.promote(b, "1", previous=None)
        await seen.wait_for("rollout-completed", where=of_model(b))

    answer = await client.get("/rollouts", params={"model": [a, b, "nobody"], "latest_per_model": "true"},
                              headers=viewer)
    assert answer.status_code == 200, answer.text
    newest = [(r["model"], r["candidate"], r["phase"]) for r in answer.json()["items"]]
    assert newest == [(b, "1", "completed"), (a, "2", "progressing")]
    every = (await client.get("/rollouts", params={"model": [a, b]}, headers=viewer)).json()["items"]
    assert sorted((r["model"], r["candidate"]) for r in every) == [(a, "1"), (a, "2"), (b, "1")]
    # Paged like any list.
    first = (await client.get("/rollouts", params={"model": [a, b], "latest_per_model": "true", "page_size": 1},
                              headers=viewer)).json()
    assert [r["model"] for r in first["items"]] == [b] and first["next_page_token"]
    rest = (await client.get("/rollouts", params={"model": [a, b], "latest_per_model": "true", "page_size": 1,
                                                  "page_token": first["next_page_token"]}, headers=viewer)).json()
    assert [r["model"] for r in rest["items"]] == [a] and rest["next_page_token"] is None
    # The phase filter applies before "newest": a's newest completed rollout is its first.
    done = (await client.get("/rollouts", params={"model": a, "phase": "completed", "latest_per_model": "true"},
                             headers=viewer)).json()["items"]
    assert [r["candidate"] for r in done] == ["1"]

    bad = await client.get("/rollouts", params={"model": ["ok", "a b"]}, headers=viewer)
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    assert (await client.get("/rollouts", params={"model": [f"m{i}" for i in range(201)]},
                             headers=viewer)).status_code == 422
    assert (await client.get("/rollouts", params={"latest_per_model": "true"})).status_code == 401
