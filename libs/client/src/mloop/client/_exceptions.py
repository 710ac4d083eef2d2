"""The SDK's exceptions.

::

    MloopError
    ├── LoggerClosed              log() after close()
    ├── TransportError            the service could not be reached (wraps the httpx error)
    └── ApiError                  the service answered with an error (carries the problem document)
        ├── BadRequestError       400, 413, 422: the request is wrong; ``problem["errors"]`` names the fields
        ├── AuthenticationError   401: no token, an invalid or an expired one
        ├── PermissionDeniedError 403: the token lacks the role
        ├── NotFoundError         404
        ├── ConflictError         409: the action is illegal in the current state
        └── ServerError           5xx
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ApiError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "LoggerClosed",
    "MloopError",
    "NotFoundError",
    "PermissionDeniedError",
    "ServerError",
    "TransportError",
    "error_for_status",
]


class MloopError(Exception):
    """Base of every SDK error."""


class LoggerClosed(MloopError):
    """The logger was closed; it accepts no more records."""


class TransportError(MloopError):
    """The service did not answer (connection refused, timeout, ...)."""


class ApiError(MloopError):
    """An error response. ``problem`` is the RFC 9457 document (or a stand-in for a non-JSON body)."""

    def __init__(self, status: int, problem: dict[str, Any], *, method: str = "", url: str = "") -> None:
        self.status = status
        self.problem = problem
        self.method = method
        self.url = url
        title = problem.get("title") or f"HTTP {status}"
        detail = problem.get("detail")
        where = f" ({method} {url})" if method else ""
        super().__init__(f"{status} {title}: {detail}{where}" if detail else f"{status} {title}{where}")

    @property
    def detail(self) -> str | None:
        d = self.problem.get("detail")
        return str(d) if d is not None else None

    @property
    def errors(self) -> list[dict[str, Any]]:
        """Per-field errors of a validation problem (empty otherwise)."""
        errs = self.problem.get("errors")
        return list(errs) if isinstance(errs, list) else []


class BadRequestError(ApiError):
    pass


class AuthenticationError(ApiError):
    pass


class PermissionDeniedError(ApiError):
    pass


class NotFoundError(ApiError):
    pass


class ConflictError(ApiError):
    pass


class ServerError(ApiError):
    pass


def error_for_status(status: int) -> type[ApiError]:
    """The :class:`ApiError` subclass for an HTTP status."""
    if status == 401:
        return AuthenticationError
    if status == 403:
        return PermissionDeniedError
    if status == 404:
        return NotFoundError
    if status == 409:
        return ConflictError
    if status >= 500:
        return ServerError
    return BadRequestError
