"""The audit service's settings (environment variables with the ``MLOOP_`` prefix)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from mloop.runtime.errors import ConfigurationError
from mloop.runtime.settings import ServiceSettings

__all__ = ["AuditSettings"]


# The ignore is for type checks that cannot see the workspace's other packages.
class AuditSettings(ServiceSettings):  # type: ignore[misc,unused-ignore]
    service_name: str = "audit"
    http_port: int = Field(8105, ge=1, le=65535)

    audit_signing_key: SecretStr | None = Field(
        None,
        description="Ed25519 private key that signs checkpoints (MLOOP_AUDIT_SIGNING_KEY): unencrypted "
        "PKCS#8 PEM or the standard base64 of the 32-byte seed. Required outside development and test, "
        "where a key is otherwise generated once and kept in <data_dir>/signing-key.pem.",
    )
    data_dir: Path = Field(
        Path(".local/audit"), description="Local files: the development signing key (git-ignored by default)"
    )
    checkpoint_dir: Path | None = Field(
        None,
        description="Where every signed checkpoint is also written, outside Postgres "
        "(defaults to <data_dir>/checkpoints).",
    )
    checkpoint_every_events: int = Field(1000, ge=1, description="Sign a checkpoint after this many new rows")
    checkpoint_interval_s: float = Field(10.0, gt=0, description="... or after this many seconds")
    origin_prefix: str = Field(
        "mloop/audit", pattern=r"^[^\s+]+$", description="Checkpoint origins are <origin_prefix>/<chain>"
    )
    writer_role: str | None = Field(
        "mloop_audit_writer",
        description="Database role (INSERT and SELECT on the ledger only) that ingestion writes as; "
        "empty to write as the login user.",
    )
    ingest_batch_max: int = Field(2000, ge=1, description="Most Kafka records applied per transaction")

    @model_validator(mode="after")
    def _signing_key_outside_development(self) -> AuditSettings:
        if self.environment in ("development", "test"):
            return self
        if self.audit_signing_key is None or not self.audit_signing_key.get_secret_value().strip():
            raise ConfigurationError(
                "MLOOP_AUDIT_SIGNING_KEY is not set; an Ed25519 key (PEM or base64) is required outside development"
            )
        return self

    @property
    def checkpoint_path(self) -> Path:
        return self.checkpoint_dir if self.checkpoint_dir is not None else self.data_dir / "checkpoints"

    def origin(self, chain: str) -> str:
        return f"{self.origin_prefix}/{chain}"
