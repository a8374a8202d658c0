"""The incidents API for hotline staff: list and read incidents, acknowledge, resolve, reopen.

Every request carries a staff member's key (`X-API-Key` or `Authorization: Bearer`), looked up in
`alerts.staff_keys`: the key says who acted, and that name goes into the incident's history and
into the Alertmanager silence an acknowledgement creates.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from ioc.api.context import (
    ApiError,
    database,
    read_body,
    runtime_of,
    staff_actions,
    system_of,
)
from ioc.incidents import API_PATH, evidence_url, lifecycle
from ioc.models import FusedIncident, FusedStatus

log = logging.getLogger(__name__)

INCIDENTS_PREFIX = API_PATH
MAX_REASON = 1000
ACTIONS = {
    "ack": "ack",
    "acknowledge": "ack",
    "in-progress": "start",
    "resolve": "resolve",
    "false-alarm": "false_alarm",
    "reopen": "reopen",
}

router = APIRouter()


def staff_of(request: Request) -> str:
    """The staff member whose key this is; 401 otherwise."""
    key = request.headers.get("x-api-key")
    authorization = request.headers.get("authorization", "")
    if key is None and authorization.lower().startswith("bearer "):
        key = authorization[7:].strip()
    return system_of(key, runtime_of(request).settings.alerts.staff_keys)


def _body(incident: FusedIncident) -> dict[str, Any]:
    return incident.model_dump(mode="json")


@router.get("", responses={400: {}, 401: {}, 503: {}})
async def list_incidents(
    request: Request,
    status: Annotated[list[FusedStatus] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JSONResponse:
    """Open and acknowledged incidents by default; the most severe and recent first."""
    staff_of(request)
    statuses = status or [FusedStatus.OPEN, FusedStatus.ACKNOWLEDGED]
    async with database(runtime_of(request)) as conn:
        incidents = await lifecycle.listed(conn, statuses, limit)
    return JSONResponse([_body(incident) for incident in incidents])


@router.get("/{incident_id}", responses={401: {}, 404: {}, 503: {}})
async def get_incident(incident_id: str, request: Request) -> JSONResponse:
    """The incident, its every change (who, when, why), links to its camera snapshots and clips,
    and its 1022 tickets with the reporters' answers (`attributes`)."""
    staff_of(request)
    async with database(runtime_of(request)) as conn:
        try:
            incident = await lifecycle.get(conn, incident_id)
        except lifecycle.UnknownIncident as error:
            raise ApiError(404, f"incident_id: {error}") from None
        history = await lifecycle.history(conn, incident_id)
        files = await lifecycle.evidence_files(conn, incident)
        tickets = await lifecycle.tickets(conn, incident)
    base = str(request.base_url)
    return JSONResponse(
        _body(incident)
        | {
            "history": [row | {"at": row["at"].isoformat()} for row in history],
            "evidence_files": [
                {
                    "member": entry.member_id,
                    "camera_id": entry.camera_id,
                    "snapshot_url": entry.snapshot
                    and evidence_url(base, incident.id, "snapshot", entry.member_id),
                    "clip_url": evidence_url(base, incident.id, "clip", entry.member_id),
                    "clip_status": entry.clip_status,
                }
                for entry in files
            ],
            "tickets": [row | {"requested_at": row["requested_at"].isoformat()} for row in tickets],
        }
    )


@router.post("/{incident_id}/assign", responses={400: {}, 401: {}, 404: {}, 409: {}, 503: {}})
async def assign(incident_id: str, request: Request) -> JSONResponse:
    """Giao đơn vị: JSON body `{"unit": "pccc", "reason": "..."}` with a unit of the units file;
    a second unit transfers it (the history names both)."""
    runtime = runtime_of(request)
    staff = staff_of(request)
    body = await read_body(request, runtime.settings.hotline.max_body_bytes)
    try:
        fields = json.loads(body or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ApiError(400, f"body: not JSON ({error.__class__.__name__})") from None
    if not isinstance(fields, dict) or not isinstance(fields.get("unit"), str):
        raise ApiError(400, "unit: required, the id of a unit (a string)")
    unit = runtime.units.get(fields["unit"])
    if unit is None:
        raise ApiError(400, f"unit: one of {', '.join(sorted(runtime.units.units))}")
    reason = fields.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON):
        raise ApiError(400, f"reason: a string of at most {MAX_REASON} characters")
    try:
        incident = await staff_actions(runtime).assign_unit(incident_id, unit.id, staff, reason)
    except lifecycle.UnknownIncident as error:
        raise ApiError(404, f"incident_id: {error}") from None
    except lifecycle.IncidentTransitionError as error:
        raise ApiError(409, f"unit: {error}") from None
    log.info("incident %s: given to %s by %s", incident.id, unit.id, staff)
    return JSONResponse(_body(incident))


@router.post("/{incident_id}/{action}", responses={400: {}, 401: {}, 404: {}, 409: {}, 503: {}})
async def act(incident_id: str, action: str, request: Request) -> JSONResponse:
    """`ack`, `in-progress` (Đang xử lý), `resolve`, `false-alarm` (Báo nhầm: resolved as
    nothing there) or `reopen`, with an optional JSON body `{"reason": "..."}`."""
    runtime = runtime_of(request)
    staff = staff_of(request)
    if action not in ACTIONS:
        raise ApiError(404, f"action: one of {', '.join(sorted(ACTIONS))}")
    reason = _reason(await read_body(request, runtime.settings.hotline.max_body_bytes))
    try:
        incident = await staff_actions(runtime).change_incident(
            incident_id, ACTIONS[action], staff, reason
        )
    except lifecycle.UnknownIncident as error:
        raise ApiError(404, f"incident_id: {error}") from None
    except lifecycle.IncidentTransitionError as error:
        raise ApiError(409, f"status: {error}") from None
    log.info("incident %s: %s by %s", incident.id, incident.change, staff)
    return JSONResponse(_body(incident))


def _reason(body: bytes) -> str | None:
    if not body.strip():
        return None
    try:
        decoded = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ApiError(400, f"(root): invalid JSON: {error}") from None
    if not isinstance(decoded, dict) or set(decoded) - {"reason"}:
        raise ApiError(400, '(root): send {"reason": "..."} or nothing')
    reason = decoded.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON):
        raise ApiError(400, f"reason: text of at most {MAX_REASON} characters")
    return reason
