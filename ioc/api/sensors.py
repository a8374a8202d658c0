"""HTTP intake for sensors and FIWARE brokers: one entity, a batch, or a broker's notification.

POST /sensors/v1/observations, `application/json` or `application/ld+json`, with an API key.
The body is one FIWARE entity, a JSON list of up to `MAX_BATCH` entities, or an Orion (NGSI-v2)
or Orion-LD (NGSI-LD) notification (see `ioc.sensors.ngsi`; forms, units, times and ids in
`ioc.sensors.fiware`). Entities are judged one by one; each accepted one is published as sent,
one Kafka message per entity keyed by the sensor id it resolves to.

Answers:
- 202 `{"accepted": n, "rejected": [{"index": i, "id": "…", "reason": "…"}, …],
  "warnings": [{"index": i, "id": "…", "warnings": ["…", …]}, …]}` when a batch has at least one
  accepted entity, for a good single entity, and always for a notification (a broker never sends
  one again, so a notification with only bad entities is answered 202 too). Every rejected entity
  of such an answer is on the dead-letter topic with its reason (consumer `ioc-api-sensors`).
  `warnings` names measured attributes dropped as unusable (the entity itself was accepted).
- 400 in the Open311 error format, each problem `[index] reason` (no index for a single entity),
  when nothing of a batch or the single entity is accepted, or the body is not JSON or none of the
  forms. Nothing is published or dead-lettered then: the sender has every reason.
- 503 with Retry-After when Kafka did not acknowledge the writes (acks=all) in time: nothing is
  answered 2xx unless it is durable, so a retry may repeat what was written (at-least-once).
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ioc.api.context import ApiError, Runtime, publish, read_body, runtime_of, system_of
from ioc.kafka.dlq import DeadLetter
from ioc.kafka.topics import DLQ, SENSOR_EVENTS
from ioc.models.base import utc_now
from ioc.sensors.fiware import ObservationError, decode
from ioc.sensors.ngsi import Judged, judge, unwrap

log = logging.getLogger(__name__)

SENSORS_PREFIX = "/sensors/v1"
MAX_BATCH = 1000
CONSUMER = "ioc-api-sensors"
SOURCE = f"http:{SENSORS_PREFIX}/observations"

router = APIRouter()


def _as_sent(entity: Any) -> bytes:
    return json.dumps(entity, ensure_ascii=False).encode()


async def _dead_letter(runtime: Runtime, rejected: list[Judged]) -> None:
    """Each rejected entity on the DLQ, its reason in the headers; published as the accepted ones
    are (acknowledged by Kafka, else 503), so a 202 never hides an unrecorded rejection."""
    letters = [
        DeadLetter(
            value=_as_sent(item.entity),
            key=(item.entity_id or "").encode(),
            reason=f"invalid observation: {item.reason}",
            source_topic=SOURCE,
            source_partition=-1,
            source_offset=-1,
            consumer=CONSUMER,
        )
        for item in rejected
    ]
    await publish(
        runtime,
        DLQ,
        [(SOURCE.encode(), letter.value) for letter in letters],
        headers=[letter.headers() for letter in letters],
    )


@router.post("/observations", status_code=202, responses={400: {}, 401: {}, 413: {}, 503: {}})
async def post_observations(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    body = await read_body(request, runtime.settings.hotline.max_body_bytes * 16)
    system = system_of(request.headers.get("x-api-key"), runtime.settings.hotline.api_keys)
    try:
        payload = unwrap(decode(body))
    except ObservationError as error:
        raise ApiError(400, str(error)) from None
    if not 1 <= len(payload.entities) <= MAX_BATCH:
        raise ApiError(400, f"(root): send 1 to {MAX_BATCH} observations")
    max_future = timedelta(seconds=runtime.settings.streams.sensor_max_future_s)
    judged = judge(payload, runtime.sensors, utc_now(), max_future)
    accepted = [item for item in judged if item.event is not None]
    rejected = [item for item in judged if item.event is None]
    if not accepted and payload.kind != "notification":
        indexed = payload.kind == "batch"
        raise ApiError(
            400,
            *[
                f"[{item.index}] {item.reason}" if indexed else f"{item.reason}"
                for item in rejected[:20]
            ],
        )
    if accepted:
        await publish(
            runtime,
            SENSOR_EVENTS,
            [(item.event.id.encode(), _as_sent(item.entity)) for item in accepted if item.event],
        )
    if rejected:
        await _dead_letter(runtime, rejected)
    log.info(
        "%s from %s: %d entity(ies) accepted, %d dead-lettered",
        payload.kind,
        system,
        len(accepted),
        len(rejected),
    )
    return JSONResponse(
        {
            "accepted": len(accepted),
            "rejected": [
                {"index": item.index, "id": item.entity_id, "reason": item.reason}
                for item in rejected
            ],
            "warnings": [
                {"index": item.index, "id": item.entity_id, "warnings": list(item.event.warnings)}
                for item in accepted
                if item.event and item.event.warnings
            ],
        },
        status_code=202,
    )
