"""Errors raised by ``mloop.stats``.

Everything raised on purpose derives from :class:`StatsError`, so a caller
(an event handler deciding between retry and dead-letter) can catch one type::

    StatsError
    ├── InvalidInputError          (also a ValueError) data the functions cannot use:
    │   │                          ragged columns, 2-D arrays where 1-D is needed,
    │   │                          labels and scores of different lengths
    │   └── ProfileFormatError     a profile dict that does not follow the format
    ├── InvalidConfigError         (also a ValueError) a DriftConfig, detector or
    │                              metric parameter out of its domain
    ├── IncompatibleProfilesError  merging or comparing profiles whose bins or
    │                              categories differ
    └── UndefinedMetricError       a metric that has no value for this data,
                                   e.g. ROC AUC when only one class is present

None of these is transient: retrying the same input raises the same error,
so handlers should dead-letter rather than retry.
"""

from __future__ import annotations

__all__ = [
    "IncompatibleProfilesError",
    "InvalidConfigError",
    "InvalidInputError",
    "ProfileFormatError",
    "StatsError",
    "UndefinedMetricError",
]


class StatsError(Exception):
    """Base class of every error raised on purpose by ``mloop.stats``."""


class InvalidInputError(StatsError, ValueError):
    """The data passed in cannot be used (shape, length or type problems)."""


class ProfileFormatError(InvalidInputError):
    """A serialised profile is malformed, inconsistent or of an unknown version."""


class InvalidConfigError(StatsError, ValueError):
    """A configuration value is outside its allowed domain."""


class IncompatibleProfilesError(StatsError):
    """Two profiles cannot be merged or compared: their bins or categories differ."""


class UndefinedMetricError(StatsError):
    """The metric is undefined for the given data (for example a single class)."""
