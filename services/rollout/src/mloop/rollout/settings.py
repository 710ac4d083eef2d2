"""The rollout service's settings (environment variables with the ``MLOOP_`` prefix)."""

from __future__ import annotations

from pydantic import Field

from mloop.runtime.settings import ServiceSettings

__all__ = ["RolloutSettings"]


class RolloutSettings(ServiceSettings):
    service_name: str = "rollout"
    http_port: int = Field(8102, ge=1, le=65535)

    analysis_tick_s: float = Field(
        1.0,
        gt=0,
        description="The longest the analysis loop sleeps: it wakes when the next rollout is due "
        "(its plan's interval, or the moment a step has lasted its minimum duration) and when "
        "changes are committed; this bounds a sleep in case a wake-up is lost.",
    )
    evidence_max_records: int = Field(2000, ge=1, description="Kafka records per evidence batch")
    track_labels: bool = Field(
        True, description="Keep open rollouts' predictions until their labels arrive (accuracy gates)"
    )
    label_wait_s: float = Field(
        86_400.0, gt=0, description="How long a prediction waits for its label before it is forgotten"
    )
