"""The registry's own Prometheus metrics (next to the runtime's), counted after each commit."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from mloop.contracts.payloads import ValidationCheck

__all__ = ["RegistryMetrics"]


class RegistryMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.versions = Counter(
            "mloop_registry_versions_registered_total", "Versions registered, by validation outcome",
            ["validation"], registry=registry,
        )
        self.checks = Counter(
            "mloop_registry_gate_checks_total", "Validation gate outcomes", ["check", "outcome"], registry=registry
        )
        self.reviews = Counter(
            "mloop_registry_reviews_total", "Promotion reviews, by decision", ["decision"], registry=registry
        )
        self.promotions = Counter(
            "mloop_registry_promotions_total", "Versions promoted, by who approved (reviewers or a policy)",
            ["approval"], registry=registry,
        )

    def registered(self, passed: bool, checks: list[ValidationCheck]) -> None:
        self.versions.labels(validation="passed" if passed else "failed").inc()
        self.validated(checks)

    def validated(self, checks: list[ValidationCheck]) -> None:
        for c in checks:
            # Per-metric checks are counted under their gate, keeping label values bounded.
            self.checks.labels(check=c.name.split(":", 1)[0], outcome="pass" if c.passed else "fail").inc()

    def reviewed(self, decision: str, promoted: bool, by_policy: bool = False) -> None:
        self.reviews.labels(decision=decision).inc()
        if promoted:
            self.promotions.labels(approval="policy" if by_policy else "reviewers").inc()
