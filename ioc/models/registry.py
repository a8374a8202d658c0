"""Registries are data files validated like messages: unknown keys are an error."""

from __future__ import annotations

import tomllib
from datetime import datetime, time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from ioc.assets import CAMERA_REGISTRY_PATH, SENSOR_REGISTRY_PATH
from ioc.models.base import VIETNAM_TIME

RtspTransport = Literal["tcp", "udp"]


class SensorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str
    type: str
    property: str = Field(description="The measurement that the alert level applies to.")
    unit: str
    alert_level: float
    district: str
    lat: float
    lon: float
    entity_ids: tuple[str, ...] = Field(
        (),
        description="Full FIWARE entity ids this sensor also answers to, for devices and brokers "
        "whose ids are not `<id>` or `urn:ngsi-ld:<Type>:<id>`.",
    )
    camera: str | None = Field(
        None,
        description="A camera's line counting traffic: its silence is the camera's offline "
        "incident, not a sensor's.",
        exclude=True,
    )


NGSI_LD_PREFIX = "urn:ngsi-ld:"


def natural_sensor_id(entity_id: str) -> str:
    """`urn:ngsi-ld:<Type>:<rest>` names sensor `<rest>` (whole, colons included, so
    `…:Madrid:28079004` and `…:Valencia:28079004` stay apart); any other id names itself."""
    if entity_id.startswith(NGSI_LD_PREFIX):
        _type, separator, rest = entity_id[len(NGSI_LD_PREFIX) :].partition(":")
        if separator and rest:
            return rest
    return entity_id


class SensorRegistry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sensors: list[SensorSpec]
    _by_id: dict[str, SensorSpec] = PrivateAttr(default_factory=dict)
    _by_name: dict[str, SensorSpec] = PrivateAttr(default_factory=dict)  # ids and entity ids

    @model_validator(mode="after")
    def _unique_names(self) -> SensorRegistry:
        """Every id and entity id names one sensor: an entity must never be read as another's."""
        names = [sensor.id for sensor in self.sensors]
        names += [name for sensor in self.sensors for name in set(sensor.entity_ids) - {sensor.id}]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"duplicate sensor ids or entity ids: {', '.join(duplicates)}")
        self._by_id = {sensor.id: sensor for sensor in self.sensors}
        self._by_name = self._by_id | {
            name: sensor for sensor in self.sensors for name in sensor.entity_ids
        }
        return self

    def get(self, sensor_id: str) -> SensorSpec | None:
        return self._by_id.get(sensor_id)

    def with_camera_lines(self, cameras: CameraRegistry) -> SensorRegistry:
        """This registry and a `TrafficFlowObserved` sensor per line zone and direction."""
        return SensorRegistry(
            sensors=[
                *self.sensors,
                *(
                    line_sensor(camera, zone, direction)
                    for camera in cameras.cameras
                    for zone in camera.zones
                    if zone.kind == "line"
                    for direction in DIRECTIONS
                ),
            ]
        )

    def resolve(self, entity_id: str) -> SensorSpec | None:
        """The sensor a FIWARE entity id names: an `entity_ids` entry or a sensor id, matched on
        the full id first, then on its natural id (`natural_sensor_id`); never on a suffix."""
        return self._by_name.get(entity_id) or self._by_name.get(natural_sensor_id(entity_id))


def load_sensor_registry(path: Path | None = None) -> SensorRegistry:
    with (path or SENSOR_REGISTRY_PATH).open("rb") as handle:
        return SensorRegistry.model_validate(tomllib.load(handle))


Point = tuple[float, float]
VEHICLE_CLASSES = ("car", "motorbike", "bus", "truck")
ZoneKind = Literal["crowd", "no_stopping", "line", "loitering", "mask"]
Direction = Literal["left_to_right", "right_to_left"]
DIRECTIONS: tuple[Direction, ...] = ("left_to_right", "right_to_left")
FLOW_CEILING = 100_000  # vehicles a minute: the alert level of a line nobody gave one


