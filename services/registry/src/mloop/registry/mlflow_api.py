"""The MLflow Model Registry REST subset, so MLflow clients can point at the registry.

A thin adapter: each route translates MLflow's request and response shapes
(``registered_model``, ``model_version``, ``{key, value}`` tags, millisecond
timestamps, ``{error_code, message}`` errors) onto the same service layer as
the native API — the same store, gates, events and roles.

Supported: ``registered-models/create|get|search``,
``model-versions/create|get|search|get-download-uri`` and
``registered-models/alias`` (set, delete, get by alias). Versions created
through MLflow carry no lineage, so their ``lineage-complete`` gate fails
and they cannot be promoted until registered through the native API.
Search filters: ``name = '…'``, ``name LIKE|ILIKE '…'``, ``tags.<key> = '…'``
or ``!= '…'`` (``tag.`` too, as MLflow clients send), and (versions)
``run_id = '…'``, joined with ``AND``; ``order_by`` is ignored (results come
in name, then creation order).
"""

from __future__ import annotations

import inspect
import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from mloop.contracts.payloads import Lineage
from mloop.registry import store
from mloop.registry.deps import Operator, Reg, Registrar, reject_nul
from mloop.registry.errors import (
    ConflictError,
    InvalidInput,
    ModelAlreadyExists,
    NotFoundError,
    RegistryError,
    ReviewRefused,
)
from mloop.registry.schemas import ModelCreate, RequestBody, VersionOut, VersionRegistration
from mloop.runtime.deps import Pool, Viewer
from mloop.runtime.pagination import decode_cursor, encode_cursor
from mloop.runtime.problems import Problem

__all__ = ["MlflowError", "error_response", "install_error_handlers", "is_mlflow_path", "parse_filter", "router"]

PREFIX = "/api/2.0/mlflow"
router = APIRouter(prefix=PREFIX, tags=["mlflow"], dependencies=[Depends(reject_nul)])

_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_ALIAS = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")


# --------------------------------------------------------------------------- errors


class MlflowError(RegistryError):
    def __init__(self, message: str, code: str = "INVALID_PARAMETER_VALUE", status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def is_mlflow_path(request: Request) -> bool:
    return request.url.path.startswith(PREFIX + "/")


def _mlflow_json(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error_code": code, "message": message}, status_code=status)


def error_response(exc: RegistryError) -> JSONResponse:
    """MLflow's ``{error_code, message}`` for a registry error."""
    if isinstance(exc, MlflowError):
        return _mlflow_json(exc.status, exc.code, str(exc))
    if isinstance(exc, NotFoundError):
        return _mlflow_json(404, "RESOURCE_DOES_NOT_EXIST", str(exc))
    if isinstance(exc, ModelAlreadyExists):
        return _mlflow_json(400, "RESOURCE_ALREADY_EXISTS", str(exc))
    if isinstance(exc, ConflictError):
        return _mlflow_json(400, "INVALID_STATE", str(exc))
    if isinstance(exc, ReviewRefused):
        return _mlflow_json(403, "PERMISSION_DENIED", str(exc))
    if isinstance(exc, InvalidInput):
        return _mlflow_json(400, "INVALID_PARAMETER_VALUE", f"{exc.field}: {exc}")
    return _mlflow_json(400, "BAD_REQUEST", str(exc))


_CODES = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "RESOURCE_DOES_NOT_EXIST", 409: "INVALID_STATE"}


def install_error_handlers(app: FastAPI) -> None:
    """On MLflow routes, answer auth and validation errors in MLflow's shape too."""
    problem_handler = app.exception_handlers[Problem]
    invalid_handler = app.exception_handlers[RequestValidationError]

    async def on_problem(request: Request, exc: Exception) -> Any:
        if is_mlflow_path(request) and isinstance(exc, Problem):
            return _mlflow_json(exc.status, _CODES.get(exc.status, "INVALID_PARAMETER_VALUE"), exc.detail)
        response = problem_handler(request, exc)
        return await response if inspect.isawaitable(response) else response

    async def on_invalid(request: Request, exc: Exception) -> Any:
        if is_mlflow_path(request) and isinstance(exc, RequestValidationError):
            first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
            field = ".".join(str(p) for p in first.get("loc", ()))
            return _mlflow_json(400, "INVALID_PARAMETER_VALUE", f"{field}: {first.get('msg', '')}")
        response = invalid_handler(request, exc)
        return await response if inspect.isawaitable(response) else response

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_invalid)


