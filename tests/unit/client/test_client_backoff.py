"""The jittered backoff of the SDK's sender: bounded, growing, spread out, reset by a success."""

from __future__ import annotations

import pytest

from mloop.client._backoff import Backoff


def test_each_pause_lies_between_half_and_all_of_a_doubling_ceiling_capped_at_the_maximum() -> None:
    low, high = Backoff(0.1, 2.0, rng=lambda: 0.0), Backoff(0.1, 2.0, rng=lambda: 0.999999)
    ceilings = [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0]
    for ceiling in ceilings:
        assert low.next() == pytest.approx(ceiling / 2)
        assert high.next() == pytest.approx(ceiling, rel=1e-5)


def test_pauses_are_jittered_so_clients_that_lost_the_broker_together_do_not_return_in_step() -> None:
    clients = [Backoff(0.1, 2.0) for _ in range(50)]
    for attempt in range(12):
        pauses = [c.next() for c in clients]
        ceiling = min(2.0, 0.1 * 2**attempt)
        assert all(ceiling / 2 <= p <= ceiling for p in pauses)
        assert len(set(pauses)) > 40  # spread out, also once the ceiling is the cap


def test_a_reset_starts_over_and_a_long_outage_neither_overflows_nor_exceeds_the_cap() -> None:
    backoff = Backoff(0.1, 2.0, rng=lambda: 0.0)
    pauses = [backoff.next() for _ in range(5000)]
    assert max(pauses) <= 2.0 and pauses[-1] == pytest.approx(1.0)
    backoff.reset()
    assert backoff.next() == pytest.approx(0.05)


@pytest.mark.parametrize(("first", "most"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_a_backoff_that_could_spin_or_never_grow_is_refused(first: float, most: float) -> None:
    with pytest.raises(ValueError, match="first_s"):
        Backoff(first, most)