class Window(BaseModel):
    """When a zone is watched, in Vietnam time: on these ISO weekdays (1 is Monday), from `start`
    to `end`; an `end` before `start` runs past midnight (22:00 to 05:00)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    days: tuple[int, ...] = Field((1, 2, 3, 4, 5, 6, 7), min_length=1)
    start: time
    end: time

    @model_validator(mode="after")
    def _days(self) -> Window:
        if any(not 1 <= day <= 7 for day in self.days):
            raise ValueError("days are ISO weekdays, 1 (Monday) to 7 (Sunday)")
        if self.start == self.end:
            raise ValueError("a window from a time to the same time is empty; leave it out")
        return self

    def covers(self, moment: datetime) -> bool:
        local = moment.astimezone(VIETNAM_TIME)
        now, day = local.time(), local.isoweekday()
        if self.start < self.end:
            return day in self.days and self.start <= now < self.end
        if now >= self.start:  # the evening part belongs to the day it starts on
            return day in self.days
        return now < self.end and (day - 2) % 7 + 1 in self.days


class Zone(BaseModel):
    """A region of one camera's view, in fractions of the frame (0..1), so it survives a change of
    resolution. `crowd`, `no_stopping`, `loitering` and `mask` are polygons (3+ points); `line`
    is 2 points and counts tracked objects crossing it (with a `direction`, crossing it the other
    way is wrong-way). A `mask` hides what stands in it from every rule (a poster of a fire, a
    car park); with `classes`, only those. A zone with a `schedule` is watched only within it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    kind: ZoneKind
    points: tuple[Point, ...]
    classes: tuple[str, ...] = Field(
        (),
        description="Classes counted; default persons for crowd and loitering, vehicles for "
        "no_stopping and line, every class for mask.",
    )
    limit: int | None = Field(None, ge=1, description="crowd: more persons than this is crowding.")
    hold_s: float | None = Field(None, gt=0, description="crowd: for this long; default in rules.")
    dwell_s: float | None = Field(
        None,
        gt=0,
        description="no_stopping: a vehicle staying longer has stopped; loitering: a person "
        "staying longer loiters; default in rules.",
    )
    direction: Direction | None = Field(
        None, description="line: the way traffic may cross; the other way is wrong-way."
    )
    flow_alert_per_min: float | None = Field(
        None, gt=0, description="line: vehicles a minute one way that make heavy traffic."
    )
    schedule: tuple[Window, ...] = Field(
        (), description="When the zone is watched (Vietnam time); always when empty."
    )

    @model_validator(mode="after")
    def _shape(self) -> Zone:
        if any(not (0 <= x <= 1 and 0 <= y <= 1) for x, y in self.points):
            raise ValueError(f"zone {self.name}: points are fractions of the frame, 0..1")
        if self.kind == "line" and len(self.points) != 2:
            raise ValueError(f"zone {self.name}: a line has exactly 2 points")
        if self.kind != "line" and len(self.points) < 3:
            raise ValueError(f"zone {self.name}: a polygon needs at least 3 points")
        if self.kind == "crowd" and self.limit is None:
            raise ValueError(f"zone {self.name}: a crowd zone needs a limit")
        if (self.direction or self.flow_alert_per_min) is not None and self.kind != "line":
            raise ValueError(f"zone {self.name}: only a line has a direction or a flow alert")
        return self

    def watched(self, moment: datetime) -> bool:
        return not self.schedule or any(window.covers(moment) for window in self.schedule)

    @property
    def counted_classes(self) -> tuple[str, ...]:
        if self.classes:
            return self.classes
        return ("person",) if self.kind in ("crowd", "loitering") else VEHICLE_CLASSES


class CameraSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    name: str
    url: str = Field(
        description="rtsp://, http(s):// (MJPEG), a video file or a folder of images; "
        "relative paths are relative to the registry file."
    )
    district: str
    lat: float
    lon: float
    fps: float = Field(1.0, gt=0, le=60, description="Frames sampled per second.")
    rtsp_transport: RtspTransport = Field(
        "tcp",
        description="RTSP media interleaved in the TCP connection (through firewalls and NAT, "
        "nothing lost) or over UDP (a clean LAN; losses show as smeared frames).",
    )
    zones: tuple[Zone, ...] = ()

    @model_validator(mode="after")
    def _unique_zones(self) -> CameraSpec:
        names = [zone.name for zone in self.zones]
        if len(names) != len(set(names)):
            raise ValueError(f"camera {self.id}: zone names repeat")
        return self


class CameraRegistry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cameras: list[CameraSpec]
    base_dir: Path = Field(Path("."), exclude=True, description="Where relative URLs start.")

    @model_validator(mode="after")
    def _unique_ids(self) -> CameraRegistry:
        ids = [camera.id for camera in self.cameras]
        duplicates = sorted({camera_id for camera_id in ids if ids.count(camera_id) > 1})
        if duplicates:
            raise ValueError(f"duplicate camera ids: {', '.join(duplicates)}")
        return self

    def get(self, camera_id: str) -> CameraSpec | None:
        return next((camera for camera in self.cameras if camera.id == camera_id), None)

    def source_of(self, camera: CameraSpec) -> str:
        """The camera's URL, with a relative file or folder path made absolute."""
        if "://" in camera.url:
            return camera.url
        path = Path(camera.url).expanduser()
        return str(path if path.is_absolute() else (self.base_dir / path).resolve())


def line_sensor_id(camera_id: str, line: str, direction: Direction) -> str:
    return f"{camera_id}.{line}.{'ltr' if direction == 'left_to_right' else 'rtl'}"


def line_sensor(camera: CameraSpec, zone: Zone, direction: Direction) -> SensorSpec:
    """A camera's line as a traffic counter, one way: vehicles crossing a minute."""
    return SensorSpec(
        id=line_sensor_id(camera.id, zone.name, direction),
        name=f"{camera.name} – {zone.name} ({'→' if direction == 'left_to_right' else '←'})",
        type="TrafficFlowObserved",
        property="intensity",
        unit="vehicles",
        alert_level=zone.flow_alert_per_min or float(FLOW_CEILING),
        district=camera.district,
        lat=camera.lat,
        lon=camera.lon,
        camera=camera.id,
    )


def load_camera_registry(path: Path | None = None) -> CameraRegistry:
    path = path or CAMERA_REGISTRY_PATH
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    return CameraRegistry.model_validate({**data, "base_dir": path.resolve().parent})
