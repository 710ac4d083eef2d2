"""The console's pages: each reads the services as the signed-in person and renders a template.

Reads never change anything; they fan out concurrently so a page costs about
one round trip per service, whatever the number of models.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from mloop.client._exceptions import ApiError, AuthenticationError, NotFoundError
from mloop.console import plots, views
from mloop.console.app import render, session, user_api

__all__ = ["render_again", "router"]

router = APIRouter()
T = TypeVar("T")

_Name = Annotated[str, Path(min_length=1, max_length=256)]
_Id = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:-]+$")]
_Text = Annotated[str | None, Query(max_length=256)]

MODELS_PER_PAGE = 25

DONE = {
    "approved": "Approved. The registry publishes the promotion; the rollout starts from it.",
    "rejected": "Rejected, with your comment.",
    "pause": "Paused: traffic stays as it is until someone resumes.",
    "resume": "Resumed.",
    "abort": "Aborted: traffic is back on the baseline.",
    "promote-step": "Promoted to the next traffic step.",
    "confirm": "Confirmed: the job is dispatched to the training pipeline.",
    "cancel": "Cancelled.",
}


async def _maybe(call: Awaitable[T]) -> T | None:
    """The answer, or None when the thing does not exist (yet) or the caller may not read it.

    A refused token is not swallowed: it ends the session.
    """
    try:
        return await call
    except AuthenticationError:
        raise
    except ApiError:
        return None


def _notice(request: Request) -> str | None:
    return DONE.get(request.query_params.get("done", ""))


@router.get("/", include_in_schema=False)
async def home() -> RedirectResponse:
    return RedirectResponse("/models", status_code=303)


# --------------------------------------------------------------------------- models


@router.get("/models", response_class=HTMLResponse, include_in_schema=False)
async def models_page(
    request: Request, q: _Text = None, page_token: Annotated[str | None, Query(max_length=1024)] = None
) -> Response:
    """Each model with champion/challengers, live split, latest drift, open incidents, rollout, last retrain."""
    who = session(request)
    api = user_api(request, who)

    (models, next_token) = await api.registry.page(
        "/models", page_token=page_token, page_size=MODELS_PER_PAGE, q=q or None
    )
    # Then, for the models shown, one batched call per service: a constant number of calls whatever the
    # number of models (the monitor's statuses, each model's newest rollout and newest retrain job).
    names = [m["name"] for m in models]
    statuses, rollouts, jobs = await asyncio.gather(
        _maybe(api.monitor.statuses(names)),
        _maybe(api.rollout.list_rollouts(model=names, latest_per_model=True)),
        _maybe(api.retrain.list_jobs(model=names, latest_per_model=True)),
    )
    status_of = {s["model"]: s for s in statuses or []}
    running = {r["model"]: r for r in rollouts or [] if r.get("phase") in views.ACTIVE_PHASES}
    last_job = {j["model"]: j for j in jobs or []}
    rows = [
        views.model_row(m, status_of.get(m["name"]), running.get(m["name"]), last_job.get(m["name"]))
        for m in models
    ]
    return render(request, "models.html", rows=rows, q=q or "", next_token=next_token, notice=_notice(request))


@router.get("/models/{name}", response_class=HTMLResponse, include_in_schema=False)
async def model_page(request: Request, name: _Name) -> Response:
    who = session(request)
    api = user_api(request, who)
    model, (versions, _), rollouts, status, aliases, cycle = await asyncio.gather(
        api.registry.get_model(name),
        api.registry.page(f"/models/{quote(name, safe='')}/versions", page_size=50),
        _maybe(api.rollout.list_rollouts(model=name, limit=20)),
        _maybe(api.monitor.status(name)),
        _maybe(api.registry.alias_history(name)),
        _maybe(api.retrain.cycle_stats(name)),
    )
    running = next((r for r in rollouts or [] if r.get("phase") in views.ACTIVE_PHASES), None)
    row = views.model_row(model, status, running, None)
    return render(
        request, "model.html", model=model, row=row, versions=versions, rollouts=rollouts or [],
        status=status, alias_history=list(reversed(aliases or []))[:30], cycle=cycle,
    )


@router.get("/models/{name}/versions/{version}", response_class=HTMLResponse, include_in_schema=False)
async def version_page(request: Request, name: _Name, version: _Name) -> Response:
    """Lineage, gate results, reviews, alias history and rollouts of one version."""
    who = session(request)
    api = user_api(request, who)
    doc, rollouts, status = await asyncio.gather(
        api.registry.version_history(name, version),
        _maybe(api.rollout.list_rollouts(model=name, limit=100)),
        _maybe(api.monitor.status(name, version)),
    )
    mine = [r for r in rollouts or [] if r.get("candidate") == version or r.get("baseline") == version]
    return render(request, "version.html", doc=doc, rollouts=mine, status=status)


# --------------------------------------------------------------------------- drift


@router.get("/models/{name}/drift", response_class=HTMLResponse, include_in_schema=False)
async def drift_page(request: Request, name: _Name, version: _Text = None) -> Response:
    """Per version, each feature's statistic against its threshold over time; the latest window; the report."""
    who = session(request)
    api = user_api(request, who)
    windows, status, config = await asyncio.gather(
        api.monitor.drift_history(name, version=version or None, limit=200),
        _maybe(api.monitor.status(name)),
        _maybe(api.monitor.get_config(name)),
    )
    shaped = views.drift_plots(windows)
    figures = [
        {
            **p,
            "svg": plots.svg_lines(
                p["series"], title=f"v{p['version']} {p['kind']} drift per feature", y_label=p["scale"],
                thresholds=p["threshold_lines"],
            ),
        }
        for p in shaped.values()
    ]
    return render(request, "drift.html", name=name, version=version or "", figures=figures, status=status,
                  config=config, count=len(windows))


