"""What carries FIWARE entities to an intake: one entity, a batch, or a broker's notification.

- one entity: a JSON object with `id` and `type`;
- a batch: a JSON list of entities;
- an Orion (NGSI-v2) notification `{"subscriptionId": …, "data": [entities]}`, with
  `attrsFormat` normalized or keyValues (both read alike: the form is recognised attribute by
  attribute, so the `Ngsiv2-AttrsFormat` header need not be read; the `values` format carries no
  attribute names and its entities are rejected);
- an Orion-LD (NGSI-LD) notification `{"id": "urn:ngsi-ld:Notification:…", "type":
  "Notification", "subscriptionId": …, "notifiedAt": …, "data": [entities]}`.

Each entity is judged on its own (`judge`): a broker sends a notification once, so one bad entity
must not cost the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from ioc.models import SensorEvent, SensorRegistry
from ioc.sensors.fiware import ObservationError, clock_problem, parse_entity

Kind = Literal["entity", "batch", "notification"]


@dataclass(frozen=True)
class Payload:
    kind: Kind
    entities: list[Any]


@dataclass(frozen=True)
class Judged:
    """One entity of a payload: its event when accepted, else the reason."""

    index: int
    entity: Any  # as sent: what is published or dead-lettered
    entity_id: str | None  # as sent, for reports
    event: SensorEvent | None
    reason: str | None


def unwrap(decoded: Any) -> Payload:
    """The entities a decoded body carries, or ObservationError when it is none of the forms."""
    if isinstance(decoded, list):
        return Payload("batch", decoded)
    if isinstance(decoded, dict) and "subscriptionId" in decoded:
        data = decoded.get("data")
        if not isinstance(data, list):
            raise ObservationError("data: a notification carries a list of entities")
        return Payload("notification", data)
    if isinstance(decoded, dict):
        return Payload("entity", [decoded])
    raise ObservationError("(root): an entity, a list of entities or a notification is required")


def judge(
    payload: Payload, registry: SensorRegistry, arrived: datetime, max_future: timedelta
) -> list[Judged]:
    """Every entity of `payload` parsed against `registry`, and its time checked against when it
    `arrived` (a device clock ahead by more than `max_future` is refused)."""
    judged = []
    for index, entity in enumerate(payload.entities):
        raw_id = entity.get("id") if isinstance(entity, dict) else None
        entity_id = raw_id.strip() if isinstance(raw_id, str) else None
        try:
            event = parse_entity(entity, registry)
        except ObservationError as error:
            judged.append(Judged(index, entity, entity_id, None, str(error)))
            continue
        reason = clock_problem(event, arrived, max_future)
        judged.append(Judged(index, entity, entity_id, None if reason else event, reason))
    return judged
