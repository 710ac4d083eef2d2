"""Pure shaping of the services' answers into what the pages show.

No I/O here: every function takes decoded JSON and returns plain values, so
the page logic is tested without a browser or a service.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

__all__ = [
    "ACTIVE_PHASES",
    "drift_plots",
    "drift_verdict",
    "model_row",
    "parse_time",
    "traffic_series",
]

JSON = dict[str, Any]

#: Rollout phases in which traffic can still change (the page refreshes itself).
ACTIVE_PHASES = frozenset({"initialized", "shadowing", "progressing", "paused", "promoting"})
#: Retrain job states that have not ended.
OPEN_JOB_STATES = frozenset({"requested", "awaiting-confirmation", "dispatched", "running"})


def parse_time(value: Any) -> float | None:
    """Unix seconds of an ISO-8601 timestamp, or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def drift_verdict(status: JSON | None, versions: Sequence[str]) -> tuple[str, str]:
    """``(label, tone)`` of the latest drift windows of the given versions (tone: ok, bad, warn, muted).

    ``drifted`` when any latest data or prediction window of one of them raised an alarm.
    """
    if not status:
        return "not monitored", "muted"
    seen = False
    for v in status.get("versions", []):
        if v.get("version") not in versions:
            continue
        for signal, window in (v.get("last_windows") or {}).items():
            seen = True
            if window.get("alarm"):
                severity = window.get("severity") or ""
                return f"drifted ({signal}{', ' + severity if severity else ''})", "bad"
    return ("no drift", "ok") if seen else ("no window yet", "muted")


def model_row(model: JSON, status: JSON | None, rollout: JSON | None, job: JSON | None) -> JSON:
    """One line of the models page: champion and challengers, live split, drift, incidents, rollout, retrain."""
    aliases: Mapping[str, str] = model.get("aliases") or {}
    champion = aliases.get("champion")
    challengers = sorted({v for a, v in aliases.items() if a != "champion" and v != champion})
    split: dict[str, float] = {}
    shadows: list[str] = []
    incidents = 0
    for v in (status or {}).get("versions", []):
        incidents += len(v.get("open_incidents") or [])
        weight = v.get("traffic_weight")
        if weight is None:
            continue
        if v.get("shadow"):
            shadows.append(str(v["version"]))
        else:
            split[str(v["version"])] = round(100 * float(weight), 1)
    if rollout is not None and rollout.get("phase") in ACTIVE_PHASES:
        if rollout.get("candidate") not in challengers:
            challengers.append(str(rollout.get("candidate")))
        split, shadows = {}, []
        for r in rollout.get("routes", []):
            if r.get("shadow"):
                shadows.append(str(r["version"]))
            else:
                split[str(r["version"])] = round(100 * float(r["weight"]), 1)
    if not split and champion:
        split = {champion: 100.0}
    serving = [v for v, w in split.items() if w > 0]
    verdict, tone = drift_verdict(status, serving + shadows)
    return {
        "name": model["name"],
        "description": model.get("description"),
        "champion": champion,
        "challengers": challengers,
        "latest": model.get("latest_version"),
        "split": split,
        "shadows": shadows,
        "drift": verdict,
        "drift_tone": tone,
        "incidents": incidents,
        "rollout": rollout if rollout is not None and rollout.get("phase") in ACTIVE_PHASES else None,
        "job": job,
    }


def traffic_series(history: Iterable[JSON], *, until: float | None = None) -> dict[str, list[tuple[float, float]]]:
    """Serving weight (percent) of each version over time, from a rollout's ``traffic-split-changed`` entries.

    Shadow routes get no serving traffic; they are shown as ``v<N> (shadow)`` at their mirrored share.
    """
    series: dict[str, list[tuple[float, float]]] = {}
    last: dict[str, float] = {}
    for entry in history:
        if entry.get("kind") != "traffic-split-changed":
            continue
        t = parse_time(entry.get("at"))
        if t is None:
            continue
        now: dict[str, float] = {}
        for r in (entry.get("data") or {}).get("routes", []):
            name = f"v{r['version']}" + (" (shadow)" if r.get("shadow") else "")
            now[name] = 100 * float(r.get("weight", 0))
        for name in set(last) | set(now):
            series.setdefault(name, []).append((t, now.get(name, 0.0)))
        last = now
    if until is not None:
        for points in series.values():
            if points and points[-1][0] < until:
                points.append((until, points[-1][1]))
    return series


def _significance(p_value: float | None) -> float | None:
    if p_value is None or p_value <= 0:
        return None if p_value is None else 300.0
    return -math.log10(p_value)


def drift_plots(windows: Iterable[JSON]) -> dict[str, JSON]:
    """Per version and kind, the series of each feature over time, with its threshold.

    A feature tested with a p-value is plotted as -log10(p) against -log10 of its
    significance threshold (above the line = drifted); a feature with only a
    statistic (PSI, a distance) is plotted as the statistic against its threshold.
    Returns ``{"<version>/<kind>": {"version", "kind", "scale", "series", "thresholds", "latest"}}``.
    """
    plots: dict[str, JSON] = {}
    for w in sorted(windows, key=lambda w: (parse_time((w.get("window") or {}).get("end")) or 0.0, w.get("id", 0))):
        t = parse_time((w.get("window") or {}).get("end"))
        if t is None:
            continue
        key = f"{w.get('version')}/{w.get('kind')}"
        plot = plots.setdefault(
            key, {"version": w.get("version"), "kind": w.get("kind"), "series": {}, "thresholds": {}, "latest": w,
                  "scale": "-log10(p)"},
        )
        plot["latest"] = w
        for f in w.get("features", []):
            name = str(f.get("name"))
            if f.get("p_value") is not None:
                value, limit = _significance(f.get("p_value")), _significance(f.get("threshold"))
            else:
                value, limit = f.get("statistic"), f.get("threshold")
                plot["scale"] = "statistic / -log10(p)"
            if value is None:
                continue
            plot["series"].setdefault(name, []).append((t, float(value)))
            if limit is not None:
                plot["thresholds"][name] = float(limit)
    for plot in plots.values():
        limits = set(plot["thresholds"].values())
        # One dashed line when the features share a threshold, else one per feature would clutter the plot.
        plot["threshold_lines"] = (
            {"threshold": limits.pop()} if len(limits) == 1 else {"max threshold": max(limits)} if limits else {}
        )
    return plots
