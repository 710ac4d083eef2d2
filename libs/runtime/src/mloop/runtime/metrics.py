"""Prometheus metrics, one registry per service instance."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["ServiceMetrics"]


class ServiceMetrics:
    """The runtime's own metrics; services add theirs to :attr:`registry`."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "mloop_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.http_latency = Histogram(
            "mloop_http_request_seconds", "HTTP request latency", ["method", "route"], registry=self.registry
        )
        self.events_consumed = Counter(
            "mloop_events_consumed_total", "Events applied by consumers", ["topic"], registry=self.registry
        )
        self.events_duplicate = Counter(
            "mloop_events_duplicate_total", "Redelivered events dropped by the inbox", ["topic"], registry=self.registry
        )
        self.events_dead_lettered = Counter(
            "mloop_events_dead_lettered_total", "Messages sent to dead-letter", ["topic"], registry=self.registry
        )
        self.events_published = Counter(
            "mloop_events_published_total", "Outbox events published", ["topic"], registry=self.registry
        )
        self.outbox_pending = Gauge("mloop_outbox_pending", "Unsent outbox rows", registry=self.registry)
        self.consumer_lag = Gauge(
            "mloop_consumer_lag", "Messages behind the end of each partition", ["topic", "partition"],
            registry=self.registry,
        )
        self.info = Gauge("mloop_service_info", "Service identity", ["service"], registry=self.registry)
        self.info.labels(service=service).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