# --------------------------------------------------------------------------- shapes


class Tag(BaseModel):
    key: str = Field(min_length=1, max_length=250)
    value: str = Field("", max_length=5000)


class CreateRegisteredModel(RequestBody):
    model_config = ConfigDict(extra="ignore")

    name: str
    tags: list[Tag] = Field(default_factory=list)
    description: str | None = None


class CreateModelVersion(RequestBody):
    model_config = ConfigDict(extra="ignore")

    name: str
    source: str = Field(min_length=1, max_length=2048)
    run_id: str | None = Field(None, max_length=256)
    tags: list[Tag] = Field(default_factory=list)
    run_link: str | None = Field(None, max_length=2048)
    description: str | None = None


class SetAlias(RequestBody):
    model_config = ConfigDict(extra="ignore")

    name: str
    alias: str
    version: str


class DeleteAlias(RequestBody):
    model_config = ConfigDict(extra="ignore")

    name: str | None = None
    alias: str | None = None


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _tags(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in sorted(tags.items())]


def _name(name: str) -> str:
    if not _MODEL_NAME.match(name):
        raise MlflowError(f"invalid model name {name!r}: letters, digits, '.', '_' and '-' only")
    return name


def _version_number(version: str) -> int:
    if not version.isdigit() or not 1 <= int(version) <= 999_999_999:
        raise MlflowError(f"invalid version {version!r}: a positive integer")
    return int(version)


def _model_version(v: VersionOut, run_id: str | None = None, run_link: str | None = None) -> dict[str, Any]:
    return {
        "name": v.model,
        "version": v.version,
        "creation_timestamp": _ms(v.created_at),
        "last_updated_timestamp": _ms(v.updated_at),
        "user_id": v.registered_by.partition(":")[2] or v.registered_by,
        "current_stage": "Archived" if v.status == "archived" else "None",
        "description": v.description or "",
        "source": v.artifact_uri,
        "run_id": run_id or "",
        "run_link": run_link or "",
        "status": "READY",
        "status_message": "" if v.validation_passed else "validation failed",
        "tags": _tags(v.tags),
        "aliases": v.aliases,
    }


async def _version_views(reg: Reg, conn: Any, rows: list[Any]) -> list[dict[str, Any]]:
    views = await reg.version_views(conn, rows)
    return [_model_version(v, r["run_id"], r["run_link"]) for v, r in zip(views, rows, strict=True)]


async def _registered_models(reg: Reg, conn: Any, rows: list[Any]) -> list[dict[str, Any]]:
    views = await reg.model_views(conn, rows)
    names = [r["name"] for r in rows]
    latest = await store.latest_versions(conn, names)
    out = []
    for m in views:
        item: dict[str, Any] = {
            "name": m.name,
            "creation_timestamp": _ms(m.created_at),
            "last_updated_timestamp": _ms(m.updated_at),
            "user_id": m.created_by.partition(":")[2] or m.created_by,
            "description": m.description or "",
            "tags": _tags(m.tags),
            "aliases": [{"alias": a, "version": v} for a, v in m.aliases.items()],
        }
        if m.name in latest:
            item["latest_versions"] = await _version_views(reg, conn, [latest[m.name]])
        out.append(item)
    return out


_CLAUSE = re.compile(
    r"^\s*(?P<field>name|run_id|tags?\.`[^`]+`|tags?\.[\w.\-]+)\s*(?P<op>=|!=|ILIKE|LIKE)\s*"
    r"(?:'(?P<single>[^']*)'|\"(?P<double>[^\"]*)\")\s*$",
    re.IGNORECASE,
)