@router.get("/models/{name}/drift-report", include_in_schema=False)
async def drift_report(request: Request, name: _Name, version: _Text = None) -> Response:
    """The monitor's self-contained HTML report, fetched with the person's token."""
    who = session(request)
    html = await user_api(request, who).monitor.drift_report_html(name, version=version or None)
    # The report carries its own inline styles; it gets no script and no network access.
    return HTMLResponse(html, headers={
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                                   "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    })


# --------------------------------------------------------------------------- promotions


async def _promotions(request: Request, refused: str | None = None, status_code: int = 200) -> Response:
    who = session(request)
    api = user_api(request, who)
    pending, decided = await asyncio.gather(
        api.registry.list_promotion_requests(status="pending", limit=100),
        _maybe(api.registry.list_promotion_requests(limit=30)),
    )
    versions = await asyncio.gather(*(_maybe(api.registry.get_version(p["model"], p["version"])) for p in pending))
    items = [{**p, "validation": (v or {}).get("validation")} for p, v in zip(pending, versions, strict=True)]
    done = [p for p in decided or [] if p.get("status") != "pending"][:20]
    return render(request, "promotions.html", status_code, pending=items, decided=done, refused=refused,
                  notice=_notice(request))


@router.get("/promotions", response_class=HTMLResponse, include_in_schema=False)
async def promotions_page(request: Request) -> Response:
    """The queue: each pending request with its gates; reviewers approve or reject with a comment."""
    return await _promotions(request)


# --------------------------------------------------------------------------- rollouts


@router.get("/rollouts", response_class=HTMLResponse, include_in_schema=False)
async def rollouts_page(request: Request) -> Response:
    who = session(request)
    items = await user_api(request, who).rollout.list_rollouts(limit=100)
    active = [r for r in items if r.get("phase") in views.ACTIVE_PHASES]
    ended = [r for r in items if r.get("phase") not in views.ACTIVE_PHASES]
    return render(request, "rollouts.html", active=active, ended=ended)


async def _rollout(request: Request, rollout_id: str, refused: str | None = None, status_code: int = 200) -> Response:
    who = session(request)
    api = user_api(request, who)
    r = await api.rollout.get_rollout(rollout_id, analyses=12)
    active = r.get("phase") in views.ACTIVE_PHASES
    until = time.time() if active else views.parse_time(r.get("finished_at"))
    series = views.traffic_series(r.get("history", []), until=until)
    traffic_svg = plots.svg_lines(series, title="Serving weight per version over time", y_label="traffic %",
                                  y_range=(0, 100), step=True)
    thresholds = {g.get("metric"): g for g in (r.get("plan") or {}).get("gates", [])}
    return render(
        request, "rollout.html", status_code, r=r, active=active, traffic_svg=traffic_svg,
        analyses=list(reversed(r.get("analyses", []))), events=[h for h in r.get("history", [])
                                                                if h.get("kind") != "traffic-split-changed"],
        gate_plan=thresholds, refused=refused, notice=_notice(request),
    )


@router.get("/rollouts/{rollout_id}", response_class=HTMLResponse, include_in_schema=False)
async def rollout_page(request: Request, rollout_id: _Id) -> Response:
    """A rollout, live while it runs: traffic over time, each analysis' gates, the operator's buttons."""
    return await _rollout(request, rollout_id)


# --------------------------------------------------------------------------- retrain


async def _retrain(request: Request, refused: str | None = None, status_code: int = 200) -> Response:
    who = session(request)
    api = user_api(request, who)
    jobs, policies, stats = await asyncio.gather(
        api.retrain.list_jobs(limit=50),
        _maybe(api.retrain.policies()),
        _maybe(api.retrain.cycle_stats_all()),
    )
    return render(request, "retrain.html", status_code, jobs=jobs, policies=policies, stats=stats or [],
                  open_states=views.OPEN_JOB_STATES, refused=refused, notice=_notice(request))


@router.get("/retrain", response_class=HTMLResponse, include_in_schema=False)
async def retrain_page(request: Request) -> Response:
    """Jobs and their states, policies, cycle time (p50/p90, step shares) and SLA breaches."""
    return await _retrain(request)


@router.get("/retrain/jobs/{job_id}", response_class=HTMLResponse, include_in_schema=False)
async def job_page(request: Request, job_id: _Id) -> Response:
    who = session(request)
    job = await user_api(request, who).retrain.get_job(job_id)
    return render(request, "job.html", job=job, open_states=views.OPEN_JOB_STATES)


# --------------------------------------------------------------------------- audit

_TYPE = re.compile(r"^[a-z0-9.-]{1,128}$")


def _when(value: str | None) -> str | None:
    """A datetime-local field (no zone: UTC) or an ISO time, as ISO-8601 UTC; None when empty or unreadable."""
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).isoformat()


@router.get("/audit", response_class=HTMLResponse, include_in_schema=False)
async def audit_page(
    request: Request,
    model: _Text = None,
    version: _Text = None,
    type: _Text = None,
    actor: _Text = None,
    since: _Text = None,
    until: _Text = None,
) -> Response:
    """Search the ledger; the chains with their signed sizes; links to lifecycle, serving-at-T, verification."""
    who = session(request)
    api = user_api(request, who)
    filters: dict[str, Any] = {
        "model": model or None, "version": version or None, "actor": actor or None,
        "since": _when(since), "until": _when(until),
    }
    if type:
        # The ledger stores CloudEvents types; a topic name is accepted too.
        filters["type"] = type if type.startswith("dev.") or not _TYPE.match(type) else f"dev.mloop.{type}.v1"
    records, chains = await asyncio.gather(
        api.audit.records(limit=100, **{k: v for k, v in filters.items() if v}),
        _maybe(api.audit.chains()),
    )
    unsigned = sum(int(c.get("size", 0)) - int(c.get("signed_size") or 0) for c in chains or [])
    return render(
        request, "audit.html", records=records, chains=chains or [], unsigned=unsigned,
        form={"model": model or "", "version": version or "", "type": type or "", "actor": actor or "",
              "since": since or "", "until": until or ""},
    )


@router.get("/audit/lifecycle", response_class=HTMLResponse, include_in_schema=False)
async def lifecycle_page(request: Request, model: Annotated[str, Query(min_length=1, max_length=256)],
                         version: Annotated[str, Query(min_length=1, max_length=256)]) -> Response:
    """A version's lifecycle from registration to champion or rollback, each step a ledger record."""
    who = session(request)
    life = await user_api(request, who).audit.lifecycle(model, version)
    return render(request, "lifecycle.html", life=life)


@router.get("/audit/serving", response_class=HTMLResponse, include_in_schema=False)
async def serving_page(request: Request, model: Annotated[str, Query(min_length=1, max_length=256)],
                       at: _Text = None) -> Response:
    """Which version(s) served a model at time T, from the ledger."""
    who = session(request)
    when = _when(at) or datetime.now(UTC).isoformat()
    answer = await _maybe_404(user_api(request, who).audit.serving_at(model, when))
    return render(request, "serving.html", model=model, at=at or "", when=when, answer=answer)


async def _maybe_404(call: Awaitable[T]) -> T | None:
    try:
        return await call
    except NotFoundError:
        return None


@router.get("/audit/verify", response_class=HTMLResponse, include_in_schema=False)
async def verify_page(request: Request) -> Response:
    """The audit service replays every chain against its signed checkpoints (a full replay: it takes a while)."""
    who = session(request)
    api = user_api(request, who)
    result, key = await asyncio.gather(api.audit.verify(), _maybe(api.audit.public_key()))
    return render(request, "verify.html", result=result, key=key)


@router.get("/audit/export", include_in_schema=False)
async def export(request: Request, model: _Text = None, since: _Text = None, until: _Text = None) -> Response:
    """The signed evidence bundle (tar.gz) for a model or a time range, downloaded with the person's token."""
    who = session(request)
    params = {k: v for k, v in {"model": model or None, "since": _when(since), "until": _when(until)}.items() if v}
    data = await user_api(request, who).audit.download("/export", **params)
    label = re.sub(r"[^A-Za-z0-9._-]", "_", model or "ledger")[:80]
    return Response(data, media_type="application/gzip", headers={
        "Content-Disposition": f'attachment; filename="mloop-evidence-{label}.tar.gz"'
    })


# --------------------------------------------------------------------------- refusals


async def render_again(request: Request, page: str, *, refused: str, status_code: int) -> Response:
    """The page an action came from, with the service's refusal shown, answered with the service's status."""
    if page == "/promotions":
        return await _promotions(request, refused, status_code)
    if page == "/retrain":
        return await _retrain(request, refused, status_code)
    if page.startswith("/rollouts/"):
        return await _rollout(request, page.removeprefix("/rollouts/"), refused, status_code)
    return render(request, "error.html", status_code, title="Refused", detail=refused)
