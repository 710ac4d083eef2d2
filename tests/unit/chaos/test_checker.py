"""Each invariant of the checker passes on a good history and fails on one crafted to break it."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from mloop.chaos.checker import INVARIANTS, check, explain, faults_around
from mloop.chaos.history import FaultRecord, History

T0 = 1_800_000_000.0


def good() -> History:
    """A settled run in which everything held: v1 champion, v2 retrained, rolled out and completed."""
    return History(
        seed=7,
        model="credit-risk-abc",
        started_at=T0,
        collected_at=T0 + 200,
        faults=[
            FaultRecord("kill-service", "monitor", T0 + 30, T0 + 36, "killed"),
            FaultRecord("kill-kafka", "kafka", T0 + 60, T0 + 75, "broker back"),
            FaultRecord("restart-postgres", "postgres", T0 + 120, T0 + 124, "back"),
        ],
        sdk={"predictions_delivered": 9000, "predictions_dropped": 0, "labels_delivered": 8000, "labels_dropped": 0},
        monitor=[
            {"version": "1", "predictions_seen": 7000, "labels_joined": 6000},
            {"version": "2", "predictions_seen": 2000, "labels_joined": 1500},
        ],
        labelled_rows=7600,
        produced=[
            {"id": "e1", "topic": "model-registered", "at": T0 + 5, "model": "credit-risk-abc"},
            {"id": "e2", "topic": "model-promoted", "at": T0 + 8, "model": "credit-risk-abc"},
            {"id": "e3", "topic": "rollout-completed", "at": T0 + 150, "model": "credit-risk-abc"},
        ],
        ledger=[
            {"event_id": "e1", "topic": "model-registered", "at": T0 + 6},
            {"event_id": "e2", "topic": "model-promoted", "at": T0 + 9},
            {"event_id": "e3", "topic": "rollout-completed", "at": T0 + 151},
        ],
        audit={
            "verify_ok": True,
            "verify": {"ok": True},
            "chains": [{"chain": "model-registered/0", "size": 1, "signed_size": 1},
                       {"chain": "model-promoted/0", "size": 1, "signed_size": 1}],
            "bundle_ok": True,
        },
        versions=[{"version": "1", "created_at": T0 + 5}, {"version": "2", "created_at": T0 + 90}],
        promotions=[
            {"id": "p1", "version": "1", "requested_by": "dana", "status": "approved", "approvers": ["rita"],
             "at": T0 + 6},
            {"id": "p2", "version": "2", "requested_by": "chaos-trainer", "status": "approved",
             "approvers": ["rita"], "at": T0 + 95},
        ],
        champion="2",
        champion_moves=[{"version": "1", "at": T0 + 8, "actor": "rita"},
                        {"version": "2", "at": T0 + 150, "actor": "service:rollout"}],
        rollouts=[{"id": "r1", "candidate": "2", "phase": "completed", "created_at": T0 + 96,
                   "finished_at": T0 + 150, "next_analysis_at": None}],
        jobs=[{"id": "j1", "state": "completed", "delivery": "delivered", "next_attempt_at": None,
               "updated_at": T0 + 92, "lease_until": None}],
        outboxes=[{"schema": s, "unsent": 0, "oldest_unsent_at": None}
                  for s in ("registry", "rollout", "monitor", "retrain_scheduler", "audit")],
        routing_topic={"credit-risk-abc": [{"version": "2", "weight": 1.0, "shadow": False}]},
        routing_service={"credit-risk-abc": [{"version": "2", "weight": 1.0, "shadow": False}]},
        consumer_offsets=[
            {"consumer": "monitor/applied", "topic": "prediction-logged", "partition": 0, "applied": 300, "end": 300},
            {"consumer": "rollout/rollout-evidence", "topic": "ground-truth-logged", "partition": 0, "applied": 280,
             "end": 280}],
        candidate="2",
        outcome="completed",
    )


def test_a_good_history_passes_every_invariant() -> None:
    verdicts = check(good())
    assert len(verdicts) == len(INVARIANTS)
    assert [v.invariant for v in verdicts if not v.ok] == []


def test_a_rolled_back_cycle_keeps_the_old_champion_and_passes() -> None:
    h = good()
    h.rollouts[0].update(phase="rolled-back")
    h.champion, h.outcome = "1", "rolled-back"
    h.champion_moves = h.champion_moves[:1]
    h.routing_topic = h.routing_service = {"credit-risk-abc": [{"version": "1", "weight": 1.0, "shadow": False}]}
    assert [v.invariant for v in check(h) if not v.ok] == []


def _double_count(h: History) -> None:
    h.monitor[1]["predictions_seen"] += 37


def _lose_predictions(h: History) -> None:
    h.monitor[0]["predictions_seen"] -= 1


def _join_twice(h: History) -> None:
    h.monitor[0]["labels_joined"] = h.labelled_rows  # plus v2's 1500: more joins than labelled rows


def _join_more_than_delivered(h: History) -> None:
    h.sdk["labels_delivered"] = 100


def _miss_ledger(h: History) -> None:
    del h.ledger[1]


def _ledger_twice(h: History) -> None:
    h.ledger.append(dict(h.ledger[2]))


def _ledger_stranger(h: History) -> None:
    h.ledger.append({"event_id": "forged", "topic": "model-promoted", "at": T0 + 99})


def _chain_broken(h: History) -> None:
    h.audit["verify_ok"] = False


def _checkpoint_behind(h: History) -> None:
    h.audit["chains"][1]["size"] = 2


def _bundle_bad(h: History) -> None:
    h.audit["bundle_ok"] = False


def _version_gap(h: History) -> None:
    h.versions[1]["version"] = "3"


def _version_doubled(h: History) -> None:
    h.versions.append({"version": "2", "created_at": T0 + 91})


def _self_approved(h: History) -> None:
    h.promotions[1]["approvers"] = ["chaos-trainer"]


def _champion_without_approval(h: History) -> None:
    h.promotions[1]["status"] = "pending"


def _wrong_champion(h: History) -> None:
    h.champion = "1"


def _no_champion(h: History) -> None:
    h.champion = None


def _rollout_stuck(h: History) -> None:
    h.rollouts[0].update(phase="progressing", next_analysis_at=T0 + 100)


def _rollout_without_due(h: History) -> None:
    h.rollouts[0].update(phase="shadowing", next_analysis_at=None)


def _job_stuck(h: History) -> None:
    h.jobs[0].update(state="dispatched", delivery="pending", lease_until=T0 + 100)


def _outbox_left(h: History) -> None:
    h.outboxes[2].update(unsent=3, oldest_unsent_at=T0 + 130)


def _routing_differs(h: History) -> None:
    h.routing_topic["credit-risk-abc"] = [{"version": "1", "weight": 0.5, "shadow": False},
                                          {"version": "2", "weight": 0.5, "shadow": False}]


def _routing_missing(h: History) -> None:
    h.routing_topic = {}


def _dead_lettered(h: History) -> None:
    h.monitor[0]["predictions_seen"] -= 30
    h.dead_letters.append({"topic": "prediction-logged", "partition": 0, "offset": 17, "reason": "bad",
                           "service": "monitor", "at": T0 + 35})


def _message_lost_in_the_monitor(h: History) -> None:
    h.monitor[0]["predictions_seen"] -= 24
    h.sdk["predictions_on_topic"] = 9000
    h.lost_messages.append({"partition": 3, "offset": 41, "at": T0 + 62, "records": 24, "not_stored": 24,
                            "first_request_id": "r-1"})


def _lost_before_the_broker(h: History) -> None:
    h.monitor[0]["predictions_seen"] -= 24
    h.sdk["predictions_on_topic"] = 8976


def _label_consumer_behind(h: History) -> None:
    h.consumer_offsets[1]["applied"] = 279


def _cycle_open(h: History) -> None:
    h.outcome = None


BREAKS: dict[str, tuple[Callable[[History], None], str]] = {
    "double count": (_double_count, "predictions counted exactly once"),
    "lost predictions": (_lose_predictions, "predictions counted exactly once"),
    "label joined twice": (_join_twice, "labels joined at most once"),
    "more joins than labels": (_join_more_than_delivered, "labels joined at most once"),
    "event missing from the ledger": (_miss_ledger, "every governance event in the ledger exactly once"),
    "event twice in the ledger": (_ledger_twice, "every governance event in the ledger exactly once"),
    "record of no produced event": (_ledger_stranger, "every governance event in the ledger exactly once"),
    "chain does not verify": (_chain_broken, "every ledger chain verifies"),
    "checkpoint behind the head": (_checkpoint_behind, "the latest checkpoint signs the whole ledger"),
    "bundle does not verify": (_bundle_bad, "the latest checkpoint signs the whole ledger"),
    "version gap": (_version_gap, "version numbers gapless"),
    "version doubled": (_version_doubled, "version numbers gapless"),
    "self-approval": (_self_approved, "every promotion approved by someone other than its requester"),
    "champion without approval": (_champion_without_approval,
                                  "every promotion approved by someone other than its requester"),
    "wrong champion": (_wrong_champion, "exactly one champion: the last completed rollout's candidate"),
    "no champion": (_no_champion, "exactly one champion: the last completed rollout's candidate"),
    "rollout past its due analysis": (_rollout_stuck, "no rollout stuck without a due analysis"),
    "rollout with no due analysis": (_rollout_without_due, "no rollout stuck without a due analysis"),
    "job past its lease": (_job_stuck, "no retrain job stuck past its lease"),
    "outbox not drained": (_outbox_left, "every outbox drained"),
    "routing differs": (_routing_differs, "the routing table on the compacted topic equals the rollout service's"),
    "routing missing on the topic": (_routing_missing,
                                     "the routing table on the compacted topic equals the rollout service's"),
    "prediction message dead-lettered": (_dead_lettered, "predictions counted exactly once"),
    "message lost between broker and monitor": (_message_lost_in_the_monitor, "predictions counted exactly once"),
    "records lost before the broker": (_lost_before_the_broker, "predictions counted exactly once"),
    "label messages not applied": (_label_consumer_behind,
                                   "every consumer that stores its offsets applied its topics to the end"),
    "cycle never ends": (_cycle_open, "the cycle ends (completed or rolled back)"),
}


@pytest.mark.parametrize("case", sorted(BREAKS))
def test_each_invariant_fails_on_a_history_that_breaks_it(case: str) -> None:
    breaker, invariant = BREAKS[case]
    h = copy.deepcopy(good())
    breaker(h)
    failed = [v for v in check(h) if not v.ok]
    assert [v.invariant for v in failed] == [invariant]
    assert failed[0].detail


def test_every_invariant_has_a_crafted_violation() -> None:
    assert {inv for _, inv in BREAKS.values()} == {v.invariant for v in check(good())}


def test_a_failure_names_the_first_violating_item_and_the_faults_around_it() -> None:
    h = good()
    h.ledger = [r for r in h.ledger if r["event_id"] != "e3"]
    h.ledger.append({"event_id": "e2", "topic": "model-promoted", "at": T0 + 10})  # e2 twice, e3 missing
    (verdict,) = [v for v in check(h) if not v.ok]
    assert verdict.item["id"] == "e2", "the earliest violating event comes first"
    text = explain(verdict, h)
    assert "e2" in text and "t+8.0s" in text
    # e2 was produced at t+8: the first fault (t+30) is more than 20 s later
    assert "(none)" in text and "kill-" not in text


def test_faults_around_a_time_and_all_faults_for_an_item_without_time() -> None:
    h = good()
    assert [f.kind for f in faults_around(h.faults, T0 + 80)] == ["kill-kafka"]
    assert [f.kind for f in faults_around(h.faults, T0 + 130)] == ["restart-postgres"]
    assert len(faults_around(h.faults, None)) == 3
    (verdict,) = [v for v in check(_broken(_double_count)) if not v.ok]
    assert "faults of the run" in explain(verdict, h) and "kill-kafka" in explain(verdict, h)


def _broken(breaker: Callable[[History], None]) -> History:
    h = good()
    breaker(h)
    return h


def test_a_history_round_trips_through_its_json_form() -> None:
    h = good()
    assert History.from_dict(copy.deepcopy(h.to_dict())) == h


def test_a_count_shortfall_points_at_the_dead_lettered_message_and_the_faults_then() -> None:
    h = _broken(_dead_lettered)
    (verdict,) = [v for v in check(h) if not v.ok]
    assert verdict.item["offset"] == 17 and verdict.at == T0 + 35
    text = explain(verdict, h)
    assert "dead-lettered" in text and "kill-service" in text and "kill-kafka" not in text


def test_a_message_the_monitor_lost_is_named_with_the_faults_around_it() -> None:
    h = _broken(_message_lost_in_the_monitor)
    (verdict,) = [v for v in check(h) if not v.ok]
    assert verdict.item["offset"] == 41 and verdict.at == T0 + 62
    text = explain(verdict, h)
    assert "never reached the monitor's store" in text and "kill-kafka" in text and "restart-postgres" not in text
