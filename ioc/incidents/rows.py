"""Candidate incidents in SQL: a row as the model, and the great-circle distance from a point,
shared by the ticket linker and fusion."""

from __future__ import annotations

import math
from typing import Any

from ioc.models import Incident

EARTH_RADIUS_M = 6_371_000


def distance_sql(lat: str, lon: str, row: str = "") -> str:
    """Metres from the point (`lat`, `lon`, SQL expressions) to the row's lat/lon (haversine;
    PostGIS is not required); `row` qualifies the row's columns."""
    at = f"{row}." if row else ""
    return (
        f"2 * {EARTH_RADIUS_M} * asin(sqrt(power(sin(radians({at}lat - {lat}) / 2), 2)"
        f" + cos(radians({lat})) * cos(radians({at}lat))"
        f" * power(sin(radians({at}lon - {lon}) / 2), 2)))"
    )


def distance_m(lat: float, lon: float, to_lat: float, to_lon: float) -> float:
    """`distance_sql` in Python, for points not yet stored."""
    a = (
        math.sin(math.radians(to_lat - lat) / 2) ** 2
        + math.cos(math.radians(lat))
        * math.cos(math.radians(to_lat))
        * math.sin(math.radians(to_lon - lon) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


DISTANCE_M = distance_sql("%(lat)s", "%(lon)s")


def incident_from_row(row: dict[str, Any], ingested_ms: int) -> Incident:
    return Incident(
        id=row["id"],
        kind=row["kind"],
        severity=row["severity"],
        source=row["source"],
        source_key=row["source_key"],
        title=row["title"],
        status=row["status"],
        event_time=row["event_time"],
        ingested_at_ms=ingested_ms,
        district=row["district"],
        lat=row["lat"],
        lon=row["lon"],
        category=row["category"],
        reports=row["reports"],
        evidence=row["evidence"],
    )


__all__ = ["DISTANCE_M", "distance_m", "distance_sql", "incident_from_row"]
