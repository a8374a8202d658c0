"""The 1022 intake: Open311 GeoReport v2 under /open311/v2, in JSON and XML (`.json`/`.xml`).

POST publishes a validated Ticket to `ioc.hotline.tickets` and answers once Kafka acknowledged it;
the stream agent stores it, and GET reads it back from the `tickets` table. Reporter contact data
only ever travels to the topic: it is not logged, not echoed in errors and never read back. A
photo sent as `media` is stored before the ticket is published and served to staff only.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from ioc.api.context import (
    ApiError,
    Runtime,
    database,
    publish,
    query,
    read_fields,
    runtime_of,
    staff_actions,
    system_of,
)
from ioc.api.open311 import (
    CHANNELS,
    REQUEST_COLUMNS,
    XML_TYPE,
    Discovery,
    DiscoveryEndpoint,
    IntakeError,
    Service,
    ServiceDefinition,
    ServiceRequest,
    check_attributes,
    describe,
    field_label,
    image_type,
    intake_values,
    make_ticket,
    new_request_id,
    parse_datetime,
    request_from_row,
    service_definition,
    services,
    split_attributes,
    to_xml,
)
from ioc.hotline import tickets
from ioc.hotline.corrections import Correction, CorrectionError
from ioc.kafka.topics import TICKETS
from ioc.models.base import utc_now
from ioc.models.categories import Category
from ioc.models.events import Channel

log = logging.getLogger(__name__)


PREFIX = "/open311/v2"


TITLE = "IOC 1022 — Open311 GeoReport v2"


MAX_IDS = 200


LIST_PARAMETERS = frozenset(
    {
        "service_request_id",
        "service_code",
        "status",
        "start_date",
        "end_date",
        "page",
        "page_size",
        "jurisdiction_id",
    }
)


NOTICE = "Đã tiếp nhận phản ánh. Tra cứu: GET {prefix}/requests/{id}.{format}"


Format = Literal["json", "xml"]


# For the OpenAPI document: every Open311 answer also comes as the spec's XML.
XML_ANSWER: dict[str, Any] = {"content": {"text/xml": {"schema": {"type": "string"}}}}


INTAKE_BODIES: dict[str, Any] = {
    "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "properties": {"media": {"type": "string", "format": "binary"}},
        }
    },
    "application/json": {"schema": {"type": "object"}},
}


router = APIRouter()


def answer(format: Format, root: str, document: Any, status_code: int = 200) -> Response:
    """`document` as JSON, or as the spec's XML under the element `root`."""
    data = jsonable_encoder(document)
    if format == "xml":
        return Response(to_xml(root, data), status_code=status_code, media_type=XML_TYPE)
    return JSONResponse(data, status_code=status_code)


def public_url(request: Request) -> str:
    """The Open311 base URL integrators use: configured, else as this request reached us."""
    configured = runtime_of(request).settings.open311.public_url
    return configured or f"{str(request.base_url).rstrip('/')}{PREFIX}"


def check_jurisdiction(request: Request, jurisdiction_id: object) -> None:
    """Absent is fine (we serve one jurisdiction); any other than ours is 404, as the spec says
    for a jurisdiction_id not found."""
    served = runtime_of(request).settings.open311.jurisdiction_id
    if jurisdiction_id not in (None, "", served):
        raise ApiError(404, f"jurisdiction_id: not served here (this endpoint serves {served})")


def default_channel(system: str, channels: Mapping[str, Channel]) -> Channel:
    """The channel of a POST without one (GeoReport v2 has no such field): the integration's
    configured channel, else its own name when that is a channel (a system called "zalo"), else
    "app": GeoReport clients are apps and forms filing for the citizen, as the citizen app does."""
    named = {channel: channel for channel in CHANNELS}
    return channels.get(system) or named.get(system, "app")


