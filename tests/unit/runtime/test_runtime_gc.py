"""A service process's garbage-collector settings."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from mloop.runtime.service import tune_gc
from mloop.runtime.settings import ServiceSettings


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


@pytest.mark.usefixtures("restored_gc")
def test_the_young_generation_is_collected_at_the_configured_threshold_and_startup_objects_are_frozen() -> None:
    _, gen1, gen2 = gc.get_threshold()
    gc.unfreeze()
    tune_gc(ServiceSettings(service_name="any").gc_gen0_threshold)
    assert gc.get_threshold() == (50_000, gen1, gen2)
    assert gc.get_freeze_count() > 0
    # Cycles are still collected: a self-referencing object does not outlive a pass.
    ref: list[object] = []
    ref.append(ref)
    del ref
    assert gc.collect() >= 1


@pytest.mark.usefixtures("restored_gc")
def test_zero_keeps_the_thresholds_as_they_are() -> None:
    gc.set_threshold(700, 10, 10)
    tune_gc(0)
    assert gc.get_threshold() == (700, 10, 10)


def test_the_threshold_cannot_be_negative() -> None:
    with pytest.raises(ValueError, match="gc_gen0_threshold"):
        ServiceSettings(service_name="any", gc_gen0_threshold=-1)
