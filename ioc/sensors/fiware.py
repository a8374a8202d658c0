"""FIWARE sensor payloads, as brokers and devices send them, read into one canonical `SensorEvent`.

The one parse path of the HTTP intake, the MQTT bridge's keys, the stream agent and
`ioc sensors check`, so all accept and reject the same things.

Forms (recognised attribute by attribute, so no header or `options` is needed): NGSI-v2
key-values and normalized (`{"type", "value", "metadata"}`), NGSI-LD key-values, normalized
(`Property`, `GeoProperty`, `Relationship`) and concise (`{"value", "unitCode"}`). `@context` is
ignored. Values may be numbers, numeric strings ("12.5") or, for `congested`, booleans (1/0);
dates may be `{"@type": "DateTime", "@value": …}`. See `ioc.sensors.ngsi` for the envelopes
(batches, Orion and Orion-LD notifications).

Units: `unitCode` (NGSI-LD, on the attribute), `metadata.unitCode` (NGSI-v2, `{"value": …}` or
a plain string) or `unit`; UN/CEFACT codes or symbols. No unit is the model's documented unit
(`Quantity.default`; e.g. WeatherObserved `streamGauge` is in centimetres). Each quantity is
stored in one canonical unit (`Quantity.unit`).

Observation time, first found wins: `dateObservedTo` (end of the observed period), `dateObserved`
(an ISO-8601 interval `a/b` counts as `b`), `observationDateTime` (FloodMonitoring), the latest
attribute-level `observedAt` (NGSI-LD) or `metadata.TimeInstant` (IoT Agent) of the measured
attributes, the entity's `TimeInstant` (IoT Agent). The model's own attributes come first: they
are what the producer states as the observation time, while `observedAt`/`TimeInstant` are often
stamped by middleware on receipt. A present but unreadable time is a reason, never skipped. Naive
times are UTC, as the models specify.

Ids: the full entity id is looked up in the registry (`SensorRegistry.resolve`); never cut to a
suffix. Location: GeoJSON (NGSI-v2 `geo:json`, `geo:point` too); a line or polygon counts as the
mean of its vertices.

Rejected (ObservationError, one line naming the attribute): not an object, unknown type, no or
unknown id, no or bad time, bad location, the registered sensor's own `property` unusable, or no
usable measurement at all. Any other unusable measured attribute (wrong type, unknown unit,
outside its range) is dropped and named in `SensorEvent.warnings`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from ioc.models import SensorEvent, SensorRegistry
from ioc.models.registry import NGSI_LD_PREFIX, natural_sensor_id

ENTITY_TYPES = frozenset(
    {
        "FloodMonitoring",
        "AirQualityObserved",
        "WeatherObserved",
        "TrafficFlowObserved",
        "NoiseLevelObserved",
    }
)

LENGTH_M = {"m": 1.0, "MTR": 1.0, "cm": 0.01, "CMT": 0.01, "mm": 0.001, "MMT": 0.001}
LENGTH_MM = {unit: factor * 1000 for unit, factor in LENGTH_M.items()}
CONCENTRATION = {
    "µg/m³": 1.0, "µg/m3": 1.0, "ug/m3": 1.0, "GQ": 1.0,
    "mg/m³": 1000.0, "mg/m3": 1000.0, "GP": 1000.0,
}  # fmt: skip
DECIBEL = {"dB": 1.0, "dBA": 1.0, "2N": 1.0}
SPEED_KMH = {"km/h": 1.0, "KMH": 1.0, "m/s": 3.6, "MTS": 3.6}
SPEED_MS = {unit: factor / 3.6 for unit, factor in SPEED_KMH.items()}
COUNT = {"": 1.0, "vehicles": 1.0, "C62": 1.0}
FRACTION = {"": 1.0, "C62": 1.0, "%": 0.01, "P1": 0.01}
CELSIUS = {"°C": 1.0, "CEL": 1.0}
PRESSURE_HPA = {"hPa": 1.0, "A97": 1.0, "mbar": 1.0, "MBR": 1.0, "Pa": 0.01, "PAL": 0.01,
                "kPa": 10.0, "KPA": 10.0}  # fmt: skip
INDEX = {"": 1.0, "C62": 1.0}


@dataclass(frozen=True)
class Quantity:
    """How one FIWARE attribute is measured: canonical unit, accepted units, valid range, and the
    unit meant when none is given (the model's documented unit)."""

    unit: str
    factors: dict[str, float]
    low: float
    high: float
    default: str | None = None  # None: the canonical unit
    boolean: bool = False  # true/false read as 1/0


QUANTITIES: dict[str, Quantity] = {
    # FloodMonitoring: levels in metres relative to the station's reference.
    "currentLevel": Quantity("m", LENGTH_M, -20.0, 100.0),
    "alertLevel": Quantity("m", LENGTH_M, -20.0, 100.0),
    "dangerLevel": Quantity("m", LENGTH_M, -20.0, 100.0),
    "measuredDistance": Quantity("m", LENGTH_M, 0.0, 1000.0),
    "referenceLevel": Quantity("m", LENGTH_M, -500.0, 10_000.0),
    # WeatherObserved (and AirQualityObserved's weather attributes)
    "precipitation": Quantity("mm", LENGTH_MM, 0.0, 1000.0),
    "temperature": Quantity("°C", CELSIUS, -60.0, 70.0),
    "relativeHumidity": Quantity("", FRACTION, 0.0, 1.0),
    "windSpeed": Quantity("m/s", SPEED_MS, 0.0, 120.0),
    "gustSpeed": Quantity("m/s", SPEED_MS, 0.0, 150.0),
    "atmosphericPressure": Quantity("hPa", PRESSURE_HPA, 100.0, 1200.0),
    "streamGauge": Quantity("m", LENGTH_M, 0.0, 10_000.0, default="CMT"),  # model: centimetres
    # AirQualityObserved; co's bound admits the model's own example (500 mg/m³)
    "pm25": Quantity("µg/m³", CONCENTRATION, 0.0, 2000.0),
    "pm10": Quantity("µg/m³", CONCENTRATION, 0.0, 3000.0),
    "no2": Quantity("µg/m³", CONCENTRATION, 0.0, 4000.0),
    "o3": Quantity("µg/m³", CONCENTRATION, 0.0, 4000.0),
    "so2": Quantity("µg/m³", CONCENTRATION, 0.0, 10_000.0),
    "co": Quantity("µg/m³", CONCENTRATION, 0.0, 1_000_000.0),
    "airQualityIndex": Quantity("", INDEX, 0.0, 1000.0),
    # NoiseLevelObserved
    "LAeq": Quantity("dB", DECIBEL, 0.0, 194.0),
    "LAmax": Quantity("dB", DECIBEL, 0.0, 194.0),
    # TrafficFlowObserved
    "intensity": Quantity("vehicles", COUNT, 0.0, 100_000.0),
    "averageVehicleSpeed": Quantity("km/h", SPEED_KMH, 0.0, 300.0),
    "occupancy": Quantity("", FRACTION, 0.0, 1.0),
    "congested": Quantity("", INDEX, 0.0, 1.0, boolean=True),
}
# Observation time attributes of the entity, in precedence order (see the module doc).
TIME_ATTRIBUTES = ("dateObservedTo", "dateObserved", "observationDateTime")
IOT_AGENT_TIME = "TimeInstant"


class ObservationError(ValueError):
    """Why a payload cannot be used; one line naming the attribute."""


@dataclass(frozen=True)
class Attribute:
    """One attribute with its NGSI wrapping taken off."""

    value: Any
    unit: Any  # as sent; checked against the quantity's units
    observed_at: Any  # NGSI-LD `observedAt` or IoT Agent `metadata.TimeInstant`, as sent


def _metadata_value(metadata: Any, name: str) -> Any:
    """NGSI-v2 metadata `name`: `{"value": …}`, or a plain value as some agents send it."""
    item = metadata.get(name) if isinstance(metadata, dict) else None
    return item.get("value") if isinstance(item, dict) else item


def attribute(raw: Any) -> Attribute:
    """An attribute in any form: a plain key-value, or a dict with `value` (NGSI-v2 normalized,
    NGSI-LD normalized or concise, `{"value": …, "unitCode": …}`). JSON-LD typed literals
    (`{"@value": …}`) are unwrapped."""
    if isinstance(raw, dict) and "value" in raw:
        metadata = raw.get("metadata")
        unit = raw.get("unitCode", raw.get("unit"))
        if unit is None:
            unit = _metadata_value(metadata, "unitCode")
        if unit is None:
            unit = _metadata_value(metadata, "unit")
        observed = raw.get("observedAt", _metadata_value(metadata, IOT_AGENT_TIME))
        value = raw["value"]
    else:
        value, unit, observed = raw, None, None
    if isinstance(value, dict) and "@value" in value:
        value = value["@value"]
    return Attribute(value, unit, observed)


def _number(name: str, value: Any, quantity: Quantity) -> float:
    if isinstance(value, bool):
        if quantity.boolean:
            return float(value)
        raise ObservationError(f"{name}: a boolean, not a number")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ObservationError(f"{name}: not a number") from None
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise ObservationError(f"{name}: not a finite number")
    return float(value)


def canonical(name: str, raw: Any) -> float:
    """Attribute `name` (a key of QUANTITIES) in its canonical unit, checked against its range."""
    quantity = QUANTITIES[name]
    found = attribute(raw)
    value = _number(name, found.value, quantity)
    unit = found.unit if found.unit is not None else (quantity.default or quantity.unit)
    if not isinstance(unit, str) or unit not in quantity.factors:
        accepted = ", ".join(sorted(u for u in quantity.factors if u)) or "no unit"
        shown = unit[:40] if isinstance(unit, str) else type(unit).__name__
        raise ObservationError(f"{name}: unknown unit {shown!r} (accepted: {accepted})")
    return _in_range(name, value * quantity.factors[unit])


def _in_range(name: str, value: float) -> float:
    quantity = QUANTITIES[name]
    if not quantity.low <= value <= quantity.high:
        raise ObservationError(
            f"{name}: {value:g} {quantity.unit} outside [{quantity.low:g}, {quantity.high:g}]"
        )
    return value


def parse_time(name: str, raw: Any) -> datetime:
    """An ISO-8601 date-time, or the end of an interval `start/end`, in UTC (naive means UTC)."""
    value = attribute(raw).value
    if not isinstance(value, str) or not value.strip():
        raise ObservationError(f"{name}: an ISO-8601 date-time is required")
    text = value.strip().rsplit("/", 1)[-1]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ObservationError(f"{name}: {text[:40]!r} is not an ISO-8601 date-time") from None
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def observation_time(entity: dict[str, Any], measured: list[str]) -> datetime:
    """When the entity was observed, by the precedence in the module doc."""
    for name in TIME_ATTRIBUTES:
        if entity.get(name) is not None:
            return parse_time(name, entity[name])
    stamps = [
        parse_time(f"{name}.observedAt", found.observed_at)
        for name in measured
        if (found := attribute(entity[name])).observed_at is not None
    ]
    if stamps:
        return max(stamps)
    if entity.get(IOT_AGENT_TIME) is not None:
        return parse_time(IOT_AGENT_TIME, entity[IOT_AGENT_TIME])
    raise ObservationError(
        "dateObserved: no observation time (dateObserved, dateObservedTo, observationDateTime, "
        "observedAt or TimeInstant)"
    )


def _positions(geometry_type: str, coordinates: Any) -> list[Any]:
    """The vertices that stand for a geometry: outer rings only, a ring's closing vertex once."""
    if geometry_type == "Point":
        return [coordinates]
    if geometry_type in ("MultiPoint", "LineString"):
        return list(coordinates)
    if geometry_type == "MultiLineString":
        return [position for line in coordinates for position in line]
    if geometry_type == "Polygon":
        return list(coordinates[0][:-1])
    if geometry_type == "MultiPolygon":
        return [position for polygon in coordinates for position in polygon[0][:-1]]
    raise ObservationError(
        f"location: GeoJSON type {geometry_type!r} is not a Point, LineString, Polygon or Multi*"
    )


def _lat_lon(position: Any) -> tuple[float, float]:
    """A GeoJSON position [lon, lat, …] as (lat, lon)."""
    if not isinstance(position, list | tuple) or len(position) < 2:
        raise ValueError("not a position")
    lon, lat = position[0], position[1]
    if isinstance(lon, bool) or isinstance(lat, bool):
        raise ValueError("not a position")
    return float(lat), float(lon)


def location(raw: Any) -> tuple[float, float] | None:
    """(lat, lon) of a GeoJSON location (wrapped or not); a line or polygon gives the mean of its
    vertices, which for a road segment or a small area is a fair place to pin it on a map."""
    if raw is None:
        return None
    geometry = attribute(raw).value  # NGSI-v2 `geo:json`, NGSI-LD GeoProperty, or bare GeoJSON
    if isinstance(raw, dict) and raw.get("type") == "geo:point" and isinstance(geometry, str):
        lat_text, _, lon_text = geometry.partition(",")  # NGSI-v2 "lat, lon"
        geometry = {"type": "Point", "coordinates": [lon_text, lat_text]}
    if not isinstance(geometry, dict) or not isinstance(geometry.get("type"), str):
        raise ObservationError("location: a GeoJSON geometry is required")
    try:
        points = [
            _lat_lon(position)
            for position in _positions(geometry["type"], geometry.get("coordinates"))
        ]
    except (TypeError, ValueError, IndexError):
        raise ObservationError(f"location: malformed {geometry['type']} coordinates") from None
    if not points or not all(
        math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180
        for lat, lon in points
    ):
        raise ObservationError("location: coordinates out of range")
    return (
        sum(lat for lat, _ in points) / len(points),
        sum(lon for _, lon in points) / len(points),
    )


def _measurements(
    entity: dict[str, Any], required: str | None
) -> tuple[dict[str, float], list[str]]:
    """Canonical values and warnings for dropped attributes; the `required` one (the registered
    sensor's own property) is never dropped: its problem is the entity's."""
    values: dict[str, float] = {}
    warnings: list[str] = []
    for name in QUANTITIES:
        if name not in entity:
            continue
        try:
            values[name] = canonical(name, entity[name])
        except ObservationError as problem:
            if name == required:
                raise
            warnings.append(f"{problem}; dropped")
    if "currentLevel" not in entity and {"referenceLevel", "measuredDistance"} <= values.keys():
        # FloodMonitoring: the level is the reference minus the distance down to the water.
        derived = values["referenceLevel"] - values["measuredDistance"]
        try:
            values["currentLevel"] = _in_range("currentLevel", derived)
        except ObservationError as problem:
            if required == "currentLevel":
                raise
            warnings.append(f"{problem} (referenceLevel - measuredDistance); dropped")
    return values, warnings


def parse_entity(entity: Any, registry: SensorRegistry | None = None) -> SensorEvent:
    """One FIWARE entity (decoded JSON) as a canonical event of the registered sensor it names.

    `registry` None keeps the entity's natural id unchecked: only for tools that make their own
    entities (benchmarks); every intake passes the registry.
    """
    if not isinstance(entity, dict):
        raise ObservationError("(root): a JSON object is required")
    entity_type = entity.get("type")
    if entity_type not in ENTITY_TYPES:
        shown = repr(entity_type[:40]) if isinstance(entity_type, str) else "required"
        raise ObservationError(f"type: {shown}, one of {', '.join(sorted(ENTITY_TYPES))}")
    entity_id = entity.get("id")
    if not isinstance(entity_id, str) or not entity_id.strip():
        raise ObservationError("id: required")
    entity_id = entity_id.strip()
    required = None
    if registry is None:
        sensor = natural_sensor_id(entity_id)
    else:
        spec = registry.resolve(entity_id)
        if spec is None:
            raise ObservationError(
                f"id: unknown sensor id {entity_id!r}: not in the sensor registry"
            )
        if spec.type != entity_type:
            raise ObservationError(f"type: sensor {spec.id!r} is a {spec.type}, not {entity_type}")
        sensor, required = spec.id, spec.property
    measurements, warnings = _measurements(entity, required)
    if not measurements:
        dropped = f" ({'; '.join(warnings)})" if warnings else ""
        raise ObservationError(
            f"no usable measured attribute (one of {', '.join(QUANTITIES)}){dropped}"
        )
    observed = observation_time(entity, [name for name in measurements if name in entity])
    try:
        return SensorEvent(
            id=sensor,
            type=entity_type,
            dateObserved=observed,
            measurements=measurements,
            location=location(entity.get("location")),
            warnings=tuple(warnings),
        )
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(root)"
        raise ObservationError(f"{field}: {first['msg']}") from None


def decode(raw: bytes) -> Any:
    """JSON bytes as sent, or ObservationError naming the problem."""
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ObservationError(f"(root): invalid JSON: {error}") from None
    except RecursionError:
        raise ObservationError("(root): JSON nested too deeply") from None


def parse_observation(raw: bytes, registry: SensorRegistry | None = None) -> SensorEvent:
    """A Kafka/MQTT/HTTP payload of one entity as a canonical event (see `parse_entity`)."""
    return parse_entity(decode(raw), registry)


def clock_problem(event: SensorEvent, arrived: datetime, max_future: timedelta) -> str | None:
    """Why a reading observed too far after its arrival is refused, else None. One from the
    future would move the event-time watermark on and make every true reading late."""
    ahead = (event.date_observed - arrived).total_seconds()
    if ahead <= max_future.total_seconds():
        return None
    return (
        f"dateObserved: {event.date_observed.isoformat()} is {ahead:.0f} s after the reading "
        f"arrived (limit {max_future.total_seconds():.0f} s): the device clock is wrong"
    )


def entity(
    sensor: str, entity_type: str, observed: datetime, **measured: float | dict[str, Any]
) -> dict[str, Any]:
    """A FIWARE key-value entity, as devices and the demo publish them."""
    return {
        "id": f"{NGSI_LD_PREFIX}{entity_type}:{sensor}",
        "type": entity_type,
        "dateObserved": observed.isoformat(),
        **measured,
    }