def parse_filter(text: str | None, *, allow_run_id: bool) -> store.VersionFilter:
    """MLflow's search filter (the subset named in the module docstring) as a :class:`store.VersionFilter`."""
    if not text or not text.strip():
        return store.VersionFilter()
    model: str | None = None
    like: str | None = None
    tags: dict[str, str] = {}
    tags_not: dict[str, str] = {}
    run_id: str | None = None
    for clause in re.split(r"\s+AND\s+", text.strip(), flags=re.IGNORECASE):
        m = _CLAUSE.match(clause)
        if m is None:
            raise MlflowError(f"unsupported filter clause {clause.strip()!r}")
        fld, op = m.group("field"), m.group("op").upper()
        value = m.group("single") if m.group("single") is not None else m.group("double")
        kind = fld.lower()
        if kind == "name" and op in ("=", "LIKE", "ILIKE"):
            if op == "=":
                model = value
            else:
                like = value
        elif kind == "run_id" and allow_run_id and op == "=":
            run_id = value
        elif kind.startswith("tag") and op in ("=", "!="):
            key = fld.partition(".")[2].strip("`")
            (tags if op == "=" else tags_not)[key] = value
        else:
            raise MlflowError(f"unsupported filter clause {clause.strip()!r}")
    return store.VersionFilter(model=model, model_like=like, tags=tags, tags_not=tags_not, run_id=run_id)


def _limit(max_results: int | None, default: int) -> int:
    if max_results is not None and max_results < 1:
        raise MlflowError("max_results must be at least 1")
    return min(max_results or default, 1000)


# --------------------------------------------------------------------------- routes


@router.post("/registered-models/create", summary="MLflow: create a registered model")
async def create_registered_model(
    pool: Pool, reg: Reg, who: Registrar,
    body: Annotated[CreateRegisteredModel, Body(openapi_examples={"basic": {
        "summary": "A model with a tag", "value": {"name": "credit-risk", "tags": [{"key": "team", "value": "risk"}]},
    }})],
) -> dict[str, Any]:
    await reg.create_model(pool, who, ModelCreate(
        name=_name(body.name), description=body.description, tags={t.key: t.value for t in body.tags}))
    async with pool.acquire() as conn:
        row = await store.get_model(conn, body.name)
        return {"registered_model": (await _registered_models(reg, conn, [row]))[0]}


