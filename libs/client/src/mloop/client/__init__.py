"""The mloop SDK for serving systems, training pipelines and tools.

- :class:`PredictionLogger` / :class:`GroundTruthLogger` (and their ``Sync``
  variants): log predictions and labels to the platform, batched, bounded,
  never blocking the serving path beyond ``max_block_ms``.
- :class:`TrafficRouter` / :class:`RouterFollower`: route requests to model
  versions following the rollout service's ``traffic-split-changed`` tables.
- :func:`build_training_profile`: the reference profile a trainer attaches
  to a version's registration.
- :class:`MloopClient` and the per-service clients: typed async HTTP clients.
"""

from mloop.client._exceptions import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    LoggerClosed,
    MloopError,
    NotFoundError,
    PermissionDeniedError,
    ServerError,
    TransportError,
)
from mloop.client.loggers import (
    GroundTruthLogger,
    LoggerStats,
    PredictionLogger,
    SyncGroundTruthLogger,
    SyncPredictionLogger,
)
from mloop.client.profiles import build_training_profile, profile_from_rows
from mloop.client.router import RouteDecision, RouterFollower, TrafficRouter, UnknownModel
from mloop.client.services import (
    AuditClient,
    Endpoints,
    MloopClient,
    MonitorClient,
    RegistryClient,
    RetrainClient,
    RolloutClient,
)

__all__ = [
    "ApiError",
    "AuditClient",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "Endpoints",
    "GroundTruthLogger",
    "LoggerClosed",
    "LoggerStats",
    "MloopClient",
    "MloopError",
    "MonitorClient",
    "NotFoundError",
    "PermissionDeniedError",
    "PredictionLogger",
    "RegistryClient",
    "RetrainClient",
    "RolloutClient",
    "RouteDecision",
    "RouterFollower",
    "ServerError",
    "SyncGroundTruthLogger",
    "SyncPredictionLogger",
    "TrafficRouter",
    "TransportError",
    "UnknownModel",
    "build_training_profile",
    "profile_from_rows",
]
