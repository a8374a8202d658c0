"""What the incident page draws besides its tables: the map's points (the incident, each
candidate's device or report, each 1022 report) and a sparkline of each sensor's readings around
the incident, as SVG made here (no charting script to ship or trust)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from ioc.models import FusedIncident, IncidentSource

SOURCE_COLOURS = {"vision": "#6a1b9a", "sensor": "#00838f", "hotline": "#ef6c00"}
SEVERITY_COLOURS = {"urgent": "#c62828", "high": "#ef6c00", "normal": "#546e7a"}
SPARK_WIDTH, SPARK_HEIGHT, SPARK_POINTS = 240, 48, 240
BEFORE = timedelta(hours=1)  # readings shown from an hour before the incident began


@dataclass(frozen=True)
class MapPoint:
    lat: float
    lon: float
    label: str
    colour: str


@dataclass(frozen=True)
class Sparkline:
    sensor_id: str
    property: str
    points: str  # SVG polyline points
    low: float
    high: float
    last: float
    count: int


async def map_points(
    conn: AsyncConnection, incident: FusedIncident, tickets: list[dict[str, Any]]
) -> list[MapPoint]:
    """The incident first, then its candidates' places, then its reports'; points without a
    place are left out."""
    points = []
    if incident.lat is not None and incident.lon is not None:
        points.append(
            MapPoint(
                incident.lat, incident.lon, incident.title, SEVERITY_COLOURS[incident.severity]
            )
        )
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT source, source_key, title, lat, lon FROM incidents"
            " WHERE id = ANY(%s) AND lat IS NOT NULL AND lon IS NOT NULL ORDER BY event_time",
            ([member.id for member in incident.members],),
        )
        for row in await cur.fetchall():
            if row["source"] == IncidentSource.HOTLINE:
                continue  # its reports are drawn one by one below
            label = f"{row['source_key']}: {row['title']}"
            points.append(MapPoint(row["lat"], row["lon"], label, SOURCE_COLOURS[row["source"]]))
    for ticket in tickets:
        if ticket.get("lat") is not None and ticket.get("lon") is not None:
            label = f"1022 {ticket['service_request_id']}"
            points.append(MapPoint(ticket["lat"], ticket["lon"], label, SOURCE_COLOURS["hotline"]))
    return points


def polyline(values: list[float], width: int = SPARK_WIDTH, height: int = SPARK_HEIGHT) -> str:
    """SVG points for `values` left to right, the lowest at the bottom and the highest at the
    top (a flat series along the middle)."""
    low, high = min(values), max(values)
    span = high - low
    step = width / max(len(values) - 1, 1)
    coordinates = []
    for index, value in enumerate(values):
        y = height / 2 if span == 0 else height - (value - low) / span * height
        coordinates.append(f"{index * step:.1f},{y:.1f}")
    return " ".join(coordinates)


async def sensor_sparklines(conn: AsyncConnection, incident: FusedIncident) -> list[Sparkline]:
    """Each property of each of its sensors, from an hour before the incident began: the latest
    `SPARK_POINTS` readings."""
    sensors = sorted({m.source_key for m in incident.members if m.source == IncidentSource.SENSOR})
    if not sensors:
        return []
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT sensor_id, property, array_agg(value ORDER BY observed_at) AS series"
            " FROM (SELECT sensor_id, property, observed_at, value, row_number() OVER"
            " (PARTITION BY sensor_id, property ORDER BY observed_at DESC) AS recent"
            " FROM sensor_readings WHERE sensor_id = ANY(%s) AND observed_at >= %s) r"
            " WHERE recent <= %s GROUP BY sensor_id, property ORDER BY sensor_id, property",
            (sensors, incident.event_time - BEFORE, SPARK_POINTS),
        )
        rows = await cur.fetchall()
    return [
        Sparkline(
            row["sensor_id"],
            row["property"],
            polyline(row["series"]),
            min(row["series"]),
            max(row["series"]),
            row["series"][-1],
            len(row["series"]),
        )
        for row in rows
    ]
