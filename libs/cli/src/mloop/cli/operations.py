"""``mloop rollout``, ``mloop drift`` and ``mloop retrain``: the loop in operation."""

from __future__ import annotations

import json
import time
import webbrowser
from pathlib import Path
from typing import Annotated, Any

import typer

from mloop.cli._context import JsonOpt, console, run_api, show, state
from mloop.client import MloopClient

rollout = typer.Typer(help="Progressive rollouts: status and operator actions.", no_args_is_help=True)
drift = typer.Typer(help="Drift status, history and reports from the monitor.", no_args_is_help=True)
retrain = typer.Typer(help="Retrain policies, jobs and cycle time.", no_args_is_help=True)

_ROLLOUT_COLUMNS = [
    "id",
    "model",
    "candidate",
    "baseline",
    "strategy",
    "phase",
    "weight",
    "failed_checks",
    "created_at",
]
_JOB_COLUMNS = ["id", "model", "state", "trigger", "requested_at", "produced_version"]

_TERMINAL_PHASES = {"completed", "rolled-back", "aborted"}


# --------------------------------------------------------------------------- rollout


async def _resolve_rollout(api: MloopClient, ref: str) -> str:
    """A rollout id, or the latest rollout of a model when ``ref`` names one."""
    found = await api.rollout.list_rollouts(model=ref, limit=1)
    if found:
        return str(found[0]["id"])
    return ref


@rollout.command("list")
def list_rollouts(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option(help="only this model")] = None,
    phase: Annotated[str | None, typer.Option(help="only this phase")] = None,
    limit: Annotated[int, typer.Option(help="at most this many")] = 50,
    json_: JsonOpt = False,
) -> None:
    """Rollouts, newest first."""
    found = run_api(ctx, lambda api: api.rollout.list_rollouts(model=model, phase=phase, limit=limit))
    show(ctx, found, _ROLLOUT_COLUMNS, title="rollouts", json_flag=json_)


@rollout.command("status")
def rollout_status(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="rollout id, or a model name for its latest rollout")],
    watch: Annotated[bool, typer.Option("--watch", "-w", help="follow until it ends")] = False,
    json_: JsonOpt = False,
) -> None:
    """A rollout's phase, traffic, history and latest gate results."""

    async def fetch(api: MloopClient) -> Any:
        return await api.rollout.get_rollout(await _resolve_rollout(api, ref), analyses=5)

    detail = run_api(ctx, fetch)
    if watch and not (json_ or state(ctx).json):
        with console.status(f"rollout {detail['id']}: {detail['phase']} at {detail.get('weight')}") as spin:
            while detail["phase"] not in _TERMINAL_PHASES:
                time.sleep(2)
                detail = run_api(ctx, fetch)
                spin.update(f"rollout {detail['id']}: {detail['phase']} at {detail.get('weight')}")
    if json_ or state(ctx).json:
        show(ctx, detail, json_flag=True)
        return
    show(ctx, detail, [*_ROLLOUT_COLUMNS, "reason"], title=f"rollout of {detail.get('model')}")
    history = [
        {
            "at": h.get("at"),
            "kind": h.get("kind"),
            "phase": (h.get("data") or {}).get("phase"),
            "weight": (h.get("data") or {}).get("weight"),
            "reason": (h.get("data") or {}).get("reason"),
        }
        for h in detail.get("history", [])
    ]
    show(ctx, history, title="history")
    show(
        ctx,
        detail.get("gates", []),
        ["name", "outcome", "value", "baseline", "threshold", "detail"],
        title="latest gate results",
    )


def _act(ctx: typer.Context, ref: str, action: str, reason: str | None, json_: bool) -> None:
    async def call(api: MloopClient) -> Any:
        return await api.rollout.action(await _resolve_rollout(api, ref), action, reason=reason)

    show(ctx, run_api(ctx, call), _ROLLOUT_COLUMNS, json_flag=json_)


RefArg = Annotated[str, typer.Argument(help="rollout id, or a model name for its latest rollout")]
ReasonOpt = Annotated[str | None, typer.Option(help="why (recorded)")]


@rollout.command("pause")
def pause(ctx: typer.Context, ref: RefArg, reason: ReasonOpt = None, json_: JsonOpt = False) -> None:
    """Hold the rollout at its current weight."""
    _act(ctx, ref, "pause", reason, json_)


