"""Tracing (OpenTelemetry) and structured JSON logs carrying trace ids.

Trace context crosses Kafka in the W3C ``traceparent``/``tracestate``
headers: captured when an event is written to the outbox (so the request's
trace continues through the relay) and restored by the consumer.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

__all__ = [
    "JsonFormatter",
    "current_trace_headers",
    "extract_context",
    "setup_logging",
    "setup_tracing",
    "tracer",
]

_SECRET_WORDS = ("password", "secret", "token", "authorization")


def tracer(name: str = "mloop") -> trace.Tracer:
    return trace.get_tracer(name)


def setup_tracing(service_name: str, exporter: str = "none") -> None:
    """Install a tracer provider unless one is installed already (tests install their own)."""
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    provider = TracerProvider(resource=Resource.create({"service.name": f"mloop-{service_name}"}))
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    elif exporter == "otlp":  # pragma: no cover - needs a collector
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            logging.getLogger(__name__).warning("otlp exporter not installed; traces not exported")
        else:
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


def current_trace_headers() -> dict[str, str]:
    """``traceparent``/``tracestate`` of the current span (empty when none)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def extract_context(headers: Mapping[str, str]) -> otel_context.Context:
    return propagate.extract(dict(headers))


class JsonFormatter(logging.Formatter):
    """One JSON object per line with the current trace and span ids."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            out["trace_id"] = format(span.trace_id, "032x")
            out["span_id"] = format(span.span_id, "016x")
        for k, v in record.__dict__.items():
            if k.startswith("ctx_"):
                name = k[4:]
                out[name] = "[redacted]" if any(w in name.lower() for w in _SECRET_WORDS) else v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(service: str, level: str = "INFO", as_json: bool = True) -> None:
    root = logging.getLogger()
    if getattr(root, "_mloop_configured", False):
        return
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    root._mloop_configured = True  # type: ignore[attr-defined]