@router.get("/discovery.{format}", response_model=Discovery, responses={200: XML_ANSWER, 400: {}})
async def discovery(format: Format, request: Request) -> Response:
    """The GeoReport v2 service discovery document: this one endpoint and how to get a key."""
    open311 = runtime_of(request).settings.open311
    document = Discovery(
        contact=open311.contact,
        key_service=open311.key_service,
        endpoints=[DiscoveryEndpoint(url=public_url(request), type=open311.endpoint_type)],
    )
    return answer(format, "discovery", document)


@router.get(
    "/services.{format}", response_model=list[Service], responses={200: XML_ANSWER, 404: {}}
)
async def list_services(
    format: Format, request: Request, jurisdiction_id: str | None = None
) -> Response:
    check_jurisdiction(request, jurisdiction_id)
    return answer(format, "services", services())


@router.get(
    "/services/{service_code}.{format}",
    response_model=ServiceDefinition,
    responses={200: XML_ANSWER, 404: {}},
)
async def get_service_definition(
    service_code: str, format: Format, request: Request, jurisdiction_id: str | None = None
) -> Response:
    """The attributes a service asks (`attribute[code]` on POST); services.json marks the ones
    that have any with `metadata: true`."""
    check_jurisdiction(request, jurisdiction_id)
    definition = service_definition(service_code)
    if definition is None:
        raise ApiError(404, f"service_code {field_label(service_code)}: not found (see services)")
    return answer(format, "service_definition", definition)


@router.post(
    "/requests.{format}",
    status_code=201,
    responses={201: XML_ANSWER, 400: {}, 401: {}, 404: {}, 413: {}, 415: {}, 503: {}},
    openapi_extra={"requestBody": {"content": INTAKE_BODIES}},
)
async def create_request(format: Format, request: Request) -> Response:
    """GeoReport v2 POST: the standard fields, `attribute[code]` answers, optionally a photo as
    `media` (multipart); `channel` defaults from the integration's key."""
    runtime = runtime_of(request)
    open311 = runtime.settings.open311
    fields, photo = await read_fields(request, media_limit=open311.max_media_bytes)
    body_key = fields.pop("api_key", None)
    system = system_of(
        request.headers.get("x-api-key") or body_key, runtime.settings.hotline.api_keys
    )
    check_jurisdiction(request, fields.pop("jurisdiction_id", None))

    now = utc_now()
    request_id = new_request_id(now)
    fields, answers, problems = split_attributes(fields)
    values, intake_problems = intake_values(fields)
    problems += intake_problems
    values.setdefault("requested_datetime", now)
    values.setdefault("channel", default_channel(system, open311.channels))
    values["service_request_id"] = request_id
    code = values.get("service_code")
    if answers and not code:
        problems.append("service_code: required to answer attribute[…]")
    elif isinstance(code, str) and code in set(Category):
        values["attributes"], attribute_problems = check_attributes(Category(code), answers)
        problems += attribute_problems
    photo_type = None
    if photo is not None:
        photo_type = image_type(photo)
        if photo_type is None:
            problems.append("media: not a JPEG, PNG or WebP image")
        if "media_url" in values:
            problems.append("media_url: send either a media file or a media_url")
        values["media_url"] = f"{public_url(request)}/requests/{request_id}/media"
    try:
        ticket = make_ticket(values, problems)
    except IntakeError as error:
        log.info("request from %s rejected: %s", system, error)  # names fields, not values
        raise ApiError(400, *error.problems) from None

    if photo is not None and photo_type is not None:  # both or neither once the ticket is valid
        await store_photo(runtime, request_id, photo, photo_type)
    await publish(runtime, TICKETS.name, [TICKETS.encode(ticket)])
    log.info("ticket %s accepted from %s via %s", request_id, system, ticket.channel)
    notice = NOTICE.format(prefix=PREFIX, id=request_id, format=format)
    created = {"service_request_id": request_id, "service_notice": notice, "account_id": None}
    return answer(format, "service_requests", [created], status_code=201)


