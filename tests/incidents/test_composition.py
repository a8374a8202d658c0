"""What a fused incident is, from its members alone (no database): several devices at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ioc.config import AlertSettings
from ioc.incidents.composition import FusionRules, compose
from ioc.models import IncidentKind, IncidentSource, Member, Severity
from ioc.models.incidents import IncidentStatus

RULES = FusionRules.load()
T0 = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)


def camera(name: str, kind: IncidentKind = IncidentKind.CAMERA_OFFLINE, minutes: int = 0) -> Member:
    return Member(
        id=f"inc-{name}-{kind}",
        source=IncidentSource.VISION,
        source_key=name,
        kind=kind,
        severity=Severity.NORMAL,
        status=IncidentStatus.OPEN,
        event_time=T0 + timedelta(minutes=minutes),
        title=f"Camera {name}: mất tín hiệu",
    )


def test_three_cameras_dark_at_once_are_an_area_outage_that_pages() -> None:
    group = RULES.group_of(IncidentKind.CAMERA_OFFLINE)
    assert group is not None and group is RULES.group_of(IncidentKind.CAMERA_TAMPER)
    two = compose([camera("a"), camera("b", minutes=1)], group)
    assert two.severity == Severity.NORMAL and two.title == "Camera a: mất tín hiệu"
    three = compose([camera("a"), camera("b", minutes=1), camera("c", minutes=2)], group)
    assert three.severity == Severity.HIGH
    assert three.title == "3 thiết bị cùng lúc · Camera a: mất tín hiệu"
    assert Severity.HIGH in Severity.at_least(AlertSettings().min_severity), "and pages"


def test_one_camera_s_several_faults_are_still_one_device() -> None:
    group = RULES.group_of(IncidentKind.CAMERA_OFFLINE)
    kinds = (IncidentKind.CAMERA_FROZEN, IncidentKind.CAMERA_BLACKOUT, IncidentKind.CAMERA_TAMPER)
    same = compose([camera("a", kind, minutes) for minutes, kind in enumerate(kinds)], group)
    assert same.severity == Severity.NORMAL and same.kind == IncidentKind.CAMERA_FROZEN


def test_several_sensors_offline_at_once_raise_theirs() -> None:
    group = RULES.group_of(IncidentKind.SENSOR_OFFLINE)
    sensors = [
        camera(name, IncidentKind.SENSOR_OFFLINE).model_copy(
            update={"source": IncidentSource.SENSOR}
        )
        for name in ("s1", "s2", "s3")
    ]
    assert compose(sensors, group).severity == Severity.HIGH
