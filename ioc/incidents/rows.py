"""Candidate incidents in SQL: a row as the model, and the great-circle distance from a point,
shared by the ticket linker and fusion."""

from __future__ import annotations

from typing import Any

from ioc.models import Incident

# Metres from (%(lat)s, %(lon)s) to the row's lat/lon (haversine; PostGIS is not required).
DISTANCE_M = (
    "2 * 6371000 * asin(sqrt(power(sin(radians(lat - %(lat)s) / 2), 2)"
    " + cos(radians(%(lat)s)) * cos(radians(lat)) * power(sin(radians(lon - %(lon)s) / 2), 2)))"
)


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


__all__ = ["DISTANCE_M", "incident_from_row"]
