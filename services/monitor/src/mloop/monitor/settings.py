"""The monitor's settings, read from the environment."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mloop.runtime.settings import ServiceSettings

__all__ = ["MonitorSettings"]


class MonitorSettings(ServiceSettings):
    """Environment variables ``MLOOP_<FIELD>``."""

    service_name: str = "monitor"
    http_port: int = Field(8103, ge=1, le=65535)
    prediction_store: Literal["full", "minimal", "off"] = Field(
        "full", description="full: features too; minimal: no features (labels still join); off: no store, "
        "no lookups, no performance tracking")
    prediction_store_sample_rate: float = Field(
        1.0, gt=0, le=1, description="Share of request ids stored (chosen by a hash of the id, so labels join "
        "the same share); below 1 when the store dominates the cost")
    prediction_retention_s: float = Field(7 * 86400.0, gt=0, description="How long stored predictions are kept")
    unknown_models: Literal["dead-letter", "monitor"] = Field(
        "dead-letter", description="Predictions of a model with no registered version: dead-letter them, or "
        "monitor them against their first predictions")
    max_versions_per_model: int = Field(100, ge=1)
    batch_max_messages: int = Field(
        500, ge=1, description="Messages per partition applied in one transaction (bounds how long the event "
        "loop is busy with one batch)")
    maintenance_interval_s: float = Field(60.0, gt=0)
