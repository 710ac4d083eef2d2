"""What an event becomes in the ledger, and how the ledger reads as a story (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mloop.audit.domain.lifecycle import approval_of, lifecycle_status, lifecycle_steps, model_steps, serving_split
from mloop.audit.domain.records import append_entry, chain_of, cloudevent_of, columns_of
from mloop.contracts import payloads as p
from mloop.contracts.envelope import decode, encode, new_event
from mloop.ledger.canonical import canonicalize
from mloop.ledger.ledger_domain import LedgerHead, verify_chain

AT = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)


def _promoted() -> Any:
    return new_event("model-promoted", p.ModelPromoted(
        model="credit-risk", version="4", seq=4, previous_champion="3", requested_by="user:dana",
        approved_by=["user:rita"], promotion_request_id="pr-1"), source="registry", actor="user:rita", at=AT)


def test_the_recorded_cloudevent_keeps_trace_context_key_and_unknown_headers() -> None:
    event = _promoted()
    rec = encode(event)
    headers = [*rec.headers, ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
               ("ce_tenant", b"acme"), ("x-origin", b"eu-1")]
    received = decode("model-promoted", rec.key, rec.value, headers).with_position(2, 41)
    ce = cloudevent_of(received)
    assert ce["id"] == event.id and ce["type"] == "dev.mloop.model-promoted.v1"
    assert ce["actor"] == "user:rita" and ce["subject"] == "credit-risk"
    assert ce["traceparent"].startswith("00-0af7") and ce["partitionkey"] == "credit-risk"
    assert ce["tenant"] == "acme" and ce["kafkaheaders"] == {"x-origin": "eu-1"}
    assert ce["data"]["approved_by"] == ["user:rita"]
    assert chain_of(received.topic, received.partition or 0) == "model-promoted/2"


def test_a_row_is_the_canonical_bytes_of_the_event_and_replays() -> None:
    head = LedgerHead("model-promoted/0")
    events = [_promoted().with_position(0, i) for i in range(5)]
    rows = [append_entry(head, e)[0] for e in events]
    assert rows[0].record.canonical == canonicalize(cloudevent_of(events[0]))
    assert [r.record.seq for r in rows] == [0, 1, 2, 3, 4]
    assert (rows[2].model, rows[2].version, rows[2].actor) == ("credit-risk", "4", "user:rita")
    assert rows[2].kafka_offset == 2
    assert verify_chain([r.record for r in rows]).ok


def test_columns_fall_back_to_the_subject_for_the_model() -> None:
    cols = columns_of({"type": "t", "source": "/s", "subject": "churn", "data": {"job_id": "j"}})
    assert cols["model"] == "churn" and cols["version"] is None and cols["actor"] is None


def _rec(topic: str, data: dict[str, Any], seq: int) -> dict[str, Any]:
    return {"event": {"id": f"e{seq}", "type": f"dev.mloop.{topic}.v1", "time": f"t{seq}", "actor": "a",
                      "data": data}, "chain": f"{topic}/0", "seq": seq}


def test_a_version_story_ends_as_champion_then_retired_when_replaced() -> None:
    records = [
        _rec("model-registered", {"registered_by": "u", "artifact_uri": "s3://x"}, 0),
        _rec("model-validated", {"passed": True, "checks": [{"name": "c", "passed": True}]}, 1),
        _rec("promotion-reviewed", {"decision": "approved", "reviewer": "r", "requested_by": "d"}, 2),
        _rec("model-promoted", {"approved_by": ["r"], "previous_champion": "3"}, 3),
        _rec("rollout-started", {"phase": "canary", "step_index": 0, "weight": 0.05}, 4),
        _rec("traffic-split-changed", {"seq": 1, "routes": [{"version": "3", "weight": 0.95},
                                                            {"version": "4", "weight": 0.05}]}, 5),
        _rec("traffic-split-changed", {"seq": 2, "routes": [{"version": "9", "weight": 1.0}]}, 6),
        _rec("rollout-completed", {"phase": "full", "step_index": 2, "weight": 1.0}, 7),
        _rec("model-alias-changed", {"alias": "champion", "version": "4", "previous_version": "3"}, 8),
    ]
    steps = lifecycle_steps("4", records)
    assert [s.stage for s in steps] == ["registered", "validated", "approved", "promoted", "rollout-started",
                                        "traffic", "rollout-completed", "champion"]
    assert lifecycle_status(steps) == "champion"
    moved_on = _rec("model-alias-changed", {"alias": "champion", "version": "5", "previous_version": "4"}, 9)
    replaced = [*records, moved_on]
    assert lifecycle_status(lifecycle_steps("4", replaced)) == "retired"
    rolled = [*records[:5], _rec("rollout-rolled-back", {"phase": "canary", "reason": "errors"}, 5)]
    assert lifecycle_status(lifecycle_steps("4", rolled)) == "rolled-back"


def test_an_archived_or_deleted_version_says_so_and_by_whom() -> None:
    registered = _rec("model-registered", {"version": "4", "registered_by": "u", "artifact_uri": "s3://x"}, 0)
    archived = _rec("model-version-retired", {"model": "m", "version": "4", "action": "archived",
                                               "changed_by": "user:dana"}, 1)
    steps = lifecycle_steps("4", [registered, archived])
    assert [(s.stage, s.detail) for s in steps] == [
        ("registered", "by u, artifact s3://x"), ("archived", "by user:dana")]
    assert lifecycle_status(steps) == "archived"
    deleted = _rec("model-version-retired", {"model": "m", "version": "5", "action": "deleted",
                                              "changed_by": "user:otto"}, 2)
    assert lifecycle_status(lifecycle_steps("5", [deleted])) == "deleted"
    assert [(s.version, s.stage) for s in model_steps([registered, archived, deleted])] == [
        ("4", "registered"), ("4", "archived"), ("5", "deleted")]


def test_serving_split_separates_serving_from_shadow_and_idle_routes() -> None:
    split = serving_split({"routes": [{"version": "3", "weight": 1.0}, {"version": "4", "weight": 0.0},
                                      {"version": "5", "weight": 0.2, "shadow": True}]})
    assert split.serving == [{"version": "3", "weight": 1.0}]
    assert split.shadow == [{"version": "5", "weight": 0.2}]


def test_approvals_name_reviewers_and_promotion_approvers() -> None:
    review = approval_of({"type": "dev.mloop.promotion-reviewed.v1",
                          "data": {"decision": "rejected", "reviewer": "user:rita", "requested_by": "user:dana"}})
    assert (review["kind"], review["decision"], review["approvers"]) == ("review", "rejected", ["user:rita"])
    promo = approval_of({"type": "dev.mloop.model-promoted.v1", "data": {"approved_by": ["user:a", "user:b"]}})
    assert (promo["kind"], promo["approvers"]) == ("promotion", ["user:a", "user:b"])


def test_a_models_story_holds_every_governance_setting_change_and_a_rollout_plan_is_no_rollout_step() -> None:
    records = [
        _rec("model-registered", {"version": "4", "registered_by": "u", "artifact_uri": "s3://x"}, 0),
        _rec("rollout-plan-changed", {"changed_by": "user:olga", "reason": "longer canary", "plan": {}}, 1),
        _rec("monitor-config-changed", {"changed_by": "user:olga", "config": {}}, 2),
        _rec("retrain-policy-changed", {"changed_by": "user:olga", "removed": True, "policy": {}}, 3),
        _rec("validation-policy-changed", {"changed_by": "user:otto", "policy": {}}, 4),
        _rec("rollout-started", {"version": "4", "phase": "canary", "step_index": 0, "weight": 0.05}, 5),
        _rec("traffic-split-changed", {"seq": 1, "routes": [{"version": "3", "weight": 0.95},
                                                            {"version": "4", "weight": 0.05}]}, 6),
    ]
    steps = model_steps(records)
    assert [(s.version, s.stage) for s in steps] == [
        ("4", "registered"), (None, "rollout-plan-changed"), (None, "monitor-config-changed"),
        (None, "retrain-policy-changed"), (None, "validation-policy-changed"), ("4", "rollout-started"),
        (None, "traffic")]
    assert steps[1].detail == "changed by user:olga: longer canary"
    assert steps[3].detail == "removed by user:olga"
    assert "v4 serving weight 0.05" in steps[6].detail
    # In a version's own story a plan change is a setting change, never a rollout step.
    assert [s.stage for s in lifecycle_steps("4", records[:2])] == ["registered", "rollout-plan-changed"]
    assert lifecycle_status(lifecycle_steps("4", records[:2])) == "registered"
