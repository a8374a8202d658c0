"""Sensor payloads shaped after FIWARE smart data models, read into one canonical `SensorEvent`.

Devices send key-value entities (`FloodMonitoring`, `AirQualityObserved`, `WeatherObserved`,
`TrafficFlowObserved`, `NoiseLevelObserved`): `id`, `type`, `dateObserved`, an optional GeoJSON
`location`, and measured attributes, either plain numbers in the model's unit or
`{"value": …, "unitCode": "CMT"}` / `{"value": …, "unit": "cm"}`. Units are normalised to one unit
per quantity (water level in m, concentrations in µg/m³, …); unknown units and physically
impossible values are rejected with a reason (the caller dead-letters or answers 400).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from ioc.models import SensorEvent

NGSI_PREFIX = "urn:ngsi-ld:"
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
COUNT = {"": 1.0, "vehicles": 1.0, "C62": 1.0}
FRACTION = {"": 1.0, "C62": 1.0, "%": 0.01, "P1": 0.01}
CELSIUS = {"°C": 1.0, "CEL": 1.0}


@dataclass(frozen=True)
class Quantity:
    """How one FIWARE attribute is measured: its canonical unit, accepted units, valid range."""

    unit: str
    factors: dict[str, float]
    low: float
    high: float


QUANTITIES: dict[str, Quantity] = {
    # FloodMonitoring: level of the water body, in metres above the station's reference.
    "currentLevel": Quantity("m", LENGTH_M, -20.0, 100.0),
    # WeatherObserved
    "precipitation": Quantity("mm", LENGTH_MM, 0.0, 1000.0),
    "temperature": Quantity("°C", CELSIUS, -60.0, 70.0),
    "relativeHumidity": Quantity("", FRACTION, 0.0, 1.0),
    # AirQualityObserved
    "pm25": Quantity("µg/m³", CONCENTRATION, 0.0, 2000.0),
    "pm10": Quantity("µg/m³", CONCENTRATION, 0.0, 3000.0),
    "no2": Quantity("µg/m³", CONCENTRATION, 0.0, 4000.0),
    # NoiseLevelObserved
    "LAeq": Quantity("dB", DECIBEL, 0.0, 194.0),
    # TrafficFlowObserved
    "intensity": Quantity("vehicles", COUNT, 0.0, 100_000.0),
    "averageVehicleSpeed": Quantity("km/h", SPEED_KMH, 0.0, 300.0),
    "occupancy": Quantity("", FRACTION, 0.0, 1.0),
}


class ObservationError(ValueError):
    """Why a payload cannot be used; one line naming the attribute."""


def sensor_id(entity_id: str) -> str:
    """`urn:ngsi-ld:FloodMonitoring:tn-wl-1` and `tn-wl-1` name the same sensor."""
    return entity_id.rsplit(":", 1)[-1] if entity_id.startswith(NGSI_PREFIX) else entity_id


def _canonical(name: str, raw: Any) -> float:
    quantity = QUANTITIES[name]
    if isinstance(raw, dict):
        value = raw.get("value")
        unit = raw.get("unitCode", raw.get("unit", quantity.unit))
    else:
        value, unit = raw, quantity.unit
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ObservationError(f"{name}: not a finite number")
    if not isinstance(unit, str) or unit not in quantity.factors:
        accepted = ", ".join(sorted(u for u in quantity.factors if u)) or "no unit"
        raise ObservationError(f"{name}: unknown unit {unit!r} (accepted: {accepted})")
    canonical = value * quantity.factors[unit]
    if not quantity.low <= canonical <= quantity.high:
        raise ObservationError(
            f"{name}: {canonical:g} {quantity.unit} outside [{quantity.low:g}, {quantity.high:g}]"
        )
    return canonical


def _location(raw: Any) -> tuple[float, float] | None:
    if raw is None:
        return None
    coordinates = raw.get("coordinates") if isinstance(raw, dict) else None
    if raw.get("type") != "Point" or not isinstance(coordinates, list) or len(coordinates) < 2:
        raise ObservationError("location: must be a GeoJSON Point [lon, lat]")
    lon, lat = coordinates[0], coordinates[1]
    if not (isinstance(lat, int | float) and -90 <= lat <= 90 and isinstance(lon, int | float)
            and -180 <= lon <= 180):  # fmt: skip
        raise ObservationError("location: coordinates out of range")
    return float(lat), float(lon)


def parse_entity(entity: Any) -> SensorEvent:
    """One FIWARE entity (already decoded JSON) as a canonical event."""
    if not isinstance(entity, dict):
        raise ObservationError("(root): a JSON object is required")
    entity_type = entity.get("type")
    if entity_type not in ENTITY_TYPES:
        raise ObservationError(
            f"type: {entity_type!r} is not one of {', '.join(sorted(ENTITY_TYPES))}"
        )
    if not isinstance(entity.get("id"), str) or not entity["id"].strip():
        raise ObservationError("id: required")
    measured = {name: raw for name, raw in entity.items() if name in QUANTITIES}
    if not measured:
        raise ObservationError(f"no measured attribute (one of {', '.join(QUANTITIES)})")
    measurements = {name: _canonical(name, raw) for name, raw in measured.items()}
    location = _location(entity.get("location"))
    try:
        return SensorEvent(
            id=sensor_id(entity["id"].strip()),
            type=entity_type,
            dateObserved=entity.get("dateObserved"),
            measurements=measurements,
            location=location,
        )
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(root)"
        raise ObservationError(f"{field}: {first['msg']}") from None


def parse_observation(raw: bytes) -> SensorEvent:
    """A Kafka/MQTT/HTTP payload as a canonical event, or ObservationError with the reason."""
    try:
        entity = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ObservationError(f"(root): invalid JSON: {error}") from None
    return parse_entity(entity)


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
        "id": f"{NGSI_PREFIX}{entity_type}:{sensor}",
        "type": entity_type,
        "dateObserved": observed.isoformat(),
        **measured,
    }
