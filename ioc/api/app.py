"""The 1022 intake: Open311 GeoReport v2 under /open311/v2, in JSON and XML (`.json`/`.xml`).

POST publishes a validated Ticket to `ioc.hotline.tickets` and answers once Kafka acknowledged it;
the stream agent stores it, and GET reads it back from the `tickets` table. Reporter contact data
only ever travels to the topic: it is not logged, not echoed in errors and never read back. A
photo sent as `media` is stored before the ticket is published and served to staff only.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import traceback
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ioc.api.limits import RateLimit, RateLimiter
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
    error_document,
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
from ioc.config import Settings
from ioc.hotline import tickets
from ioc.hotline.categories import Category
from ioc.hotline.corrections import Correction, CorrectionError, correct_triage
from ioc.hotline.triage import SLA_PATH, SlaTable, load_sla
from ioc.kafka_clients import producer as kafka_producer
from ioc.models import Incident, SensorRegistry, load_sensor_registry
from ioc.models.base import utc_now
from ioc.models.events import Channel
from ioc.topics import HOTLINE_TICKETS, INCIDENT_CANDIDATES

log = logging.getLogger(__name__)

PREFIX = "/open311/v2"
TITLE = "IOC 1022 — Open311 GeoReport v2"
PUBLISH_TIMEOUT_S = 15.0
Headers = list[tuple[str, bytes]]  # a Kafka message's headers
PUBLISH_RETRY_AFTER_S = 10
DB_TIMEOUT_S = 5.0
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


class ApiError(Exception):
    """Answered in Open311's error format."""

    def __init__(self, status: int, *problems: str, headers: dict[str, str] | None = None) -> None:
        super().__init__("; ".join(problems))
        self.status = status
        self.problems = list(problems)
        self.headers = headers


@dataclass
class Runtime:
    settings: Settings
    producer: AIOKafkaProducer
    pool: AsyncConnectionPool[AsyncConnection[DictRow]]
    sensors: SensorRegistry
    sla: SlaTable
    producer_started: bool = False


def create_app(settings: Settings) -> FastAPI:
    registry = load_sensor_registry(settings.streams.sensor_registry)  # a bad file fails start-up
    sla = load_sla(settings.hotline.sla_table or SLA_PATH)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A write not acknowledged within two thirds of the bound fails with Kafka's own
        # reason (NotEnoughReplicas) before the bound, and is not retried much past it.
        producer = kafka_producer(
            settings.kafka, "ioc-api", request_timeout_ms=int(PUBLISH_TIMEOUT_S * 1000 * 2 / 3)
        )
        pool = AsyncConnectionPool(
            settings.database.dsn,
            connection_class=AsyncConnection[DictRow],
            kwargs={"autocommit": True, "row_factory": dict_row},
            min_size=1,
            max_size=settings.database.pool_max_size,
            open=False,
        )
        runtime = Runtime(settings, producer, pool, registry, sla)
        await producer.start()
        runtime.producer_started = True
        await pool.open(wait=False)  # intake works while the database is away; GETs answer 503
        app.state.runtime = runtime
        try:
            yield
        finally:
            runtime.producer_started = False
            await pool.close()
            await producer.stop()

    app = FastAPI(
        title=TITLE,
        lifespan=lifespan,
        docs_url=f"{PREFIX}/docs",
        openapi_url=f"{PREFIX}/openapi.json",
        redoc_url=None,
    )
    from ioc.api import incidents as staff_api  # they import this module's helpers
    from ioc.api import media as staff_media
    from ioc.api import sensors as sensor_intake

    app.include_router(router, prefix=PREFIX)
    app.include_router(staff_media.router, prefix=PREFIX)
    app.include_router(sensor_intake.router, prefix=sensor_intake.SENSORS_PREFIX)
    app.include_router(staff_api.router, prefix=staff_api.INCIDENTS_PREFIX)
    app.add_api_route("/healthz", healthz, methods=["GET"], include_in_schema=False)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(SafeErrors)
    hotline = settings.hotline
    app.add_middleware(
        RateLimit,
        limiter=RateLimiter(hotline.rate_limit_per_minute, hotline.rate_limit_burst),
        keys=hotline.api_keys
        | {f"staff:{name}": key for name, key in settings.alerts.staff_keys.items()},
    )
    return app


