"""Settings: one pydantic-settings class per service, inheriting :class:`ServiceSettings`.

Nothing else in a service reads ``os.environ``. Secrets are ``SecretStr`` so
they never appear in logs or reprs, and placeholder values are refused outside
development and test.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mloop.runtime.errors import ConfigurationError

__all__ = ["PLACEHOLDER_SECRETS", "ServiceSettings"]

PLACEHOLDER_SECRETS = frozenset(
    {"", "changeme", "change-me", "secret", "dev-insecure-secret-change-me", "password", "xxx"}
)
DEV_JWT_SECRET = "dev-insecure-secret-change-me"


class ServiceSettings(BaseSettings):
    """What every service needs. Environment variables use the ``MLOOP_`` prefix,
    except the two shared endpoints ``KAFKA_BOOTSTRAP_SERVERS`` and ``DATABASE_URL``."""

    model_config = SettingsConfigDict(env_prefix="MLOOP_", extra="ignore", case_sensitive=False)

    service_name: str = Field(description="Service name, e.g. registry")
    environment: Literal["development", "test", "production"] = "development"
    http_host: str = "127.0.0.1"
    http_port: int = Field(8100, ge=1, le=65535)
    http_header_timeout_s: float = Field(10.0, gt=0, description="Close a connection whose request head is late")
    http_keepalive_timeout_s: int = Field(5, ge=1, description="Close an idle keep-alive connection after this")

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "MLOOP_KAFKA_BOOTSTRAP_SERVERS"),
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None
    topic_prefix: str = Field("", description="Prepended to every topic name (isolation)")
    consumer_group: str | None = Field(None, description="Defaults to mloop-<service>")

    database_url: SecretStr = Field(
        SecretStr("postgresql://postgres@127.0.0.1:5433/mloop"),
        validation_alias=AliasChoices("DATABASE_URL", "MLOOP_DATABASE_URL"),
    )
    db_schema: str | None = Field(None, description="Defaults to the service name")
    db_pool_min: int = 1
    db_pool_max: int = 10

    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_issuer: str = "mloop"
    jwt_audience: str = "mloop"

    outbox_poll_interval_s: float = Field(0.5, gt=0)
    max_body_bytes: int = Field(1_048_576, gt=0)
    log_level: str = "INFO"
    log_json: bool = True
    gc_gen0_threshold: int = Field(
        50_000, ge=0, description="Allocations between the garbage collector's young-generation passes in a "
        "service process (0: Python's default). A consumer decoding thousands of records per batch allocates "
        "fast; at Python's default 700 the passes cost it about a tenth of its CPU")
    otel_traces_exporter: Literal["none", "console", "otlp"] = "none"

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> ServiceSettings:
        if self.environment in ("development", "test"):
            return self
        secret = self.jwt_secret.get_secret_value()
        if secret.lower() in PLACEHOLDER_SECRETS or len(secret) < 32:
            raise ConfigurationError(
                "MLOOP_JWT_SECRET is a placeholder or shorter than 32 characters; "
                "set a real secret outside development"
            )
        return self

    @property
    def schema_name(self) -> str:
        return (self.db_schema or self.service_name).replace("-", "_")

    @property
    def group_id(self) -> str:
        return self.consumer_group or f"mloop-{self.service_name}"

    @property
    def source(self) -> str:
        return f"/mloop/{self.service_name}"

    def topic(self, name: str) -> str:
        return self.topic_prefix + name

    def kafka_client_options(self) -> dict[str, Any]:
        """Connection options shared by producers, consumers and admin clients."""
        opts: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap_servers,
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            opts["ssl_context"] = create_ssl_context(
                cafile=self.kafka_ssl_cafile,
                certfile=self.kafka_ssl_certfile,
                keyfile=self.kafka_ssl_keyfile,
            )
        if self.kafka_sasl_mechanism:
            opts["sasl_mechanism"] = self.kafka_sasl_mechanism
            opts["sasl_plain_username"] = self.kafka_sasl_username
            opts["sasl_plain_password"] = (
                self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None
            )
        return opts
