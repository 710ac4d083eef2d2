"""HTTP: versions — register (the pipelines' contract), search, everything about one, tags, archive, delete."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response

from mloop.registry import store
from mloop.registry.api_models import TagQuery, like_pattern, parse_tags
from mloop.registry.deps import (
    Curator,
    Deleter,
    ModelPath,
    Reg,
    Registrar,
    Revalidator,
    VersionPath,
    example,
    reject_nul,
)
from mloop.registry.domain import VersionStatus
from mloop.registry.errors import ModelNotFound
from mloop.registry.schemas import (
    REGISTRATION_EXAMPLE,
    RegistrationOut,
    VersionDetail,
    VersionOut,
    VersionPatch,
    VersionRegistration,
)
from mloop.runtime.deps import Pool, Viewer
from mloop.runtime.pagination import Page, fetch_page, key_after, key_token

__all__ = ["router"]

router = APIRouter(tags=["versions"], dependencies=[Depends(reject_nul)])

_RETRAIN_EXAMPLE = copy.deepcopy(REGISTRATION_EXAMPLE)
_RETRAIN_EXAMPLE["lineage"]["retrain_job_id"] = "0193a5c2-7d1e-7c44-b2a1-3f6f0d9b7e10"
_RETRAIN_EXAMPLE["description"] = "retrain after drift on income"


@router.post("/models/{name}/versions", status_code=201, summary="Register a version with its lineage")
async def register_version(
    name: ModelPath, pool: Pool, reg: Reg, who: Registrar,
    body: Annotated[VersionRegistration, example(
        weekly=(REGISTRATION_EXAMPLE, "A scheduled retrain with full lineage"),
        retrain_job=(_RETRAIN_EXAMPLE, "Produced by a retrain job"),
    )],
) -> RegistrationOut:
    """Numbers the version (1, 2, 3… per model), runs every validation gate and
    returns the result. A failing gate is not an error: the version is stored
    with status ``validation-failed`` and cannot be promoted."""
    return await reg.register_version(pool, who, name, body)


Statuses = Annotated[
    list[VersionStatus] | None, Query(description="Any of these statuses", examples=[["validated"]])
]
After = Annotated[datetime | None, Query(description="Created at or after", examples=["2026-11-01T00:00:00Z"])]
Before = Annotated[datetime | None, Query(description="Created before", examples=["2026-12-01T00:00:00Z"])]
Order = Annotated[Literal["asc", "desc"], Query(description="Creation order", examples=["desc"])]
PageToken = Annotated[str | None, Query(examples=["eyJpZCI6NDJ9"])]
PageSize = Annotated[int, Query(ge=1, le=500, examples=[50])]


async def _search(
    pool: Pool, reg: Reg, f: store.VersionFilter, order: str, page_token: str | None, page_size: int
) -> Page[VersionOut]:
    after = key_after(page_token, "id", int)
    async with pool.acquire() as conn:
        if f.model is not None and await store.get_model(conn, f.model) is None:
            raise ModelNotFound(f.model)
        rows, token = await fetch_page(
            lambda limit: store.search_versions(conn, f, after_id=after, limit=limit, newest_first=order == "desc"),
            page_size, lambda last: key_token("id", last["id"]))
        return Page[VersionOut](items=await reg.version_views(conn, rows), next_page_token=token)


@router.get("/versions", summary="Search versions across models",
            responses={404: {"description": "The model filter names no model"}})
async def search_versions(
    pool: Pool, reg: Reg, _: Viewer,
    model: Annotated[str | None, Query(max_length=128, description="Exact model name", examples=["credit-risk"])]
    = None,
    q: Annotated[str | None, Query(max_length=128, description="Substring of the model name", examples=["credit"])]
    = None,
    tag: TagQuery = None,
    alias: Annotated[str | None, Query(max_length=64, examples=["champion"])] = None,
    status: Statuses = None,
    created_after: After = None,
    created_before: Before = None,
    order: Order = "asc",
    page_token: PageToken = None,
    page_size: PageSize = 50,
) -> Page[VersionOut]:
    equal, present = parse_tags(tag)
    f = store.VersionFilter(model=model, model_like=like_pattern(q), tags=equal, tag_keys=present, alias=alias,
                            status=status or (), created_after=created_after, created_before=created_before)
    return await _search(pool, reg, f, order, page_token, page_size)


@router.get("/models/{name}/versions", summary="Search a model's versions")
async def list_versions(
    name: ModelPath, pool: Pool, reg: Reg, _: Viewer,
    tag: TagQuery = None,
    alias: Annotated[str | None, Query(max_length=64, examples=["champion"])] = None,
    status: Statuses = None,
    created_after: After = None,
    created_before: Before = None,
    order: Order = "asc",
    page_token: PageToken = None,
    page_size: PageSize = 50,
) -> Page[VersionOut]:
    equal, present = parse_tags(tag)
    f = store.VersionFilter(model=name, tags=equal, tag_keys=present, alias=alias, status=status or (),
                            created_after=created_after, created_before=created_before)
    return await _search(pool, reg, f, order, page_token, page_size)


@router.get("/models/{name}/versions/{version}", summary="Everything about a version")
@router.get("/models/{name}/versions/{version}/history", summary="Everything about a version (same document)")
async def get_version(name: ModelPath, version: VersionPath, pool: Pool, reg: Reg, _: Viewer) -> VersionDetail:
    """Lineage, metrics, every gate's result, promotion requests with their
    reviews, the alias history and the rollouts seen — in one document."""
    async with pool.acquire() as conn:
        return await reg.version_detail(conn, name, version)


@router.patch("/models/{name}/versions/{version}", summary="Change a version's description or tags")
async def patch_version(
    name: ModelPath, version: VersionPath, pool: Pool, reg: Reg, _: Curator,
    body: Annotated[VersionPatch, example(
        tags=({"tags": {"qa": "passed", "draft": None}}, "Set one tag, remove another"),
    )],
) -> VersionOut:
    return await reg.update_version(pool, name, version, description=body.description,
                                    set_description="description" in body.model_fields_set, tags=body.tags)


@router.post("/models/{name}/versions/{version}/validate", summary="Run the validation gates again")
async def revalidate_version(
    name: ModelPath, version: VersionPath, pool: Pool, reg: Reg, who: Revalidator,
) -> RegistrationOut:
    """With today's policy and champion (after a policy change, say); publishes
    ``model-validated``. 409 once the version was requested for promotion."""
    return await reg.revalidate(pool, who, name, version)


@router.post("/models/{name}/versions/{version}/archive", summary="Archive a version")
async def archive_version(name: ModelPath, version: VersionPath, pool: Pool, reg: Reg, who: Curator) -> VersionOut:
    """Archived versions stay readable forever; 409 while an alias points to it.
    Publishes ``model-version-retired``."""
    return await reg.archive_version(pool, who, name, version)


@router.delete("/models/{name}/versions/{version}", status_code=204, summary="Delete a version that never served")
async def delete_version(name: ModelPath, version: VersionPath, pool: Pool, reg: Reg, who: Deleter) -> Response:
    """409 for a version that served traffic, has aliases or a promotion trail: archive it instead.
    Publishes ``model-version-retired``."""
    await reg.delete_version(pool, who, name, version)
    return Response(status_code=204)
