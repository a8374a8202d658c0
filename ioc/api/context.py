"""What every router of the HTTP API shares: the runtime (settings, Kafka producer, database pool),
errors answered in Open311's format, bounded body reading, API keys, and durable publishing."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import Request
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr
from starlette.datastructures import UploadFile
from starlette.types import Message

from ioc.api.open311 import field_label
from ioc.config import Settings
from ioc.dispatch.communes import Communes
from ioc.dispatch.roster import Roster
from ioc.dispatch.units import Units
from ioc.hotline.triage import SlaTable
from ioc.incidents.service import StaffActions
from ioc.models import SensorRegistry

log = logging.getLogger(__name__)


PUBLISH_TIMEOUT_S = 15.0


Headers = list[tuple[str, bytes]]  # a Kafka message's headers


PUBLISH_RETRY_AFTER_S = 10


DB_TIMEOUT_S = 5.0


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
    units: Units
    roster: Roster | None = None
    communes: Communes = field(default_factory=Communes.load)
    producer_started: bool = False


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime


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


def staff_actions(runtime: Runtime) -> StaffActions:
    """Staff changes through the API's pool and producer (`ioc.incidents.service`)."""
    return StaffActions(runtime.settings, lambda: database(runtime), runtime.producer)


async def query(
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


def system_of(key: object, api_keys: Mapping[str, SecretStr]) -> str:
    """The integrating system owning `key`; 401 otherwise (every key compared in constant time)."""
    system = None
    if isinstance(key, str) and key:
        for name, expected in api_keys.items():
            if hmac.compare_digest(key.encode(), expected.get_secret_value().encode()):
                system = name
    if system is None:
        raise ApiError(401, "api_key: missing or not valid")
    return system
