"""JWT bearer authentication with roles, as FastAPI dependencies.

Claims: ``sub`` (who), ``roles`` (what they may do). ``admin`` may do
everything. Tokens are signed with the service settings' secret (HS256);
the token format and ``issue_token`` live in ``mloop.contracts.tokens``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import jwt
from fastapi import Request

from mloop.contracts.tokens import ROLES, decode_claims, issue_token
from mloop.runtime.problems import Forbidden, Unauthorized

__all__ = ["ROLES", "Principal", "decode_token", "issue_token", "optional_principal", "require_roles"]

_BEARER = {"WWW-Authenticate": 'Bearer realm="mloop"'}


@dataclass(frozen=True)
class Principal:
    sub: str
    roles: frozenset[str]

    @property
    def actor(self) -> str:
        """How this principal is named in events: ``service:x`` or ``user:x``."""
        return f"service:{self.sub}" if "service" in self.roles else f"user:{self.sub}"

    def has(self, *roles: str) -> bool:
        return "admin" in self.roles or bool(self.roles.intersection(roles))


def decode_token(token: str, secret: str, *, issuer: str = "mloop", audience: str = "mloop") -> Principal:
    """The principal of a valid token; raises :class:`Unauthorized` otherwise."""
    try:
        claims = decode_claims(token, secret, issuer=issuer, audience=audience)
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("the token has expired", headers=_BEARER) from exc
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid token: {exc}", headers=_BEARER) from exc
    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise Unauthorized("invalid token: roles must be a list of strings", headers=_BEARER)
    return Principal(sub=str(claims["sub"]), roles=frozenset(roles))


def _principal_from(request: Request) -> Principal:
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized("missing Authorization: Bearer token", headers=_BEARER)
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Authorization must be 'Bearer <token>'", headers=_BEARER)
    s = request.app.state.settings
    return decode_token(token.strip(), s.jwt_secret.get_secret_value(), issuer=s.jwt_issuer, audience=s.jwt_audience)


def require_roles(*roles: str) -> Callable[[Request], Coroutine[Any, Any, Principal]]:
    """A dependency: the caller must hold one of ``roles`` (or ``admin``).

    With no roles, any authenticated caller passes. 401 without a valid
    token, 403 with the wrong role.
    """

    async def dependency(request: Request) -> Principal:
        principal = _principal_from(request)
        if roles and not principal.has(*roles):
            raise Forbidden(
                f"this action needs one of the roles {', '.join(roles)}; you have "
                f"{', '.join(sorted(principal.roles)) or 'none'}"
            )
        request.state.principal = principal
        return principal

    dependency.__name__ = f"require_{'_'.join(r.replace('-', '_') for r in roles) or 'auth'}"
    # Read by the OpenAPI generator: the route needs a bearer token (and these roles: 403 otherwise).
    setattr(dependency, "mloop_roles", roles)  # noqa: B010
    return dependency


async def optional_principal(request: Request) -> Principal | None:
    if not request.headers.get("authorization"):
        return None
    return _principal_from(request)
