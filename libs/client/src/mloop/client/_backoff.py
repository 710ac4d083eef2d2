"""Pauses between attempts to reach a broker that does not answer."""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["Backoff"]

_MAX_DOUBLINGS = 60  # 2**60 times any sensible first pause is far beyond any cap: no float overflow


class Backoff:
    """Exponential pauses with jitter, for a retry loop that sleeps on its own terms.

    The n-th pause since the last :meth:`reset` lies between half and all of
    ``min(max_s, first_s * 2**n)``. The jitter keeps clients that lost the broker
    together from coming back in step when it returns; the lower half keeps a
    pause from shrinking to nothing, so a broker that is down is never polled in a
    tight loop. No pause exceeds ``max_s``.

    It only computes pauses: the caller sleeps, which lets a loop that must wake
    early (new work, a close) do so. ``rng`` returns floats in [0, 1) (tests pass
    a fixed one). Raises ``ValueError`` unless ``0 < first_s <= max_s``.
    """

    def __init__(self, first_s: float, max_s: float, *, rng: Callable[[], float] = random.random) -> None:
        if not 0 < first_s <= max_s:
            raise ValueError("a backoff needs 0 < first_s <= max_s")
        self.first_s = first_s
        self.max_s = max_s
        self._rng = rng
        self._doublings = 0

    def next(self) -> float:
        """The pause before the next attempt, in seconds; each call without a reset may double it."""
        ceiling = min(self.max_s, self.first_s * 2.0**self._doublings)
        self._doublings = min(self._doublings + 1, _MAX_DOUBLINGS)
        return ceiling * (0.5 + 0.5 * self._rng())

    def reset(self) -> None:
        """After a success: the next pause is a first one again."""
        self._doublings = 0
