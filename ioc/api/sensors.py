"""HTTP intake for sensors that cannot speak MQTT: one FIWARE entity or a batch per request.

A batch is accepted whole or not at all (400 naming each bad item), so a device that retries
after a 400 never sends half a batch twice.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ioc.api.app import ApiError, publish, read_body, runtime_of, system_of
from ioc.models.base import utc_now
from ioc.sensors.fiware import ObservationError, clock_problem, parse_entity
from ioc.topics import SENSOR_EVENTS

log = logging.getLogger(__name__)

SENSORS_PREFIX = "/sensors/v1"
MAX_BATCH = 1000

router = APIRouter()


@router.post("/observations", status_code=202, responses={400: {}, 401: {}, 413: {}, 503: {}})
async def post_observations(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    body = await read_body(request, runtime.settings.hotline.max_body_bytes * 16)
    system = system_of(request.headers.get("x-api-key"), runtime.settings.hotline.api_keys)
    try:
        decoded = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ApiError(400, f"(root): invalid JSON: {error}") from None
    entities = decoded if isinstance(decoded, list) else [decoded]
    if not 1 <= len(entities) <= MAX_BATCH:
        raise ApiError(400, f"(root): send 1 to {MAX_BATCH} observations")
    problems, accepted = [], []
    max_future = timedelta(seconds=runtime.settings.streams.sensor_max_future_s)
    for index, entity in enumerate(entities):
        where = f"[{index}] " if isinstance(decoded, list) else ""
        try:
            event = parse_entity(entity)
        except ObservationError as error:
            problems.append(f"{where}{error}")
            continue
        if runtime.sensors.get(event.id) is None:
            problems.append(f"{where}id: unknown sensor {event.id!r}")
            continue
        if clock := clock_problem(event, utc_now(), max_future):
            problems.append(f"{where}{clock}")
            continue
        accepted.append((event.id, json.dumps(entity, ensure_ascii=False).encode()))
    if problems:
        raise ApiError(400, *problems[:20])
    await publish(runtime, SENSOR_EVENTS, [(key.encode(), value) for key, value in accepted])
    log.info("%d observation(s) accepted from %s", len(accepted), system)
    return JSONResponse({"accepted": len(accepted)}, status_code=202)
