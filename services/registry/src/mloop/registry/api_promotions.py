"""HTTP: the four-eyes promotion workflow — request, approve, reject, list."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query

from mloop.registry import store
from mloop.registry.deps import ModelPath, Reg, Requester, Reviewer, VersionPath, example, reject_nul
from mloop.registry.schemas import PromotionRequestCreate, PromotionRequestOut, ReviewBody
from mloop.runtime.deps import Pool, Viewer
from mloop.runtime.pagination import Page, keyed_page

__all__ = ["router"]

router = APIRouter(tags=["promotion"], dependencies=[Depends(reject_nul)])

RequestId = Annotated[
    str, Path(min_length=1, max_length=64, description="Promotion request id",
              examples=["0193a5c2-7d1e-7c44-b2a1-3f6f0d9b7e10"])
]


@router.post("/models/{name}/versions/{version}/promotion-requests", status_code=201,
             summary="Ask for a validated version to go to production")
async def request_promotion(
    name: ModelPath, version: VersionPath, pool: Pool, reg: Reg, who: Requester,
    body: Annotated[PromotionRequestCreate, example(
        reasoned=({"reason": "beats the champion on AUC; fairness bounds met"}, "With a reason"),
        bare=({}, "Without a reason"),
    )],
) -> PromotionRequestOut:
    """Publishes ``promotion-requested``. 409 unless the version passed validation
    and has no pending request. A model with an auto-approval policy is
    approved at once by ``policy:<name>``."""
    return await reg.request_promotion(pool, who, name, version, body.reason)


@router.get("/promotion-requests", summary="List promotion requests by status")
async def list_requests(
    pool: Pool, reg: Reg, _: Viewer,
    status: Annotated[Literal["pending", "approved", "rejected"] | None, Query(examples=["pending"])] = None,
    model: Annotated[str | None, Query(max_length=128, examples=["credit-risk"])] = None,
    page_token: Annotated[str | None, Query(examples=["eyJpZCI6IjAxOTMifQ"])] = None,
    page_size: Annotated[int, Query(ge=1, le=500, examples=[50])] = 50,
) -> Page[PromotionRequestOut]:
    return await keyed_page(pool, page_token, page_size, key=("id", str, "id"), views=reg.request_views, fetch=(
        lambda conn, after, limit: store.list_requests(conn, status=status, model=model, after_id=after, limit=limit)))


@router.get("/promotion-requests/{request_id}", summary="A promotion request with its reviews")
async def get_request(request_id: RequestId, pool: Pool, reg: Reg, _: Viewer) -> PromotionRequestOut:
    async with pool.acquire() as conn:
        return await reg.get_request(conn, request_id)


@router.post("/promotion-requests/{request_id}/approve", summary="Approve (a reviewer other than the requester)")
async def approve(
    request_id: RequestId, pool: Pool, reg: Reg, who: Reviewer,
    body: Annotated[ReviewBody, example(
        commented=({"comment": "lineage and gates checked"}, "With a comment"), bare=({}, "Without a comment"),
    )],
) -> PromotionRequestOut:
    """Publishes ``promotion-reviewed`` and, once enough reviewers approved,
    ``model-promoted`` with the previous champion and the approvers. 403 for
    the requester."""
    return await reg.review_request(pool, who, request_id, "approved", body.comment)


@router.post("/promotion-requests/{request_id}/reject", summary="Reject, saying why")
async def reject(
    request_id: RequestId, pool: Pool, reg: Reg, who: Reviewer,
    body: Annotated[ReviewBody, example(
        reasoned=({"comment": "segment recall for region=south below 0.6"}, "A rejection needs a comment"),
    )],
) -> PromotionRequestOut:
    """Publishes ``promotion-reviewed``. 422 without a comment; 403 for the requester."""
    return await reg.review_request(pool, who, request_id, "rejected", body.comment)
