"""One row per incident kind: everything that differs by kind outside the rule that raises it.
A new kind is an `IncidentKind` member and its row here (a test checks every kind has one)."""

from __future__ import annotations

from dataclasses import dataclass

from ioc.models.incidents import IncidentKind


@dataclass(frozen=True)
class KindInfo:
    title_vi: str  # the kind as staff read it (the console's queue and filters)
    title_en: str  # the kind in English pages, after the severity
    # The closest (category, subCategory) of the FIWARE Alert model's enumerations. The pairs
    # follow the grouping the model was published with (fires under `security`, `floodRisk`
    # under `weather`; `crowdRisk` was added later among the traffic subCategories). A kind with
    # no fitting subCategory keeps its category only; its own kind stays in the alert's data.
    alert_category: str
    alert_subcategory: str | None


KINDS: dict[IncidentKind, KindInfo] = {
    IncidentKind.FIRE: KindInfo("Cháy", "Fire", "security", "buildingFire"),
    IncidentKind.FLOOD: KindInfo("Ngập lụt", "Flooding", "naturalDisaster", "flood"),
    IncidentKind.WATER_LEVEL_HIGH: KindInfo(
        "Mực nước cao", "High water level", "weather", "floodRisk"
    ),
    IncidentKind.AIR_QUALITY_POOR: KindInfo(
        "Không khí ô nhiễm", "Poor air quality", "environment", "airPollution"
    ),
    IncidentKind.CITIZEN_REPORT: KindInfo(
        "Phản ánh của người dân", "Citizen report", "security", None
    ),
    IncidentKind.SLA_BREACH: KindInfo(
        "Phản ánh 1022 quá hạn", "1022 ticket past its deadline", "security", None
    ),
    IncidentKind.SENSOR_FAULT: KindInfo("Cảm biến lỗi", "Sensor fault", "environment", None),
    IncidentKind.SENSOR_OFFLINE: KindInfo(
        "Cảm biến mất kết nối", "Sensor offline", "environment", None
    ),
    IncidentKind.CROWDING: KindInfo("Tụ tập đông người", "Crowding", "traffic", "crowdRisk"),
    IncidentKind.STOPPED_VEHICLE: KindInfo(
        "Xe dừng đỗ bất thường", "Stopped vehicle", "traffic", "carStopped"
    ),
    IncidentKind.WRONG_WAY: KindInfo(
        "Đi ngược chiều", "Wrong-way traffic", "traffic", "carWrongDirection"
    ),
    IncidentKind.LOITERING: KindInfo(
        "Lảng vảng khả nghi", "Loitering", "security", "suspiciousAction"
    ),
    IncidentKind.CAMERA_OFFLINE: KindInfo("Camera mất kết nối", "Camera offline", "security", None),
    IncidentKind.CAMERA_FROZEN: KindInfo("Camera đứng hình", "Camera frozen", "security", None),
    IncidentKind.CAMERA_BLACKOUT: KindInfo(
        "Camera tối đen", "Camera blacked out", "security", None
    ),
    IncidentKind.CAMERA_TAMPER: KindInfo(
        "Camera bị xoay hoặc che", "Camera moved or tampered with", "security", "suspiciousAction"
    ),
}

__all__ = ["KINDS", "KindInfo"]