router = APIRouter()


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime


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
    await publish(runtime, HOTLINE_TICKETS, [(request_id.encode(), ticket.to_bytes())])
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


async def publish(
    runtime: Runtime,
    topic: str,
    messages: list[tuple[bytes, bytes]],
    headers: Sequence[Headers] | None = None,
) -> None:
    """Send (key, value) `messages` to `topic`, the i-th with `headers[i]` when given, and wait
    until Kafka acknowledged each with acks=all, i.e. on min.insync.replicas brokers; else 503
    with the reason and Retry-After.

    An intake answers 2xx only for durable writes, and within a bounded time: with too few
    in-sync replicas the producer would retry until its own timeout while the client waits.
    A message refused so may still reach the topic later (the producer goes on retrying it),
    so a client's retry after a 503 is at-least-once, never a lost acknowledged write.
    """
    name = runtime.settings.kafka.topic(topic)
    each: Sequence[Headers | None] = [None] * len(messages) if headers is None else headers

    async def acknowledged() -> None:
        sent = [
            await runtime.producer.send(name, key=key, value=value, headers=extra)
            for (key, value), extra in zip(messages, each, strict=True)
        ]
        await asyncio.gather(*sent)

    try:
        await asyncio.wait_for(acknowledged(), PUBLISH_TIMEOUT_S)
    except (KafkaError, TimeoutError) as error:
        cause = "no answer in time" if isinstance(error, TimeoutError) else type(error).__name__
        log.warning("%d message(s) to %s not acknowledged: %s", len(messages), name, cause)
        replicas = runtime.settings.kafka.effective_min_insync_replicas
        raise ApiError(
            503,
            f"intake temporarily unavailable: Kafka did not confirm the write on {replicas} "
            f"replica(s) within {PUBLISH_TIMEOUT_S:.0f} s ({cause}); not accepted, retry later",
            headers={"Retry-After": str(PUBLISH_RETRY_AFTER_S)},
        ) from None


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


async def publish_candidate(runtime: Runtime, incident: Incident) -> None:
    """A staff change of an incident goes to fusion, which pages when it now calls for it."""
    await runtime.producer.send_and_wait(
        runtime.settings.kafka.topic(INCIDENT_CANDIDATES),
        key=runtime.settings.fusion.region.encode(),
        value=incident.to_bytes(),
    )


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
    rows = await _query(
        runtime,
        f"SELECT {REQUEST_COLUMNS} FROM tickets WHERE service_request_id = %s",
        (service_request_id,),
    )
    if not rows:
        raise ApiError(404, f"service_request_id {field_label(service_request_id)}: not found")
    return request_from_row(rows[0])


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
        async with database(runtime) as conn:
            incident = await tickets.set_status(conn, service_request_id, status, note)
    except tickets.UnknownTicket as error:
        raise ApiError(404, f"service_request_id: {error}") from None
    except tickets.TransitionError as error:
        raise ApiError(400, f"status: {error}") from None
    if incident is not None:
        await publish_candidate(runtime, incident)
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
        async with database(runtime) as conn:
            applied = await correct_triage(conn, service_request_id, correction, runtime.sla)
    except tickets.UnknownTicket as error:
        raise ApiError(404, f"service_request_id: {error}") from None
    except CorrectionError as error:
        raise ApiError(400, str(error)) from None
    if applied.incident is not None:
        await publish_candidate(runtime, applied.incident)
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
    rows = await _query(runtime_of(request), sql, params)
    return answer(format, "service_requests", [request_from_row(row) for row in rows])


