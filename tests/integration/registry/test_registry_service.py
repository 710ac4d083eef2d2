"""The registry on the real Kafka and Postgres."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from mloop.contracts.payloads import MAX_REASON_LENGTH, RolloutCompleted, RolloutRolledBack
from mloop.registry.main import create_app
from mloop.registry.service import MAX_EVENT_BYTES
from mloop.registry.settings import RegistrySettings
from mloop.runtime.testing import EventCollector, running_app

from .helpers import Caller, publish, registration

pytestmark = pytest.mark.integration

TOPICS = ["model-registered", "model-validated", "promotion-requested", "promotion-reviewed", "model-promoted",
          "model-alias-changed", "model-version-retired", "validation-policy-changed", "dead-letter"]


@dataclass
class Registry:
    settings: RegistrySettings
    seen: EventCollector
    infra: Any
    ds: Caller  # data scientist
    rev: Caller  # reviewer
    ops: Caller  # operator
    viewer: Caller
    pipeline: Caller  # training pipeline (service role)

    async def anonymous_get(self, url: str) -> httpx.Response:
        return await self.ds.client.get(url)

    async def outbox_topics(self) -> list[str]:
        """Every event the registry enqueued, in order."""
        conn = await asyncpg.connect(self.infra.database_url)
        try:
            return [r["topic"] for r in await conn.fetch("SELECT topic FROM registry.outbox ORDER BY id")]
        finally:
            await conn.close()

    async def outbox_events(self) -> list[tuple[str, str | None]]:
        """Every event the registry enqueued, as (topic, version of the payload), in order."""
        conn = await asyncpg.connect(self.infra.database_url)
        try:
            rows = await conn.fetch("SELECT topic, value FROM registry.outbox ORDER BY id")
        finally:
            await conn.close()
        return [(r["topic"], json.loads(bytes(r["value"])).get("version")) for r in rows]

    async def applied(self, event_id: str, timeout_s: float = 20.0) -> None:
        """Wait until the registry's inbox recorded ``event_id`` (applied or skipped as stale)."""
        conn = await asyncpg.connect(self.infra.database_url)
        try:
            for _ in range(int(timeout_s / 0.1)):
                if await conn.fetchval("SELECT 1 FROM registry.inbox WHERE event_id = $1", event_id):
                    return
                await asyncio.sleep(0.1)
        finally:
            await conn.close()
        raise TimeoutError(f"event {event_id} was not applied in {timeout_s}s")

    def caller(self, sub: str, *roles: str) -> Caller:
        return Caller(self.ds.client, self.settings, sub, *roles)

    async def model(self, name: str = "credit-risk", **kw: Any) -> str:
        r = await self.ds.post("/models", {"name": name, **kw})
        assert r.status_code == 201, r.text
        return name

    async def register(self, model: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        r = await self.pipeline.post(f"/models/{model}/versions", body or registration())
        assert r.status_code == 201, r.text
        out: dict[str, Any] = r.json()
        return out

    async def champion(self, model: str, version: str) -> None:
        """Make ``version`` champion the governed way: an approved promotion whose rollout completed."""
        rid = await self.promoted(model, version)
        previous = (await self.viewer.get(f"/promotion-requests/{rid}")).json()["previous_champion"]
        await self.applied(await publish(self.infra.bootstrap_servers, self.infra.topic_prefix, "rollout-completed",
                                         RolloutCompleted(model=model, rollout_id=f"ro-{model}-{version}", seq=1,
                                                          version=version, baseline_version=previous,
                                                          strategy="canary", phase="completed", step_index=0,
                                                          weight=1.0)))
        assert (await self.viewer.get(f"/models/{model}/aliases/champion")).json()["version"] == version

    async def promoted(self, model: str, version: str) -> str:
        """File and approve a promotion request; returns its id."""
        r = await self.ds.post(f"/models/{model}/versions/{version}/promotion-requests", {"reason": "better"})
        assert r.status_code == 201, r.text
        rid: str = r.json()["id"]
        r = await self.rev.post(f"/promotion-requests/{rid}/approve", {"comment": "ok"})
        assert r.status_code == 200, r.text
        return rid


@pytest.fixture
async def reg(infra: Any) -> AsyncIterator[Registry]:
    settings = RegistrySettings(**infra.settings_kwargs())
    async with running_app(create_app(settings)) as client, \
            EventCollector(infra.bootstrap_servers, infra.topic_prefix, TOPICS) as seen:
        yield Registry(
            settings, seen, infra,
            ds=Caller(client, settings, "dana", "data-scientist"),
            rev=Caller(client, settings, "rita", "reviewer"),
            ops=Caller(client, settings, "otto", "operator"),
            viewer=Caller(client, settings, "vic", "viewer"),
            pipeline=Caller(client, settings, "trainer", "service"),
        )


# --------------------------------------------------------------------------- validation


async def test_a_version_without_a_dataset_hash_fails_validation_naming_the_check(reg: Registry) -> None:
    model = await reg.model()
    out = await reg.register(model, registration(dataset__sha256=None))
    assert out["version"] == "1"
    assert out["status"] == "validation-failed"
    assert out["validation"]["passed"] is False
    failed = [c for c in out["validation"]["checks"] if not c["passed"]]
    assert [(c["name"], c["detail"]) for c in failed] == [("lineage-complete", "missing dataset.sha256")]
    [validated] = await reg.seen.wait_for("model-validated")
    assert validated.data.passed is False and validated.data.version == "1"
    assert [c.name for c in validated.data.checks if not c.passed] == ["lineage-complete"]
    [registered] = await reg.seen.wait_for("model-registered")
    assert (registered.data.seq, validated.data.seq) == (1, 2)
    assert registered.actor == "service:trainer"
    # A version that failed validation cannot be requested for promotion.
    r = await reg.ds.post(f"/models/{model}/versions/1/promotion-requests", {})
    assert r.status_code == 409 and "did not pass validation" in r.json()["detail"]


async def test_a_version_worse_than_the_champion_beyond_the_tolerance_fails(reg: Registry) -> None:
    model = await reg.model()
    await reg.register(model, registration(metrics={"auc": 0.91, "log_loss": 0.32}))
    await reg.champion(model, "1")
    worse = await reg.register(model, registration(metrics={"auc": 0.85, "log_loss": 0.32}))
    assert worse["validation"]["passed"] is False
    [check] = [c for c in worse["validation"]["checks"] if not c["passed"]]
    assert check["name"] == "metric-not-worse:auc"
    assert "champion v1" in check["detail"] and "worse by 0.06" in check["detail"]
    within = await reg.register(model, registration(metrics={"auc": 0.905, "log_loss": 0.325}))
    assert within["validation"]["passed"] is True and within["status"] == "validated"
    lower_is_better = await reg.register(model, registration(metrics={"auc": 0.91, "log_loss": 0.40}))
    assert [c["name"] for c in lower_is_better["validation"]["checks"] if not c["passed"]] == [
        "metric-not-worse:log_loss"]


async def test_a_removed_feature_fails_schema_compatibility_and_a_model_policy_can_relax_the_tolerance(
    reg: Registry,
) -> None:
    model = await reg.model()
    await reg.register(model)
    await reg.champion(model, "1")
    removed = await reg.register(model, registration(features__schema=[{"name": "age", "type": "number"}]))
    [check] = [c for c in removed["validation"]["checks"] if not c["passed"]]
    assert check["name"] == "feature-schema-compatible" and "removed income" in check["detail"]
    worse = await reg.register(model, registration(metrics={"auc": 0.85, "log_loss": 0.32}))
    assert worse["validation"]["passed"] is False
    r = await reg.ops.put(f"/models/{model}/validation-policy", {"metric_tolerance": 0.1})
    assert r.status_code == 200, r.text
    assert r.json()["effective"]["metric_tolerance"] == 0.1 and r.json()["override"] == {"metric_tolerance": 0.1}
    relaxed = await reg.register(model, registration(metrics={"auc": 0.85, "log_loss": 0.32}))
    assert relaxed["validation"]["passed"] is True
    # The gates of an earlier version can be run again under the new policy.
    again = await reg.ds.post(f"/models/{model}/versions/{worse['version']}/validate")
    assert again.status_code == 200 and again.json()["validation"]["passed"] is True
    assert again.json()["status"] == "validated"
    events = await reg.seen.wait_for("model-validated", 2, where=lambda e: e.data.version == worse["version"])
    assert [(e.data.seq, e.data.passed) for e in events] == [(2, False), (3, True)]
    assert events[1].data.policy["metric_tolerance"] == 0.1
    changed = await reg.seen.wait_for("validation-policy-changed", where=lambda e: e.data.model == model)
    assert changed[0].data.policy == {"metric_tolerance": 0.1}
    assert changed[0].data.changed_by == changed[0].actor and changed[0].actor.startswith("user:")
    r = await reg.ds.put(f"/models/{model}/validation-policy", {"metric_tolerance": 0.5})
    assert r.status_code == 403
    r = await reg.ops.put(f"/models/{model}/validation-policy", {"required_approvals": 0})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.required_approvals"


# --------------------------------------------------------------------------- promotion


async def test_self_approval_is_refused_with_403_and_nothing_is_published(reg: Registry) -> None:
    model = await reg.model()
    await reg.register(model)
    both = reg.caller("sam", "data-scientist", "reviewer")
    r = await both.post(f"/models/{model}/versions/1/promotion-requests", {"reason": "mine"})
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    await reg.seen.wait_for("promotion-requested")
    r = await both.post(f"/promotion-requests/{rid}/approve", {"comment": "lgtm"})
    assert r.status_code == 403
    assert "four eyes" in r.json()["detail"]
    r = await reg.caller("sam", "admin").post(f"/promotion-requests/{rid}/approve", {})
    assert r.status_code == 403
    # Nothing reached the outbox; and a later event, relayed in order, arrives alone.
    assert await reg.outbox_topics() == ["model-registered", "model-validated", "promotion-requested"]
    await reg.register(model)
    await reg.seen.wait_for("model-validated", where=lambda e: e.data.version == "2")
    assert reg.seen.of("promotion-reviewed") == [] and reg.seen.of("model-promoted") == []
    assert (await reg.viewer.get(f"/promotion-requests/{rid}")).json()["status"] == "pending"


async def test_an_approved_request_publishes_exactly_one_model_promoted(reg: Registry) -> None:
    model = await reg.model()
    await reg.register(model)
    await reg.champion(model, "1")
    await reg.register(model, registration(metrics={"auc": 0.93, "log_loss": 0.30}))
    rid = await reg.promoted(model, "2")
    again = await reg.rev.post(f"/promotion-requests/{rid}/approve", {})
    assert again.status_code == 409
    other = await reg.caller("raj", "reviewer").post(f"/promotion-requests/{rid}/approve", {})
    assert other.status_code == 409
    [promoted] = await reg.seen.wait_for("model-promoted", where=lambda e: e.data.version == "2")
    assert (await reg.outbox_events()).count(("model-promoted", "2")) == 1
    await reg.register(model)  # a later event, relayed in order after anything enqueued before it
    await reg.seen.wait_for("model-validated", where=lambda e: e.data.version == "3")
    assert len([e for e in reg.seen.of("model-promoted") if e.data.version == "2"]) == 1
    assert promoted.data.model == model and promoted.data.version == "2"
    assert promoted.data.previous_champion == "1"
    assert promoted.data.requested_by == "user:dana" and promoted.data.approved_by == ["user:rita"]
    assert promoted.data.promotion_request_id == rid
    # Every event of version 2 carries its increasing sequence number.
    seqs = sorted(e.data.seq for t in ("model-registered", "model-validated", "promotion-requested",
                                       "promotion-reviewed", "model-promoted")
                  for e in reg.seen.of(t) if e.data.version == "2")
    assert seqs == [1, 2, 3, 4, 5]
    listed = (await reg.viewer.get("/promotion-requests", params={"status": "approved"})).json()["items"]
    listed = [x for x in listed if x["version"] == "2"]  # version 1's approval made it champion
    assert [x["id"] for x in listed] == [rid] and listed[0]["approved_by"] == ["user:rita"]
    assert (await reg.viewer.get("/promotion-requests", params={"status": "pending"})).json()["items"] == []


async def test_a_rejection_needs_a_comment_and_returns_the_version_to_validated(reg: Registry) -> None:
    model = await reg.model()
    await reg.register(model)
    r = await reg.ds.post(f"/models/{model}/versions/1/promotion-requests", {})
    rid = r.json()["id"]
    r = await reg.rev.post(f"/promotion-requests/{rid}/reject", {})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.comment"
    r = await reg.rev.post(f"/promotion-requests/{rid}/reject", {"comment": "segment recall too low"})
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    [reviewed] = await reg.seen.wait_for("promotion-reviewed")
    assert reviewed.data.decision == "rejected" and reviewed.data.comment == "segment recall too low"
    version = (await reg.viewer.get(f"/models/{model}/versions/1")).json()
    assert version["status"] == "validated"


async def test_an_auto_approval_policy_promotes_at_once_as_the_recorded_actor(reg: Registry) -> None:
    model = await reg.model()
    r = await reg.ops.put(f"/models/{model}/validation-policy", {"auto_approval": "low-risk-nightly"})
    assert r.status_code == 200, r.text
    await reg.register(model)
    r = await reg.pipeline.post(f"/models/{model}/versions/1/promotion-requests", {"reason": "nightly"})
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "approved"
    assert r.json()["approved_by"] == ["policy:low-risk-nightly"]
    [promoted] = await reg.seen.wait_for("model-promoted")
    assert promoted.actor == "policy:low-risk-nightly"
    assert promoted.data.approved_by == ["policy:low-risk-nightly"]
    assert promoted.data.requested_by == "service:trainer" and promoted.data.previous_champion is None
    r = await reg.ops.put("/validation-policies/default", {"auto_approval": "everything"})
    assert r.status_code == 422
    # Granting (and withdrawing) auto-approval is kept with who did it.
    assert (await reg.ops.delete(f"/models/{model}/validation-policy")).json()["override"] == {}
    history = (await reg.viewer.get(f"/models/{model}/validation-policy/history")).json()
    assert [(h["policy"], h["actor"]) for h in history] == [
        ({"auto_approval": "low-risk-nightly"}, "user:otto"), (None, "user:otto")]


async def test_why_a_policy_changed_is_kept_in_its_history_and_carried_by_its_event(reg: Registry) -> None:
    model = await reg.model()
    tighter = "two approvals for every model after the audit"
    r = await reg.ops.put("/validation-policies/default", {"required_approvals": 2}, params={"reason": tighter})
    assert r.status_code == 200, r.text
    looser = "nightly retrains of this model are low risk"
    r = await reg.ops.put(f"/models/{model}/validation-policy", {"required_approvals": 1},
                          params={"reason": looser})
    assert r.status_code == 200, r.text
    r = await reg.ops.put(f"/models/{model}/validation-policy", {"metric_tolerance": 0.05})  # no reason given
    assert r.status_code == 200, r.text
    r = await reg.ops.delete(f"/models/{model}/validation-policy", params={"reason": "back to the default"})
    assert r.status_code == 200, r.text

    default = (await reg.viewer.get("/validation-policies/default/history")).json()
    assert [(h["policy"]["required_approvals"], h["reason"]) for h in default][-1] == (2, tighter)
    history = (await reg.viewer.get(f"/models/{model}/validation-policy/history")).json()
    assert [(h["policy"], h["previous"], h["actor"], h["reason"]) for h in history] == [
        ({"required_approvals": 1}, None, "user:otto", looser),
        ({"metric_tolerance": 0.05}, {"required_approvals": 1}, "user:otto", None),
        (None, {"metric_tolerance": 0.05}, "user:otto", "back to the default"),
    ]
    [default_changed] = await reg.seen.wait_for("validation-policy-changed", where=lambda e: e.data.model == "*")
    assert (default_changed.data.scope, default_changed.data.reason) == ("default", tighter)
    changed = await reg.seen.wait_for("validation-policy-changed", 3, where=lambda e: e.data.model == model)
    assert [(e.data.policy, e.data.removed, e.data.reason) for e in changed] == [
        ({"required_approvals": 1}, False, looser), ({"metric_tolerance": 0.05}, False, None),
        ({}, True, "back to the default")]

    # A reason longer than the contract allows is refused, naming it; nothing changes.
    too_long = {"reason": "x" * (MAX_REASON_LENGTH + 1)}
    for r in (
        await reg.ops.put(f"/models/{model}/validation-policy", {"required_approvals": 3}, params=too_long),
        await reg.ops.put("/validation-policies/default", {}, params=too_long),
        await reg.ops.delete(f"/models/{model}/validation-policy", params=too_long),
    ):
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["errors"][0]["field"] == "query.reason"
    assert (await reg.viewer.get(f"/models/{model}/validation-policy/history")).json() == history
    assert (await reg.viewer.get("/validation-policies/default/history")).json() == default
    longest = "y" * MAX_REASON_LENGTH
    r = await reg.ops.put(f"/models/{model}/validation-policy", {"required_approvals": 3}, params={"reason": longest})
    assert r.status_code == 200, r.text
    history = (await reg.viewer.get(f"/models/{model}/validation-policy/history")).json()
    assert history[-1]["reason"] == longest


# --------------------------------------------------------------------------- rollout outcomes


async def test_rollout_completed_moves_the_champion_alias(reg: Registry) -> None:
    model = await reg.model()
    await reg.register(model)
    await reg.champion(model, "1")
    await reg.register(model)
    await reg.promoted(model, "2")
    base = {"model": model, "rollout_id": "ro-1", "version": "2", "baseline_version": "1", "strategy": "canary",
            "phase": "completed", "step_index": 3, "weight": 1.0}
    await publish(reg.infra.bootstrap_servers, reg.infra.topic_prefix, "rollout-completed",
                  RolloutCompleted(**base, seq=9))
    moves = await reg.seen.wait_for("model-alias-changed", 3)
    assert [(e.data.alias, e.data.version, e.data.previous_version) for e in moves] == [
        ("champion", "1", None), ("champion", "2", "1"), ("previous-champion", "1", None)]
    assert [e.data.seq for e in moves] == [1, 2, 3]
    m = (await reg.viewer.get(f"/models/{model}")).json()
    assert m["aliases"] == {"champion": "2", "previous-champion": "1"}
    v2 = (await reg.viewer.get(f"/models/{model}/versions/2")).json()
    assert v2["status"] == "production" and v2["aliases"] == ["champion"]
    assert [(r["rollout_id"], r["outcome"]) for r in v2["rollouts"]] == [("ro-1", "completed")]
    # A stale event of the same rollout changes nothing.
    stale = await publish(reg.infra.bootstrap_servers, reg.infra.topic_prefix, "rollout-rolled-back",
                          RolloutRolledBack(**{**base, "phase": "rolled-back"}, seq=5))
    await reg.applied(stale)
    assert (await reg.viewer.get(f"/models/{model}/versions/2")).json()["status"] == "production"


async def test_rollout_rolled_back_marks_the_version_and_leaves_the_aliases(reg: Registry) -> None:
    model = await reg.model()
    await reg.register(model)
    await reg.champion(model, "1")
    await reg.register(model)
    await reg.promoted(model, "2")
    event_id = await publish(reg.infra.bootstrap_servers, reg.infra.topic_prefix, "rollout-rolled-back",
                             RolloutRolledBack(model=model, rollout_id="ro-2", seq=4, version="2",
                                               baseline_version="1", strategy="canary", phase="rolled-back",
                                               step_index=1, weight=0.0, reason="error rate above champion"))
    await reg.applied(event_id)
    v2 = (await reg.viewer.get(f"/models/{model}/versions/2")).json()
    assert v2["status"] == "rolled-back" and v2["served_traffic"] is True
    assert v2["rollouts"][0]["reason"] == "error rate above champion"
    assert (await reg.viewer.get(f"/models/{model}")).json()["aliases"] == {"champion": "1"}


async def test_a_rollout_event_for_an_unknown_version_goes_to_dead_letter(reg: Registry) -> None:
    model = await reg.model()
    await publish(reg.infra.bootstrap_servers, reg.infra.topic_prefix, "rollout-completed", RolloutCompleted(
        model=model, rollout_id="ro-x", seq=1, version="7", baseline_version=None, strategy="canary",
        phase="completed", step_index=0, weight=1.0))
    [letter] = await reg.seen.wait_for("dead-letter")
    assert "no version 7" in letter.data.reason


async def test_a_forged_rollout_outcome_for_an_unapproved_version_moves_nothing(reg: Registry) -> None:
    model = await reg.model()
    await reg.register(model)
    await reg.champion(model, "1")
    await reg.register(model)  # v2: never requested
    await reg.register(model)  # v3: requested, rejected
    rid = (await reg.ds.post(f"/models/{model}/versions/3/promotion-requests", {"reason": "x"})).json()["id"]
    assert (await reg.rev.post(f"/promotion-requests/{rid}/reject", {"comment": "no"})).status_code == 200
    await reg.register(model)  # v4: requested, still pending
    assert (await reg.ds.post(f"/models/{model}/versions/4/promotion-requests", {"reason": "x"})).status_code == 201
    for version in ("2", "3", "4"):
        await publish(reg.infra.bootstrap_servers, reg.infra.topic_prefix, "rollout-completed", RolloutCompleted(
            model=model, rollout_id=f"forged-{version}", seq=1, version=version, baseline_version="1",
            strategy="canary", phase="completed", step_index=0, weight=1.0))
    await publish(reg.infra.bootstrap_servers, reg.infra.topic_prefix, "rollout-rolled-back", RolloutRolledBack(
        model=model, rollout_id="forged-rb", seq=1, version="2", baseline_version="1", strategy="canary",
        phase="rolled-back", step_index=0, weight=0.0))
    letters = await reg.seen.wait_for("dead-letter", 4)
    assert sorted(str(letter.data.reason).split("refusing the outcome of rollout ")[-1] for letter in letters) == [
        "forged-2", "forged-3", "forged-4", "forged-rb"]
    assert all("never approved for promotion" in str(letter.data.reason) for letter in letters)
    assert (await reg.viewer.get(f"/models/{model}")).json()["aliases"] == {"champion": "1"}
    statuses = [(await reg.viewer.get(f"/models/{model}/versions/{v}")).json() for v in ("2", "3", "4")]
    assert [(v["status"], v["served_traffic"]) for v in statuses] == [
        ("validated", False), ("validated", False), ("pending-promotion", False)]


# --------------------------------------------------------------------------- versions


async def test_fifty_concurrent_registrations_get_versions_one_to_fifty(reg: Registry) -> None:
    model = await reg.model()
    results = await asyncio.gather(*(
        reg.pipeline.post(f"/models/{model}/versions", registration(tags={"i": str(i)})) for i in range(50)))
    assert [r.status_code for r in results] == [201] * 50
    assert sorted(int(r.json()["version"]) for r in results) == list(range(1, 51))
    events = await reg.seen.wait_for("model-registered", 50, timeout_s=30)
    assert sorted(int(e.data.version) for e in events) == list(range(1, 51))


async def test_versions_are_searched_by_tag_alias_status_and_time_with_a_cursor(reg: Registry) -> None:
    model = await reg.model()
    other = await reg.model("fraud")
    for i in range(5):
        await reg.register(model, registration(tags={"team": "risk", "n": str(i)}))
    await reg.register(model, registration(dataset__sha256=None, tags={"team": "ops"}))
    await reg.register(other, registration(tags={"team": "risk"}))
    await reg.champion(model, "3")
    seen: list[str] = []
    token = None
    while True:
        params: dict[str, Any] = {"tag": "team:risk", "page_size": 2, "model": model}
        if token:
            params["page_token"] = token
        page = (await reg.viewer.get("/versions", params=params)).json()
        seen += [v["version"] for v in page["items"]]
        token = page["next_page_token"]
        if token is None:
            break
    assert seen == ["1", "2", "3", "4", "5"]
    everywhere = (await reg.viewer.get("/versions", params={"tag": "team:risk"})).json()["items"]
    assert {(v["model"], v["version"]) for v in everywhere} == {(model, str(i)) for i in range(1, 6)} | {(other, "1")}
    by_alias = (await reg.viewer.get(f"/models/{model}/versions", params={"alias": "champion"})).json()["items"]
    assert [v["version"] for v in by_alias] == ["3"]
    failed = (await reg.viewer.get(f"/models/{model}/versions", params={"status": "validation-failed"})).json()
    assert [v["version"] for v in failed["items"]] == ["6"]
    newest = (await reg.viewer.get(f"/models/{model}/versions", params={"order": "desc", "page_size": 1})).json()
    assert newest["items"][0]["version"] == "6"
    created = newest["items"][0]["created_at"]
    before = (await reg.viewer.get(f"/models/{model}/versions", params={"created_before": created})).json()
    assert len(before["items"]) == 5
    r = await reg.viewer.get(f"/models/{model}/versions", params={"page_token": "!!"})
    assert r.status_code == 400


async def test_models_carry_tags_and_descriptions_and_are_searchable(reg: Registry) -> None:
    await reg.model("credit-risk", description="PD model", tags={"team": "risk"})
    await reg.model("credit-limit", tags={"team": "limits"})
    await reg.model("fraud")
    r = await reg.ds.patch("/models/credit-risk", {"description": "PD model v2", "tags": {"tier": "1", "team": None}})
    assert r.status_code == 200 and r.json()["tags"] == {"tier": "1"} and r.json()["description"] == "PD model v2"
    found = (await reg.viewer.get("/models", params={"q": "credit"})).json()["items"]
    assert [m["name"] for m in found] == ["credit-limit", "credit-risk"]
    tagged = (await reg.viewer.get("/models", params={"tag": "tier:1"})).json()["items"]
    assert [m["name"] for m in tagged] == ["credit-risk"]
    page = (await reg.viewer.get("/models", params={"page_size": 2})).json()
    rest = (await reg.viewer.get("/models", params={"page_token": page["next_page_token"]})).json()
    assert [m["name"] for m in page["items"] + rest["items"]] == ["credit-limit", "credit-risk", "fraud"]
    assert (await reg.ds.post("/models", {"name": "fraud"})).status_code == 409
    await reg.register("fraud")
    r = await reg.ds.patch("/models/fraud/versions/1", {"description": "first", "tags": {"qa": "ok"}})
    assert r.json()["tags"] == {"team": "risk", "qa": "ok"} and r.json()["description"] == "first"


async def test_one_call_returns_everything_about_a_version(reg: Registry) -> None:
    model = await reg.model()
    await reg.register(model)
    await reg.champion(model, "1")
    await reg.register(model)
    rid = await reg.promoted(model, "2")
    await reg.applied(await publish(
        reg.infra.bootstrap_servers, reg.infra.topic_prefix, "rollout-completed", RolloutCompleted(
            model=model, rollout_id="ro-9", seq=3, version="2", baseline_version="1", strategy="canary",
            phase="completed", step_index=2, weight=1.0)))
    v = (await reg.viewer.get(f"/models/{model}/versions/2")).json()
    assert v["lineage"]["dataset"]["sha256"].startswith("5f7c")
    assert v["lineage"]["features"]["schema"][0] == {"name": "age", "type": "number", "optional": False}
    assert {c["name"] for c in v["validation"]["checks"]} >= {"lineage-complete", "feature-schema-compatible"}
    assert v["policy"]["metric_tolerance"] == 0.01
    [req] = v["promotion_requests"]
    assert req["id"] == rid and req["reviews"][0]["reviewer"] == "user:rita"
    assert [(h["alias"], h["version"], h["previous_version"]) for h in v["alias_history"]] == [
        ("champion", "2", "1")]
    assert v["rollouts"][0]["rollout_id"] == "ro-9"
    assert v["aliases"] == ["champion"] and v["seq"] == 5


async def test_a_version_that_served_traffic_is_archived_but_never_deleted(reg: Registry) -> None:
    model = await reg.model()
    await reg.register(model)
    await reg.register(model)
    await reg.promoted(model, "1")
    r = await reg.ops.delete(f"/models/{model}/versions/1")
    assert r.status_code == 409 and "never deleted" in r.json()["detail"]
    r = await reg.ds.post(f"/models/{model}/versions/1/archive")
    assert r.status_code == 200 and r.json()["status"] == "archived"
    assert (await reg.viewer.get(f"/models/{model}/versions/1")).json()["archived_at"] is not None
    await reg.champion(model, "2")
    r = await reg.ds.post(f"/models/{model}/versions/2/archive")
    assert r.status_code == 409 and "champion" in r.json()["detail"]
    await reg.register(model)
    assert (await reg.ops.delete(f"/models/{model}/versions/3")).status_code == 204
    assert (await reg.viewer.get(f"/models/{model}/versions/3")).status_code == 404


async def test_archiving_and_deleting_are_published_with_who_did_it(reg: Registry) -> None:
    model = await reg.model()
    for _ in range(3):
        await reg.register(model)
    await reg.champion(model, "1")
    assert (await reg.ds.post(f"/models/{model}/versions/2/archive")).status_code == 200
    assert (await reg.ds.post(f"/models/{model}/versions/2/archive")).status_code == 200  # already archived
    assert (await reg.ops.delete(f"/models/{model}/versions/3")).status_code == 204
    # Refused attempts publish nothing: the champion cannot be archived, a served version cannot be deleted,
    # a viewer can do neither.
    assert (await reg.ds.post(f"/models/{model}/versions/1/archive")).status_code == 409
    assert (await reg.ops.delete(f"/models/{model}/versions/1")).status_code == 409
    assert (await reg.viewer.post(f"/models/{model}/versions/1/archive")).status_code == 403
    assert (await reg.viewer.delete(f"/models/{model}/versions/2")).status_code == 403
    retired = [e for e in await reg.seen.wait_for("model-version-retired", 2) if e.data.model == model]
    assert [(e.data.version, e.data.action, e.data.changed_by, e.actor) for e in retired] == [
        ("2", "archived", "user:dana", "user:dana"), ("3", "deleted", "user:otto", "user:otto")]
    assert (await reg.outbox_topics()).count("model-version-retired") >= 2
    conn = await asyncpg.connect(reg.infra.database_url)
    try:
        rows = await conn.fetch("SELECT value FROM registry.outbox WHERE topic = 'model-version-retired'")
    finally:
        await conn.close()
    mine = [json.loads(bytes(r["value"])) for r in rows]
    assert sorted((d["version"], d["action"]) for d in mine if d["model"] == model) == [
        ("2", "archived"), ("3", "deleted")]


async def test_aliases_keep_their_history_and_are_published(reg: Registry) -> None:
    model = await reg.model()
    await reg.register(model)
    await reg.register(model)
    r = await reg.ops.put(f"/models/{model}/aliases/challenger", {"version": "1", "reason": "try"})
    assert r.json() == {"model": model, "alias": "challenger", "version": "1", "previous_version": None, "seq": 1}
    r = await reg.ops.put(f"/models/{model}/aliases/challenger", {"version": "2"})
    assert r.json()["previous_version"] == "1"
    assert (await reg.viewer.get(f"/models/{model}/aliases/challenger")).json()["version"] == "2"
    assert (await reg.ops.delete(f"/models/{model}/aliases/challenger")).json()["version"] is None
    assert (await reg.viewer.get(f"/models/{model}/aliases/challenger")).status_code == 404
    history = (await reg.viewer.get(f"/models/{model}/alias-history")).json()
    assert [(h["version"], h["previous_version"], h["actor"]) for h in history] == [
        ("1", None, "user:otto"), ("2", "1", "user:otto"), (None, "2", "user:otto")]
    events = await reg.seen.wait_for("model-alias-changed", 3)
    assert [(e.data.version, e.data.seq) for e in events] == [("1", 1), ("2", 2), (None, 3)]
    assert (await reg.ops.put(f"/models/{model}/aliases/challenger", {"version": "9"})).status_code == 404
    # champion moves only with a rollout, whoever asks; other aliases only onto eligible versions.
    for who in (reg.ops, reg.caller("ada", "admin")):
        r = await who.put(f"/models/{model}/aliases/champion", {"version": "1"})
        assert r.status_code == 403 and "managed by the platform" in r.json()["detail"], r.text
    assert (await reg.ops.delete(f"/models/{model}/aliases/previous-champion")).status_code == 403
    await reg.register(model, registration(dataset__sha256=None))
    r = await reg.ops.put(f"/models/{model}/aliases/challenger", {"version": "3"})
    assert r.status_code == 409 and "did not pass validation" in r.json()["detail"]
    assert (await reg.ds.post(f"/models/{model}/versions/2/archive")).status_code == 200
    assert (await reg.ops.put(f"/models/{model}/aliases/challenger", {"version": "2"})).status_code == 409
    assert (await reg.outbox_topics()).count("model-alias-changed") == 3  # the refusals published nothing
    r = await reg.ops.delete(f"/models/{model}/versions/1")  # carried challenger once
    assert r.status_code == 409 and "carried an alias" in r.json()["detail"]
    r = await reg.ds.patch(f"/models/{model}/versions/1", {"tags": {"mloop.lineage.code.commit": "abcdef1"}})
    assert r.status_code == 422 and "fixed at registration" in r.json()["detail"]


# --------------------------------------------------------------------------- bad input


async def test_an_unknown_model_gets_404(reg: Registry) -> None:
    for r in (
        await reg.pipeline.post("/models/nope/versions", registration()),
        await reg.viewer.get("/models/nope"),
        await reg.viewer.get("/models/nope/versions/1"),
        await reg.viewer.get("/models/nope/versions"),
        await reg.ds.post("/models/nope/versions/1/promotion-requests", {}),
        await reg.rev.post("/promotion-requests/nope/approve", {}),
    ):
        assert r.status_code == 404, r.text
        assert r.headers["content-type"] == "application/problem+json"
    await reg.model()
    r = await reg.viewer.get("/models/credit-risk/versions/4")
    assert r.status_code == 404 and "no version 4" in r.json()["detail"]


async def test_invalid_lineage_gets_422_naming_the_field(reg: Registry) -> None:
    model = await reg.model()
    r = await reg.pipeline.post(f"/models/{model}/versions", registration(code__commit="not-a-commit"))
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "body.lineage.code.commit"
    assert r.json()["detail"].startswith("body.lineage.code.commit:")
    r = await reg.pipeline.post(f"/models/{model}/versions", registration(dataset__sha256="abc"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.lineage.dataset.sha256"
    body = registration()
    del body["lineage"]
    r = await reg.pipeline.post(f"/models/{model}/versions", body)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.lineage"
    r = await reg.pipeline.post(f"/models/{model}/versions", registration(features__schema=[
        {"name": "age", "type": "number"}, {"name": "age", "type": "string"}]))
    assert r.status_code == 422 and r.json()["errors"][0]["field"].startswith("body.lineage.features.schema")
    assert (await reg.viewer.get(f"/models/{model}/versions")).json()["items"] == []


async def test_a_repeated_idempotency_key_returns_the_first_result(reg: Registry) -> None:
    model = await reg.model()
    key = {"Idempotency-Key": "train-job-17"}
    first = await reg.pipeline.post(f"/models/{model}/versions", registration(), headers=key)
    second = await reg.pipeline.post(f"/models/{model}/versions", registration(), headers=key)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json() and second.json()["version"] == "1"
    assert second.headers.get("idempotency-replayed") == "true"
    versions = (await reg.viewer.get(f"/models/{model}/versions")).json()["items"]
    assert [v["version"] for v in versions] == ["1"]


async def test_an_oversized_or_garbage_body_gets_413_or_422(reg: Registry) -> None:
    model = await reg.model()
    huge = registration()
    huge["training_profile"] = {"blob": "x" * (reg.settings.max_body_bytes + 1)}
    r = await reg.pipeline.post(f"/models/{model}/versions", huge)
    assert r.status_code == 413
    # Under the body limit but too big for one Kafka message: refused, naming the field.
    big = registration()
    big["training_profile"] = {"blob": "x" * (MAX_EVENT_BYTES + 10_000)}
    r = await reg.pipeline.post(f"/models/{model}/versions", big)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.training_profile"
    r = await reg.pipeline.post(f"/models/{model}/versions", content=b"{garbage",
                                headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["type"].endswith("invalid-json")
    r = await reg.pipeline.post(f"/models/{model}/versions", [1, 2, 3])
    assert r.status_code == 422
    r = await reg.pipeline.post(f"/models/{model}/versions", {**registration(), "metrics": {"auc": "high"}})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.metrics.auc"
    r = await reg.ds.post("/models", {"name": "has spaces"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.name"
    # What Postgres could not store is refused up front, naming where it is.
    nan = registration()
    nan["lineage"]["params"] = {"C": float("nan")}
    r = await reg.pipeline.post(f"/models/{model}/versions", content=json.dumps(nan).encode(),
                                headers={"content-type": "application/json"})
    assert r.status_code == 422 and "lineage.params.C" in r.json()["detail"]
    r = await reg.ds.post("/models", {"name": "ok", "description": "nul\x00byte"})
    assert r.status_code == 422 and "description" in r.json()["detail"]
    r = await reg.viewer.get("/models", params={"q": "a\x00b"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.q"
    r = await reg.viewer.get("/promotion-requests/a%00b")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "path.request_id"
    # None of the refused registrations used up a version number.
    assert (await reg.register(model))["version"] == "1"


# --------------------------------------------------------------------------- roles


async def test_a_viewer_cannot_write(reg: Registry) -> None:
    model = await reg.model()
    await reg.register(model)
    for r in (
        await reg.viewer.post("/models", {"name": "mine"}),
        await reg.viewer.post(f"/models/{model}/versions", registration()),
        await reg.viewer.patch(f"/models/{model}", {"description": "x"}),
        await reg.viewer.put(f"/models/{model}/aliases/champion", {"version": "1"}),
        await reg.viewer.post(f"/models/{model}/versions/1/promotion-requests", {}),
        await reg.viewer.post(f"/models/{model}/versions/1/archive"),
        await reg.viewer.put("/validation-policies/default", {}),
    ):
        assert r.status_code == 403, r.text
    assert (await reg.viewer.get(f"/models/{model}/versions/1")).status_code == 200
    assert (await reg.anonymous_get(f"/models/{model}")).status_code == 401


async def test_a_data_scientist_cannot_approve(reg: Registry) -> None:
    model = await reg.model()
    await reg.register(model)
    rid = (await reg.caller("eve", "data-scientist").post(f"/models/{model}/versions/1/promotion-requests",
                                                          {})).json()["id"]
    r = await reg.ds.post(f"/promotion-requests/{rid}/approve", {})
    assert r.status_code == 403 and "reviewer" in r.json()["detail"]
    r = await reg.ds.post(f"/promotion-requests/{rid}/reject", {"comment": "no"})
    assert r.status_code == 403
    r = await reg.ds.put(f"/models/{model}/aliases/champion", {"version": "1"})
    assert r.status_code == 403


async def test_the_service_role_can_register_versions(reg: Registry) -> None:
    model = await reg.model()
    r = await reg.pipeline.post(f"/models/{model}/versions", registration())
    assert r.status_code == 201 and r.json()["registered_by"] == "service:trainer"
    assert r.json()["validation"]["passed"] is True
    r = await reg.rev.post(f"/models/{model}/versions", registration())
    assert r.status_code == 403


async def test_every_endpoint_documents_request_examples(reg: Registry) -> None:
    spec = (await reg.viewer.client.get("/openapi.json")).json()
    missing = []
    for path, ops in spec["paths"].items():
        if path in ("/healthz", "/readyz", "/metrics"):
            continue
        for method, op in ops.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            params = op.get("parameters", [])
            documented = bool(body.get("examples")) or (
                not op.get("requestBody") and all("example" in p or "examples" in p.get("schema", {})
                                                  or "examples" in p for p in params))
            if not documented:
                missing.append(f"{method.upper()} {path}")
    assert missing == []


# --------------------------------------------------------------------------- one path to production


async def test_nobody_moves_champion_or_previous_champion_by_hand_and_nothing_is_published(reg: Registry) -> None:
    model = await reg.model()
    for _ in range(3):
        await reg.register(model)
    await reg.champion(model, "1")
    await reg.champion(model, "2")  # version 1 is previous-champion now
    await reg.seen.wait_for("model-alias-changed", 3)
    before = await reg.outbox_events()
    history = (await reg.viewer.get(f"/models/{model}/alias-history")).json()
    callers = [
        reg.ops,
        reg.caller("ada", "admin"),
        reg.caller("sam", "data-scientist", "reviewer", "operator", "admin"),  # every role on one token
        reg.caller("ci", "service", "operator"),
    ]
    for who in callers:
        for alias in ("champion", "previous-champion"):
            for r in (
                await who.put(f"/models/{model}/aliases/{alias}", {"version": "3", "reason": "urgent"}),
                await who.put(f"/models/{model}/aliases/{alias}", {"version": "2"}),  # even where it already is
                await who.delete(f"/models/{model}/aliases/{alias}"),
                await who.post("/api/2.0/mlflow/registered-models/alias",
                               {"name": model, "alias": alias, "version": "3"}),
                await who.delete("/api/2.0/mlflow/registered-models/alias", json={"name": model, "alias": alias}),
            ):
                assert r.status_code in (400, 403), r.text
                body = r.json()
                if "/api/2.0/" in str(r.request.url):
                    assert alias in body["message"]
                else:
                    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
                    assert body["type"].endswith("/governance") and alias in body["detail"]
    # A data scientist or a pipeline is refused by role before any rule.
    for who in (reg.ds, reg.pipeline):
        r = await who.put(f"/models/{model}/aliases/champion", {"version": "3"})
        assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    assert await reg.outbox_events() == before
    assert (await reg.viewer.get(f"/models/{model}/alias-history")).json() == history
    assert (await reg.viewer.get(f"/models/{model}")).json()["aliases"] == {"champion": "2", "previous-champion": "1"}


async def test_other_aliases_never_point_at_a_failed_or_archived_version(reg: Registry) -> None:
    model = await reg.model()
    await reg.register(model, registration(dataset__sha256=None))  # 1: validation failed
    await reg.register(model)  # 2
    await reg.register(model)  # 3, archived below
    assert (await reg.ds.post(f"/models/{model}/versions/3/archive")).status_code == 200
    await reg.seen.wait_for("model-validated", 3)
    before = await reg.outbox_events()
    for who in (reg.ops, reg.caller("ada", "admin")):
        r = await who.put(f"/models/{model}/aliases/staging", {"version": "1"})
        assert r.status_code == 409 and "did not pass validation" in r.json()["detail"]
        assert r.headers["content-type"] == "application/problem+json"
        r = await who.put(f"/models/{model}/aliases/staging", {"version": "3"})
        assert r.status_code == 409 and "archived" in r.json()["detail"]
    assert await reg.outbox_events() == before
    # A version that passed may carry any other alias.
    r = await reg.ops.put(f"/models/{model}/aliases/staging", {"version": "2"})
    assert r.status_code == 200 and r.json()["version"] == "2"


async def test_one_person_with_every_role_cannot_promote_alone(reg: Registry) -> None:
    model = await reg.model()
    await reg.register(model)
    await reg.register(model)
    boss = reg.caller("sam", "data-scientist", "reviewer", "operator", "admin")
    r = await boss.post(f"/models/{model}/versions/1/promotion-requests", {"reason": "mine"})
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    for who in (boss, reg.caller("sam", "reviewer"), reg.caller("sam", "service", "reviewer")):
        r = await who.post(f"/promotion-requests/{rid}/approve", {"comment": "lgtm"})
        assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
        assert "four eyes" in r.json()["detail"]
    # Enabling auto-approval for the model does not let the same person promote alone either.
    r = await boss.put(f"/models/{model}/validation-policy", {"auto_approval": "sam-says-so"})
    assert r.status_code == 200, r.text
    r = await boss.post(f"/models/{model}/versions/2/promotion-requests", {"reason": "mine too"})
    assert r.status_code == 201 and r.json()["status"] == "pending" and r.json()["approved_by"] == []
    topics = [t for t, _ in await reg.outbox_events()]
    assert "model-promoted" not in topics and "promotion-reviewed" not in topics
    assert (await reg.viewer.get(f"/promotion-requests/{rid}")).json()["status"] == "pending"
    # ...while somebody else's request is approved by the policy that a second person (sam) set.
    await reg.register(model)
    r = await reg.ds.post(f"/models/{model}/versions/3/promotion-requests", {})
    assert r.status_code == 201 and r.json()["status"] == "approved"
    assert r.json()["approved_by"] == ["policy:sam-says-so"]
