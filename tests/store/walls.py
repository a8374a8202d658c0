"""What the walls read, the same with and without TimescaleDB (shared by both test suites)."""

from __future__ import annotations

from datetime import datetime

import psycopg

from ioc.models import Incident, IncidentKind, IncidentSource, Severity

SENSOR_COLUMNS = ["bucket", "sensor_id", "property", "readings", "min", "max", "avg", "last"]
WALL_COLUMNS = {
    "sensor_readings_1m": SENSOR_COLUMNS,
    "sensor_readings_1h": SENSOR_COLUMNS,
    "incidents_1h": ["bucket", "source", "kind", "severity", "district", "incidents"],
}


def view_columns(conn: psycopg.Connection, view: str) -> list[str]:
    cursor = conn.execute(f"SELECT * FROM {view} LIMIT 0")
    return [column.name for column in cursor.description or ()]


def incident(incident_id: str, at: datetime, **changes: object) -> Incident:
    fields: dict[str, object] = {
        "id": incident_id,
        "kind": IncidentKind.FLOOD,
        "severity": Severity.HIGH,
        "source": IncidentSource.SENSOR,
        "source_key": "sensor-x",
        "title": "Water above the alert level",
        "event_time": at,
        "ingested_at_ms": int(at.timestamp() * 1000),
        "district": "Storage Test",
    }
    return Incident.model_validate(fields | changes)


def audit_trail(conn: psycopg.Connection, incident_id: str) -> list[tuple]:
    return conn.execute(
        "SELECT change, status, severity, prev_status, prev_severity FROM incident_events"
        " WHERE incident_id = %s ORDER BY at",
        (incident_id,),
    ).fetchall()
