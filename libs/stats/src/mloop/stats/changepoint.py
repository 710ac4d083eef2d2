"""Sequential change detection on a stream of numbers (error indicators, losses, ...).

Two small stateful detectors with the same shape: ``update(x) -> bool`` is
true on the observation at which a change is signalled, after which the
detector restarts its statistics (its configuration, and for CUSUM the
in-control mean and scale, are kept). ``to_dict``/``from_dict`` carry the
complete state as JSON-safe values so a consumer can checkpoint it with its
offsets and resume after a restart exactly where it was.

* :class:`PageHinkley` needs no in-control parameters: it tracks the running
  mean and alarms when the cumulative deviation from it exceeds a threshold.
* :class:`Cusum` is the tabular CUSUM on standardised values ``(x - target) / sigma``,
  with ``target`` and ``sigma`` given or estimated from the first ``warmup``
  values. Defaults ``k = 0.5``, ``h = 5`` detect a one-sigma shift quickly with
  an in-control average run length of several hundred observations.

Non-finite observations are ignored (``update`` returns False).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, TypeVar, get_args

from mloop.stats._exceptions import InvalidConfigError, InvalidInputError

__all__ = ["Cusum", "Direction", "PageHinkley"]

Direction = Literal["increase", "decrease", "both"]
_T = TypeVar("_T", "PageHinkley", "Cusum")


def _check_direction(direction: str) -> None:
    if direction not in get_args(Direction):
        raise InvalidConfigError(f"direction must be one of {get_args(Direction)}, got {direction!r}")


def _restore(cls: type[_T], data: Mapping[str, Any]) -> _T:
    if not isinstance(data, Mapping) or data.get("type") != cls.__name__:
        raise InvalidInputError(f"not a {cls.__name__} state: {data!r:.80}")
    names = {f.name for f in fields(cls)}
    values = {k: v for k, v in data.items() if k in names}
    missing = names - set(values)
    if missing:
        raise InvalidInputError(f"{cls.__name__} state lacks {sorted(missing)}")
    for k, v in values.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise InvalidInputError(f"{cls.__name__} state field {k} is not finite")
    try:
        return cls(**values)
    except TypeError as exc:
        raise InvalidInputError(f"malformed {cls.__name__} state: {exc}") from exc


@dataclass
class PageHinkley:
    """Page-Hinkley test for a change in the mean.

    ``delta`` is the magnitude of change tolerated, ``threshold`` (lambda) the
    alarm level for the cumulative deviation; no alarm is raised before
    ``min_samples`` observations. ``direction`` chooses which changes count.
    Raises InvalidConfigError for negative parameters or an unknown direction.
    """

    delta: float = 0.005
    threshold: float = 50.0
    min_samples: int = 30
    direction: Direction = "increase"
    n: int = 0
    mean: float = 0.0
    cum_up: float = 0.0
    min_up: float = 0.0
    cum_down: float = 0.0
    max_down: float = 0.0
    alarms: int = 0

    def __post_init__(self) -> None:
        _check_direction(self.direction)
        if self.delta < 0 or self.threshold <= 0 or self.min_samples < 1:
            raise InvalidConfigError("need delta >= 0, threshold > 0 and min_samples >= 1")

    @property
    def statistic(self) -> float:
        """The current test statistic, compared with ``threshold``."""
        up = self.cum_up - self.min_up
        down = self.max_down - self.cum_down
        if self.direction == "increase":
            return up
        if self.direction == "decrease":
            return down
        return max(up, down)

    def update(self, x: float) -> bool:
        """Add one observation; true if it signals a change (the state then restarts)."""
        x = float(x)
        if not math.isfinite(x):
            return False
        self.n += 1
        self.mean += (x - self.mean) / self.n
        self.cum_up += x - self.mean - self.delta
        self.min_up = min(self.min_up, self.cum_up)
        self.cum_down += x - self.mean + self.delta
        self.max_down = max(self.max_down, self.cum_down)
        if self.n >= self.min_samples and self.statistic > self.threshold:
            self.alarms += 1
            self.reset()
            return True
        return False

    def reset(self) -> None:
        """Forget the observations (keeps configuration and the alarm count)."""
        self.n, self.mean = 0, 0.0
        self.cum_up = self.min_up = self.cum_down = self.max_down = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Configuration and state as a JSON-safe dict."""
        return {"type": type(self).__name__, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PageHinkley:
        """Restore from ``to_dict``; raises InvalidInputError or InvalidConfigError."""
        return _restore(cls, data)


@dataclass
class Cusum:
    """Two-sided tabular CUSUM on ``z = (x - target) / sigma``.

    ``k`` (slack) and ``h`` (decision interval) are in sigmas. ``target``
    and ``sigma`` left as ``None`` are estimated from the first ``warmup``
    observations (no alarm during warm-up); a zero estimated sigma is raised
    to ``min_sigma`` so constant warm-up data cannot divide by zero.
    Raises InvalidConfigError for non-positive ``k``/``h``/``sigma``.
    """

    target: float | None = None
    sigma: float | None = None
    k: float = 0.5
    h: float = 5.0
    warmup: int = 100
    direction: Direction = "both"
    min_sigma: float = 1e-9
    n: int = 0
    warm_mean: float = 0.0
    warm_m2: float = 0.0
    s_hi: float = 0.0
    s_lo: float = 0.0
    alarms: int = 0

    def __post_init__(self) -> None:
        _check_direction(self.direction)
        if self.k < 0 or self.h <= 0 or self.min_sigma <= 0 or self.warmup < 2:
            raise InvalidConfigError("need k >= 0, h > 0, min_sigma > 0 and warmup >= 2")
        if self.sigma is not None and not self.sigma > 0:
            raise InvalidConfigError("sigma must be positive")

    @property
    def ready(self) -> bool:
        """Whether target and sigma are known (warm-up done or given)."""
        return self.target is not None and self.sigma is not None

    @property
    def statistic(self) -> float:
        """The larger of the monitored one-sided sums, compared with ``h``."""
        if self.direction == "increase":
            return self.s_hi
        if self.direction == "decrease":
            return self.s_lo
        return max(self.s_hi, self.s_lo)

    def update(self, x: float) -> bool:
        """Add one observation; true if it signals a change (the sums then restart)."""
        x = float(x)
        if not math.isfinite(x):
            return False
        if not self.ready:
            self.n += 1
            delta = x - self.warm_mean
            self.warm_mean += delta / self.n
            self.warm_m2 += delta * (x - self.warm_mean)
            if self.n >= self.warmup:
                if self.target is None:
                    self.target = self.warm_mean
                if self.sigma is None:
                    self.sigma = max(math.sqrt(self.warm_m2 / (self.n - 1)), self.min_sigma)
            return False
        assert self.target is not None and self.sigma is not None
        z = (x - self.target) / self.sigma
        self.s_hi = max(0.0, self.s_hi + z - self.k)
        self.s_lo = max(0.0, self.s_lo - z - self.k)
        if self.statistic > self.h:
            self.alarms += 1
            self.s_hi = self.s_lo = 0.0
            return True
        return False

    def to_dict(self) -> dict[str, Any]:
        """Configuration and state as a JSON-safe dict."""
        return {"type": type(self).__name__, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cusum:
        """Restore from ``to_dict``; raises InvalidInputError or InvalidConfigError."""
        return _restore(cls, data)