async def healthz(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    database = True
    try:
        await _query(runtime, "SELECT 1 AS ok", (), timeout=2.0)
    except ApiError:
        database = False
    healthy = runtime.producer_started and database
    return JSONResponse(
        {
            "status": "ok" if healthy else "unavailable",
            "kafka": runtime.producer_started,
            "database": database,
        },
        status_code=200 if healthy else 503,
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


@asynccontextmanager
async def database(
    runtime: Runtime, timeout: float = DB_TIMEOUT_S
) -> AsyncIterator[AsyncConnection[DictRow]]:
    """A pooled connection; the database being away (PoolTimeout included) is a 503."""
    try:
        async with runtime.pool.connection(timeout=timeout) as conn:
            yield conn
    except (psycopg.OperationalError, OSError) as error:
        log.warning("database unavailable: %s", type(error).__name__)
        raise ApiError(503, "database unavailable, retry later") from None


async def _query(
    runtime: Runtime, sql: str, params: Any, timeout: float = DB_TIMEOUT_S
) -> list[DictRow]:
    async with database(runtime, timeout) as conn:
        cursor = await conn.execute(sql, params)
        return await cursor.fetchall()


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or 413 as soon as either the declared or the actual size exceeds `limit`."""
    too_large = ApiError(413, f"request body larger than {limit} bytes")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise ApiError(400, "Content-Length: not a number")
        if int(declared) > limit:
            raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def read_fields(
    request: Request, media_limit: int = 0
) -> tuple[dict[str, object], bytes | None]:
    """The body's fields (form, multipart or JSON) and, where `media_limit` allows one, the photo
    sent as a multipart `media` file. Fields within `hotline.max_body_bytes`, the photo within
    `media_limit`, else 413; repeated fields only as `name[]` (multivaluelist attributes)."""
    limit = runtime_of(request).settings.hotline.max_body_bytes
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    multipart = content_type == "multipart/form-data"
    body = await read_body(request, limit + (media_limit if multipart else 0))
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ApiError(400, "body: malformed JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "body: must be a JSON object")
        return data, None
    if content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise ApiError(
            415,
            "Content-Type: use application/x-www-form-urlencoded, multipart/form-data or "
            "application/json",
        )

    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    form = await Request(request.scope, replay).form()
    fields: dict[str, object] = {}
    repeated: dict[str, list[str]] = {}
    photo: bytes | None = None
    problems: list[str] = []
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            if media_limit and name == "media" and photo is None:
                photo = await value.read()
            else:
                where = "one photo, as media" if media_limit else "none here"
                problems.append(f"{field_label(name)}: file uploads not accepted ({where})")
        elif name.endswith("[]"):
            repeated.setdefault(name, []).append(value)
        elif name in fields:
            problems.append(f"{field_label(name)}: given more than once")
        else:
            fields[name] = value
    await form.close()
    fields.update(repeated)
    if photo is not None and len(photo) > media_limit:
        raise ApiError(413, f"media: larger than {media_limit} bytes")
    if len(body) - len(photo or b"") > limit:
        raise ApiError(413, f"request body larger than {limit} bytes")
    if problems:
        raise ApiError(400, *problems)
    return fields, photo


def system_of(key: object, api_keys: Mapping[str, str]) -> str:
    """The integrating system owning `key`; 401 otherwise (every key compared in constant time)."""
    system = None
    if isinstance(key, str) and key:
        for name, expected in api_keys.items():
            if hmac.compare_digest(key.encode(), expected.encode()):
                system = name
    if system is None:
        raise ApiError(401, "api_key: missing or not valid")
    return system


def error_response(
    request: Request, status: int, problems: list[str], headers: Mapping[str, str] | None = None
) -> Response:
    """Open311's error list in the format the URL asked for (`error_document`)."""
    body, media_type = error_document(request.url.path, status, problems)
    return Response(body, status, headers, media_type=media_type)


async def _api_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ApiError)
    return error_response(request, error.status, error.problems, error.headers)


async def _validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    return error_response(request, 400, describe(error.errors(), skip_loc=1))


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    return error_response(request, error.status_code, [str(error.detail)], error.headers)


class SafeErrors:
    """Unexpected exceptions become a 500 logged by type and place only: their messages might
    quote request data (pydantic errors carry the input), so they never reach the log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception as error:
            frames = traceback.extract_tb(error.__traceback__)
            where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
            log.error(
                "%s %s failed: %s at %s",
                scope.get("method"),
                scope.get("path"),
                type(error).__name__,
                where,
            )
            if not started:
                body, media_type = error_document(scope.get("path", ""), 500, ["internal error"])
                await Response(body, 500, media_type=media_type)(scope, receive, send)
