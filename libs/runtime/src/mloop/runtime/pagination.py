"""Cursor pagination: opaque ``page_token`` in, ``next_page_token`` out."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Generic, TypeVar

import asyncpg
from pydantic import BaseModel, Field

from mloop.runtime.problems import BadRequest

__all__ = [
    "Page", "decode_cursor", "encode_cursor", "fetch_page", "key_after", "key_token", "keyed_page", "keyset_after",
    "keyset_token",
]

T = TypeVar("T")
R = TypeVar("R")
#: Cursor values end up as SQL parameters: keep integers inside bigint.
_INT_RANGE = range(-(2**63), 2**63)


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_page_token: str | None = Field(None, description="Pass as page_token for the next page")


def encode_cursor(values: dict[str, Any]) -> str:
    raw = json.dumps(values, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _malformed(why: str) -> BadRequest:
    return BadRequest(
        f"page_token is not a token this API issued ({why})",
        errors=[{"field": "query.page_token", "message": f"malformed page token: {why}", "type": "value_error"}],
    )


def _typed(name: str, value: Any, kind: type) -> Any:
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool) and value in _INT_RANGE:
            return value
        raise _malformed(f"{name} is not an integer")
    if kind is str:
        if isinstance(value, str) and "\x00" not in value:
            return value
        raise _malformed(f"{name} is not a string")
    if kind is datetime:
        try:
            parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            raise _malformed(f"{name} is not a timestamp with a time zone")
        return parsed
    raise TypeError(f"unsupported cursor field type {kind!r}")  # a programming error, not input


def decode_cursor(token: str | None, **shape: type) -> dict[str, Any] | None:
    """The cursor's values, or None when there is no token.

    ``shape`` names each field the caller's tokens carry and its type (``int``,
    ``str`` or ``datetime``; a ``datetime`` comes back parsed). A token that is
    not base64 JSON, or whose object lacks a field or holds a value of the wrong
    type, raises :class:`BadRequest` (400) naming ``page_token``, so a crafted
    token never reaches a query.
    """
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        out = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _malformed("not base64 JSON") from exc
    if not isinstance(out, dict):
        raise _malformed("not an object")
    if not shape:
        return out
    missing = [k for k in shape if k not in out]
    if missing:
        raise _malformed(f"{', '.join(missing)} missing")
    return {name: _typed(name, out[name], kind) for name, kind in shape.items()}


def keyset_after(page_token: str | None) -> tuple[datetime, str] | None:
    """The (time, id) position a :func:`keyset_token` stands for; None without a token.

    For lists ordered by a timestamp with an id as tie-breaker. A token this
    API did not issue raises :class:`BadRequest` (400) naming ``page_token``.
    """
    cursor = decode_cursor(page_token, t=datetime, id=str)
    return (cursor["t"], cursor["id"]) if cursor else None


def keyset_token(at: datetime, id: str) -> str:
    """The token of the page that follows the row at (``at``, ``id``)."""
    return encode_cursor({"t": at.isoformat(), "id": id})


def key_after(page_token: str | None, name: str, kind: type) -> Any:
    """The last key of the previous page, for lists ordered by one unique key; None without a token.

    ``name`` is the key's name in the token and ``kind`` its type (see
    :func:`decode_cursor`). A token this API did not issue raises
    :class:`BadRequest` (400) naming ``page_token``.
    """
    cursor = decode_cursor(page_token, **{name: kind})
    return cursor[name] if cursor else None


def key_token(name: str, value: Any) -> str:
    """The token of the page that follows the row whose key ``name`` is ``value``."""
    return encode_cursor({name: value})


async def fetch_page(
    fetch: Callable[[int], Awaitable[list[R]]], page_size: int, token_of: Callable[[R], str]
) -> tuple[list[R], str | None]:
    """One page: the first ``page_size`` rows of ``fetch(limit)`` and the token of the page after them.

    ``fetch`` returns at most ``limit`` rows in list order, starting after the
    caller's cursor; it is asked for one row more than the page, so the token is
    None exactly when this is the last page. ``token_of`` makes the token from
    the page's last row (:func:`key_token`, :func:`keyset_token`).
    """
    rows = await fetch(page_size + 1)
    return rows[:page_size], token_of(rows[page_size - 1]) if len(rows) > page_size else None


async def keyed_page(
    pool: asyncpg.Pool, page_token: str | None, page_size: int, *, key: tuple[str, type, str],
    fetch: Callable[[asyncpg.Connection, Any, int], Awaitable[list[asyncpg.Record]]],
    views: Callable[[asyncpg.Connection, list[asyncpg.Record]], Awaitable[list[T]]],
) -> Page[T]:
    """One page of a list ordered by one unique column, as the API returns it.

    ``key`` is (name in the token, its type, the column it comes from);
    ``fetch(conn, after, limit)`` returns the rows after the key ``after``
    (None: from the start), ``views(conn, rows)`` what the API shows of them,
    both on one connection. A token this API did not issue raises
    :class:`BadRequest` (400) naming ``page_token``.
    """
    name, kind, column = key
    after = key_after(page_token, name, kind)
    async with pool.acquire() as conn:
        rows, token = await fetch_page(lambda limit: fetch(conn, after, limit), page_size,
                                       lambda last: key_token(name, last[column]))
        return Page[T](items=await views(conn, rows), next_page_token=token)
