"""The pipeline's writes. Every write is idempotent on a deterministic key, so a redelivered or
replayed message upserts (or is skipped) instead of duplicating a row."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import astuple, dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from ioc.kafka.dlq import RecordedDeadLetter
from ioc.models import Alert, FrameDetections, Incident
from ioc.rules.sensor.engine import WindowAggregate


@dataclass(frozen=True)
class ReadingRow:
    """One measurement of one reading, as stored (`late`: its window had already closed)."""

    sensor_id: str
    observed_at: datetime
    property: str
    value: float
    sensor_type: str
    ingested_at: datetime
    late: bool

    def values(self) -> tuple[str, datetime, str, float, str, datetime, bool]:
        """The columns in `READING_COLUMNS` order (`astuple` deep-copies: slow per reading)."""
        return (
            self.sensor_id,
            self.observed_at,
            self.property,
            self.value,
            self.sensor_type,
            self.ingested_at,
            self.late,
        )


READING_COLUMNS = (
    "sensor_id",
    "observed_at",
    "property",
    "value",
    "sensor_type",
    "ingested_at",
    "late",
)
READING_KEY = ("sensor_id", "property", "observed_at")


@dataclass(frozen=True)
class Snapshot:
    """An incident's annotated best frame on disk and the frame it was drawn from."""

    incident_id: str
    path: str
    camera_id: str
    frame_partition: int
    frame_offset: int
    seq: int
    score: float


async def upsert_incident(conn: AsyncConnection, incident: Incident) -> None:
    """A candidate incident's latest state (on the caller's connection: it may be part of a
    larger transaction)."""
    await conn.execute(
        "INSERT INTO incidents (id, kind, severity, source, source_key, title, status,"
        " district, lat, lon, event_time, category, reports, evidence)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status,"
        " severity = EXCLUDED.severity, title = EXCLUDED.title, reports = EXCLUDED.reports,"
        " evidence = EXCLUDED.evidence, updated_at = now()",
        incident_values(incident),
    )


def incident_values(incident: Incident) -> tuple[Any, ...]:
    """The `incidents` columns id … evidence of an INSERT, in table order."""
    return (
        incident.id,
        incident.kind,
        incident.severity,
        incident.source,
        incident.source_key,
        incident.title,
        incident.status,
        incident.district,
        incident.lat,
        incident.lon,
        incident.event_time,
        incident.category,
        incident.reports,
        Jsonb(json.loads(json.dumps(incident.evidence, default=str))),
    )