@router.get("/registered-models/get", summary="MLflow: get a registered model")
async def get_registered_model(
    pool: Pool, reg: Reg, _: Viewer, name: Annotated[str, Query(examples=["credit-risk"])],
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        await reg.get_model(conn, name)
        row = await store.get_model(conn, name)
        return {"registered_model": (await _registered_models(reg, conn, [row]))[0]}


@router.get("/registered-models/search", summary="MLflow: search registered models")
async def search_registered_models(
    pool: Pool, reg: Reg, _: Viewer,
    filter: Annotated[str | None, Query(examples=["name LIKE 'credit%'"])] = None,
    max_results: Annotated[int | None, Query(examples=[100])] = None,
    page_token: Annotated[str | None, Query(examples=["eyJpZCI6NDJ9"])] = None,
) -> dict[str, Any]:
    f = parse_filter(filter, allow_run_id=False)
    limit = _limit(max_results, 100)
    cursor = decode_cursor(page_token)
    like = f.model_like
    if f.model is not None:  # exact: the escaped name as a pattern, then an exact match
        like = f.model.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    async with pool.acquire() as conn:
        rows = await store.search_models(conn, name_like=like, tags=f.tags, tag_keys=[], tags_not=f.tags_not,
                                         after=str(cursor["n"]) if cursor else None, limit=limit + 1)
        if f.model is not None:
            rows = [r for r in rows if r["name"] == f.model]
        out: dict[str, Any] = {"registered_models": await _registered_models(reg, conn, rows[:limit])}
    if len(rows) > limit:
        out["next_page_token"] = encode_cursor({"n": rows[limit - 1]["name"]})
    return out


@router.post("/model-versions/create", summary="MLflow: create a model version")
async def create_model_version(
    pool: Pool, reg: Reg, who: Registrar,
    body: Annotated[CreateModelVersion, Body(openapi_examples={"basic": {
        "summary": "A version from a run", "value": {
            "name": "credit-risk", "source": "s3://models/credit-risk/42/model.pkl",
            "run_id": "b8e1f2a3c4d5", "tags": [{"key": "team", "value": "risk"}]},
    }})],
) -> dict[str, Any]:
    registered = await reg.register_version(
        pool, who, _name(body.name),
        VersionRegistration(artifact_uri=body.source, lineage=Lineage(), description=body.description,
                            tags={t.key: t.value for t in body.tags}),
        run_id=body.run_id, run_link=body.run_link,
    )
    return {"model_version": _model_version(registered, body.run_id, body.run_link)}


@router.get("/model-versions/get", summary="MLflow: get a model version")
async def get_model_version(
    pool: Pool, reg: Reg, _: Viewer,
    name: Annotated[str, Query(examples=["credit-risk"])],
    version: Annotated[str, Query(examples=["3"])],
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        row = await reg.version_row(conn, name, _version_number(version))
        return {"model_version": (await _version_views(reg, conn, [row]))[0]}


@router.get("/model-versions/get-download-uri", summary="MLflow: where a version's artifacts are")
async def get_download_uri(
    pool: Pool, reg: Reg, _: Viewer,
    name: Annotated[str, Query(examples=["credit-risk"])],
    version: Annotated[str, Query(examples=["3"])],
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        row = await reg.version_row(conn, name, _version_number(version))
    return {"artifact_uri": row["artifact_uri"]}


@router.get("/model-versions/search", summary="MLflow: search model versions")
async def search_model_versions(
    pool: Pool, reg: Reg, _: Viewer,
    filter: Annotated[str | None, Query(examples=["name = 'credit-risk'"])] = None,
    max_results: Annotated[int | None, Query(examples=[100])] = None,
    page_token: Annotated[str | None, Query(examples=["eyJpZCI6NDJ9"])] = None,
) -> dict[str, Any]:
    f = parse_filter(filter, allow_run_id=True)
    limit = _limit(max_results, 1000)
    cursor = decode_cursor(page_token)
    after = cursor.get("id") if cursor else None
    async with pool.acquire() as conn:
        rows = await store.search_versions(conn, f, after_id=after if isinstance(after, int) else None,
                                           limit=limit + 1)
        out: dict[str, Any] = {"model_versions": await _version_views(reg, conn, rows[:limit])}
    if len(rows) > limit:
        out["next_page_token"] = encode_cursor({"id": rows[limit - 1]["id"]})
    return out


@router.post("/registered-models/alias", summary="MLflow: set an alias")
async def set_registered_model_alias(
    pool: Pool, reg: Reg, who: Operator,
    body: Annotated[SetAlias, Body(openapi_examples={"champion": {
        "summary": "Point an alias at a version", "value": {"name": "credit-risk", "alias": "challenger",
                                                            "version": "4"}}})],
) -> dict[str, Any]:
    if not _ALIAS.match(body.alias):
        raise MlflowError(f"invalid alias {body.alias!r}: lower-case letters, digits, '.', '_' and '-'")
    await reg.set_alias(pool, who, _name(body.name), body.alias, _version_number(body.version), None)
    return {}


@router.delete("/registered-models/alias", summary="MLflow: delete an alias")
async def delete_registered_model_alias(
    pool: Pool, reg: Reg, who: Operator,
    name: Annotated[str | None, Query(examples=["credit-risk"])] = None,
    alias: Annotated[str | None, Query(examples=["challenger"])] = None,
    body: Annotated[DeleteAlias | None, Body(openapi_examples={"challenger": {
        "summary": "Remove an alias (MLflow clients send a JSON body)",
        "value": {"name": "credit-risk", "alias": "challenger"}}})] = None,
) -> dict[str, Any]:
    name = name or (body.name if body else None)
    alias = alias or (body.alias if body else None)
    if not name or not alias:
        raise MlflowError("name and alias are required")
    await reg.delete_alias(pool, who, _name(name), alias)
    return {}


@router.get("/registered-models/alias", summary="MLflow: get a model version by alias")
async def get_model_version_by_alias(
    pool: Pool, reg: Reg, _: Viewer,
    name: Annotated[str, Query(examples=["credit-risk"])],
    alias: Annotated[str, Query(examples=["champion"])],
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        view = await reg.version_by_alias(conn, name, alias)
        row = await reg.version_row(conn, name, int(view.version))
        return {"model_version": (await _version_views(reg, conn, [row]))[0]}
