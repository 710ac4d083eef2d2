"""Sign-in session and CSRF protection, without server-side state.

The session cookie holds the person's mloop token (HttpOnly, SameSite=Strict,
Secure outside development). The console cannot verify the token's signature
(it never holds the signing secret, which would let it mint stronger tokens);
the services verify it on every call. The claims are read here only to
decide which buttons to show; hiding a button is a convenience, the services'
answer is the rule.

The CSRF token of a session is an HMAC of its token under a key of the
console, so it needs no storage; every action form carries it and every
POST is also refused when its ``Origin`` is another site's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["SESSION_COOKIE", "Session", "claims_of", "csrf_token", "csrf_valid", "origin_allowed"]

SESSION_COOKIE = "mloop_session"

#: Roles that may press each kind of button; the services decide in the end (admin may do all).
ACTION_ROLES: dict[str, frozenset[str]] = {
    "review": frozenset({"reviewer"}),
    "rollout": frozenset({"operator"}),
    "retrain": frozenset({"operator", "data-scientist"}),
}


@dataclass(frozen=True)
class Session:
    """Who is signed in, as the token's (unverified) claims say."""

    token: str
    sub: str
    roles: frozenset[str]
    expires_at: float | None

    def may(self, action: str) -> bool:
        """Whether to show the buttons of ``action`` (a key of :data:`ACTION_ROLES`)."""
        return "admin" in self.roles or bool(self.roles & ACTION_ROLES.get(action, frozenset()))

    @property
    def actor(self) -> str:
        """How the services name this person in events (``user:<sub>``)."""
        return f"user:{self.sub}"


def claims_of(token: str) -> dict[str, Any] | None:
    """The JSON claims of a JWT, unverified; None when it is not shaped like one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (ValueError, UnicodeError):
        return None
    return claims if isinstance(claims, dict) else None


def session_of(token: str | None, *, now: float | None = None) -> Session | None:
    """The session a cookie value stands for, or None when it is missing, malformed or expired."""
    if not token:
        return None
    claims = claims_of(token)
    if claims is None or not isinstance(claims.get("sub"), str):
        return None
    exp = claims.get("exp")
    expires_at = float(exp) if isinstance(exp, int | float) else None
    if expires_at is not None and expires_at <= (now if now is not None else time.time()):
        return None
    roles = claims.get("roles", [])
    if not isinstance(roles, list):
        roles = []
    return Session(token, claims["sub"], frozenset(r for r in roles if isinstance(r, str)), expires_at)


def csrf_token(key: bytes, session_token: str) -> str:
    """The CSRF token bound to one session."""
    return hmac.new(key, b"csrf\x00" + session_token.encode(), hashlib.sha256).hexdigest()


def csrf_valid(key: bytes, session_token: str, submitted: str | None) -> bool:
    """Whether a submitted form's CSRF token belongs to this session (constant-time)."""
    return bool(submitted) and hmac.compare_digest(csrf_token(key, session_token), str(submitted))


def origin_allowed(origin: str | None, own_origin: str) -> bool:
    """A POST is allowed from the console's own origin, or without an ``Origin`` header.

    Browsers send ``Origin`` on every cross-site POST, so a missing header is a
    same-origin or non-browser client; those still need the CSRF token.
    """
    return origin is None or origin.rstrip("/") == own_origin.rstrip("/")
