"""Inline SVG plots (no front-end code): lines over time with optional threshold lines.

Pure functions of their inputs; they return markup that is safe to embed
(every label is escaped).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape

__all__ = ["COLORS", "svg_lines", "svg_split_bar"]

COLORS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")

Point = tuple[float, float]


def _fmt_time(t: float, span: float) -> str:
    d = datetime.fromtimestamp(t, UTC)
    return d.strftime("%H:%M:%S") if span < 6 * 3600 else d.strftime("%m-%d %H:%M")


def _fmt_value(v: float) -> str:
    if v != 0 and (abs(v) < 0.01 or abs(v) >= 10_000):
        return f"{v:.1e}"
    return f"{v:.3g}"


def svg_lines(
    series: Mapping[str, Sequence[Point]],
    *,
    title: str,
    y_label: str,
    thresholds: Mapping[str, float] | None = None,
    y_range: tuple[float, float] | None = None,
    step: bool = False,
    width: int = 720,
    height: int = 240,
) -> str:
    """Lines of ``(unix seconds, value)`` points against wall-clock time.

    ``thresholds`` draws dashed horizontal lines (e.g. a drift statistic's
    limit); ``step`` draws a staircase (traffic weights change in steps).
    The SVG has ``role="img"`` and a ``<title>`` so screen readers name it.
    """
    pts = [p for s in series.values() for p in s]
    if not pts:
        return f'<p class="muted">{escape(title)}: no data yet.</p>'
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    limits = list((thresholds or {}).values())
    y0, y1 = y_range or (min([p[1] for p in pts] + limits), max([p[1] for p in pts] + limits))
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    left, right, top, bottom = 56, 12, 12, 34

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def sy(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * (height - top - bottom)

    parts = [f"<title>{escape(title)}</title>"]
    for k in range(5):
        yv = y0 + (y1 - y0) * k / 4
        xv = x0 + (x1 - x0) * k / 4
        parts.append(
            f'<line x1="{left}" y1="{sy(yv):.1f}" x2="{width - right}" y2="{sy(yv):.1f}" stroke="#e5e5e5"/>'
            f'<text x="{left - 4}" y="{sy(yv) + 4:.1f}" font-size="10" text-anchor="end">{_fmt_value(yv)}</text>'
            f'<text x="{sx(xv):.1f}" y="{height - 18}" font-size="10" text-anchor="middle">'
            f"{_fmt_time(xv, x1 - x0)}</text>"
        )
    parts.append(
        f'<text x="12" y="{(height - bottom) / 2:.0f}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {(height - bottom) / 2:.0f})">{escape(y_label)}</text>'
        f'<text x="{width - right}" y="{height - 4}" font-size="10" text-anchor="end">time (UTC)</text>'
    )
    for name, limit in (thresholds or {}).items():
        parts.append(
            f'<line x1="{left}" y1="{sy(limit):.1f}" x2="{width - right}" y2="{sy(limit):.1f}" stroke="#e15759" '
            f'stroke-dasharray="4 3"/><text x="{width - right - 2}" y="{sy(limit) - 3:.1f}" font-size="10" '
            f'text-anchor="end" fill="#b22">{escape(name)}</text>'
        )
    for i, (name, s) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        ordered = sorted(s)
        coords: list[str] = []
        for j, (x, y) in enumerate(ordered):
            if step and j:
                coords.append(f"{sx(x):.1f},{sy(ordered[j - 1][1]):.1f}")
            coords.append(f"{sx(x):.1f},{sy(y):.1f}")
        if step and ordered:
            coords.append(f"{sx(x1):.1f},{sy(ordered[-1][1]):.1f}")
        parts.append(f'<polyline points="{" ".join(coords)}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y in ordered[-60:]:
            parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2" fill="{color}"/>')
        parts.append(
            f'<rect x="{left + 8 + i * 130}" y="{top}" width="10" height="10" fill="{color}"/>'
            f'<text x="{left + 22 + i * 130}" y="{top + 9}" font-size="11">{escape(name[:18])}</text>'
        )
    return (
        f'<svg class="plot" role="img" viewBox="0 0 {width} {height}" preserveAspectRatio="xMinYMin meet">'
        f'{"".join(parts)}</svg>'
    )


def svg_split_bar(weights: Mapping[str, float], *, title: str, width: int = 240, height: int = 14) -> str:
    """One horizontal bar split by version weight (percent), for a table cell."""
    total = sum(w for w in weights.values() if w > 0)
    if total <= 0:
        return '<span class="muted">no traffic</span>'
    parts = [f"<title>{escape(title)}</title>"]
    x = 0.0
    for i, (version, w) in enumerate(weights.items()):
        if w <= 0:
            continue
        share = w / total * width
        parts.append(
            f'<rect x="{x:.1f}" y="0" width="{share:.1f}" height="{height}" fill="{COLORS[i % len(COLORS)]}">'
            f"<title>v{escape(version)}: {w:g}%</title></rect>"
        )
        x += share
    return f'<svg class="bar" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}">' + (
        "".join(parts) + "</svg>"
    )
