"""One row per incident kind: everything that differs by kind outside the rule that raises it.
A new kind is an `IncidentKind` member and its row here (a test checks every kind has one)."""

from __future__ import annotations

from dataclasses import dataclass

from ioc.models.incidents import IncidentKind


@dataclass(frozen=True)
class KindInfo:
    title_en: str  # the kind in English pages, after the severity
    # The closest (category, subCategory) of the FIWARE Alert model's enumerations. The pairs
    # follow the grouping the model was published with (fires under `security`, `floodRisk`
    # under `weather`; `crowdRisk` was added later among the traffic subCategories). A kind with
    # no fitting subCategory keeps its category only; its own kind stays in the alert's data.
    alert_category: str
    alert_subcategory: str | None


KINDS: dict[IncidentKind, KindInfo] = {
    IncidentKind.FIRE: KindInfo("Fire", "security", "buildingFire"),
    IncidentKind.FLOOD: KindInfo("Flooding", "naturalDisaster", "flood"),
    IncidentKind.WATER_LEVEL_HIGH: KindInfo("High water level", "weather", "floodRisk"),
    IncidentKind.AIR_QUALITY_POOR: KindInfo("Poor air quality", "environment", "airPollution"),
    IncidentKind.CITIZEN_REPORT: KindInfo("Citizen report", "security", None),
    IncidentKind.SLA_BREACH: KindInfo("1022 ticket past its deadline", "security", None),
    IncidentKind.SENSOR_FAULT: KindInfo("Sensor fault", "environment", None),
    IncidentKind.SENSOR_OFFLINE: KindInfo("Sensor offline", "environment", None),
    IncidentKind.CROWDING: KindInfo("Crowding", "traffic", "crowdRisk"),
    IncidentKind.STOPPED_VEHICLE: KindInfo("Stopped vehicle", "traffic", "carStopped"),
    IncidentKind.WRONG_WAY: KindInfo("Wrong-way traffic", "traffic", "carWrongDirection"),
    IncidentKind.LOITERING: KindInfo("Loitering", "security", "suspiciousAction"),
    IncidentKind.CAMERA_OFFLINE: KindInfo("Camera offline", "security", None),
    IncidentKind.CAMERA_FROZEN: KindInfo("Camera frozen", "security", None),
    IncidentKind.CAMERA_BLACKOUT: KindInfo("Camera blacked out", "security", None),
    IncidentKind.CAMERA_TAMPER: KindInfo(
        "Camera moved or tampered with", "security", "suspiciousAction"
    ),
}

__all__ = ["KINDS", "KindInfo"]
