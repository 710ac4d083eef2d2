"""Properties that must hold for any input: stickiness, mergeability, monotone p-values."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mloop.client.router import TrafficRouter
from mloop.contracts.payloads import Route, TrafficSplitChanged
from mloop.rollout.domain.evidence import VersionStats
from mloop.stats.sequential import MSPRT

weights = st.floats(min_value=0.001, max_value=0.999, allow_nan=False)


@settings(max_examples=50, deadline=None)
@given(w1=weights, w2=weights, keys=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=50))
def test_a_key_on_the_candidate_stays_there_when_its_weight_grows(w1: float, w2: float, keys: list[str]) -> None:
    low, high = sorted((w1, w2))
    router = TrafficRouter()
    on_low = set()
    for seq, w in ((1, low), (2, high)):
        router.apply(
            TrafficSplitChanged(
                model="m",
                seq=seq,
                rollout_id="r",
                routes=[Route(version="base", weight=1 - w), Route(version="cand", weight=w)],
            )
        )
        on = {k for k in keys if router.route("m", k).version == "cand"}
        if seq == 1:
            on_low = on
        else:
            assert on_low <= on


Record = tuple[bool, float | None, float | str | None]
records = st.lists(
    st.tuples(
        st.booleans(),
        st.one_of(st.none(), st.floats(min_value=0, max_value=1e5)),
        st.one_of(st.none(), st.floats(-1e3, 1e3), st.sampled_from(["a", "b", "c"])),
    ),
    max_size=30,
)


def build(rs: list[Record]) -> VersionStats:
    s = VersionStats()
    for error, latency, prediction in rs:
        s.record_prediction(error=error, latency_ms=latency, prediction=prediction)
    return s


@settings(max_examples=50, deadline=None)
@given(a=records, b=records, c=records)
def test_evidence_merges_commutatively_and_associatively(a: list[Record], b: list[Record], c: list[Record]) -> None:
    x, y, z = build(a), build(b), build(c)
    assert x.merge(y) == y.merge(x)
    assert x.merge(y).merge(z) == x.merge(y.merge(z))
    assert x.merge(y) == build(a + b)


@settings(max_examples=50, deadline=None)
@given(
    looks=st.lists(
        st.tuples(st.integers(0, 50), st.integers(1, 500), st.integers(0, 50), st.integers(1, 500)),
        min_size=1,
        max_size=20,
    )
)
def test_always_valid_p_value_never_increases_over_looks(looks: list[tuple[int, int, int, int]]) -> None:
    test = MSPRT(min_samples=1)
    previous = 1.0
    for x_a, n_a, x_b, n_b in looks:
        result = test.update(min(x_a, n_a), n_a, min(x_b, n_b), n_b)
        assert 0.0 <= result.always_valid_p <= previous
        previous = result.always_valid_p
