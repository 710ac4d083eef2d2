"""Drift reports: JSON, and a self-contained HTML page with inline SVG plots.

The page needs nothing from the network: no scripts, no stylesheets, no
fonts. For each drifted column it shows the reference's distribution next
to the window's (proportions per reference bin or category; for a drifted
missing share, the shares of missing and present values), and for every
column its effect size over the recent windows against the effect floor.
Missing-share tests are their own kind: listed apart, and keyed
``"<feature> (missing)"`` in the history.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

__all__ = ["build_report", "render_html"]

_REF_COLOUR = "#7a8ca3"
_CUR_COLOUR = "#d9534f"
_OK_COLOUR = "#2b7bb9"


def _bin_labels(ref: Mapping[str, Any]) -> list[str]:
    if ref.get("kind") == "numeric":
        cuts = [float(c) for c in ref.get("cuts", [])]
        if not cuts:
            return ["all"]
        labels = [f"< {cuts[0]:.4g}"]
        labels += [f"[{a:.4g}, {b:.4g})" for a, b in itertools.pairwise(cuts)]
        labels.append(f"≥ {cuts[-1]:.4g}")
        return labels
    return [*[str(c) for c in ref.get("categories", [])], "(other)"]


def _reference_counts(ref: Mapping[str, Any]) -> list[int]:
    counts = [int(c) for c in ref.get("counts", [])]
    return counts + ([int(ref.get("other", 0))] if ref.get("kind") == "categorical" else [])


def _proportions(counts: Sequence[int]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def build_report(
    model: str,
    version: str,
    reference: Mapping[str, Any] | None,
    reference_source: str | None,
    windows: Sequence[Mapping[str, Any]],
    incidents: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The report of a version from its reference profile and its drift windows (newest first).

    ``windows`` are rows of ``window_results`` for the signals ``data`` and
    ``prediction``. Columns drifted in the newest window get distributions.
    """
    latest: dict[str, Mapping[str, Any]] = {}
    for w in windows:
        latest.setdefault(w["signal"], w)
    ref_columns: dict[str, Any] = dict((reference or {}).get("features", {}))
    if reference and reference.get("prediction") is not None:
        ref_columns["prediction"] = reference["prediction"]
    drifted: list[dict[str, Any]] = []
    latest_out: dict[str, Any] = {}
    for signal, w in latest.items():
        ev = w["evidence"]
        latest_out[signal] = {
            "window_no": w["window_no"], "window": _window(w), "drifted": w["alarm"], "severity": w["severity"],
            "features": [_result(f) for f in ev.get("features", [])],
            "missing": [_result(f) for f in ev.get("missing", [])],
        }
        for f in ev.get("missing", []):
            if f.get("drifted"):
                d = f.get("detail") or {}
                ref_rate, cur_rate = d.get("reference_missing_rate"), d.get("current_missing_rate")
                hole: dict[str, Any] = {**_result(f), "signal": signal}
                if isinstance(ref_rate, int | float) and isinstance(cur_rate, int | float):
                    hole.update(bins=["present", "missing"], reference=[1 - ref_rate, ref_rate],
                                current=[1 - cur_rate, cur_rate])
                drifted.append(hole)
        for f in ev.get("features", []):
            if not f.get("drifted"):
                continue
            ref = ref_columns.get(f["name"])
            current = (ev.get("distributions") or {}).get(f["name"])
            entry: dict[str, Any] = {**_result(f), "signal": signal}
            if ref is not None and current is not None:
                ref_counts = _reference_counts(ref)
                if len(ref_counts) == len(current):
                    entry.update(kind=ref.get("kind"), bins=_bin_labels(ref),
                                 reference=_proportions(ref_counts), current=_proportions(current))
            drifted.append(entry)
    history: dict[str, list[dict[str, Any]]] = {}
    for w in reversed(windows):
        ev = w["evidence"]
        for f in [*ev.get("features", []), *ev.get("missing", [])]:
            key = f"{f['name']} (missing)" if f.get("kind") == "missing" else f["name"]
            history.setdefault(key, []).append({
                "window_no": w["window_no"], "window_end": _iso(w["window_end"]),
                "statistic": f.get("statistic"), "effect_size": f.get("effect_size"),
                "threshold": f.get("threshold"), "p_value": f.get("p_value"),
                "floor": (f.get("detail") or {}).get("effect_floor"), "drifted": f.get("drifted"),
                "method": f.get("method"),
            })
    return {
        "model": model,
        "version": version,
        "generated_at": _iso(datetime.now(UTC)),
        "reference": {"source": reference_source, "rows": (reference or {}).get("row_count")},
        "latest": latest_out,
        "drifted_features": drifted,
        "history": history,
        "incidents": [dict(i) for i in incidents],
    }


