"""The rollout service's Prometheus metrics, added to the runtime's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

__all__ = ["RolloutMetrics"]


class RolloutMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.analyses = Counter(
            "mloop_rollout_analyses_total",
            "Rollout analyses by outcome and action",
            ["outcome", "action"],
            registry=registry,
        )
        self.gate_results = Counter(
            "mloop_rollout_gate_results_total",
            "Gate results at each analysis",
            ["gate", "outcome"],
            registry=registry,
        )
        self.events = Counter(
            "mloop_rollout_events_total",
            "Rollout events and traffic splits written to the outbox",
            ["topic"],
            registry=registry,
        )
        self.evidence_records = Counter(
            "mloop_rollout_evidence_records_total",
            "Prediction and label records counted as evidence",
            ["kind"],
            registry=registry,
        )
