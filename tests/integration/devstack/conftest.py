from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from mloop.devstack.testing import EphemeralStack


@pytest.fixture(scope="session")
def local_stack() -> Iterator[EphemeralStack]:
    """A private Kafka + Postgres for this package's tests."""
    began = time.monotonic()
    with EphemeralStack() as stack:
        print(f"\nEphemeralStack up in {time.monotonic() - began:.1f}s")
        yield stack
