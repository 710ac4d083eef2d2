"""Template filters: times, durations and numbers as people read them."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

__all__ = ["number", "seconds", "when"]


def when(value: Any) -> str:
    """``2026-12-03 08:09:11Z`` from an ISO-8601 time; empty for none; the input itself when unreadable."""
    if not value:
        return ""
    try:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    if t.tzinfo is not None:
        t = t.astimezone(UTC)
    return t.strftime("%Y-%m-%d %H:%M:%SZ")


def seconds(value: Any) -> str:
    """``42.1 s``, ``3.5 min``, ``2.0 h``, ``1.5 d``; ``-`` for none."""
    if value is None:
        return "-"
    s = float(value)
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    if s < 172_800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def number(value: Any) -> str:
    """Four significant digits, scientific for tiny or huge values; ``-`` for none."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    x = float(value)
    if math.isnan(x):
        return "NaN"
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e6):
        return f"{x:.3g}"
    return f"{x:.4g}"
