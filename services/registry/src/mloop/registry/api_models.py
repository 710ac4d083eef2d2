"""HTTP: models (create, get, search, tags), their aliases and their validation policies."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from mloop.registry import store
from mloop.registry.deps import AliasPath, ModelPath, ModelWriter, Operator, Reg, example, reject_nul
from mloop.registry.domain import POLICY_EXAMPLE, Policy
from mloop.registry.errors import InvalidInput
from mloop.registry.schemas import (
    AliasMoveOut,
    AliasOut,
    AliasSet,
    ModelCreate,
    ModelOut,
    ModelPatch,
    PolicyChange,
    PolicyView,
    VersionOut,
)
from mloop.runtime.deps import Pool, SettingReason, Viewer
from mloop.runtime.pagination import Page, keyed_page

__all__ = ["TagQuery", "like_pattern", "parse_tags", "router"]

router = APIRouter(tags=["models"], dependencies=[Depends(reject_nul)])

TagQuery = Annotated[
    list[str] | None,
    Query(description="key:value (tag equals) or key (tag present); repeat to require several",
          examples=[["team:risk"]]),
]


def parse_tags(tags: list[str] | None) -> tuple[dict[str, str], list[str]]:
    """``key:value`` → equality filters, ``key`` → presence filters."""
    equal: dict[str, str] = {}
    present: list[str] = []
    for t in tags or []:
        key, sep, value = t.partition(":")
        if not key:
            raise InvalidInput(f"tag filter {t!r} has no key", field="query.tag")
        if sep:
            equal[key] = value
        else:
            present.append(key)
    return equal, present


def like_pattern(q: str | None) -> str | None:
    """A case-insensitive substring pattern for ``q`` (LIKE wildcards in it are literal)."""
    if not q:
        return None
    return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@router.post("/models", status_code=201, summary="Create a model")
async def create_model(
    pool: Pool, reg: Reg, who: ModelWriter,
    body: Annotated[ModelCreate, example(
        basic=({"name": "credit-risk"}, "Just a name"),
        described=({"name": "credit-risk", "description": "Probability of default", "tags": {"team": "risk"}},
                   "With a description and tags"),
    )],
) -> ModelOut:
    """Create an empty model; versions are registered under it. 409 when the name is taken."""
    return await reg.create_model(pool, who, body)


@router.get("/models", summary="Search models")
async def search_models(
    pool: Pool, reg: Reg, _: Viewer,
    q: Annotated[str | None, Query(max_length=128, description="Substring of the name", examples=["credit"])] = None,
    tag: TagQuery = None,
    page_token: Annotated[str | None, Query(examples=["eyJuIjoiY3JlZGl0LXJpc2sifQ"])] = None,
    page_size: Annotated[int, Query(ge=1, le=500, examples=[50])] = 50,
) -> Page[ModelOut]:
    equal, present = parse_tags(tag)
    return await keyed_page(pool, page_token, page_size, key=("n", str, "name"), views=reg.model_views, fetch=(
        lambda conn, after, limit: store.search_models(conn, name_like=like_pattern(q), tags=equal, tag_keys=present,
                                                       after=after, limit=limit)))


@router.get("/models/{name}", summary="Get a model with its aliases and latest version")
async def get_model(name: ModelPath, pool: Pool, reg: Reg, _: Viewer) -> ModelOut:
    async with pool.acquire() as conn:
        return await reg.get_model(conn, name)


@router.patch("/models/{name}", summary="Change a model's description or tags")
async def patch_model(
    name: ModelPath, pool: Pool, reg: Reg, _: ModelWriter,
    body: Annotated[ModelPatch, example(
        tags=({"tags": {"tier": "1", "obsolete": None}}, "Set one tag, remove another"),
        description=({"description": "PD model on v2 features"}, "New description"),
    )],
) -> ModelOut:
    return await reg.update_model(pool, name, description=body.description,
                                  set_description="description" in body.model_fields_set, tags=body.tags)


# --------------------------------------------------------------------------- aliases


@router.get("/models/{name}/aliases/{alias}", tags=["aliases"], summary="The version an alias points to")
async def get_alias(name: ModelPath, alias: AliasPath, pool: Pool, reg: Reg, _: Viewer) -> VersionOut:
    async with pool.acquire() as conn:
        return await reg.version_by_alias(conn, name, alias)


@router.put("/models/{name}/aliases/{alias}", tags=["aliases"], summary="Point an alias at a version")
async def set_alias(
    name: ModelPath, alias: AliasPath, pool: Pool, reg: Reg, who: Operator,
    body: Annotated[AliasSet, example(
        challenger=({"version": "4", "reason": "A/B test against the champion"}, "Name a challenger"),
    )],
) -> AliasOut:
    """One version per alias; every move is recorded and published as ``model-alias-changed``."""
    return await reg.set_alias(pool, who, name, alias, int(body.version), body.reason)


@router.delete("/models/{name}/aliases/{alias}", tags=["aliases"], summary="Remove an alias")
async def delete_alias(name: ModelPath, alias: AliasPath, pool: Pool, reg: Reg, who: Operator) -> AliasOut:
    return await reg.delete_alias(pool, who, name, alias)


@router.get("/models/{name}/alias-history", tags=["aliases"], summary="Every alias move of a model, oldest first")
async def alias_history(name: ModelPath, pool: Pool, reg: Reg, _: Viewer) -> list[AliasMoveOut]:
    async with pool.acquire() as conn:
        return await reg.alias_history(conn, name)


# --------------------------------------------------------------------------- policies


@router.get("/validation-policies/default", tags=["policies"], summary="The default validation and promotion policy")
async def get_default_policy(pool: Pool, reg: Reg, _: Viewer) -> Policy:
    async with pool.acquire() as conn:
        return (await reg.policy_for(conn, None)).default


@router.put("/validation-policies/default", tags=["policies"], summary="Replace the default policy")
async def put_default_policy(
    pool: Pool, reg: Reg, who: Operator,
    body: Annotated[Policy, example(strict=(POLICY_EXAMPLE, "Tolerances, segment bounds, one approval"))],
    reason: SettingReason = None,
) -> Policy:
    """Every change is kept (``/validation-policies/default/history``) and published as
    ``validation-policy-changed``."""
    if body.auto_approval is not None:
        raise InvalidInput("auto-approval is granted per model, never by default", field="body.auto_approval")
    return (await reg.put_default_policy(pool, who, body, reason)).default


@router.get("/models/{name}/validation-policy", tags=["policies"],
            summary="A model's policy: default, override, effective")
async def get_model_policy(name: ModelPath, pool: Pool, reg: Reg, _: Viewer) -> PolicyView:
    async with pool.acquire() as conn:
        await reg.get_model(conn, name)
        return await reg.policy_for(conn, name)


@router.put("/models/{name}/validation-policy", tags=["policies"], summary="Override policy fields for one model")
async def put_model_policy(
    name: ModelPath, pool: Pool, reg: Reg, who: Operator,
    body: Annotated[dict[str, Any], example(
        tolerance=({"metric_tolerance": 0.02, "required_metrics": ["auc"]}, "Looser tolerance, AUC required"),
        auto=({"auto_approval": "low-risk-nightly"}, "Approve promotions automatically (recorded as the policy)"),
        four_eyes_twice=({"required_approvals": 2}, "Two reviewers"),
    )],
    reason: SettingReason = None,
) -> PolicyView:
    """The body holds only the fields to override; the rest come from the default policy.

    Every change is kept (``/models/{name}/validation-policy/history``) and published
    as ``validation-policy-changed``."""
    unknown = sorted(set(body) - set(Policy.model_fields))
    if unknown:
        raise InvalidInput(f"unknown policy fields: {', '.join(unknown)}", field=f"body.{unknown[0]}")
    return await reg.put_model_policy(pool, who, name, body, reason)


@router.delete("/models/{name}/validation-policy", tags=["policies"], summary="Drop a model's override")
async def delete_model_policy(
    name: ModelPath, pool: Pool, reg: Reg, who: Operator, reason: SettingReason = None
) -> PolicyView:
    return await reg.delete_model_policy(pool, who, name, reason)


@router.get("/validation-policies/default/history", tags=["policies"], summary="Every change of the default policy")
async def default_policy_history(pool: Pool, reg: Reg, _: Viewer) -> list[PolicyChange]:
    async with pool.acquire() as conn:
        return await reg.policy_history(conn, None)


@router.get("/models/{name}/validation-policy/history", tags=["policies"],
            summary="Every change of a model's override, who made it and when")
async def model_policy_history(name: ModelPath, pool: Pool, reg: Reg, _: Viewer) -> list[PolicyChange]:
    async with pool.acquire() as conn:
        return await reg.policy_history(conn, name)
