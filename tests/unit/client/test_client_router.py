"""The in-process traffic router: sticky, deterministic, accurate and fast."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from mloop.client.router import RouteDecision, TrafficRouter, UnknownModel
from mloop.contracts.payloads import Route, TrafficSplitChanged

KEYS = [f"user-{i}" for i in range(100_000)]


def table(seq: int, *routes: tuple[str, float] | tuple[str, float, bool]) -> TrafficSplitChanged:
    return TrafficSplitChanged(
        model="credit-risk",
        seq=seq,
        rollout_id="r-1",
        routes=[Route(version=r[0], weight=r[1], shadow=bool(r[2]) if len(r) > 2 else False) for r in routes],
    )


def test_same_key_keeps_its_version_while_the_canary_grows() -> None:
    router = TrafficRouter()
    on_candidate: set[str] = set()
    for seq, w in enumerate([0.05, 0.25, 0.5, 1.0], start=1):
        routes = [("3", round(1 - w, 6)), ("4", w)] if w < 1 else [("4", 1.0)]
        router.apply(table(seq, *routes))
        now_on_candidate = {k for k in KEYS[:20_000] if router.route("credit-risk", k).version == "4"}
        assert on_candidate <= now_on_candidate  # nobody who saw the candidate goes back
        on_candidate = now_on_candidate
    assert len(on_candidate) == 20_000


def test_decisions_are_deterministic_across_router_instances() -> None:
    a, b = TrafficRouter(), TrafficRouter()
    for r in (a, b):
        r.apply(table(1, ("3", 0.75), ("4", 0.25)))
    assert [a.route("credit-risk", k) for k in KEYS[:5_000]] == [b.route("credit-risk", k) for k in KEYS[:5_000]]


@pytest.mark.parametrize("weights", [(0.95, 0.05), (0.75, 0.25), (0.5, 0.5), (0.2, 0.3, 0.5)])
def test_observed_split_is_within_one_percent_of_the_weights(weights: tuple[float, ...]) -> None:
    router = TrafficRouter()
    router.apply(table(1, *[(str(i), w) for i, w in enumerate(weights)]))
    counts = Counter(router.route("credit-risk", k).version for k in KEYS)
    for i, w in enumerate(weights):
        assert abs(counts[str(i)] / len(KEYS) - w) <= 0.01


def test_shadow_targets_get_the_configured_fraction_of_copies() -> None:
    router = TrafficRouter()
    router.apply(table(1, ("3", 1.0), ("4", 0.3, True)))
    decisions = [router.route("credit-risk", k) for k in KEYS]
    assert all(d.version == "3" for d in decisions)
    shadowed = sum("4" in d.shadows for d in decisions) / len(KEYS)
    assert abs(shadowed - 0.3) <= 0.01


def test_older_tables_are_ignored() -> None:
    router = TrafficRouter()
    assert router.apply(table(5, ("3", 0.5), ("4", 0.5)))
    assert not router.apply(table(4, ("3", 1.0)))
    assert not router.apply(table(5, ("3", 1.0)))
    assert router.table("credit-risk") == table(5, ("3", 0.5), ("4", 0.5))
    assert router.apply(table(6, ("3", 1.0)))
    assert router.route("credit-risk", "anyone") == RouteDecision("3")


def test_unknown_model_uses_the_default_or_raises() -> None:
    assert TrafficRouter({"credit-risk": "2"}).route("credit-risk", "k") == RouteDecision("2")
    with pytest.raises(UnknownModel):
        TrafficRouter().route("credit-risk", "k")


def test_a_decision_takes_microseconds() -> None:
    router = TrafficRouter()
    router.apply(table(1, ("3", 0.95), ("4", 0.05)))
    route = router.route
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter_ns()
        for k in KEYS[:20_000]:
            route("credit-risk", k)
        best = min(best, (time.perf_counter_ns() - start) / 20_000)
    assert best < 20_000  # ns; typically 1-3 µs in CPython, generous for loaded CI machines