@rollout.command("resume")
def resume(ctx: typer.Context, ref: RefArg, reason: ReasonOpt = None, json_: JsonOpt = False) -> None:
    """Continue a paused rollout."""
    _act(ctx, ref, "resume", reason, json_)


@rollout.command("abort")
def abort(ctx: typer.Context, ref: RefArg, reason: ReasonOpt = None, json_: JsonOpt = False) -> None:
    """Stop now: all traffic back to the baseline."""
    _act(ctx, ref, "abort", reason, json_)


@rollout.command("promote")
def promote(
    ctx: typer.Context,
    ref: RefArg,
    full: Annotated[bool, typer.Option("--full", help="skip the remaining steps (recorded)")] = False,
    reason: ReasonOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Advance one step, or with --full go straight to 100%."""
    _act(ctx, ref, "promote-full" if full else "promote-step", reason, json_)


@rollout.command("traffic")
def traffic(ctx: typer.Context, model: str, json_: JsonOpt = False) -> None:
    """The routing table in force for a model."""
    table = run_api(ctx, lambda api: api.rollout.traffic(model))
    if json_ or state(ctx).json:
        show(ctx, table, json_flag=True)
        return
    show(
        ctx,
        table.get("routes", []),
        ["version", "weight", "shadow"],
        title=f"traffic of {model} (seq {table.get('seq')})",
    )


# --------------------------------------------------------------------------- drift


@drift.command("status")
def drift_status(
    ctx: typer.Context,
    model: str,
    version: Annotated[str | None, typer.Option(help="only this version")] = None,
    json_: JsonOpt = False,
) -> None:
    """Monitoring status per version: windows, references, open incidents."""

    async def call(api: MloopClient) -> Any:
        return await api.monitor.status(model, version), await api.monitor.incidents(model, open_only=True)

    st, incidents = run_api(ctx, call)
    if json_ or state(ctx).json:
        show(ctx, {"status": st, "open_incidents": incidents}, json_flag=True)
        return
    rows = st.get("versions", [st]) if isinstance(st, dict) else st
    show(ctx, rows, title=f"monitoring of {model}")
    show(ctx, incidents, ["id", "version", "signal", "opened_at"], title="open incidents")


@drift.command("history")
def drift_history(
    ctx: typer.Context,
    model: str,
    version: Annotated[str | None, typer.Option(help="only this version")] = None,
    drifted: Annotated[bool, typer.Option("--drifted", help="only windows that alarmed")] = False,
    limit: Annotated[int, typer.Option(help="at most this many windows")] = 20,
    json_: JsonOpt = False,
) -> None:
    """Drift verdicts per window, newest first."""
    found = run_api(
        ctx, lambda api: api.monitor.drift_history(model, version=version, drifted=drifted or None, limit=limit)
    )
    if json_ or state(ctx).json:
        show(ctx, found, json_flag=True)
        return
    rows = [
        {
            **w,
            "window": f"{w['window']['start']} .. {w['window']['end']} ({w['window']['size']})",
            "drifted features": ", ".join(f["name"] for f in w.get("features", []) if f.get("drifted")),
        }
        for w in found
    ]
    show(
        ctx,
        rows,
        ["version", "kind", "window_no", "window", "drifted", "severity", "drifted features"],
        title=f"drift of {model}",
    )


@drift.command("report")
def drift_report(
    ctx: typer.Context,
    model: str,
    version: Annotated[str | None, typer.Option(help="the version (default: the latest evaluated)")] = None,
    out: Annotated[Path | None, typer.Option(help="write the HTML here (default: reports/drift-<model>.html)")] = None,
    open_: Annotated[bool, typer.Option("--open/--no-open", help="open it in a browser")] = True,
    json_: JsonOpt = False,
) -> None:
    """Fetch the drift report; write it as a self-contained HTML page and open it (or print JSON)."""
    if json_ or state(ctx).json:
        show(ctx, run_api(ctx, lambda api: api.monitor.drift_report(model, version=version)), json_flag=True)
        return
    html = run_api(ctx, lambda api: api.monitor.drift_report_html(model, version=version))
    path = out or Path("reports") / f"drift-{model}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    console.print(f"drift report written to [bold]{path}[/bold]")
    if open_:
        webbrowser.open(path.resolve().as_uri())


# --------------------------------------------------------------------------- retrain


@retrain.command("policies")
def policies(ctx: typer.Context, json_: JsonOpt = False) -> None:
    """The default retrain policy and every model's override."""
    found = run_api(ctx, lambda api: api.retrain.policies())
    if json_ or state(ctx).json:
        show(ctx, found, json_flag=True)
        return
    show(ctx, found.get("default", {}), title="default policy")
    show(ctx, found.get("overrides", []), ["model", "override", "updated_by", "updated_at"], title="overrides")


@retrain.command("policy")
def policy(
    ctx: typer.Context,
    model: str,
    set_: Annotated[Path | None, typer.Option("--set", help="JSON file with the fields to override")] = None,
    json_: JsonOpt = False,
) -> None:
    """A model's effective policy; with --set, replace its override."""
    if set_ is not None:
        body = json.loads(set_.read_text())
        found = run_api(ctx, lambda api: api.retrain.set_policy(model, body))
    else:
        found = run_api(ctx, lambda api: api.retrain.get_policy(model))
    show(ctx, found if json_ or state(ctx).json else found.get("effective", found), json_flag=json_)


@retrain.command("jobs")
def jobs(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option(help="only this model")] = None,
    state_: Annotated[str | None, typer.Option("--state", help="only jobs in this state")] = None,
    limit: Annotated[int, typer.Option(help="at most this many")] = 50,
    json_: JsonOpt = False,
) -> None:
    """Retrain jobs, newest first."""
    found = run_api(ctx, lambda api: api.retrain.list_jobs(model=model, state=state_, limit=limit))
    show(ctx, found, _JOB_COLUMNS, title="retrain jobs", json_flag=json_)


