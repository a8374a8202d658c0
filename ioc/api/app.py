"""The HTTP API, composed: the Open311 intake (`requests`), the sensor intake, staff incidents and
media, under one error handling that never lets request data reach a log or an answer."""

from __future__ import annotations

import logging
import traceback
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ioc.api import evidence as staff_evidence
from ioc.api import incidents as staff_api
from ioc.api import media as staff_media
from ioc.api import sensors as sensor_intake
from ioc.api.context import PUBLISH_TIMEOUT_S, ApiError, Runtime, query, runtime_of
from ioc.api.limits import RateLimit, RateLimiter
from ioc.api.open311 import describe, error_document
from ioc.api.requests import PREFIX, TITLE, router
from ioc.citizens import web as citizen
from ioc.config import Settings
from ioc.console import tickets as console_tickets
from ioc.console import web as console
from ioc.dispatch.communes import Communes
from ioc.dispatch.roster import Roster
from ioc.dispatch.units import Units
from ioc.hotline.triage import SLA_PATH, load_sla
from ioc.kafka.clients import producer as kafka_producer
from ioc.models import load_sensor_registry

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    registry = load_sensor_registry(settings.streams.sensor_registry)  # a bad file fails start-up
    sla = load_sla(settings.hotline.sla_table or SLA_PATH)
    units = Units.load(settings.console.units)
    roster = Roster.load(settings.oncall.roster) if settings.oncall.roster else None
    communes = Communes.load(settings.console.communes)

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
        runtime = Runtime(settings, producer, pool, registry, sla, units, roster, communes)
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
    app.include_router(router, prefix=PREFIX)
    app.include_router(staff_media.router, prefix=PREFIX)
    app.include_router(sensor_intake.router, prefix=sensor_intake.SENSORS_PREFIX)
    app.include_router(staff_api.router, prefix=staff_api.INCIDENTS_PREFIX)
    app.include_router(staff_evidence.router, prefix=staff_api.INCIDENTS_PREFIX)
    app.include_router(console.router, prefix=console.CONSOLE_PATH, include_in_schema=False)
    app.include_router(console_tickets.router, prefix=console.CONSOLE_PATH, include_in_schema=False)
    app.include_router(citizen.router, prefix=citizen.CITIZEN_PATH, include_in_schema=False)
    app.mount(
        f"{console.CONSOLE_PATH}/static",
        StaticFiles(directory=console.STATIC_DIR),
        name="console-static",
    )
    for error, handler in console.HANDLERS.items():
        app.add_exception_handler(error, handler)
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


async def healthz(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    database = True
    try:
        await query(runtime, "SELECT 1 AS ok", (), timeout=2.0)
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
