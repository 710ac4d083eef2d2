"""``mloop models``, ``mloop versions`` and ``mloop promotion``: the registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mloop.cli._context import JsonOpt, run_api, show
from mloop.client import MloopClient

models = typer.Typer(help="Registered models.", no_args_is_help=True)
versions = typer.Typer(help="Model versions, their lineage and history.", no_args_is_help=True)
promotion = typer.Typer(help="Four-eyes promotion: request, approve, reject.", no_args_is_help=True)

_VERSION_COLUMNS = ["version", "status", "validation_passed", "aliases", "metrics", "registered_by", "created_at"]
_REQUEST_COLUMNS = ["id", "model", "version", "status", "requested_by", "approved_by", "created_at"]


# --------------------------------------------------------------------------- models


@models.command("list")
def list_models(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="at most this many")] = 100,
    json_: JsonOpt = False,
) -> None:
    """Every model with its latest version and aliases."""
    found = run_api(ctx, lambda api: api.registry.list_models(limit=limit))
    show(
        ctx, found, ["name", "latest_version", "aliases", "description", "created_at"], title="models", json_flag=json_
    )


@models.command("show")
def show_model(ctx: typer.Context, name: str, json_: JsonOpt = False) -> None:
    """One model."""
    show(ctx, run_api(ctx, lambda api: api.registry.get_model(name)), json_flag=json_)


@models.command("create")
def create_model(
    ctx: typer.Context,
    name: str,
    description: Annotated[str | None, typer.Option(help="what the model does")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="KEY=VALUE, repeatable")] = None,
    json_: JsonOpt = False,
) -> None:
    """Create a model."""
    tags = dict(t.split("=", 1) for t in tag or [] if "=" in t)
    created = run_api(ctx, lambda api: api.registry.create_model(name, description=description, tags=tags))
    show(ctx, created, json_flag=json_)


@models.command("alias")
def set_alias(
    ctx: typer.Context,
    name: str,
    alias: str,
    version: str,
    reason: Annotated[str | None, typer.Option(help="why")] = None,
    json_: JsonOpt = False,
) -> None:
    """Point an alias (champion, challenger, ...) at a version."""
    show(ctx, run_api(ctx, lambda api: api.registry.set_alias(name, alias, version, reason=reason)), json_flag=json_)


# --------------------------------------------------------------------------- versions


@versions.command("list")
def list_versions(
    ctx: typer.Context,
    model: str,
    status: Annotated[str | None, typer.Option(help="only versions in this status")] = None,
    limit: Annotated[int, typer.Option(help="at most this many")] = 100,
    json_: JsonOpt = False,
) -> None:
    """A model's versions."""
    found = run_api(ctx, lambda api: api.registry.list_versions(model, limit=limit, status=status))
    show(ctx, found, _VERSION_COLUMNS, title=f"versions of {model}", json_flag=json_)


@versions.command("show")
def show_version(ctx: typer.Context, model: str, version: str, json_: JsonOpt = False) -> None:
    """Everything about a version: lineage, gates, reviews, aliases, rollouts."""
    detail = run_api(ctx, lambda api: api.registry.get_version(model, version))
    if json_:
        show(ctx, detail, json_flag=True)
        return
    show(
        ctx,
        detail,
        [
            "model",
            "version",
            "status",
            "artifact_uri",
            "metrics",
            "validation_passed",
            "aliases",
            "registered_by",
            "created_at",
        ],
        title=f"{model} v{version}",
    )
    checks = (detail.get("validation") or {}).get("checks", [])
    show(ctx, checks, ["name", "passed", "detail"], title="validation gates")
    show(ctx, detail.get("promotion_requests", []), _REQUEST_COLUMNS, title="promotion requests")
    show(
        ctx, detail.get("rollouts", []), ["rollout_id", "outcome", "baseline_version", "reason", "at"], title="rollouts"
    )


@versions.command("lineage")
def lineage(ctx: typer.Context, model: str, version: str, json_: JsonOpt = False) -> None:
    """Where a version came from: code, dataset, features, environment, parameters, retrain job."""
    detail = run_api(ctx, lambda api: api.registry.get_version(model, version))
    lin: dict[str, Any] = detail.get("lineage") or {}
    if json_:
        show(ctx, lin, json_flag=True)
        return
    rows = {
        "code.repo": lin.get("code", {}).get("repo"),
        "code.commit": lin.get("code", {}).get("commit"),
        "dataset.uri": lin.get("dataset", {}).get("uri"),
        "dataset.version": lin.get("dataset", {}).get("version"),
        "dataset.sha256": lin.get("dataset", {}).get("sha256"),
        "features.version": lin.get("features", {}).get("version"),
        "features": ", ".join(f"{f['name']}:{f['type']}" for f in lin.get("features", {}).get("schema", [])),
        "environment.image": lin.get("environment", {}).get("image"),
        "environment.lock_hash": lin.get("environment", {}).get("lock_hash"),
        "params": lin.get("params"),
        "retrain_job_id": lin.get("retrain_job_id"),
        "training_profile": "present" if detail.get("training_profile") else "absent",
    }
    show(ctx, rows, title=f"lineage of {model} v{version}")


@versions.command("register")
def register(
    ctx: typer.Context,
    model: str,
    body: Annotated[Path, typer.Argument(help="JSON file with the registration body (lineage, metrics, profile)")],
    json_: JsonOpt = False,
) -> None:
    """Register a version from a JSON body; prints the version and its validation."""
    data = json.loads(body.read_text())

    async def call(api: MloopClient) -> Any:
        return await api.registry.register_version(model, **data)

    result = run_api(ctx, call)
    if json_:
        show(ctx, result, json_flag=True)
        return
    show(ctx, result, ["model", "version", "status", "validation_passed"])
    show(ctx, (result.get("validation") or {}).get("checks", []), ["name", "passed", "detail"], title="gates")


# --------------------------------------------------------------------------- promotion


@promotion.command("request")
def request(
    ctx: typer.Context,
    model: str,
    version: str,
    reason: Annotated[str | None, typer.Option(help="why this version should serve")] = None,
    json_: JsonOpt = False,
) -> None:
    """Ask for a validated version to go to production."""
    made = run_api(ctx, lambda api: api.registry.request_promotion(model, version, reason=reason))
    show(ctx, made, _REQUEST_COLUMNS, json_flag=json_)


@promotion.command("approve")
def approve(
    ctx: typer.Context,
    request_id: str,
    comment: Annotated[str | None, typer.Option(help="what was checked")] = None,
    json_: JsonOpt = False,
) -> None:
    """Approve a request (you must not be its requester)."""
    show(
        ctx,
        run_api(ctx, lambda api: api.registry.approve(request_id, comment=comment)),
        _REQUEST_COLUMNS,
        json_flag=json_,
    )


@promotion.command("reject")
def reject(
    ctx: typer.Context,
    request_id: str,
    comment: Annotated[str, typer.Option(help="why (required)")],
    json_: JsonOpt = False,
) -> None:
    """Reject a request, saying why."""
    show(
        ctx,
        run_api(ctx, lambda api: api.registry.reject(request_id, comment=comment)),
        _REQUEST_COLUMNS,
        json_flag=json_,
    )


@promotion.command("list")
def list_requests(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="pending, approved or rejected")] = None,
    model: Annotated[str | None, typer.Option(help="only this model")] = None,
    json_: JsonOpt = False,
) -> None:
    """Promotion requests, newest first."""
    found = run_api(ctx, lambda api: api.registry.list_promotion_requests(status=status, model=model))
    show(ctx, found, _REQUEST_COLUMNS, title="promotion requests", json_flag=json_)
