"""The units incidents are handed to, read from `units.toml`, and which of them an incident
routes to: the units of its kind or of its tickets' categories, those covering its commune
first."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ioc.models import FusedIncident, IncidentKind
from ioc.models.categories import Category

UNITS_PATH = Path(__file__).resolve().parent / "units.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Unit(_Strict):
    id: str
    name: str = Field(min_length=1)
    short: str = Field(min_length=1)
    kinds: list[IncidentKind] = Field(default_factory=list)
    categories: list[Category] = Field(default_factory=list)
    communes: list[str] | None = Field(None, description="None: the whole province.")

    def covers(self, district: str | None) -> bool:
        return self.communes is None or district in self.communes


class Units(_Strict):
    version: Literal[1]
    sla_minutes: dict[Literal["urgent", "high", "normal"], float]
    units: dict[str, Unit] = Field(min_length=1)

    @classmethod
    def load(cls, path: Path | None = None) -> Units:
        with (path or UNITS_PATH).open("rb") as file:
            raw = tomllib.load(file)
        for unit_id, unit in raw.get("units", {}).items():
            unit.setdefault("id", unit_id)
        return cls.model_validate(raw)

    def get(self, unit_id: str) -> Unit | None:
        return self.units.get(unit_id)

    def suggested(
        self, incident: FusedIncident, categories: Iterable[str], commune: str | None
    ) -> list[Unit]:
        """The units it routes to: those of its kind or its tickets' categories that cover its
        commune (`ioc.dispatch.communes`), the commune's own units first."""
        wanted = set(categories)
        routed = [
            unit
            for unit in self.units.values()
            if (incident.kind in unit.kinds or wanted & set(unit.categories))
            and unit.covers(commune)
        ]
        return sorted(routed, key=lambda unit: (unit.communes is None, unit.short))

    def due(self, incident: FusedIncident) -> datetime | None:
        """When its unit should have resolved it: the assignment plus the severity's SLA."""
        if incident.assigned_at is None:
            return None
        return incident.assigned_at + timedelta(minutes=self.sla_minutes[incident.severity])
