"""The retrain scheduler's own Prometheus metrics (next to the runtime's)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["RetrainMetrics"]


class RetrainMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.signals = Counter(
            "mloop_retrain_signals_total",
            "Monitoring signals by what the policy decided",
            ["signal", "decision"],
            registry=registry,
        )
        self.jobs_created = Counter(
            "mloop_retrain_jobs_created_total", "Retrain jobs created", ["trigger"], registry=registry
        )
        self.webhook_attempts = Counter(
            "mloop_retrain_webhook_attempts_total",
            "Webhook attempts by result",
            ["result"],
            registry=registry,
        )
        self.cycle_seconds = Histogram(
            "mloop_retrain_cycle_seconds",
            "Time from the first signal to a finished rollout",
            ["outcome"],
            registry=registry,
            buckets=(60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400, 172800, 604800),
        )
        self.sla_breaches = Counter(
            "mloop_retrain_cycle_sla_breaches_total", "Cycles longer than their SLA", registry=registry
        )
