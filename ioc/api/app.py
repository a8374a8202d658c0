"""The 1022 intake: Open311 GeoReport v2 under /open311/v2.

POST publishes a validated Ticket to `ioc.hotline.tickets` and answers once Kafka acknowledged it;
the stream agent stores it, and GET reads it back from the `tickets` table. Reporter contact data
only ever travels to the topic: it is not logged, not echoed in errors and never read back.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import traceback
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
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
    IntakeError,
    Service,
    ServiceRequest,
    describe,
    error_body,
    field_label,
    intake_values,
    make_ticket,
    new_request_id,
    parse_datetime,
    request_from_row,
    services,
)
from ioc.config import Settings
from ioc.hotline import lifecycle
from ioc.hotline.categories import Category
from ioc.hotline.corrections import Correction, CorrectionError, correct_triage
from ioc.hotline.triage import SLA_PATH, SlaTable, load_sla
from ioc.kafka_clients import producer as kafka_producer
from ioc.models import Incident, SensorRegistry, load_sensor_registry
from ioc.models.base import utc_now
from ioc.topics import HOTLINE_TICKETS, INCIDENT_CANDIDATES

log = logging.getLogger(__name__)

PREFIX = "/open311/v2"
PUBLISH_TIMEOUT_S = 15.0
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
NOTICE = "Đã tiếp nhận phản ánh. Tra cứu: GET {prefix}/requests/{id}.json"


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
        title="IOC 1022 — Open311 GeoReport v2",
        lifespan=lifespan,
        docs_url=f"{PREFIX}/docs",
        openapi_url=f"{PREFIX}/openapi.json",
        redoc_url=None,
    )
    from ioc.api import incidents as staff_api  # they import this module's helpers
    from ioc.api import sensors as sensor_intake

    app.include_router(router, prefix=PREFIX)
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


@router.get("/services.json")
async def list_services() -> list[Service]:
    return services()


@router.post(
    "/requests.json",
    status_code=201,
    responses={400: {}, 401: {}, 413: {}, 415: {}, 503: {}},
    openapi_extra={
        "requestBody": {
            "content": {
                "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
                "application/json": {"schema": {"type": "object"}},
            }
        }
    },
)
async def create_request(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    hotline = runtime.settings.hotline
    body = await read_body(request, hotline.max_body_bytes)
    fields = await _parse_fields(request, body)
    body_key = fields.pop("api_key", None)
    system = system_of(request.headers.get("x-api-key") or body_key, hotline.api_keys)

    now = utc_now()
    request_id = new_request_id(now)
    values, problems = intake_values(fields)
    values.setdefault("requested_datetime", now)
    if "channel" not in values and system in CHANNELS:
        values["channel"] = system
    values["service_request_id"] = request_id
    try:
        ticket = make_ticket(values, problems)
    except IntakeError as error:
        log.info("request from %s rejected: %s", system, error)  # names fields, not values
        raise ApiError(400, *error.problems) from None

    await publish(runtime, HOTLINE_TICKETS, [(request_id.encode(), ticket.to_bytes())])
    log.info("ticket %s accepted from %s via %s", request_id, system, ticket.channel)
    notice = NOTICE.format(prefix=PREFIX, id=request_id)
    return JSONResponse(
        [{"service_request_id": request_id, "service_notice": notice}], status_code=201
    )


async def publish(runtime: Runtime, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    """Send (key, value) `messages` to `topic` and wait until Kafka acknowledged each with
    acks=all, i.e. on min.insync.replicas brokers; else 503 with the reason and Retry-After.

    An intake answers 2xx only for durable writes, and within a bounded time: with too few
    in-sync replicas the producer would retry until its own timeout while the client waits.
    A message refused so may still reach the topic later (the producer goes on retrying it),
    so a client's retry after a 503 is at-least-once, never a lost acknowledged write.
    """
    name = runtime.settings.kafka.topic(topic)

    async def acknowledged() -> None:
        sent = [await runtime.producer.send(name, key=key, value=value) for key, value in messages]
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
    within `hotline.max_body_bytes`, form or JSON, and a valid API key (header or field)."""
    runtime = runtime_of(request)
    body = await read_body(request, runtime.settings.hotline.max_body_bytes)
    fields = await _parse_fields(request, body)
    body_key = fields.pop("api_key", None)
    system = system_of(
        request.headers.get("x-api-key") or body_key, runtime.settings.hotline.api_keys
    )
    return runtime, fields, system


