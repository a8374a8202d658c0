"""Registries are data files validated like messages: unknown keys are an error."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ioc.assets import SENSOR_REGISTRY_PATH


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


class SensorRegistry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sensors: list[SensorSpec]

    @model_validator(mode="after")
    def _unique_ids(self) -> SensorRegistry:
        ids = [sensor.id for sensor in self.sensors]
        duplicates = sorted({sensor_id for sensor_id in ids if ids.count(sensor_id) > 1})
        if duplicates:
            raise ValueError(f"duplicate sensor ids: {', '.join(duplicates)}")
        return self

    def get(self, sensor_id: str) -> SensorSpec | None:
        return next((sensor for sensor in self.sensors if sensor.id == sensor_id), None)


def load_sensor_registry(path: Path | None = None) -> SensorRegistry:
    with (path or SENSOR_REGISTRY_PATH).open("rb") as handle:
        return SensorRegistry.model_validate(tomllib.load(handle))
