"""Cursor pagination: opaque ``page_token`` in, ``next_page_token`` out."""

from __future__ import annotations

import base64
import json
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from mloop.runtime.problems import BadRequest

__all__ = ["Page", "decode_cursor", "encode_cursor"]

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_page_token: str | None = Field(None, description="Pass as page_token for the next page")


def encode_cursor(values: dict[str, Any]) -> str:
    raw = json.dumps(values, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str | None) -> dict[str, Any] | None:
    """The cursor's values, or None; a malformed token is a 400 naming ``page_token``."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        out = json.loads(raw)
        if not isinstance(out, dict):
            raise ValueError("not an object")
        return out
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(
            "page_token is not a token this API issued",
            errors=[{"field": "query.page_token", "message": "malformed page token", "type": "value_error"}],
        ) from exc
