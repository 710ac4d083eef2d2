"""Errors of the service runtime.

::

    RuntimeError_ (MloopError)
    ├── ConfigurationError      settings that must not start a service
    ├── MigrationError          a migration failed or was changed after it was applied
    └── HandlerError
        ├── PermanentError      this event can never be applied: dead-letter it
        └── TransientError      try again later (the event is redelivered)
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "HandlerError",
    "MigrationError",
    "MloopError",
    "PermanentError",
    "TransientError",
]


class MloopError(Exception):
    """Base of every error raised by mloop's shared runtime."""


class ConfigurationError(MloopError):
    pass


class MigrationError(MloopError):
    pass


class HandlerError(MloopError):
    pass


class PermanentError(HandlerError):
    """The event is valid on the wire but can never be applied (unknown model, ...).

    The consumer sends it to ``dead-letter`` with this error's message as the
    reason and moves on.
    """


class TransientError(HandlerError):
    """Applying the event failed for a reason that may pass; it is retried."""
