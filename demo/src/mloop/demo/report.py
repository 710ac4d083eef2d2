"""The demo's report: printed in the terminal and written as one self-contained HTML page.

Sections: the cycle time and each step's share, drift statistics per feature,
the rollout's gates and traffic over time, model quality before and after,
and the audit verification. Plots are inline SVG; the page needs nothing else.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mloop.demo.run import DemoResult

__all__ = ["build_report", "print_report", "write_html"]

_STEPS = (
    ("scheduling", "drift_detected", "retrain_requested"),
    ("training", "retrain_requested", "registered"),
    ("validation", "registered", "validated"),
    ("review", "validated", "promoted"),
    ("rollout", "promoted", "rollout_finished"),
)
_COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f"]


def _r(x: float | None, n: int = 2) -> float | None:
    return None if x is None else round(float(x), n)


def build_report(result: DemoResult) -> dict[str, Any]:
    """Everything the report shows, as JSON-safe data."""
    m = result.marks
    prof = result.profile
    steps: list[dict[str, Any]] = []
    for name, a, b in _STEPS:
        if a in m and b in m:
            # Events written in one transaction can carry times a few microseconds apart in
            # either order; a step never takes negative time.
            steps.append({"name": name, "seconds": round(max(0.0, m[b] - m[a]), 3)})
    cycle = (
        _r(m["rollout_finished"] - m["drift_detected"], 3) if {"rollout_finished", "drift_detected"} <= set(m) else None
    )
    for s in steps:
        s["share"] = round(float(s["seconds"]) / cycle, 4) if cycle else None
    trained = next((t for t in result.trainer if t.get("event") == "trained"), {})
    training_s = float(trained.get("job_seconds") or 0.0)
    configured_obs = 0.0
    if prof is not None:
        configured_obs = prof.shadow_s + prof.step_min_s * len(prof.steps)
    rollout_s = next((s["seconds"] for s in steps if s["name"] == "rollout"), None)
    observation = configured_obs if result.outcome == "completed" else float(rollout_s or 0.0)
    observation = min(observation, float(rollout_s or observation))
    # A job that waits for post-signal data waits by policy, like an observation window.
    wait = (result.job or {}).get("data_wait") or {}
    waited = wait.get("ended_at") is not None
    data_wait_s = 0.0
    if waited:
        data_wait_s = (datetime.fromisoformat(wait["ended_at"]) - datetime.fromisoformat(wait["since"])).total_seconds()
        data_wait_s = max(0.0, data_wait_s)
    overhead = _r(cycle - data_wait_s - training_s - observation, 3) if cycle is not None else None
    job = result.job or {}

    drift = result.drift_event
    features = []
    if drift is not None:
        for f in drift.features:
            features.append(
                {
                    "name": f.name,
                    "method": f.method,
                    "statistic": _r(f.statistic, 5),
                    "p_value": None if f.p_value is None else float(f"{f.p_value:.3g}"),
                    "threshold": _r(f.threshold, 5),
                    "drifted": f.drifted,
                    "effect_size": _r(f.effect_size, 4) if f.effect_size is not None else None,
                }
            )
    rollout = result.rollout or {}
    history = []
    t0_wall: datetime | None = None
    for h in rollout.get("history", []):
        at = datetime.fromisoformat(str(h["at"]))
        t0_wall = t0_wall or at
        d = h.get("data") or {}
        history.append(
            {
                "t": _r((at - t0_wall).total_seconds(), 1),
                "kind": h.get("kind"),
                "phase": d.get("phase"),
                "weight": d.get("weight"),
                "reason": d.get("reason"),
                "routes": d.get("routes"),
                "gates": d.get("gates"),
            }
        )
    analyses = []
    for a in rollout.get("analyses", []):
        at = datetime.fromisoformat(str(a["at"]))
        d = a.get("data") or {}
        analyses.append(
            {
                "t": _r((at - t0_wall).total_seconds(), 1) if t0_wall else None,
                "phase": d.get("phase"),
                "weight": d.get("weight"),
                "gates": d.get("gates", []),
            }
        )
    cycle_event = result.cycle_event
    initial = result.initial
    return {
        "meta": {
            "scenario": result.scenario,
            "size": result.size,
            "model": result.model,
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "champion_before": result.champion_before,
            "candidate": result.candidate,
            "champion_after": result.champion_after,
            "outcome": result.outcome,
            "trigger": result.trigger,
        },
        "cycle": {
            "detection_seconds": _r(m["first_signal"] - m["drift_injected"], 3)
            if {"first_signal", "drift_injected"} <= set(m)
            else None,
            "cycle_seconds": cycle,
            "steps": steps,
            "training_seconds": _r(training_s, 3),
            "fit_seconds": trained.get("train_seconds"),
            "observation_seconds": _r(observation, 3),
            "data_wait_seconds": _r(data_wait_s, 3),
            "platform_overhead_seconds": overhead,
            "scheduler_recorded": {
                "cycle_seconds": _r(cycle_event.cycle_seconds, 3),
                "outcome": cycle_event.outcome,
                "steps": cycle_event.steps,
                "sla_seconds": cycle_event.sla_seconds,
                "sla_breached": cycle_event.sla_breached,
            }
            if cycle_event is not None
            else None,
        },
        "drift": {
            "kind": getattr(drift, "kind", None),
            "severity": getattr(drift, "severity", None),
            "version": getattr(drift, "version", None),
            "window": drift.window.model_dump(mode="json") if drift is not None else None,
            "correction": getattr(drift, "correction", None),
            "features": features,
        },
        "rollout": {
            "id": rollout.get("id"),
            "strategy": rollout.get("strategy"),
            "phase": rollout.get("phase"),
            "reason": rollout.get("reason"),
            "steps": rollout.get("steps"),
            "history": history,
            "analyses": analyses,
            "final_gates": rollout.get("gates", []),
        },
        "traffic": result.simulator.get("traffic", []),
        "quality": {
            "live": result.simulator.get("quality", []),
            "versions": result.simulator.get("versions", {}),
            "offline": result.offline_quality,
            "registered_metrics": {
                **({result.champion_before: initial.metrics} if initial else {}),
                **({str(trained["version"]): trained.get("metrics")} if trained else {}),
            },
        },
        "training": {
            "job": trained,
            "lineage_dataset_sha256": trained.get("dataset_sha256"),
            "scheduler_job": {
                "id": job.get("id"),
                "trigger": job.get("trigger"),
                "first_signal_at": job.get("first_signal_at"),
                "data_window": job.get("data_window"),
                "data_wait": wait or None,
            },
        },
        "steady_state": result.steady,
        "audit": {k: v for k, v in result.audit.items() if k != "live"}
        | {
            "live_ok": (result.audit.get("live") or {}).get("ok"),
            "live_summary": _audit_summary(result.audit.get("live") or {}),
        },
        "timeline": [
            {"t": _r(s.at - result.started, 2), "topic": s.topic, "id": s.event.id, "actor": s.event.actor}
            for s in result.events
        ],
    }


def _audit_summary(live: dict[str, Any]) -> str:
    chains = live.get("chains") or []
    if isinstance(chains, list):
        rows = sum(int(c.get("rows", c.get("size", 0)) or 0) for c in chains if isinstance(c, dict))
        return f"{len(chains)} chains, {rows} rows replayed"
    return ""


# --------------------------------------------------------------------------- terminal


def print_report(report: dict[str, Any], console: Console) -> None:
    meta, cyc = report["meta"], report["cycle"]
    console.rule(f"mloop demo report - {meta['model']} ({meta['scenario']})")
    outcome = (
        f"v{meta['candidate']} {meta['outcome']}; champion v{meta['champion_before']} -> v{meta['champion_after']}"
    )
    console.print(f"[bold]{outcome}[/bold]")
    console.print(f"retraining was triggered by {meta.get('trigger')}")
    t = Table(title="cycle time: drift signal -> redeployed (or rolled back)", show_header=True)
    t.add_column("step")
    t.add_column("seconds", justify="right")
    t.add_column("share", justify="right")
    for s in cyc["steps"]:
        t.add_row(s["name"], f"{s['seconds']:.2f}", f"{(s['share'] or 0):.0%}")
    t.add_row("[bold]cycle[/bold]", f"[bold]{cyc['cycle_seconds']:.2f}[/bold]", "100%")
    console.print(t)
    console.print(
        f"drift injected -> detected: {cyc['detection_seconds']}s;  training job: "
        f"{cyc['training_seconds']}s (fit {cyc['fit_seconds']}s);  post-signal data wait: "
        f"{cyc['data_wait_seconds']}s;  configured observation: "
        f"{cyc['observation_seconds']}s;  [bold]platform overhead: {cyc['platform_overhead_seconds']}s"
        f"[/bold]"
    )
    sj = report["training"]["scheduler_job"]
    if sj.get("data_wait"):
        w, window = sj["data_wait"], sj["data_window"] or {}
        console.print(
            f"training window {window.get('start')} .. {window.get('end')}: waited for {w.get('rows')} "
            f"post-signal rows (policy {w.get('min_rows')}, {w.get('outcome')})"
        )
    if cyc.get("scheduler_recorded"):
        sr = cyc["scheduler_recorded"]
        console.print(
            f"retrain scheduler recorded: {sr['cycle_seconds']}s ({sr['outcome']}), "
            f"SLA {sr['sla_seconds']}s, breached: {sr['sla_breached']}"
        )
    d = Table(title=f"drift ({report['drift']['kind']}, severity {report['drift']['severity']})")
    for c in ("feature", "method", "statistic", "p-value", "threshold", "drifted"):
        d.add_column(c)
    for f in report["drift"]["features"]:
        d.add_row(
            f["name"],
            f["method"],
            str(f["statistic"]),
            str(f["p_value"]),
            str(f["threshold"]),
            "[red]yes[/red]" if f["drifted"] else "no",
        )
    console.print(d)
    g = Table(title="rollout gates (final analysis)")
    for c in ("gate", "outcome", "value", "baseline", "threshold", "detail"):
        g.add_column(c)
    for gate in report["rollout"]["final_gates"]:
        g.add_row(
            gate.get("name", ""),
            gate.get("outcome", ""),
            str(_r(gate.get("value"), 4)),
            str(_r(gate.get("baseline"), 4)),
            str(gate.get("threshold")),
            str(gate.get("detail", ""))[:60],
        )
    console.print(g)
    q = Table(title="model quality on fresh applicants (offline, artifacts as served)")
    for c in ("version", "AUC before drift", "AUC after drift", "accuracy after", "log-loss after", "errors"):
        q.add_column(c)
    for v, row in report["quality"]["offline"].items():
        a, b = row.get("before_drift", {}), row.get("after_drift", {})
        q.add_row(
            f"v{v}",
            str(a.get("auc", a.get("error"))),
            str(b.get("auc", b.get("error"))),
            str(b.get("accuracy", "")),
            str(b.get("log_loss", "")),
            f"{b.get('error_rate', 0):.1%}",
        )
    console.print(q)
    live = report["quality"]["versions"]
    if live:
        lq = Table(title="live quality in the serving simulator (joined delayed labels)")
        for c in ("version", "served", "shadow", "errors", "accuracy"):
            lq.add_column(c)
        for v, c in live.items():
            lq.add_row(f"v{v}", str(c["requests"]), str(c["shadow"]), str(c["errors"]), str(c["accuracy"]))
        console.print(lq)
    steady = report.get("steady_state") or {}
    if steady:
        st = Table(title=f"steady state: {steady['settle_seconds']:g}s of drifted traffic after the rollout ended")
        for c in (
            "champion",
            "drift signals (champion)",
            "drift signals (any version)",
            "performance signals",
            "retrain jobs",
            "retrain-requested",
        ):
            st.add_column(c, justify="right")
        st.add_row(
            f"v{steady['champion']}",
            str(steady["drift_signals_champion"]),
            str(steady["drift_signals"]),
            str(steady["performance_signals"]),
            str(steady["retrain_jobs"]),
            str(steady["retrain_requested"]),
        )
        console.print(st)
        for sig in steady.get("signals", []):
            console.print(f"  +{sig['t']}s {sig['topic']}: {sig['detail']}")
    au = report["audit"]
    console.print(
        f"audit: [bold]{'verified' if au.get('ok') else 'NOT verified'}[/bold] - "
        f"{au.get('events_recorded')}/{au.get('events_expected')} of this run's events in the ledger; "
        f"live replay ok={au.get('live_ok')}; offline bundle ok={(au.get('offline') or {}).get('ok')}"
    )


# --------------------------------------------------------------------------- SVG


def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def svg_stacked_bar(segments: Sequence[tuple[str, float]], width: int = 760) -> str:
    total = sum(v for _, v in segments) or 1.0
    x, parts, legend = 0.0, [], []
    for i, (name, v) in enumerate(segments):
        w = v / total * (width - 20)
        color = _COLORS[i % len(_COLORS)]
        parts.append(
            f'<rect x="{10 + x:.1f}" y="10" width="{max(w, 0.5):.1f}" height="34" fill="{color}">'
            f"<title>{_esc(name)}: {v:.2f}s ({v / total:.0%})</title></rect>"
        )
        if w > 46:
            parts.append(
                f'<text x="{10 + x + w / 2:.1f}" y="32" text-anchor="middle" fill="#fff" '
                f'font-size="12">{v / total:.0%}</text>'
            )
        legend.append(
            f'<rect x="{10 + i * 130}" y="56" width="12" height="12" fill="{color}"/>'
            f'<text x="{26 + i * 130}" y="67" font-size="12">{_esc(name)} {v:.1f}s</text>'
        )
        x += w
    return f'<svg viewBox="0 0 {width} 80" width="{width}" height="80">{"".join(parts)}{"".join(legend)}</svg>'


def _evidence(f: dict[str, Any]) -> float:
    threshold = float(f["threshold"])
    p = f.get("p_value")
    if p is not None and 0 < threshold < 1:
        return -math.log10(max(float(p), 1e-300)) / -math.log10(threshold)
    return abs(float(f["statistic"])) / threshold


def svg_feature_bars(features: Sequence[dict[str, Any]], width: int = 760) -> str:
    """Evidence against "no drift" per feature, relative to its threshold; beyond 1 is past it.

    For a test with a p-value the threshold is a significance level, so the
    evidence is -log10(p) / -log10(threshold); for a distance it is statistic / threshold.
    """
    rows = [f for f in features if f.get("threshold")]
    if not rows:
        return "<p>No per-feature statistics.</p>"
    h = 22 * len(rows) + 40
    ratios = [_evidence(f) for f in rows]
    top = max(2.0, max(ratios))
    scale = (width - 260) / math.log10(1 + top)
    parts = []
    for i, (f, r) in enumerate(zip(rows, ratios, strict=True)):
        y = 10 + i * 22
        w = math.log10(1 + r) * scale
        color = "#e15759" if f["drifted"] else "#9aa5b1"
        parts.append(
            f'<text x="150" y="{y + 14}" text-anchor="end" font-size="12">{_esc(f["name"])}</text>'
            f'<rect x="160" y="{y + 3}" width="{max(w, 1):.1f}" height="15" fill="{color}">'
            f"<title>{_esc(f['method'])}: statistic {f['statistic']}, threshold {f['threshold']}, "
            f"p={f['p_value']}</title></rect>"
            f'<text x="{166 + w:.1f}" y="{y + 14}" font-size="11">{_esc(f["method"])} {r:.2f}x</text>'
        )
    x1 = 160 + math.log10(2) * scale
    parts.append(
        f'<line x1="{x1:.1f}" y1="5" x2="{x1:.1f}" y2="{h - 25}" stroke="#333" stroke-dasharray="4 3"/>'
        f'<text x="{x1:.1f}" y="{h - 8}" font-size="11" text-anchor="middle">threshold</text>'
    )
    return f'<svg viewBox="0 0 {width} {h}" width="{width}" height="{h}">{"".join(parts)}</svg>'


def svg_lines(
    series: dict[str, list[tuple[float, float]]],
    *,
    y_label: str,
    x_label: str = "seconds",
    y_range: tuple[float, float] | None = None,
    marks: Sequence[tuple[float, str]] = (),
    width: int = 760,
    height: int = 260,
) -> str:
    pts = [p for s in series.values() for p in s]
    if not pts:
        return "<p>No data.</p>"
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = y_range or (min(p[1] for p in pts), max(p[1] for p in pts))
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y1 = y0 + 1
    left, right, top, bottom = 50, 20, 14, 40

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def sy(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * (height - top - bottom)

    parts = [
        f'<line x1="{left}" y1="{sy(y0):.1f}" x2="{width - right}" y2="{sy(y0):.1f}" stroke="#999"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{sy(y0):.1f}" stroke="#999"/>',
    ]
    for k in range(5):
        yv = y0 + (y1 - y0) * k / 4
        parts.append(
            f'<text x="{left - 6}" y="{sy(yv) + 4:.1f}" font-size="10" text-anchor="end">{yv:.2f}</text>'
            f'<line x1="{left}" y1="{sy(yv):.1f}" x2="{width - right}" y2="{sy(yv):.1f}" stroke="#eee"/>'
        )
        xv = x0 + (x1 - x0) * k / 4
        parts.append(f'<text x="{sx(xv):.1f}" y="{height - 22}" font-size="10" text-anchor="middle">{xv:.0f}</text>')
    parts.append(
        f'<text x="{width / 2}" y="{height - 6}" font-size="11" text-anchor="middle">{_esc(x_label)}</text>'
        f'<text x="12" y="{height / 2}" font-size="11" transform="rotate(-90 12 {height / 2})" '
        f'text-anchor="middle">{_esc(y_label)}</text>'
    )
    for xm, label in marks:
        parts.append(
            f'<line x1="{sx(xm):.1f}" y1="{top}" x2="{sx(xm):.1f}" y2="{sy(y0):.1f}" stroke="#e15759" '
            f'stroke-dasharray="3 3"/><text x="{sx(xm) + 3:.1f}" y="{top + 10}" font-size="10" '
            f'fill="#e15759">{_esc(label)}</text>'
        )
    for i, (name, s) in enumerate(series.items()):
        color = _COLORS[i % len(_COLORS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in sorted(s))
        parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        parts.append(
            f'<rect x="{width - right - 120}" y="{top + 4 + i * 16}" width="10" height="10" '
            f'fill="{color}"/><text x="{width - right - 105}" y="{top + 13 + i * 16}" '
            f'font-size="11">{_esc(name)}</text>'
        )
    return f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}">{"".join(parts)}</svg>'


def _traffic_series(traffic: list[dict[str, Any]]) -> tuple[dict[str, list[tuple[float, float]]], list[float]]:
    series: dict[str, list[tuple[float, float]]] = {}
    drift_at: list[float] = []
    versions = sorted({v for t in traffic for v in t["counts"]}, key=lambda v: int(v) if v.isdigit() else 0)
    for t in traffic:
        total = sum(t["counts"].values())
        if t.get("drifted") and not drift_at:
            drift_at.append(float(t["t"]))
        if not total:
            continue
        for v in versions:
            series.setdefault(f"v{v}", []).append((float(t["t"]), t["counts"].get(v, 0) / total))
    return series, drift_at


def _steady_html(steady: dict[str, Any], job: dict[str, Any]) -> str:
    if not steady:
        return "<p>No steady-state period (the rollout did not end).</p>"
    quiet = steady["drift_signals_champion"] == 0 and steady["retrain_jobs"] == 0
    wait = job.get("data_wait") or {}
    window = job.get("data_window") or {}
    trained_on = (
        f"<p>The retrain job trained on {_esc(window.get('start'))} .. {_esc(window.get('end'))}: it waited for "
        f"{_esc(wait.get('rows'))} predictions made after the first signal ({_esc(wait.get('outcome'))}) "
        f"before asking for a window that holds them.</p>"
        if wait
        else ""
    )
    return (
        f'{trained_on}<p class="outcome" style="border-color:{"#59a14f" if quiet else "#e15759"}">'
        f"For {steady['settle_seconds']:g} s after the rollout ended the simulator kept serving the drifted "
        f"world: v{_esc(steady['champion'])} raised <b>{steady['drift_signals_champion']}</b> drift signal(s) "
        f"({steady['drift_signals']} for any version, {steady['performance_signals']} performance signal(s)); "
        f"<b>{steady['retrain_jobs']}</b> retrain job(s) were created and {steady['retrain_requested']} "
        f"requested.</p>" + _table(steady.get("signals", []), ["t", "topic", "detail"])
    )


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_esc('' if r.get(c) is None else r.get(c))}</td>" for c in columns) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_html(report: dict[str, Any], folder: Path) -> Path:
    """Write ``demo-<scenario>-<model>.html`` (and the report's JSON next to it); return the HTML path."""
    meta, cyc = report["meta"], report["cycle"]
    traffic, drift_at = _traffic_series(report["traffic"])
    marks = [(x, "drift injected") for x in drift_at]
    acc: dict[str, list[tuple[float, float]]] = {}
    for q in report["quality"]["live"]:
        for v, a in q["accuracy"].items():
            if q["labelled"].get(v, 0) >= 20:
                acc.setdefault(f"v{v}", []).append((float(q["t"]), float(a)))
    offline_rows = []
    for v, row in report["quality"]["offline"].items():
        for when in ("before_drift", "after_drift"):
            offline_rows.append({"version": f"v{v}", "applicants": when.replace("_", " "), **row.get(when, {})})
    gates_rows = [
        {"t": a["t"], "phase": a["phase"], "weight": a["weight"], **g}
        for a in report["rollout"]["analyses"]
        for g in a["gates"]
    ][-60:]
    history_rows = [
        {k: h.get(k) for k in ("t", "kind", "phase", "weight", "reason")} for h in report["rollout"]["history"]
    ]
    au = report["audit"]
    offline = au.get("offline") or {}
    lifecycle = (au.get("lifecycle") or {}).get("steps", [])
    outcome_color = "#59a14f" if (meta["outcome"] == "completed") == (meta["scenario"] == "happy") else "#e15759"
    body = f"""
<h1>mloop demo: {_esc(meta["model"])} <small>({_esc(meta["scenario"])}, size {_esc(meta["size"])})</small></h1>
<p class="outcome" style="border-color:{outcome_color}">v{_esc(meta["candidate"])} rollout
<b>{_esc(meta["outcome"])}</b>; champion v{_esc(meta["champion_before"])} &rarr; v{_esc(meta["champion_after"])}.
Generated {_esc(meta["generated_at"])}.</p>

<h2>Cycle time</h2>
<p>From the first signal the retrain scheduler counted ({_esc(meta.get("trigger"))}) to the redeployed
(or rolled-back) model: <b>{cyc["cycle_seconds"]} s</b>.
Drift was detected {cyc["detection_seconds"]} s after it was injected. The training job took
{cyc["training_seconds"]} s (fit {cyc["fit_seconds"]} s); the rollout's configured observation windows
{cyc["observation_seconds"]} s; the retrain job waited {cyc["data_wait_seconds"]} s for post-signal data
(policy); <b>platform overhead {cyc["platform_overhead_seconds"]} s</b>
(cycle minus data wait minus training minus observation).</p>
{svg_stacked_bar([(s["name"], float(s["seconds"] or 0)) for s in cyc["steps"]])}
{_table(cyc["steps"], ["name", "seconds", "share"])}
<p>Recorded by the retrain scheduler: {_esc(json.dumps(cyc.get("scheduler_recorded")))}</p>

<h2>Drift statistics per feature</h2>
<p>{_esc(report["drift"]["kind"])} drift on v{_esc(report["drift"]["version"])}, severity
<b>{_esc(report["drift"]["severity"])}</b>, window {_esc(json.dumps(report["drift"]["window"]))},
correction {_esc(report["drift"]["correction"])}. Bars: evidence relative to the threshold,
-log10(p) / -log10(threshold) for tests (log scale); a red bar drifted (it also passed the
effect-size floor).</p>
{svg_feature_bars(report["drift"]["features"])}
{_table(report["drift"]["features"], ["name", "method", "statistic", "p_value", "threshold", "effect_size", "drifted"])}

<h2>Rollout: traffic over time and gates</h2>
<p>Rollout {_esc(report["rollout"]["id"])}: {_esc(report["rollout"]["strategy"])}, steps
{_esc(report["rollout"]["steps"])}, final phase <b>{_esc(report["rollout"]["phase"])}</b> -
{_esc(report["rollout"]["reason"])}</p>
{svg_lines(traffic, y_label="share of served traffic", y_range=(0.0, 1.0), marks=marks)}
<h3>History</h3>
{_table(history_rows, ["t", "kind", "phase", "weight", "reason"])}
<h3>Gate results per analysis</h3>
{_table(gates_rows, ["t", "phase", "weight", "name", "outcome", "value", "baseline", "threshold", "detail"])}

<h2>Model quality before and after</h2>
<p>Live accuracy per version in 5-second windows of joined, delayed labels (serving simulator):</p>
{svg_lines(acc, y_label="accuracy", marks=marks)}
<p>Offline, each artifact as served, on 4,000 fresh applicants from before and after the drift:</p>
{_table(offline_rows, ["version", "applicants", "auc", "log_loss", "accuracy", "brier", "error_rate"])}
<p>Metrics registered with each version (5-fold cross-validation on its training window):
{_esc(json.dumps(report["quality"]["registered_metrics"]))}</p>

<h2>Steady state</h2>
{_steady_html(report.get("steady_state") or {}, report["training"]["scheduler_job"])}

<h2>Audit verification</h2>
<p class="outcome" style="border-color:{"#59a14f" if au.get("ok") else "#e15759"}">
Ledger <b>{"verified" if au.get("ok") else "NOT verified"}</b>: {au.get("events_recorded")} of
{au.get("events_expected")} governance events of this run are in the ledger; live replay
ok={_esc(au.get("live_ok"))} ({_esc(au.get("live_summary"))}); offline evidence bundle
ok={_esc(offline.get("ok"))} ({_esc(au.get("bundle"))}).</p>
{_table(lifecycle, ["stage", "detail", "time", "actor", "chain", "seq"])}

<h2>Timeline</h2>
{_table(report["timeline"], ["t", "topic", "actor", "id"])}
"""
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>mloop demo report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:820px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;font-size:12px;margin:.5em 0}}td,th{{border:1px solid #ddd;padding:3px 6px}}
th{{background:#f4f4f4}}.outcome{{border-left:5px solid;padding:.4em .8em;background:#fafafa}}
h2{{margin-top:1.6em;border-bottom:1px solid #eee}}</style></head><body>{body}</body></html>"""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"demo-{meta['scenario']}-{meta['model']}"
    path = folder / f"{stem}.html"
    path.write_text(page, encoding="utf-8")
    (folder / f"{stem}.json").write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    (folder / f"demo-{meta['scenario']}-latest.html").write_text(page, encoding="utf-8")
    return path
