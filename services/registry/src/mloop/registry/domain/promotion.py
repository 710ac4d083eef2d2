"""Promotion rules (:func:`check_promotable`, :func:`review`,
:func:`auto_approver`): only a validated version may be requested; four
eyes; a rejection needs a comment; a model's explicit auto-approval policy
is recorded as the approving actor ``policy:<name>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mloop.registry.domain.lifecycle import CHAMPION, VersionState
from mloop.registry.domain.policy import Policy
from mloop.registry.errors import (
    AlreadyReviewed,
    CommentRequired,
    NotPromotable,
    RequestClosed,
    SelfReview,
)

__all__ = [
    "Decision",
    "PromotionState",
    "ReviewOutcome",
    "auto_approver",
    "check_promotable",
    "review",
]


Decision = Literal["approved", "rejected"]


def check_promotable(version: VersionState, *, pending_request: str | None) -> None:
    """Raise :class:`NotPromotable` unless a promotion request may be filed for ``version``."""
    if not version.validation_passed or version.status == "validation-failed":
        raise NotPromotable(f"version {version.version} did not pass validation; only a validated version "
                            "can be requested for promotion")
    if pending_request is not None:
        raise NotPromotable(f"version {version.version} already has a pending request {pending_request}")
    if version.status in ("archived", "rolled-back"):
        raise NotPromotable(f"version {version.version} is {version.status}")
    if version.status == "promoted":
        raise NotPromotable(f"version {version.version} is already promoted; its rollout is under way")
    if CHAMPION in version.aliases:
        raise NotPromotable(f"version {version.version} is already the champion")


@dataclass(frozen=True)
class PromotionState:
    """A promotion request as the review rules see it."""

    id: str
    status: Literal["pending", "approved", "rejected"]
    requested_by: str  # actor, e.g. user:alice
    requester_sub: str
    approvals: tuple[str, ...] = ()  # reviewer subjects who approved so far


@dataclass(frozen=True)
class ReviewOutcome:
    """The request's status after a review; ``promoted`` when it publishes ``model-promoted``."""

    status: Literal["pending", "approved", "rejected"]
    approvals: tuple[str, ...]
    promoted: bool


def review(
    request: PromotionState,
    *,
    reviewer_sub: str,
    decision: Decision,
    comment: str | None,
    required_approvals: int,
) -> ReviewOutcome:
    """Apply one review.

    Raises :class:`RequestClosed` for a decided request, :class:`SelfReview`
    when the reviewer is the requester (four eyes), :class:`AlreadyReviewed`
    for a second approval by the same reviewer, :class:`CommentRequired` for
    a rejection without a comment.
    """
    if request.status != "pending":
        raise RequestClosed(f"promotion request {request.id} is already {request.status}")
    if reviewer_sub == request.requester_sub:
        raise SelfReview(f"four eyes: {request.requested_by} filed this request and cannot review it")
    if decision == "rejected":
        if comment is None or not comment.strip():
            raise CommentRequired()
        return ReviewOutcome(status="rejected", approvals=request.approvals, promoted=False)
    if reviewer_sub in request.approvals:
        raise AlreadyReviewed(f"{reviewer_sub} already approved promotion request {request.id}")
    approvals = (*request.approvals, reviewer_sub)
    done = len(approvals) >= required_approvals
    return ReviewOutcome(status="approved" if done else "pending", approvals=approvals, promoted=done)


def auto_approver(policy: Policy) -> str | None:
    """The actor that approves automatically (``policy:<name>``), or None for four-eyes review."""
    return f"policy:{policy.auto_approval}" if policy.auto_approval else None