async def store_photo(runtime: Runtime, request_id: str, photo: bytes, media_type: str) -> None:
    """Stored before the ticket is published, so an acknowledged report never lacks its photo;
    a database outage is a 503 (not accepted). A ticket refused by Kafka afterwards leaves an
    unreferenced photo, never a ticket pointing at nothing."""
    async with database(runtime) as conn:
        await conn.execute(
            "INSERT INTO ticket_media (service_request_id, media_type, content, sha256)"
            " VALUES (%s, %s, %s, %s)",
            (request_id, media_type, photo, hashlib.sha256(photo).hexdigest()),
        )


async def staff_write(request: Request) -> tuple[Runtime, dict[str, object], str]:
    """The runtime, the body's fields and the integrating system, for a staff write: the body
    within `hotline.max_body_bytes`, form or JSON, a valid API key (header or field) and, when
    named, our jurisdiction."""
    runtime = runtime_of(request)
    fields, _ = await read_fields(request)
    body_key = fields.pop("api_key", None)
    system = system_of(
        request.headers.get("x-api-key") or body_key, runtime.settings.hotline.api_keys
    )
    check_jurisdiction(request, fields.pop("jurisdiction_id", None))
    return runtime, fields, system


@router.get(
    "/requests/{service_request_id}.{format}",
    response_model=list[ServiceRequest],
    responses={200: XML_ANSWER, 404: {}, 503: {}},
)
async def get_request(
    service_request_id: str, format: Format, request: Request, jurisdiction_id: str | None = None
) -> Response:
    check_jurisdiction(request, jurisdiction_id)
    found = await read_request(runtime_of(request), service_request_id)
    return answer(format, "service_requests", [found])


async def read_request(runtime: Runtime, service_request_id: str) -> ServiceRequest:
    rows = await query(
        runtime,
        f"SELECT {REQUEST_COLUMNS} FROM tickets WHERE service_request_id = %s",
        (service_request_id,),
    )
    if not rows:
        raise ApiError(404, f"service_request_id {field_label(service_request_id)}: not found")
    return request_from_row(rows[0], runtime.units)


@router.post(
    "/requests/{service_request_id}/status.{format}",
    response_model=list[ServiceRequest],
    responses={200: XML_ANSWER, 400: {}, 401: {}, 404: {}, 503: {}},
)
async def change_status(service_request_id: str, format: Format, request: Request) -> Response:
    """Staff systems move a ticket (an extension: Open311 itself has no write for status).
    Fields `status` (assigned, in_progress, resolved, triaged) and optional `status_notes`."""
    runtime, fields, system = await staff_write(request)
    status, note = fields.get("status"), fields.get("status_notes")
    if not isinstance(status, str) or status not in tickets.TRANSITIONS:
        raise ApiError(400, f"status: one of {', '.join(sorted(tickets.TRANSITIONS))}")
    if note is not None and not isinstance(note, str):
        raise ApiError(400, "status_notes: must be text")
    try:
        await staff_actions(runtime).set_ticket_status(service_request_id, status, note)
    except tickets.UnknownTicket as error:
        raise ApiError(404, f"service_request_id: {error}") from None
    except tickets.TicketTransitionError as error:
        raise ApiError(400, f"status: {error}") from None
    log.info("ticket %s moved to %s by %s", service_request_id, status, system)
    moved = await read_request(runtime, service_request_id)
    return answer(format, "service_requests", [moved])


