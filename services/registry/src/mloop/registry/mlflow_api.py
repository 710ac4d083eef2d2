"""MLflow's Model Registry REST API 2.0, so MLflow clients can point at the registry unchanged.

A thin adapter: each route translates MLflow's request and response shapes
(``registered_model``, ``model_version``, ``{key, value}`` tags, millisecond
timestamps, ``{error_code, message}`` errors) onto the same service layer as
the native API: the same store, gates, governance rules, events and roles.

Every call the Python client (``MlflowClient``, ``mlflow.register_model``)
makes to a model registry is served: registered models (create, get,
rename, update, delete, search, get-latest-versions, set-tag, delete-tag),
model versions (create, get, update, delete, search, get-download-uri,
transition-stage, set-tag, delete-tag) and aliases (set, delete, get by
alias). Anything else under ``/api/2.0/mlflow/`` answers MLflow's
``ENDPOINT_NOT_FOUND`` (404), so a client sees the error it knows.

Governance, decided here and documented in the registry's README:

* lineage and metrics ride on version tags (:data:`LINEAGE_TAG`,
  :data:`METRIC_TAG`, see :func:`lineage_from_tags`), read once at
  registration and fixed afterwards; a version without them fails its
  ``lineage-complete`` gate;
* ``champion`` / ``previous-champion`` are never set or removed by hand
  (``PERMISSION_DENIED``); other aliases only point at versions that passed
  validation and are not archived (``INVALID_PARAMETER_VALUE``);
* stages are read from aliases (``Production`` = the champion, ``Archived``);
  ``transition-stage`` archives, and refuses every other target: production
  is reached through an approved promotion and a rollout
  (``PERMISSION_DENIED``), ``Staging``/``None`` have no mloop meaning
  (``INVALID_PARAMETER_VALUE``);
* a model's name is final once it has versions or a policy history
  (``rename``), and a model is deleted only when each of its versions could
  be (never served, never aliased, no promotion trail).

Search filters: ``name = '…'``, ``name LIKE|ILIKE '…'``, ``tags.<key> =|!= '…'``
(``tag.`` and back-quoted keys too, as MLflow clients send) and, for versions,
``run_id = '…'``, joined with ``AND``. ``order_by``: ``name``,
``creation_timestamp`` (or ``timestamp``), ``last_updated_timestamp`` and, for
versions, ``version_number``, each with ``ASC``/``DESC``; without it models
come by name, versions in creation order. Page tokens are opaque offsets.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Annotated, Any, TypeVar

import asyncpg
from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mloop.contracts.payloads import Lineage
from mloop.registry import store
from mloop.registry.deps import Curator, Deleter, ModelWriter, Operator, Reg, Registrar, example, reject_nul
from mloop.registry.domain import CHAMPION
from mloop.registry.errors import (
    ConflictError,
    GovernanceRefused,
    InvalidInput,
    ModelAlreadyExists,
    NotFoundError,
    RegistryError,
    ReviewRefused,
)
from mloop.registry.schemas import ModelCreate, RequestBody, VersionOut, VersionRegistration
from mloop.runtime.deps import Pool, Viewer
from mloop.runtime.pagination import decode_cursor, encode_cursor

__all__ = [
    "LINEAGE_TAG",
    "METRIC_TAG",
    "MlflowError",
    "error_response",
    "install_error_handlers",
    "is_mlflow_path",
    "lineage_from_tags",
    "parse_filter",
    "parse_order_by",
    "router",
]

PREFIX = "/api/2.0/mlflow"
#: MLflow clients read ``{error_code, message}``; the OpenAPI document says so for the codes answered that way.
_MLFLOW_ERROR: dict[str, Any] = {"application/json": {"schema": {
    "type": "object", "required": ["error_code", "message"],
    "properties": {"error_code": {"type": "string", "examples": ["RESOURCE_DOES_NOT_EXIST"]},
                   "message": {"type": "string"}},
}}}
router = APIRouter(
    prefix=PREFIX, tags=["mlflow"], dependencies=[Depends(reject_nul)],
    responses={
        400: {"description": "Invalid parameter or state (MLflow error)", "content": _MLFLOW_ERROR},
        401: {"description": "Missing or invalid bearer token (MLflow error)", "content": _MLFLOW_ERROR},
        403: {"description": "The token lacks the role a write needs (MLflow error)", "content": _MLFLOW_ERROR},
        404: {"description": "No such model, version or alias (MLflow error)", "content": _MLFLOW_ERROR},
    },
)

_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_ALIAS = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")

#: Version tags under this prefix carry lineage: ``mloop.lineage.code.commit``…
LINEAGE_TAG = "mloop.lineage."
#: Version tags under this prefix carry metrics: ``mloop.metric.auc`` = ``0.91``.
METRIC_TAG = "mloop.metric."

STAGES = ("None", "Staging", "Production", "Archived")


# --------------------------------------------------------------------------- errors


class MlflowError(RegistryError):
    """An error in MLflow's terms: ``code`` is an MLflow ``ErrorCode`` name, ``status`` its HTTP status."""

    def __init__(self, message: str, code: str = "INVALID_PARAMETER_VALUE", status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def is_mlflow_path(request: Request) -> bool:
    path = request.url.path
    return path == PREFIX or path.startswith(PREFIX + "/")


def _mlflow_json(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error_code": code, "message": message}, status_code=status, headers=headers)


def error_response(exc: RegistryError) -> JSONResponse:
    """MLflow's ``{error_code, message}`` for a registry error, with the status MLflow uses for that code.

    Never a 5xx: MLflow clients retry those for minutes.
    """
    if isinstance(exc, MlflowError):
        return _mlflow_json(exc.status, exc.code, str(exc))
    if isinstance(exc, NotFoundError):
        return _mlflow_json(404, "RESOURCE_DOES_NOT_EXIST", str(exc))
    if isinstance(exc, ModelAlreadyExists):
        return _mlflow_json(400, "RESOURCE_ALREADY_EXISTS", str(exc))
    if isinstance(exc, GovernanceRefused | ReviewRefused):
        return _mlflow_json(403, "PERMISSION_DENIED", str(exc))
    if isinstance(exc, InvalidInput):
        return _mlflow_json(400, "INVALID_PARAMETER_VALUE", f"{exc.field}: {exc}")
    if isinstance(exc, ConflictError):  # a state the request cannot apply to, as MLflow's own server reports it
        return _mlflow_json(400, "INVALID_PARAMETER_VALUE", str(exc))
    return _mlflow_json(400, "BAD_REQUEST", str(exc))


#: MLflow's code for each status the platform's problem documents use; 422 becomes MLflow's 400.
_CODES = {
    400: "INVALID_PARAMETER_VALUE", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
    404: "ENDPOINT_NOT_FOUND", 405: "ENDPOINT_NOT_FOUND", 409: "RESOURCE_CONFLICT", 429: "REQUEST_LIMIT_EXCEEDED",
    503: "TEMPORARILY_UNAVAILABLE",
}
_KEPT_HEADERS = ("retry-after", "www-authenticate")

Handler = Callable[[Request, Exception], Response | Awaitable[Response]]


def _translated(handler: Handler) -> Handler:
    """``handler`` unchanged off the MLflow routes; on them, its problem document in MLflow's shape."""

    async def on_error(request: Request, exc: Exception) -> Response:
        result = handler(request, exc)
        response = await result if isinstance(result, Awaitable) else result
        if not is_mlflow_path(request):
            return response
        try:
            detail = str(json.loads(bytes(response.body)).get("detail", ""))
        except (ValueError, AttributeError):
            detail = ""
        status = 400 if response.status_code == 422 else response.status_code
        code = _CODES.get(status) or ("INTERNAL_ERROR" if status >= 500 else "INVALID_PARAMETER_VALUE")
        headers = {k: v for k, v in response.headers.items() if k in _KEPT_HEADERS}
        return _mlflow_json(status, code, detail, headers)

    return on_error


def install_error_handlers(app: FastAPI) -> None:
    """On MLflow routes, answer every error the platform produces (auth, validation, routing,
    unstorable values, an unavailable database) in MLflow's shape; elsewhere nothing changes."""
    for key, handler in list(app.exception_handlers.items()):
        app.add_exception_handler(key, _translated(handler))


# --------------------------------------------------------------------------- lineage tags

_LINEAGE_TEXT = {
    "code.repo", "code.commit", "dataset.uri", "dataset.version", "dataset.sha256", "features.version",
    "environment.image", "environment.lock_hash", "retrain_job_id",
}


def lineage_from_tags(tags: Mapping[str, str]) -> tuple[Lineage, dict[str, float]]:
    """The lineage and metrics a version's MLflow tags declare.

    ``mloop.lineage.<section>.<field>`` for the text fields of :class:`Lineage`
    (``code.repo``, ``code.commit``, ``dataset.uri|version|sha256``,
    ``features.version``, ``environment.image|lock_hash``, ``retrain_job_id``),
    ``mloop.lineage.features.schema`` as JSON (``[{"name", "type", "optional"}]``),
    ``mloop.lineage.params.<name>`` for each training parameter and
    ``mloop.metric.<name>`` for each metric (a number). Other tags are ignored.
    Raises :class:`MlflowError` naming the tag for an unknown lineage field or
    an invalid value.
    """
    doc: dict[str, Any] = {}
    params: dict[str, str] = {}
    metrics: dict[str, float] = {}
    for key, value in tags.items():
        if key.startswith(METRIC_TAG):
            name = key.removeprefix(METRIC_TAG)
            try:
                number = float(value)
            except ValueError:
                number = float("nan")
            if not name or number != number or number in (float("inf"), float("-inf")):
                raise MlflowError(f"tag {key}: a metric tag is mloop.metric.<name> with a finite number as value")
            metrics[name] = number
            continue
        if not key.startswith(LINEAGE_TAG):
            continue
        path = key.removeprefix(LINEAGE_TAG)
        if path.startswith("params.") and len(path) > len("params."):
            params[path.removeprefix("params.")] = value
        elif path == "features.schema":
            try:
                doc.setdefault("features", {})["schema"] = json.loads(value)
            except ValueError as exc:
                raise MlflowError(f"tag {key}: not JSON ({exc})") from exc
        elif path in _LINEAGE_TEXT:
            section, _, name = path.partition(".")
            if name:
                doc.setdefault(section, {})[name] = value
            else:
                doc[section] = value
        else:
            known = sorted(f"{LINEAGE_TAG}{p}" for p in (*_LINEAGE_TEXT, "features.schema", "params.<name>"))
            raise MlflowError(f"tag {key}: unknown lineage field; known: {', '.join(known)}")
    if params:
        doc["params"] = params
    try:
        lineage = Lineage.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p != "schema_")
        raise MlflowError(f"tag {LINEAGE_TAG}{where}: {first['msg']}") from exc
    return lineage, metrics


# --------------------------------------------------------------------------- shapes


class Tag(BaseModel):
    key: str = Field(min_length=1, max_length=250)
    value: str = Field("", max_length=5000)


class _Body(RequestBody):
    model_config = ConfigDict(extra="ignore")  # MLflow clients send fields mloop has no use for


class CreateRegisteredModel(_Body):
    name: str
    tags: list[Tag] = Field(default_factory=list, max_length=100)
    description: str | None = Field(None, max_length=10_000)


class UpdateRegisteredModel(_Body):
    name: str
    description: str | None = Field(None, max_length=10_000)


class RenameRegisteredModel(_Body):
    name: str
    new_name: str


class ModelRef(_Body):
    name: str | None = None


class ModelTagSet(_Body):
    name: str
    key: str = Field(min_length=1, max_length=250)
    value: str = Field("", max_length=5000)


class ModelTagRef(_Body):
    name: str | None = None
    key: str | None = None


class LatestVersions(_Body):
    name: str
    stages: list[str] = Field(default_factory=list)


class CreateModelVersion(_Body):
    name: str
    source: str = Field(min_length=1, max_length=2048)
    run_id: str | None = Field(None, max_length=256)
    tags: list[Tag] = Field(default_factory=list, max_length=100)
    run_link: str | None = Field(None, max_length=2048)
    description: str | None = Field(None, max_length=10_000)


class UpdateModelVersion(_Body):
    name: str
    version: str
    description: str | None = Field(None, max_length=10_000)


class VersionRef(_Body):
    name: str | None = None
    version: str | None = None


class VersionTagSet(_Body):
    name: str
    version: str
    key: str = Field(min_length=1, max_length=250)
    value: str = Field("", max_length=5000)


class VersionTagRef(_Body):
    name: str | None = None
    version: str | None = None
    key: str | None = None


class TransitionStage(_Body):
    name: str
    version: str
    stage: str
    archive_existing_versions: bool = False


class SetAlias(_Body):
    name: str
    alias: str
    version: str


class DeleteAlias(_Body):
    name: str | None = None
    alias: str | None = None


_M = TypeVar("_M", bound=BaseModel)


def _build(cls: type[_M], **values: Any) -> _M:
    """``cls(**values)``; :class:`MlflowError` naming the field when a value is out of bounds."""
    try:
        return cls(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise MlflowError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from exc


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _tags(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in sorted(tags.items())]


def _name(name: str) -> str:
    if not _MODEL_NAME.match(name):
        raise MlflowError(f"invalid model name {name!r}: letters, digits, '.', '_' and '-' only")
    return name


def _version_number(version: str) -> int:
    if not version.isdigit() or not 1 <= int(version) <= 999_999_999:
        raise MlflowError(f"invalid version {version!r}: a positive integer")
    return int(version)


def _required(**values: str | None) -> dict[str, str]:
    """The named parameters of a DELETE (query or JSON body); :class:`MlflowError` naming a missing one."""
    missing = [k for k, v in values.items() if not v]
    if missing:
        raise MlflowError(f"missing value for required parameter {missing[0]!r}")
    return {k: v for k, v in values.items() if v}


def _stage(v: VersionOut) -> str:
    """MLflow's stage, read from mloop's state: the champion is ``Production``."""
    if v.status == "archived":
        return "Archived"
    if CHAMPION in v.aliases:
        return "Production"
    return "None"


def _model_version(v: VersionOut, run_id: str | None = None, run_link: str | None = None) -> dict[str, Any]:
    return {
        "name": v.model,
        "version": v.version,
        "creation_timestamp": _ms(v.created_at),
        "last_updated_timestamp": _ms(v.updated_at),
        "user_id": v.registered_by.partition(":")[2] or v.registered_by,
        "current_stage": _stage(v),
        "description": v.description or "",
        "source": v.artifact_uri,
        "run_id": run_id or "",
        "run_link": run_link or "",
        "status": "READY",
        "status_message": "" if v.validation_passed else "validation failed",
        "tags": _tags(v.tags),
        "aliases": v.aliases,
    }


async def _version_views(reg: Reg, conn: asyncpg.Connection, rows: list[Any]) -> list[dict[str, Any]]:
    views = await reg.version_views(conn, rows)
    return [_model_version(v, r["run_id"], r["run_link"]) for v, r in zip(views, rows, strict=True)]


async def _version(reg: Reg, conn: asyncpg.Connection, name: str, version: int) -> dict[str, Any]:
    return (await _version_views(reg, conn, [await reg.version_row(conn, name, version)]))[0]


async def _registered_models(reg: Reg, conn: asyncpg.Connection, rows: list[Any]) -> list[dict[str, Any]]:
    views = await reg.model_views(conn, rows)
    latest = await store.latest_versions(conn, [r["name"] for r in rows])
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


async def _registered_model(reg: Reg, conn: asyncpg.Connection, name: str) -> dict[str, Any]:
    await reg.get_model(conn, name)
    row = await store.get_model(conn, name)
    return (await _registered_models(reg, conn, [row]))[0]


# --------------------------------------------------------------------------- search


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


_ORDER = re.compile(r"^\s*`?(?P<key>[A-Za-z_]+)`?(?:\s+(?P<dir>ASC|DESC))?\s*$", re.IGNORECASE)
_MODEL_KEYS = {"name": "name", "creation_timestamp": "created_at", "timestamp": "created_at",
               "last_updated_timestamp": "updated_at"}
_VERSION_KEYS = {**_MODEL_KEYS, "version_number": "version"}


def parse_order_by(order_by: list[str] | None, *, versions: bool) -> list[tuple[str, bool]]:
    """MLflow's ``order_by`` (``"version_number DESC"``…) as ``(store key, descending)`` pairs.

    Raises :class:`MlflowError` naming an unknown key or a malformed clause.
    """
    keys = _VERSION_KEYS if versions else _MODEL_KEYS
    out = []
    for clause in order_by or []:
        m = _ORDER.match(clause)
        if m is None or m.group("key").lower() not in keys:
            raise MlflowError(f"invalid order_by clause {clause!r}; order by one of {', '.join(sorted(keys))} "
                              "with an optional ASC or DESC")
        out.append((keys[m.group("key").lower()], (m.group("dir") or "ASC").upper() == "DESC"))
    return out


def _page(max_results: int | None, default: int, most: int, page_token: str | None) -> tuple[int, int]:
    """``(limit, offset)`` of a search; :class:`MlflowError` for an invalid size or token."""
    if max_results is not None and not 1 <= max_results <= most:
        raise MlflowError(f"max_results must be between 1 and {most}")
    cursor = decode_cursor(page_token, offset=int) or {}
    offset = cursor.get("offset", 0)
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise MlflowError("page_token is not a token this API issued")
    return max_results or default, offset


# --------------------------------------------------------------------------- registered models


@router.post("/registered-models/create", summary="MLflow: create a registered model")
async def create_registered_model(
    pool: Pool, reg: Reg, who: ModelWriter,
    body: Annotated[CreateRegisteredModel, example(
        basic=({"name": "credit-risk", "tags": [{"key": "team", "value": "risk"}]}, "A model with a tag"),
    )],
) -> dict[str, Any]:
    """``RESOURCE_ALREADY_EXISTS`` when the name is taken (``mlflow.register_model`` then adds a version)."""
    await reg.create_model(pool, who, _build(
        ModelCreate, name=_name(body.name), description=body.description, tags={t.key: t.value for t in body.tags}))
    async with pool.acquire() as conn:
        return {"registered_model": await _registered_model(reg, conn, body.name)}


@router.get("/registered-models/get", summary="MLflow: get a registered model")
async def get_registered_model(
    pool: Pool, reg: Reg, _: Viewer, name: Annotated[str, Query(examples=["credit-risk"])],
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        return {"registered_model": await _registered_model(reg, conn, name)}


@router.patch("/registered-models/update", summary="MLflow: change a registered model's description")
async def update_registered_model(
    pool: Pool, reg: Reg, _: ModelWriter,
    body: Annotated[UpdateRegisteredModel, example(
        basic=({"name": "credit-risk", "description": "Probability of default"}, "New description"),
    )],
) -> dict[str, Any]:
    await reg.update_model(pool, body.name, description=body.description,
                           set_description="description" in body.model_fields_set, tags=None)
    async with pool.acquire() as conn:
        return {"registered_model": await _registered_model(reg, conn, body.name)}


@router.post("/registered-models/rename", summary="MLflow: rename a registered model")
async def rename_registered_model(
    pool: Pool, reg: Reg, _: ModelWriter,
    body: Annotated[RenameRegisteredModel, example(
        basic=({"name": "credit-risk-draft", "new_name": "credit-risk"}, "Rename before any version"),
    )],
) -> dict[str, Any]:
    """Only before the model's first version or policy change: its name keys every event after that."""
    await reg.rename_model(pool, body.name, _name(body.new_name))
    async with pool.acquire() as conn:
        return {"registered_model": await _registered_model(reg, conn, body.new_name)}


@router.delete("/registered-models/delete", summary="MLflow: delete a registered model")
async def delete_registered_model(
    pool: Pool, reg: Reg, who: Deleter,
    name: Annotated[str | None, Query(examples=["credit-risk-draft"])] = None,
    body: Annotated[ModelRef | None, example(
        basic=({"name": "credit-risk-draft"}, "MLflow clients send a JSON body"),
    )] = None,
) -> dict[str, Any]:
    """Refused while any version served traffic, carried an alias or has a promotion trail."""
    args = _required(name=name or (body.name if body else None))
    await reg.delete_model(pool, who, args["name"])
    return {}


@router.get("/registered-models/search", summary="MLflow: search registered models")
async def search_registered_models(
    pool: Pool, reg: Reg, _: Viewer,
    filter: Annotated[str | None, Query(examples=["name LIKE 'credit%'"])] = None,
    max_results: Annotated[int | None, Query(examples=[100])] = None,
    order_by: Annotated[list[str] | None, Query(examples=[["last_updated_timestamp DESC"]])] = None,
    page_token: Annotated[str | None, Query(examples=["eyJvZmZzZXQiOjEwMH0"])] = None,
) -> dict[str, Any]:
    f = parse_filter(filter, allow_run_id=False)
    order = parse_order_by(order_by, versions=False)
    limit, offset = _page(max_results, 100, 1000, page_token)
    async with pool.acquire() as conn:
        rows = await store.search_models(conn, name=f.model, name_like=f.model_like, tags=f.tags, tag_keys=[],
                                         tags_not=f.tags_not, after=None, limit=limit + 1, order_by=order,
                                         offset=offset)
        out: dict[str, Any] = {"registered_models": await _registered_models(reg, conn, rows[:limit])}
    if len(rows) > limit:
        out["next_page_token"] = encode_cursor({"offset": offset + limit})
    return out


async def _latest_versions(pool: Pool, reg: Reg, name: str, stages: list[str]) -> dict[str, Any]:
    wanted = []
    for stage in stages or STAGES:
        known = {s.lower(): s for s in STAGES}.get(stage.lower())
        if known is None:
            raise MlflowError(f"invalid stage {stage!r}; one of {', '.join(STAGES)}")
        wanted.append(known)
    async with pool.acquire() as conn:
        await reg.get_model(conn, name)
        rows = await store.search_versions(conn, store.VersionFilter(model=name), after_id=None, limit=1_000_000)
        views = await _version_views(reg, conn, rows)
    latest: dict[str, dict[str, Any]] = {}
    for v in views:  # in version order: the last one of each stage wins
        latest[v["current_stage"]] = v
    return {"model_versions": [latest[s] for s in dict.fromkeys(wanted) if s in latest]}


@router.post("/registered-models/get-latest-versions", summary="MLflow: the latest version in each stage")
async def get_latest_versions(
    pool: Pool, reg: Reg, _: Viewer,
    body: Annotated[LatestVersions, example(
        production=({"name": "credit-risk", "stages": ["Production"]}, "The champion"),
    )],
) -> dict[str, Any]:
    """Stages are read from mloop's state: ``Production`` is the champion, ``Archived`` the archived
    versions, ``None`` the others; ``Staging`` is always empty."""
    return await _latest_versions(pool, reg, body.name, body.stages)


@router.get("/registered-models/get-latest-versions", summary="MLflow: the latest version in each stage")
async def get_latest_versions_get(
    pool: Pool, reg: Reg, _: Viewer,
    name: Annotated[str, Query(examples=["credit-risk"])],
    stages: Annotated[list[str] | None, Query(examples=[["Production"]])] = None,
) -> dict[str, Any]:
    return await _latest_versions(pool, reg, name, stages or [])


@router.post("/registered-models/set-tag", summary="MLflow: set a registered model's tag")
async def set_registered_model_tag(
    pool: Pool, reg: Reg, _: ModelWriter,
    body: Annotated[ModelTagSet, example(basic=({"name": "credit-risk", "key": "team", "value": "risk"}, "A tag"))],
) -> dict[str, Any]:
    await reg.update_model(pool, body.name, description=None, set_description=False, tags={body.key: body.value})
    return {}


@router.delete("/registered-models/delete-tag", summary="MLflow: delete a registered model's tag")
async def delete_registered_model_tag(
    pool: Pool, reg: Reg, _: ModelWriter,
    name: Annotated[str | None, Query(examples=["credit-risk"])] = None,
    key: Annotated[str | None, Query(examples=["team"])] = None,
    body: Annotated[ModelTagRef | None, example(
        basic=({"name": "credit-risk", "key": "team"}, "MLflow clients send a JSON body"),
    )] = None,
) -> dict[str, Any]:
    args = _required(name=name or (body.name if body else None), key=key or (body.key if body else None))
    await reg.update_model(pool, args["name"], description=None, set_description=False, tags={args["key"]: None})
    return {}


# --------------------------------------------------------------------------- model versions


@router.post("/model-versions/create", summary="MLflow: create a model version")
async def create_model_version(
    pool: Pool, reg: Reg, who: Registrar,
    body: Annotated[CreateModelVersion, example(
        with_lineage=({
            "name": "credit-risk", "source": "s3://models/credit-risk/42/model.pkl", "run_id": "b8e1f2a3c4d5",
            "tags": [{"key": "mloop.lineage.code.commit", "value": "9fceb02d0ae598e95dc970b74767f19372d61af8"},
                     {"key": "mloop.metric.auc", "value": "0.91"}]}, "A version with lineage and a metric in tags"),
    )],
) -> dict[str, Any]:
    """Runs every validation gate on the lineage and metrics its tags carry
    (``mloop.lineage.*``, ``mloop.metric.*``); publishes ``model-registered`` and
    ``model-validated`` like the native registration."""
    tags = {t.key: t.value for t in body.tags}
    lineage, metrics = lineage_from_tags(tags)
    registration = _build(VersionRegistration, artifact_uri=body.source, lineage=lineage, metrics=metrics,
                          description=body.description, tags=tags)
    registered = await reg.register_version(pool, who, _name(body.name), registration,
                                            run_id=body.run_id, run_link=body.run_link)
    return {"model_version": _model_version(registered, body.run_id, body.run_link)}


@router.get("/model-versions/get", summary="MLflow: get a model version")
async def get_model_version(
    pool: Pool, reg: Reg, _: Viewer,
    name: Annotated[str, Query(examples=["credit-risk"])],
    version: Annotated[str, Query(examples=["3"])],
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        return {"model_version": await _version(reg, conn, name, _version_number(version))}


@router.patch("/model-versions/update", summary="MLflow: change a model version's description")
async def update_model_version(
    pool: Pool, reg: Reg, _: Curator,
    body: Annotated[UpdateModelVersion, example(
        basic=({"name": "credit-risk", "version": "3", "description": "weekly retrain"}, "New description"),
    )],
) -> dict[str, Any]:
    number = _version_number(body.version)
    await reg.update_version(pool, body.name, number, description=body.description,
                             set_description="description" in body.model_fields_set, tags=None)
    async with pool.acquire() as conn:
        return {"model_version": await _version(reg, conn, body.name, number)}


@router.delete("/model-versions/delete", summary="MLflow: delete a model version")
async def delete_model_version(
    pool: Pool, reg: Reg, who: Deleter,
    name: Annotated[str | None, Query(examples=["credit-risk"])] = None,
    version: Annotated[str | None, Query(examples=["3"])] = None,
    body: Annotated[VersionRef | None, example(
        basic=({"name": "credit-risk", "version": "3"}, "MLflow clients send a JSON body"),
    )] = None,
) -> dict[str, Any]:
    """Refused for a version that served traffic, carried an alias or has a promotion trail."""
    args = _required(name=name or (body.name if body else None),
                     version=version or (body.version if body else None))
    await reg.delete_version(pool, who, args["name"], _version_number(args["version"]))
    return {}


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
    order_by: Annotated[list[str] | None, Query(examples=[["version_number DESC"]])] = None,
    page_token: Annotated[str | None, Query(examples=["eyJvZmZzZXQiOjEwMH0"])] = None,
) -> dict[str, Any]:
    f = parse_filter(filter, allow_run_id=True)
    order = parse_order_by(order_by, versions=True)
    # MLflow's client asks for 10 000 by default and its server allows 200 000 per page.
    limit, offset = _page(max_results, 10_000, 200_000, page_token)
    limit = min(limit, 10_000)
    async with pool.acquire() as conn:
        rows = await store.search_versions(conn, f, after_id=None, limit=limit + 1, order_by=order, offset=offset)
        out: dict[str, Any] = {"model_versions": await _version_views(reg, conn, rows[:limit])}
    if len(rows) > limit:
        out["next_page_token"] = encode_cursor({"offset": offset + limit})
    return out


@router.post("/model-versions/set-tag", summary="MLflow: set a model version's tag")
async def set_model_version_tag(
    pool: Pool, reg: Reg, _: Curator,
    body: Annotated[VersionTagSet, example(
        basic=({"name": "credit-risk", "version": "3", "key": "qa", "value": "passed"}, "A tag"),
    )],
) -> dict[str, Any]:
    """``mloop.lineage.*`` and ``mloop.metric.*`` are fixed at registration: ``INVALID_PARAMETER_VALUE``."""
    await reg.update_version(pool, body.name, _version_number(body.version), description=None,
                             set_description=False, tags={body.key: body.value})
    return {}


@router.delete("/model-versions/delete-tag", summary="MLflow: delete a model version's tag")
async def delete_model_version_tag(
    pool: Pool, reg: Reg, _: Curator,
    name: Annotated[str | None, Query(examples=["credit-risk"])] = None,
    version: Annotated[str | None, Query(examples=["3"])] = None,
    key: Annotated[str | None, Query(examples=["qa"])] = None,
    body: Annotated[VersionTagRef | None, example(
        basic=({"name": "credit-risk", "version": "3", "key": "qa"}, "MLflow clients send a JSON body"),
    )] = None,
) -> dict[str, Any]:
    args = _required(name=name or (body.name if body else None), version=version or (body.version if body else None),
                     key=key or (body.key if body else None))
    await reg.update_version(pool, args["name"], _version_number(args["version"]), description=None,
                             set_description=False, tags={args["key"]: None})
    return {}


@router.post("/model-versions/transition-stage", summary="MLflow: archive a version (other stages are refused)")
async def transition_model_version_stage(
    pool: Pool, reg: Reg, who: Curator,
    body: Annotated[TransitionStage, example(
        archive=({"name": "credit-risk", "version": "1", "stage": "Archived"}, "Archive a version"),
    )],
) -> dict[str, Any]:
    """``Archived`` archives the version (refused while an alias points to it). ``Production`` is
    refused with ``PERMISSION_DENIED``: a version reaches production through a promotion request
    approved by a second person and a completed rollout. ``Staging`` and ``None`` are refused with
    ``INVALID_PARAMETER_VALUE``: use an alias such as ``challenger`` instead."""
    number = _version_number(body.version)
    stage = body.stage.strip().lower()
    if stage == "production":
        raise GovernanceRefused(
            "a version reaches Production (the champion) only through a promotion request approved by a "
            "second person and a completed rollout: mloop promotion request <model> <version>")
    if stage != "archived":
        raise MlflowError(f"stage {body.stage!r} has no meaning in mloop: only 'Archived' can be set; "
                          "name versions with an alias such as 'challenger' instead")
    await reg.archive_version(pool, who, body.name, number)
    async with pool.acquire() as conn:
        return {"model_version": await _version(reg, conn, body.name, number)}


# --------------------------------------------------------------------------- aliases


@router.post("/registered-models/alias", summary="MLflow: set an alias")
async def set_registered_model_alias(
    pool: Pool, reg: Reg, who: Operator,
    body: Annotated[SetAlias, example(
        challenger=({"name": "credit-risk", "alias": "challenger", "version": "4"}, "Point an alias at a version"),
    )],
) -> dict[str, Any]:
    """``champion`` / ``previous-champion`` are refused (``PERMISSION_DENIED``), and so is a version
    that failed validation or is archived (``INVALID_PARAMETER_VALUE``); publishes ``model-alias-changed``."""
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
    args = _required(name=name or (body.name if body else None), alias=alias or (body.alias if body else None))
    await reg.delete_alias(pool, who, _name(args["name"]), args["alias"])
    return {}


@router.get("/registered-models/alias", summary="MLflow: get a model version by alias")
async def get_model_version_by_alias(
    pool: Pool, reg: Reg, _: Viewer,
    name: Annotated[str, Query(examples=["credit-risk"])],
    alias: Annotated[str, Query(examples=["champion"])],
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        view = await reg.version_by_alias(conn, name, alias)
        return {"model_version": await _version(reg, conn, name, int(view.version))}


# --------------------------------------------------------------------------- everything else


@router.api_route("/{path:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
                  include_in_schema=False)
async def endpoint_not_found(request: Request, path: str) -> JSONResponse:
    """MLflow's answer for an endpoint this server does not have (the tracking API, for one);
    MLflow clients fall back or report it as ``ENDPOINT_NOT_FOUND``."""
    return _mlflow_json(404, "ENDPOINT_NOT_FOUND",
                        f"{request.method} {request.url.path} is not an endpoint of the mloop registry's MLflow API")
