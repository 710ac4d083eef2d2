"""Bearer tokens: the roles and the claims every mloop service accepts.

A token is an HS256 JWT with ``sub`` (who), ``roles`` (what they may do),
``iat``/``exp``, ``iss`` and ``aud``. The services verify it
(``mloop.runtime.auth``); the CLI, the demo and tests mint local ones with
:func:`issue_token`, without the server stack.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import jwt

__all__ = ["DEFAULT_AUDIENCE", "DEFAULT_ISSUER", "ROLES", "Role", "decode_claims", "issue_token"]

Role = Literal["viewer", "data-scientist", "reviewer", "operator", "admin", "service"]
ROLES: tuple[str, ...] = ("viewer", "data-scientist", "reviewer", "operator", "admin", "service")
DEFAULT_ISSUER = "mloop"
DEFAULT_AUDIENCE = "mloop"


def issue_token(
    secret: str,
    sub: str,
    roles: list[str] | tuple[str, ...],
    *,
    ttl_s: int = 12 * 3600,
    issuer: str = DEFAULT_ISSUER,
    audience: str = DEFAULT_AUDIENCE,
) -> str:
    """A signed token naming ``sub`` with ``roles``; raises ``ValueError`` for a role mloop does not know."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles: {sorted(unknown)}; known: {', '.join(ROLES)}")
    now = int(time.time())
    claims = {"sub": sub, "roles": list(roles), "iat": now, "exp": now + ttl_s, "iss": issuer, "aud": audience}
    return jwt.encode(claims, secret, algorithm="HS256")


def decode_claims(
    token: str, secret: str, *, issuer: str = DEFAULT_ISSUER, audience: str = DEFAULT_AUDIENCE
) -> dict[str, Any]:
    """The verified claims of ``token``; raises ``jwt.InvalidTokenError`` (or a subclass) when it is not valid."""
    return jwt.decode(
        token, secret, algorithms=["HS256"], issuer=issuer, audience=audience,
        options={"require": ["sub", "exp"]},
    )
