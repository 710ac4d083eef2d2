"""Incidents: when a window's alarm opens one and when clean windows resolve it.

Hysteresis per signal of one (model, version): the first alarming window
opens an incident (one event, its id derived from model, version, signal and
window so a replay derives the same id), later alarming windows keep it
open, and ``resolve_after_windows`` clean windows in a row resolve it
(``incident-resolved``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from mloop.contracts.payloads import IncidentResolved, Payload
from mloop.monitor.domain.records import Emission, Signal, WindowResult, as_datetime

__all__ = ["TOPIC_OF", "Incident", "track"]

#: The topic an alarm of each signal is published on.
TOPIC_OF: dict[Signal, Literal["drift-detected", "performance-degraded", "data-quality-violated"]] = {
    "data": "drift-detected",
    "prediction": "drift-detected",
    "quality": "data-quality-violated",
    "performance": "performance-degraded",
}
_INCIDENT_NS = uuid.UUID("0c6f2d4e-8a51-4f57-9d0e-5b1c3a7e2f90")


@dataclass
class Incident:
    id: str
    signal: Signal
    opened_at: float
    opened_window: int
    clean_windows: int = 0


def track(incidents: dict[str, Incident], model: str, version: str, result: WindowResult,
          resolve_after_windows: int, make_event: Callable[[str], Payload]) -> list[Emission]:
    """The events ``result`` causes; updates ``incidents`` (open ones, by signal) in place.

    ``make_event`` builds the alarm's payload from the new incident's id; it
    is called only when an incident opens.
    """
    open_incident = incidents.get(result.signal)
    if result.alarm:
        if open_incident is not None:
            open_incident.clean_windows = 0
            return []
        iid = str(uuid.uuid5(_INCIDENT_NS, f"{model}/{version}/{result.signal}/{result.window_no}"))
        incidents[result.signal] = Incident(iid, result.signal, result.window.end.timestamp(), result.window_no)
        result.evidence["incident_id"] = iid
        return [Emission(TOPIC_OF[result.signal], make_event(iid), result.window_no)]
    if open_incident is None:
        return []
    open_incident.clean_windows += 1
    if open_incident.clean_windows < resolve_after_windows:
        return []
    del incidents[result.signal]
    result.evidence["resolved_incident_id"] = open_incident.id
    return [Emission("incident-resolved", IncidentResolved(
        model=model, version=version, incident_id=open_incident.id,
        signal=TOPIC_OF[result.signal], opened_at=as_datetime(open_incident.opened_at),
        kind=result.signal if result.signal in ("data", "prediction") else None,
        resolved_at=result.window.end), result.window_no)]
