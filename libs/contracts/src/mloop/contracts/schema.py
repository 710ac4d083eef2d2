"""JSON Schema and AsyncAPI documents derived from the topic registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mloop.contracts.topics import TOPICS, ServiceName, consumed_by, produced_by

__all__ = ["asyncapi_document", "json_schemas", "topics_markdown", "write_all"]

_CE_HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "CloudEvents 1.0 attributes in Kafka binary content mode",
    "properties": {
        "ce_specversion": {"type": "string", "const": "1.0"},
        "ce_id": {"type": "string", "description": "UUIDv7"},
        "ce_source": {"type": "string", "examples": ["/mloop/registry"]},
        "ce_type": {"type": "string"},
        "ce_time": {"type": "string", "format": "date-time"},
        "ce_subject": {"type": "string", "description": "model name"},
        "ce_actor": {"type": "string", "description": "who caused it: user, service or policy"},
        "content-type": {"type": "string", "const": "application/json"},
        "traceparent": {"type": "string"},
        "tracestate": {"type": "string"},
    },
    "required": ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time"],
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """Event type → JSON Schema of its payload."""
    return {
        spec.event_type: spec.payload.model_json_schema(by_alias=True) for spec in TOPICS.values()
    }


def asyncapi_document(service: ServiceName) -> dict[str, Any]:
    """An AsyncAPI 3.0 document of what ``service`` consumes and produces."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for action, specs in (("receive", consumed_by(service)), ("send", produced_by(service))):
        for spec in specs:
            msg_name = spec.payload.__name__
            messages[msg_name] = {
                "name": spec.event_type,
                "contentType": "application/json",
                "headers": _CE_HEADERS,
                "payload": spec.payload.model_json_schema(
                    by_alias=True, ref_template="#/components/schemas/{model}"
                ),
            }
            channels[spec.name] = {
                "address": spec.name,
                "description": spec.description,
                "messages": {msg_name: {"$ref": f"#/components/messages/{msg_name}"}},
                "bindings": {
                    "kafka": {
                        "topic": spec.name,
                        "partitions": spec.partitions,
                        "topicConfiguration": {
                            "cleanup.policy": ["compact"] if spec.compacted else ["delete"],
                            **({"retention.ms": spec.retention_ms} if spec.retention_ms else {}),
                        },
                    }
                },
            }
            operations[f"{action}-{spec.name}"] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{spec.name}"},
                "bindings": {"kafka": {"groupId": {"type": "string", "enum": [f"mloop-{service}"]}}}
                if action == "receive"
                else {},
            }
    schemas: dict[str, Any] = {}
    for m in messages.values():
        defs = m["payload"].pop("$defs", {})
        schemas.update(defs)
    return {
        "asyncapi": "3.0.0",
        "info": {"title": f"mloop {service}", "version": "1.0.0"},
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:9092", "protocol": "kafka"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def topics_markdown() -> str:
    """The README's topics table."""
    rows = [
        "| topic | event type | key | partitions | retention | producers | consumers |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in TOPICS.values():
        if s.compacted:
            retention = "compacted"
        elif s.retention_ms:
            retention = f"{s.retention_ms // 86_400_000} d"
        else:
            retention = "forever"
        rows.append(
            f"| `{s.name}` | `{s.event_type}` | {s.key} | {s.partitions} | {retention} | "
            f"{', '.join(s.producers)} | {', '.join(s.consumers)} |"
        )
    return "\n".join(rows) + "\n"


def write_all(out_dir: Path) -> list[Path]:
    """Write JSON Schemas and one AsyncAPI document per service under ``out_dir``."""
    from mloop.contracts.topics import SERVICES

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for event_type, schema in json_schemas().items():
        path = out_dir / "schemas" / f"{event_type}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(schema, indent=2) + "\n")
        written.append(path)
    for svc in SERVICES:
        path = out_dir / "asyncapi" / f"{svc}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asyncapi_document(svc), indent=2) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover
    import sys

    for p in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/contracts")):
        print(p)