async def publish_candidate(runtime: Runtime, incident: Incident) -> None:
    """A staff change of an incident goes to fusion, which pages when it now calls for it."""
    await runtime.producer.send_and_wait(
        runtime.settings.kafka.topic(INCIDENT_CANDIDATES),
        key=runtime.settings.fusion.region.encode(),
        value=incident.to_bytes(),
    )


@router.get("/requests/{service_request_id}.json", responses={404: {}, 503: {}})
async def get_request(service_request_id: str, request: Request) -> list[ServiceRequest]:
    rows = await _query(
        runtime_of(request),
        f"SELECT {REQUEST_COLUMNS} FROM tickets WHERE service_request_id = %s",
        (service_request_id,),
    )
    if not rows:
        raise ApiError(404, f"service_request_id {field_label(service_request_id)}: not found")
    return [request_from_row(rows[0])]


@router.post(
    "/requests/{service_request_id}/status.json", responses={400: {}, 401: {}, 404: {}, 503: {}}
)
async def change_status(service_request_id: str, request: Request) -> list[ServiceRequest]:
    """Staff systems move a ticket (an extension: Open311 itself has no write for status).
    Fields `status` (assigned, in_progress, resolved, triaged) and optional `status_notes`."""
    runtime, fields, system = await staff_write(request)
    status, note = fields.get("status"), fields.get("status_notes")
    if not isinstance(status, str) or status not in lifecycle.TRANSITIONS:
        raise ApiError(400, f"status: one of {', '.join(sorted(lifecycle.TRANSITIONS))}")
    if note is not None and not isinstance(note, str):
        raise ApiError(400, "status_notes: must be text")
    try:
        async with database(runtime) as conn:
            incident = await lifecycle.set_status(conn, service_request_id, status, note)
    except lifecycle.UnknownTicket as error:
        raise ApiError(404, f"service_request_id: {error}") from None
    except lifecycle.TransitionError as error:
        raise ApiError(400, f"status: {error}") from None
    if incident is not None:
        await publish_candidate(runtime, incident)
    log.info("ticket %s moved to %s by %s", service_request_id, status, system)
    return await get_request(service_request_id, request)


@router.post(
    "/requests/{service_request_id}/triage.json", responses={400: {}, 401: {}, 404: {}, 503: {}}
)
async def correct_request_triage(service_request_id: str, request: Request) -> list[dict[str, Any]]:
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
    except lifecycle.UnknownTicket as error:
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
    return [
        {
            "service_request_id": service_request_id,
            "service_code": applied.category.value,
            "priority": applied.priority,
            "urgent": applied.urgent,
            "incident_id": applied.incident.id if applied.incident else None,
            "paged": applied.raised and applied.incident is not None,
        }
    ]


@router.get("/requests.json", responses={400: {}, 503: {}})
async def list_requests(
    request: Request,
    service_request_id: str | None = None,
    service_code: str | None = None,
    status: str | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
    page: int = Query(1, ge=1),
    page_size: int = Query(50, ge=1, le=200),
) -> list[ServiceRequest]:
    """Newest first. `service_request_id` (comma list) overrides the other filters (Open311)."""
    unknown = sorted({field_label(name) for name in request.query_params} - LIST_PARAMETERS)
    if unknown:
        raise ApiError(400, *(f"{name}: unknown parameter" for name in unknown))
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
    return [request_from_row(row) for row in await _query(runtime_of(request), sql, params)]


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
        params.append(list(lifecycle.CLOSED_STATES))
    elif statuses == {"closed"}:
        where.append("status = ANY(%s)")
        params.append(list(lifecycle.CLOSED_STATES))
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


async def _parse_fields(request: Request, body: bytes) -> dict[str, object]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ApiError(400, "body: malformed JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "body: must be a JSON object")
        return data
    if content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):

        async def replay() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        form = await Request(request.scope, replay).form()
        fields: dict[str, object] = {}
        problems: list[str] = []
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                problems.append(f"{field_label(name)}: file uploads not accepted, send media_url")
            elif name in fields:
                problems.append(f"{field_label(name)}: given more than once")
            else:
                fields[name] = value
        await form.close()
        if problems:
            raise ApiError(400, *problems)
        return fields
    raise ApiError(415, "Content-Type: use application/x-www-form-urlencoded or application/json")


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


async def _api_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiError)
    return JSONResponse(
        error_body(error.status, error.problems), status_code=error.status, headers=error.headers
    )


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    return JSONResponse(error_body(400, describe(error.errors(), skip_loc=1)), status_code=400)


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    return JSONResponse(
        error_body(error.status_code, [str(error.detail)]),
        status_code=error.status_code,
        headers=error.headers,
    )


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
                response = JSONResponse(error_body(500, ["internal error"]), status_code=500)
                await response(scope, receive, send)
