"""The registry's settings (environment variables with the ``MLOOP_`` prefix)."""

from __future__ import annotations

from pydantic import Field

from mloop.runtime.settings import ServiceSettings

__all__ = ["RegistrySettings"]


class RegistrySettings(ServiceSettings):
    service_name: str = "registry"
    http_port: int = Field(8101, ge=1, le=65535)
    # Registrations carry training profiles; model-registered allows 8 MiB events.
    max_body_bytes: int = Field(12 * 1024 * 1024, gt=0)