@router.post(
    "/requests/{service_request_id}/triage.{format}",
    responses={200: XML_ANSWER, 400: {}, 401: {}, 404: {}, 503: {}},
)
async def correct_request_triage(
    service_request_id: str, format: Format, request: Request
) -> Response:
    """Staff correct a ticket's triage (an extension of Open311). Fields `service_code`,
    `urgent` and/or `priority`, with `corrected_by` and `reason`; stored for audit and for
    `ioc triage train`. Made urgent, the ticket's incident is raised and pages at once."""
    runtime, fields, system = await staff_write(request)
    try:
        correction = Correction.model_validate(fields)
    except ValidationError as error:
        raise ApiError(400, *describe(error.errors())) from None
    try:
        applied = await staff_actions(runtime).correct_ticket(
            service_request_id, correction, runtime.sla
        )
    except tickets.UnknownTicket as error:
        raise ApiError(404, f"service_request_id: {error}") from None
    except CorrectionError as error:
        raise ApiError(400, str(error)) from None
    log.info(
        "ticket %s triage corrected to %s p%d via %s",
        service_request_id,
        applied.category,
        applied.priority,
        system,
    )
    corrected = {
        "service_request_id": service_request_id,
        "service_code": applied.category.value,
        "priority": applied.priority,
        "urgent": applied.urgent,
        "incident_id": applied.incident.id if applied.incident else None,
        "paged": applied.raised and applied.incident is not None,
    }
    return answer(format, "service_requests", [corrected])


@router.get(
    "/requests.{format}",
    response_model=list[ServiceRequest],
    responses={200: XML_ANSWER, 400: {}, 404: {}, 503: {}},
)
async def list_requests(
    format: Format,
    request: Request,
    jurisdiction_id: str | None = None,
    service_request_id: str | None = None,
    service_code: str | None = None,
    status: str | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
    page: int = Query(1, ge=1),
    page_size: int = Query(50, ge=1, le=200),
) -> Response:
    """Newest first. `service_request_id` (comma list) overrides the other filters (Open311)."""
    unknown = sorted({field_label(name) for name in request.query_params} - LIST_PARAMETERS)
    if unknown:
        raise ApiError(400, *(f"{name}: unknown parameter" for name in unknown))
    check_jurisdiction(request, jurisdiction_id)
    where: list[str] = []
    params: list[Any] = []
    ids = _comma_list(service_request_id)
    if ids:
        if len(ids) > MAX_IDS:
            raise ApiError(400, f"service_request_id: at most {MAX_IDS} ids")
        where.append("service_request_id = ANY(%s)")
        params.append(ids)
    else:
        where, params = _filters(service_code, status, start_date, end_date)
    sql = f"SELECT {REQUEST_COLUMNS} FROM tickets"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY requested_at DESC, service_request_id DESC LIMIT %s OFFSET %s"
    params += [page_size, (page - 1) * page_size]
    runtime = runtime_of(request)
    rows = await query(runtime, sql, params)
    return answer(
        format, "service_requests", [request_from_row(row, runtime.units) for row in rows]
    )


def _filters(
    service_code: str | None, status: str | None, start_date: str | None, end_date: str | None
) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    problems: list[str] = []
    codes = _comma_list(service_code)
    if codes:
        valid = {category.value for category in Category}
        if any(code not in valid for code in codes):
            problems.append("service_code: unknown service_code (see services.json)")
        where.append("COALESCE(category, service_code) = ANY(%s)")
        params.append(codes)
    statuses = set(_comma_list(status))
    if statuses - {"open", "closed"}:
        problems.append("status: must be open or closed")
    elif statuses == {"open"}:
        where.append("status <> ALL(%s)")
        params.append(list(tickets.CLOSED_STATES))
    elif statuses == {"closed"}:
        where.append("status = ANY(%s)")
        params.append(list(tickets.CLOSED_STATES))
    bounds: dict[str, datetime] = {}
    for name, value, clause in (
        ("start_date", start_date, "requested_at >= %s"),
        ("end_date", end_date, "requested_at <= %s"),
    ):
        if value is None:
            continue
        try:
            bounds[name] = parse_datetime(value, name)
        except IntakeError as error:
            problems.extend(error.problems)
            continue
        where.append(clause)
        params.append(bounds[name])
    if len(bounds) == 2 and bounds["start_date"] > bounds["end_date"]:
        problems.append("start_date: after end_date")
    if problems:
        raise ApiError(400, *problems)
    return where, params


def _comma_list(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]