class Store:
    """An async connection pool, opened on first use (agents start before they write)."""

    def __init__(self, dsn: str, max_size: int = 4) -> None:
        self._pool = AsyncConnectionPool(dsn, min_size=1, max_size=max_size, open=False)
        self._opened = asyncio.Lock()
        self._is_open = False

    async def _ready(self) -> AsyncConnectionPool:
        async with self._opened:
            if not self._is_open:
                await self._pool.open(wait=True, timeout=30)
                self._is_open = True
        return self._pool

    async def close(self) -> None:
        if self._is_open:
            await self._pool.close()
            self._is_open = False

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection, for callers that own a multi-statement transaction."""
        pool = await self._ready()
        async with pool.connection() as conn:
            yield conn

    async def upsert_windows(self, windows: Sequence[WindowAggregate]) -> None:
        """Closed windows, in one statement; a replayed window overwrites itself with the same
        figures."""
        if not windows:
            return
        rows = [
            (w.sensor_id, w.property, w.start, w.end, w.count, w.min, w.max, w.mean, w.last)
            for w in windows
        ]
        async with self.connection() as conn:
            await conn.execute(
                "INSERT INTO sensor_windows (sensor_id, property, window_start, window_end,"
                " count, min, max, mean, last)"
                " SELECT * FROM unnest(%b::text[], %b::text[], %b::timestamptz[],"
                " %b::timestamptz[], %b::int[], %b::float8[], %b::float8[], %b::float8[],"
                " %b::float8[])"
                " ON CONFLICT (sensor_id, property, window_start) DO UPDATE SET"
                " count = EXCLUDED.count, min = EXCLUDED.min, max = EXCLUDED.max,"
                " mean = EXCLUDED.mean, last = EXCLUDED.last",
                # %b: arrays in binary; the text form quotes and escapes each element (profiled)
                [list(column) for column in zip(*rows, strict=True)],
            )

    async def flow_states(self, flow: str, keys: Sequence[str]) -> dict[str, bytes]:
        """The stored states of these devices (see migration 0012); absent ones are new."""
        if not keys:
            return {}
        async with self.connection() as conn:
            cursor = await conn.execute(
                "SELECT key, state FROM flow_states WHERE flow = %s AND key = ANY(%s)",
                (flow, list(keys)),
            )
            return {key: state.encode() for key, state in await cursor.fetchall()}

    async def save_flow_states(self, flow: str, states: dict[str, str]) -> None:
        """The states a batch changed, in one statement."""
        if not states:
            return
        async with self.connection() as conn:
            await conn.execute(
                "INSERT INTO flow_states (flow, key, state, updated_at)"
                " SELECT %s, key, state, now() FROM unnest(%b::text[], %b::text[]) AS s(key, state)"
                " ON CONFLICT (flow, key) DO UPDATE SET"
                " state = EXCLUDED.state, updated_at = EXCLUDED.updated_at",
                (flow, list(states), list(states.values())),
            )

    async def insert_frames(self, frames: Sequence[FrameDetections]) -> None:
        """The frames' rows (health, drops, latency) and their boxes, pipelined on one
        connection; a re-delivery writes nothing."""
        if not frames:
            return
        frame_rows = [
            (
                frame.camera_id,
                frame.event_time,
                frame.seq,
                frame.ingested_at_ms,
                frame.model,
                frame.inference_ms,
                frame.width,
                frame.height,
                len(frame.detections),
                frame.dropped,
                frame.stats.luma_mean if frame.stats else None,
                frame.stats.luma_std if frame.stats else None,
                frame.stats.signature if frame.stats else None,
            )
            for frame in frames
        ]
        box_rows = [
            (
                frame.camera_id,
                frame.event_time,
                frame.seq,
                index,
                det.class_name,
                det.score,
                det.box.x1,
                det.box.y1,
                det.box.x2,
                det.box.y2,
                frame.model,
                det.track_id,
            )
            for frame in frames
            for index, det in enumerate(frame.detections)
        ]
        async with self.connection() as conn, conn.cursor() as cursor:
            await cursor.executemany(
                "INSERT INTO camera_frames (camera_id, event_time, seq, ingested_at, model,"
                " inference_ms, width, height, detections, dropped, luma_mean, luma_std, signature)"
                " VALUES (%s, %s, %s, to_timestamp(%s / 1000.0), %s, %s, %s, %s, %s, %s, %s, %s,"
                " %s) ON CONFLICT DO NOTHING",
                frame_rows,
            )
            if box_rows:
                await cursor.executemany(
                    "INSERT INTO detections (camera_id, event_time, seq, idx, class_name, score,"
                    " x1, y1, x2, y2, model, track_id)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT DO NOTHING",
                    box_rows,
                )

    async def record_snapshot(self, snapshot: Snapshot) -> tuple[bool, str | None]:
        """Keep the incident's best frame. Returns whether this one was kept (new, or scoring
        higher) and the path recorded before, so the caller can remove the file no row names."""
        pool = await self._ready()
        async with pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            await cursor.execute(
                "SELECT path FROM incident_snapshots WHERE incident_id = %s FOR UPDATE",
                (snapshot.incident_id,),
            )
            row = await cursor.fetchone()
            await cursor.execute(
                "INSERT INTO incident_snapshots (incident_id, path, camera_id, frame_partition,"
                " frame_offset, seq, score) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (incident_id) DO UPDATE SET path = excluded.path,"
                " frame_partition = excluded.frame_partition, frame_offset = excluded.frame_offset,"
                " seq = excluded.seq, score = excluded.score, saved_at = now()"
                " WHERE incident_snapshots.score < excluded.score",
                astuple(snapshot),
            )
            return cursor.rowcount == 1, row[0] if row else None

    async def upsert_incident(self, incident: Incident) -> None:
        pool = await self._ready()
        async with pool.connection() as conn:
            await upsert_incident(conn, incident)

    async def record_dead_letters(self, letters: Sequence[RecordedDeadLetter]) -> None:
        pool = await self._ready()
        async with pool.connection() as conn, conn.cursor() as cursor:
            await cursor.executemany(
                "INSERT INTO dead_letters (dlq_partition, dlq_offset, failed_at, source_topic,"
                " source_partition, source_offset, consumer, reason, size_bytes)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [astuple(letter) for letter in letters],  # fields in column order
            )

    async def record_lag(self, at: datetime, lags: dict[tuple[str, str], int]) -> None:
        pool = await self._ready()
        async with pool.connection() as conn, conn.cursor() as cursor:
            await cursor.executemany(
                "INSERT INTO consumer_lag (at, group_id, topic, lag) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                [(at, group, topic, lag) for (group, topic), lag in lags.items()],
            )

    async def insert_alert(self, alert: Alert) -> None:
        pool = await self._ready()
        async with pool.connection() as conn:
            await conn.execute(
                "INSERT INTO alerts (id, incident_id, channel, notification, delivered_at,"
                " latency_ms, ok, error) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET delivered_at = EXCLUDED.delivered_at,"
                " latency_ms = EXCLUDED.latency_ms, ok = EXCLUDED.ok, error = EXCLUDED.error"
                " WHERE NOT alerts.ok",
                (
                    alert.id,
                    alert.incident_id,
                    alert.channel,
                    alert.notification,
                    alert.delivered_at,
                    alert.latency_ms,
                    alert.ok,
                    alert.error,
                ),
            )