def _result(f: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: f.get(k) for k in ("name", "method", "statistic", "p_value", "threshold", "effect_size", "drifted")}
    out["kind"] = f.get("kind", "distribution")
    out["effect_kind"] = (f.get("detail") or {}).get("effect_kind")
    return out


def _window(w: Mapping[str, Any]) -> dict[str, Any]:
    return {"start": _iso(w["window_start"]), "end": _iso(w["window_end"]), "size": w["size"]}


def _iso(t: Any) -> str:
    if isinstance(t, datetime):
        return t.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return str(t)


# --------------------------------------------------------------------------- HTML


def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4g}"
    return _esc(x)


def bars_svg(labels: Sequence[str], reference: Sequence[float], current: Sequence[float], title: str) -> str:
    """Grouped bars: reference against current proportion per bin."""
    n = max(len(labels), 1)
    width, height, left, bottom, top = max(360, 34 * n + 60), 230, 44, 70, 24
    plot_w, plot_h = width - left - 10, height - bottom - top
    peak = max([*reference, *current, 1e-9])
    group = plot_w / n
    bar = max(group * 0.38, 1.0)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{_esc(title)}"><title>{_esc(title)}</title>',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#333"/>',
             f'<text x="{left - 6}" y="{top + 4}" font-size="10" text-anchor="end">{peak:.2f}</text>',
             f'<text x="{left - 6}" y="{top + plot_h}" font-size="10" text-anchor="end">0</text>']
    for i, lab in enumerate(labels):
        x0 = left + i * group + group * 0.1
        for j, (vals, colour) in enumerate(((reference, _REF_COLOUR), (current, _CUR_COLOUR))):
            v = vals[i] if i < len(vals) else 0.0
            h = plot_h * v / peak
            parts.append(f'<rect x="{x0 + j * bar:.1f}" y="{top + plot_h - h:.1f}" width="{bar:.1f}" '
                         f'height="{h:.1f}" fill="{colour}"><title>{_esc(lab)}: {v:.3f}</title></rect>')
        cx = left + i * group + group / 2
        parts.append(f'<text x="{cx:.1f}" y="{top + plot_h + 10}" font-size="9" text-anchor="end" '
                     f'transform="rotate(-45 {cx:.1f} {top + plot_h + 10})">{_esc(lab[:18])}</text>')
    parts.append(f'<rect x="{left}" y="4" width="10" height="10" fill="{_REF_COLOUR}"/>'
                 f'<text x="{left + 14}" y="13" font-size="11">reference</text>'
                 f'<rect x="{left + 90}" y="4" width="10" height="10" fill="{_CUR_COLOUR}"/>'
                 f'<text x="{left + 104}" y="13" font-size="11">current window</text></svg>')
    return "".join(parts)


