"""The bounded record buffer: capacity, overflow policies, requeue and counters."""

from __future__ import annotations

import threading
import time

import pytest

from mloop.client._buffer import RecordBuffer


def test_a_full_buffer_with_drop_oldest_keeps_the_newest_records_and_counts_the_dropped() -> None:
    buf: RecordBuffer[int] = RecordBuffer(3, "drop-oldest")
    for i in range(5):
        assert buf.put(i)
    assert buf.take(10) == [2, 3, 4]
    assert (buf.accepted, buf.dropped) == (5, 2)


def test_a_full_buffer_with_drop_newest_refuses_the_incoming_record() -> None:
    buf: RecordBuffer[int] = RecordBuffer(3, "drop-newest")
    results = [buf.put(i) for i in range(5)]
    assert results == [True, True, True, False, False]
    assert buf.take(10) == [0, 1, 2]
    assert (buf.accepted, buf.dropped) == (3, 2)


def test_take_returns_records_in_arrival_order_in_batches() -> None:
    buf: RecordBuffer[int] = RecordBuffer(100)
    for i in range(10):
        buf.put(i)
    assert buf.take(4) == [0, 1, 2, 3]
    assert buf.take(4) == [4, 5, 6, 7]
    assert buf.take(4) == [8, 9]
    assert buf.take(4) == []


def test_requeued_records_go_back_to_the_front_in_their_order() -> None:
    buf: RecordBuffer[int] = RecordBuffer(10)
    for i in range(6):
        buf.put(i)
    batch = buf.take(3)
    assert buf.requeue(batch) == 0
    assert buf.take(10) == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("policy", "kept"),
    [("drop-oldest", [2, 3, 4, 5, 6]), ("drop-newest", [0, 1, 2, 3, 4])],
)
def test_a_requeue_beyond_capacity_drops_by_the_policy(policy: str, kept: list[int]) -> None:
    buf: RecordBuffer[int] = RecordBuffer(5, policy)  # type: ignore[arg-type]
    for i in range(5):
        buf.put(i)
    batch = buf.take(3)  # 0, 1, 2 in flight
    buf.put(5)
    buf.put(6)
    assert buf.requeue(batch) == 2
    assert buf.take(10) == kept
    assert buf.dropped == 2


def test_put_on_a_full_buffer_waits_at_most_its_bound() -> None:
    buf: RecordBuffer[int] = RecordBuffer(1, "drop-newest")
    buf.put(0)
    began = time.perf_counter()
    assert not buf.put(1, max_block_s=0.05)
    waited = time.perf_counter() - began
    assert 0.04 <= waited < 0.5


def test_put_on_a_full_buffer_succeeds_when_room_appears_within_the_bound() -> None:
    buf: RecordBuffer[int] = RecordBuffer(1, "drop-newest")
    buf.put(0)
    threading.Timer(0.02, buf.take, args=(1,)).start()
    assert buf.put(1, max_block_s=2.0)
    assert buf.take(5) == [1]
    assert buf.dropped == 0


def test_the_sender_is_woken_when_the_buffer_fills_and_when_a_batch_is_ready() -> None:
    calls: list[int] = []
    buf: RecordBuffer[int] = RecordBuffer(100, ready_at=3)
    buf.on_ready = lambda: calls.append(len(buf))
    for i in range(5):
        buf.put(i)
    assert calls == [1, 3]


def test_discard_all_counts_everything_left_as_dropped() -> None:
    buf: RecordBuffer[int] = RecordBuffer(10)
    for i in range(4):
        buf.put(i)
    assert buf.discard_all() == 4
    assert (len(buf), buf.dropped) == (0, 4)


def test_invalid_configuration_is_refused() -> None:
    with pytest.raises(ValueError):
        RecordBuffer(0)
    with pytest.raises(ValueError):
        RecordBuffer(5, "drop-random")  # type: ignore[arg-type]


def test_offer_here_keeps_the_bound_counts_and_wakes_like_offer() -> None:
    wakes: list[int] = []
    buf: RecordBuffer[int] = RecordBuffer(3, ready_at=2, on_ready=lambda: wakes.append(len(buf)))
    assert [buf.offer_here(i) for i in range(4)] == [True, True, True, False]  # full: refused, nothing done
    assert wakes == [1, 2]  # the first record and a ready batch wake the sender
    assert (buf.accepted, buf.dropped) == (3, 0)
    assert buf.take(10) == [0, 1, 2]
    assert buf.offer_here(9)
    assert wakes == [1, 2, 1]  # empty again: the next record wakes it again
