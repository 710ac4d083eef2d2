"""Errors of the registry's domain and service layer.

The HTTP layer turns each into a problem document; the status it gets is
named on the right::

    RegistryError
    ├── NotFoundError                       404
    │   ├── ModelNotFound
    │   ├── VersionNotFound
    │   ├── AliasNotFound
    │   └── PromotionRequestNotFound
    ├── ConflictError                       409
    │   ├── ModelAlreadyExists
    │   ├── NotPromotable           the version cannot be requested for promotion
    │   ├── RequestClosed           the request was already decided
    │   ├── AlreadyReviewed         this reviewer already approved it
    │   ├── VersionInUse            archive/delete refused (aliases, traffic)
    │   └── VersionNotEligible      an alias may not point at a failed or archived version
    ├── ReviewRefused                       403
    │   └── SelfReview              four eyes: the requester cannot review
    ├── GovernanceRefused                   403
    │   └── ProtectedAlias          champion / previous-champion move only by rollout
    └── InvalidInput                        422 (``field`` names what is wrong)
        └── CommentRequired         a rejection without a comment
"""

from __future__ import annotations

__all__ = [
    "AliasNotFound",
    "AlreadyReviewed",
    "CommentRequired",
    "ConflictError",
    "GovernanceRefused",
    "InvalidInput",
    "ModelAlreadyExists",
    "ModelNotFound",
    "NotFoundError",
    "NotPromotable",
    "PromotionRequestNotFound",
    "ProtectedAlias",
    "RegistryError",
    "RequestClosed",
    "ReviewRefused",
    "SelfReview",
    "VersionInUse",
    "VersionNotEligible",
    "VersionNotFound",
]


class RegistryError(Exception):
    """Base of every registry error; the message is meant for the caller."""


class NotFoundError(RegistryError):
    pass


class ModelNotFound(NotFoundError):
    def __init__(self, model: str) -> None:
        super().__init__(f"model {model!r} does not exist")
        self.model = model


class VersionNotFound(NotFoundError):
    def __init__(self, model: str, version: int | str) -> None:
        super().__init__(f"model {model!r} has no version {version}")
        self.model = model
        self.version = str(version)


class AliasNotFound(NotFoundError):
    def __init__(self, model: str, alias: str) -> None:
        super().__init__(f"model {model!r} has no alias {alias!r}")


class PromotionRequestNotFound(NotFoundError):
    def __init__(self, request_id: str) -> None:
        super().__init__(f"promotion request {request_id!r} does not exist")


class ConflictError(RegistryError):
    pass


class ModelAlreadyExists(ConflictError):
    def __init__(self, model: str) -> None:
        super().__init__(f"model {model!r} already exists")
        self.model = model


class NotPromotable(ConflictError):
    pass


class RequestClosed(ConflictError):
    pass


class AlreadyReviewed(ConflictError):
    pass


class VersionInUse(ConflictError):
    pass


class VersionNotEligible(ConflictError):
    pass


class ReviewRefused(RegistryError):
    pass


class SelfReview(ReviewRefused):
    pass


class GovernanceRefused(RegistryError):
    pass


class ProtectedAlias(GovernanceRefused):
    pass


class InvalidInput(RegistryError):
    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class CommentRequired(InvalidInput):
    def __init__(self) -> None:
        super().__init__("a rejection needs a comment saying why", field="body.comment")