def line_svg(points: Sequence[Mapping[str, Any]], title: str) -> str:
    """Effect size per window (dots red where drifted) with the effect floor as a dashed line."""
    values = [p.get("effect_size") for p in points]
    ys = [float(v) if isinstance(v, int | float) and math.isfinite(v) else 0.0 for v in values]
    floors = [float(f) for f in (p.get("floor") for p in points) if isinstance(f, int | float)]
    floor = floors[-1] if floors else None
    width, height, left, bottom, top = 420, 180, 44, 28, 16
    plot_w, plot_h = width - left - 10, height - bottom - top
    peak = max([*ys, floor or 0.0, 1e-9]) * 1.1
    n = len(ys)

    def x(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h - plot_h * v / peak

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{_esc(title)}"><title>{_esc(title)}</title>',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#333"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#333"/>',
             f'<text x="{left - 4}" y="{top + 4}" font-size="10" text-anchor="end">{peak:.3g}</text>',
             f'<text x="{left - 4}" y="{top + plot_h}" font-size="10" text-anchor="end">0</text>']
    if floor is not None:
        parts.append(f'<line x1="{left}" y1="{y(floor):.1f}" x2="{left + plot_w}" y2="{y(floor):.1f}" '
                     f'stroke="#999" stroke-dasharray="4 3"><title>effect floor {floor:.3g}</title></line>')
    if n > 1:
        path = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(ys))
        parts.append(f'<polyline points="{path}" fill="none" stroke="{_OK_COLOUR}" stroke-width="1.5"/>')
    for i, (p, v) in enumerate(zip(points, ys, strict=True)):
        colour = _CUR_COLOUR if p.get("drifted") else _OK_COLOUR
        parts.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}"><title>window '
                     f'{_esc(p.get("window_no"))}: effect {v:.4g}, statistic {_fmt(p.get("statistic"))}, '
                     f'p {_fmt(p.get("p_value"))}</title></circle>')
    if n:
        parts.append(f'<text x="{left}" y="{height - 8}" font-size="10">window {_esc(points[0].get("window_no"))}'
                     f'</text><text x="{left + plot_w}" y="{height - 8}" font-size="10" text-anchor="end">window '
                     f'{_esc(points[-1].get("window_no"))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: Mapping[str, Any]) -> str:
    """The report as one HTML document with inline SVG; no external resources."""
    title = f"Drift report — {report['model']} v{report['version']}"
    out = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>{_esc(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:24px;color:#222}"
        "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;"
        "font-size:13px;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
        ".drifted{color:#b52b27;font-weight:600}.figs{display:flex;flex-wrap:wrap;gap:16px}"
        "figure{margin:0}figcaption{font-size:13px;margin-bottom:4px}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        f"<p>Generated {_esc(report['generated_at'])}. Reference: {_esc(report['reference'].get('source'))}, "
        f"{_fmt(report['reference'].get('rows'))} rows.</p>",
    ]
    for signal, w in report.get("latest", {}).items():
        win = w["window"]
        verdict = f"<span class=\"drifted\">drift ({_esc(w['severity'])})</span>" if w["drifted"] else "no drift"
        out.append(f"<h2>Latest {_esc(signal)} window #{_esc(w['window_no'])}: {verdict}</h2>"
                   f"<p>{_esc(win['start'])} to {_esc(win['end'])}, {_esc(win['size'])} rows.</p>")
        for heading, rows in (("Distribution", w["features"]), ("Missing share (null or absent)",
                                                                 w.get("missing", []))):
            if not rows:
                continue
            out.append(f"<h3>{_esc(heading)}</h3><table><tr><th>column</th><th>method</th><th>statistic</th>"
                       "<th>p-value</th><th>threshold</th><th>effect size</th><th>effect unit</th>"
                       "<th>drifted</th></tr>")
            for f in rows:
                cls = " class=\"drifted\"" if f.get("drifted") else ""
                out.append(f"<tr{cls}><td>{_esc(f['name'])}</td><td>{_esc(f['method'])}</td>"
                           f"<td>{_fmt(f['statistic'])}</td><td>{_fmt(f['p_value'])}</td>"
                           f"<td>{_fmt(f['threshold'])}</td><td>{_fmt(f['effect_size'])}</td>"
                           f"<td>{_fmt(f.get('effect_kind'))}</td><td>{'yes' if f.get('drifted') else 'no'}</td></tr>")
            out.append("</table>")
    if report.get("drifted_features"):
        out.append("<h2>Reference against current distribution</h2><div class=\"figs\">")
        for f in report["drifted_features"]:
            if "bins" not in f:
                continue
            what = " missing share" if f.get("kind") == "missing" else ""
            caption = (f"{f['name']}{what} — {f['method']} statistic {_fmt(f['statistic'])}, "
                       f"p {_fmt(f['p_value'])}, effect {_fmt(f['effect_size'])}")
            out.append(f"<figure><figcaption>{_esc(caption)}</figcaption>"
                       f"{bars_svg(f['bins'], f['reference'], f['current'], caption)}</figure>")
        out.append("</div>")
    if report.get("history"):
        out.append("<h2>Effect size over time</h2><div class=\"figs\">")
        drifted_names = {f["name"] for f in report.get("drifted_features", [])}
        names = sorted(report["history"], key=lambda n: (n not in drifted_names, n))
        for name in names:
            out.append(f"<figure><figcaption>{_esc(name)}</figcaption>"
                       f"{line_svg(report['history'][name], f'{name} effect size per window')}</figure>")
        out.append("</div>")
    if report.get("incidents"):
        out.append("<h2>Incidents</h2><table><tr><th>id</th><th>signal</th><th>opened</th><th>resolved</th></tr>")
        for i in report["incidents"]:
            out.append(f"<tr><td>{_esc(i.get('id'))}</td><td>{_esc(i.get('signal'))}</td>"
                       f"<td>{_esc(i.get('opened_at'))}</td><td>{_esc(i.get('resolved_at') or 'open')}</td></tr>")
        out.append("</table>")
    out.append("</body></html>")
    return "".join(out)