@retrain.command("job")
def job(ctx: typer.Context, job_id: str, json_: JsonOpt = False) -> None:
    """One job with its transitions and cycle time."""
    found = run_api(ctx, lambda api: api.retrain.get_job(job_id))
    if json_ or state(ctx).json:
        show(ctx, found, json_flag=True)
        return
    show(ctx, {k: v for k, v in found.items() if k not in ("transitions", "policy")}, title=f"job {job_id}")
    show(
        ctx,
        found.get("transitions", []),
        ["seq", "state", "previous_state", "at", "actor", "detail"],
        title="transitions",
    )


@retrain.command("trigger")
def trigger(
    ctx: typer.Context,
    model: str,
    reason: Annotated[str, typer.Option(help="why")] = "",
    json_: JsonOpt = False,
) -> None:
    """Ask for a retraining now."""
    show(ctx, run_api(ctx, lambda api: api.retrain.trigger(model, reason=reason)), _JOB_COLUMNS, json_flag=json_)


@retrain.command("confirm")
def confirm(ctx: typer.Context, job_id: str, json_: JsonOpt = False) -> None:
    """Confirm a job that awaits confirmation."""
    show(ctx, run_api(ctx, lambda api: api.retrain.confirm(job_id)), _JOB_COLUMNS, json_flag=json_)


@retrain.command("cancel")
def cancel(
    ctx: typer.Context, job_id: str, reason: Annotated[str, typer.Option(help="why")] = "", json_: JsonOpt = False
) -> None:
    """Cancel a job that has not ended."""
    show(ctx, run_api(ctx, lambda api: api.retrain.cancel(job_id, reason=reason)), _JOB_COLUMNS, json_flag=json_)


@retrain.command("cycle-time")
def cycle_time(ctx: typer.Context, model: str, json_: JsonOpt = False) -> None:
    """p50/p90 cycle time, step shares and SLA breaches of a model."""

    async def call(api: MloopClient) -> Any:
        return await api.retrain.cycle_stats(model), await api.retrain.cycle_times(model=model, limit=10)

    stats, recent = run_api(ctx, call)
    if json_ or state(ctx).json:
        show(ctx, {"stats": stats, "recent": recent}, json_flag=True)
        return
    show(ctx, stats, title=f"cycle time of {model}")
    show(ctx, recent, ["job_id", "version", "outcome", "seconds", "sla_breached", "finished_at"], title="recent")
