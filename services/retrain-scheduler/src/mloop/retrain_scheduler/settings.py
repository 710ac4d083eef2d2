"""The retrain scheduler's settings (environment variables with the ``MLOOP_`` prefix)."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from mloop.runtime.errors import ConfigurationError
from mloop.runtime.settings import PLACEHOLDER_SECRETS, ServiceSettings

__all__ = ["RetrainSchedulerSettings"]


# The ignore is for type checks that cannot see the workspace's other packages.
class RetrainSchedulerSettings(ServiceSettings):  # type: ignore[misc,unused-ignore]
    service_name: str = "retrain-scheduler"
    http_port: int = Field(8104, ge=1, le=65535)

    webhook_secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Signing secrets by name, as JSON (MLOOP_WEBHOOK_SECRETS); "
        "a policy's webhook refers to one by its name.",
    )
    dispatch_poll_interval_s: float = Field(0.5, gt=0)
    dispatch_lease_margin_s: float = Field(
        5.0, ge=0, description="How long past its request timeout an attempt stays claimed."
    )
    dispatch_max_in_flight: int = Field(32, ge=1)

    @model_validator(mode="after")
    def _real_webhook_secrets(self) -> RetrainSchedulerSettings:
        if self.environment in ("development", "test"):
            return self
        for name, secret in self.webhook_secrets.items():
            value = secret.get_secret_value()
            if value.lower() in PLACEHOLDER_SECRETS or len(value) < 16:
                raise ConfigurationError(f"webhook secret {name!r} is a placeholder or shorter than 16 characters")
        return self

    def secret_values(self) -> dict[str, str]:
        return {k: v.get_secret_value() for k, v in self.webhook_secrets.items()}
