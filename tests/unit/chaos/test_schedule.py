"""The fault schedule is a pure function of its seed and holds every fault kind."""

from __future__ import annotations

import pytest

from mloop.chaos.schedule import SERVICE_NAMES, FaultKind, Schedule, plan


@pytest.mark.parametrize("seed", [0, 1, 7, 12345])
def test_the_same_seed_gives_the_same_schedule(seed: int) -> None:
    assert plan(seed) == plan(seed)
    assert plan(seed).render() == plan(seed).render()


def test_different_seeds_give_different_schedules() -> None:
    schedules = {plan(seed).faults for seed in range(20)}
    assert len(schedules) == 20


@pytest.mark.parametrize("seed", range(10))
def test_every_run_kills_each_service_the_broker_and_postgres_and_pauses_one(seed: int) -> None:
    s = plan(seed, span_s=45.0, session_timeout_s=10.0)
    killed = sorted(f.target for f in s.faults if f.kind is FaultKind.KILL_SERVICE)
    assert killed == sorted(SERVICE_NAMES)
    counts = s.counts()
    assert counts["kill-kafka"] == 1 and counts["restart-postgres"] == 1 and counts["pause-service"] == 1
    assert counts["webhook-failing"] + counts["webhook-slow"] == 1
    (pause,) = [f for f in s.faults if f.kind is FaultKind.PAUSE_SERVICE]
    assert pause.target in SERVICE_NAMES
    assert pause.duration_s > 10.0, "a pause must outlast the consumer session timeout to force a rebalance"
    (hook,) = [f for f in s.faults if f.kind in (FaultKind.WEBHOOK_FAILING, FaultKind.WEBHOOK_SLOW)]
    assert 1 <= hook.deliveries <= 3 and hook.at_s <= 4.5
    times = [f.at_s for f in s.faults]
    assert times == sorted(times) and all(0 <= t <= 45.0 for t in times)


def test_a_schedule_round_trips_through_json_form() -> None:
    s = plan(3)
    assert Schedule.from_dict(s.to_dict()) == s


def test_nonsense_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="services"):
        plan(1, services=[])
    with pytest.raises(ValueError, match="span_s"):
        plan(1, span_s=2.0)
