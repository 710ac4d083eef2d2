"""What a run leaves behind, as plain data: the faults as injected and the platform's state after it settled.

The collector (:mod:`mloop.chaos.collect`) fills a :class:`History` from the
services' APIs, the topics and, for storage facts (outboxes, due times),
read-only SQL; the checker (:mod:`mloop.chaos.checker`) judges it. Times are
Unix seconds. A history round-trips through JSON, so a report can be checked
again offline.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["FaultRecord", "History"]


@dataclass(frozen=True)
class FaultRecord:
    """One fault as it was injected: when it began and when its target was back."""

    kind: str
    target: str
    started_at: float
    ended_at: float
    detail: str = ""


@dataclass
class History:
    """The observed run. Every list holds plain JSON-able dicts with the keys named below.

    * ``sdk``: ``predictions_delivered``, ``predictions_dropped``, ``labels_delivered``, ``labels_dropped``.
    * ``monitor``: per version ``{"version", "predictions_seen", "labels_joined"}``.
    * ``labelled_rows``: rows of the monitor's prediction store that carry a label.
    * ``produced``: audited events on the topics ``{"id", "topic", "at", "model"}``.
    * ``ledger``: ledger records ``{"event_id", "topic", "at"}``.
    * ``audit``: ``{"verify_ok", "verify", "chains": [{"chain", "size", "signed_size"}], "bundle_ok", "bundle"}``.
    * ``versions``: ``{"version", "created_at"}``.
    * ``promotions``: ``{"id", "version", "requested_by", "status", "approvers": [...], "at"}``.
    * ``champion_moves``: the ``champion`` alias history ``{"version", "at", "actor"}``, oldest first.
    * ``rollouts``: ``{"id", "candidate", "phase", "created_at", "finished_at", "next_analysis_at"}``.
    * ``jobs``: retrain jobs ``{"id", "state", "delivery", "next_attempt_at", "updated_at", "lease_until"}``.
    * ``outboxes``: per schema ``{"schema", "unsent", "oldest_unsent_at"}``.
    * ``routing_topic`` / ``routing_service``: model -> routes ``[{"version", "weight", "shadow"}]``.
    * ``lost_messages``: prediction messages on the topic with records that have no row in the monitor's store
      ``{"partition", "offset", "at", "records", "not_stored", "first_request_id"}``.
    * ``dead_letters``: ``{"topic", "partition", "offset", "reason", "service", "at"}``.
    * ``consumer_offsets``: offsets stored with state (the monitor's applied offsets, every service's
      stored consumer offsets) against the partitions' end ``{"consumer", "topic", "partition", "applied", "end"}``.
    """

    seed: int
    model: str
    started_at: float
    collected_at: float
    faults: list[FaultRecord] = field(default_factory=list)
    sdk: dict[str, int] = field(default_factory=dict)
    monitor: list[dict[str, Any]] = field(default_factory=list)
    labelled_rows: int | None = None
    produced: list[dict[str, Any]] = field(default_factory=list)
    ledger: list[dict[str, Any]] = field(default_factory=list)
    audit: dict[str, Any] = field(default_factory=dict)
    versions: list[dict[str, Any]] = field(default_factory=list)
    promotions: list[dict[str, Any]] = field(default_factory=list)
    champion: str | None = None
    champion_moves: list[dict[str, Any]] = field(default_factory=list)
    rollouts: list[dict[str, Any]] = field(default_factory=list)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    outboxes: list[dict[str, Any]] = field(default_factory=list)
    routing_topic: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    routing_service: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    lost_messages: list[dict[str, Any]] = field(default_factory=list)
    consumer_offsets: list[dict[str, Any]] = field(default_factory=list)
    candidate: str | None = None
    outcome: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in d.items() if k in known}
        data["faults"] = [FaultRecord(**f) for f in d.get("faults", [])]
        return cls(**data)
