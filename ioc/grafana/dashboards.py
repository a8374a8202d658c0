"""Small typed builders for Grafana 11/12 dashboard JSON over the IOC PostgreSQL datasource.

A `Panel` holds one raw-SQL query and what the query returns (`shape`), so tests can run the SQL
and check the rows against what the panel draws. `Dashboard.to_json()` lays the panels out on
Grafana's 24-column grid, left to right, and returns the dashboard model that file provisioning
and `POST /api/dashboards/db` both accept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

DATASOURCE_UID = "ioc-timescaledb"
DATASOURCE_TYPE = "grafana-postgresql-datasource"
DATASOURCE = {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}
TIMEZONE = "Asia/Ho_Chi_Minh"  # walls show Vietnam time; the database stores UTC timestamptz
SCHEMA_VERSION = 39
GRID_WIDTH = 24

PanelType = Literal["stat", "timeseries", "table", "geomap", "barchart", "piechart"]
Shape = Literal["time_series", "table", "stat", "geomap"]

SEVERITY_COLORS = {"normal": "green", "high": "orange", "urgent": "red"}


@dataclass(frozen=True)
class Step:
    """A threshold step: from `value` (None: the base) upwards the colour is `color`."""

    color: str
    value: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"color": self.color, "value": self.value}


def thresholds(*steps: Step) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [step.to_json() for step in steps]}


def override(name: str, **properties: Any) -> dict[str, Any]:
    """Field config for the field (or series, named by its `metric` column) called `name`."""
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": key, "value": value} for key, value in sorted(properties.items())],
    }


@dataclass(frozen=True)
class Panel:
    """One panel and its one SQL query.

    shape: what the query returns and the tests check —
      time_series: first column `time` (a timestamp), then numbers, optionally one text `metric`
        column naming the series (Grafana's long format);
      table: exactly `columns`, in order;
      stat: one row of one number;
      geomap: a table with `lat` and `lon` columns (and `columns`).
    """

    title: str
    type: PanelType
    sql: str
    shape: Shape
    description: str
    columns: tuple[str, ...] = ()
    width: int = 12
    height: int = 8
    unit: str | None = None
    decimals: int | None = None
    steps: tuple[Step, ...] = (Step("green"),)
    overrides: tuple[dict[str, Any], ...] = ()
    custom: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    mappings: tuple[dict[str, Any], ...] = ()
    interval: str | None = None  # Grafana's minimum $__interval for this panel

    def __post_init__(self) -> None:
        if self.shape in {"table", "geomap"} and not self.columns:
            raise ValueError(f"{self.title}: a table panel declares its columns")
        if self.shape == "geomap" and not {"lat", "lon"} <= set(self.columns):
            raise ValueError(f"{self.title}: a geomap needs lat and lon columns")
        if not 1 <= self.width <= GRID_WIDTH:
            raise ValueError(f"{self.title}: width must be 1..{GRID_WIDTH}")

    @property
    def format(self) -> Literal["time_series", "table"]:
        return "time_series" if self.shape == "time_series" else "table"

    def to_json(self, panel_id: int, x: int, y: int) -> dict[str, Any]:
        defaults: dict[str, Any] = {
            "color": {
                "mode": "thresholds" if self.type in {"stat", "geomap"} else "palette-classic"
            },
            "custom": self.custom,
            "mappings": list(self.mappings),
            "thresholds": thresholds(*self.steps),
        }
        if self.unit:
            defaults["unit"] = self.unit
        if self.decimals is not None:
            defaults["decimals"] = self.decimals
        panel: dict[str, Any] = {
            "id": panel_id,
            "type": self.type,
            "title": self.title,
            "description": self.description,
            "datasource": dict(DATASOURCE),
            "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
            "fieldConfig": {"defaults": defaults, "overrides": list(self.overrides)},
            "options": self.options,
            "targets": [
                {
                    "refId": "A",
                    "datasource": dict(DATASOURCE),
                    "editorMode": "code",
                    "format": self.format,
                    "rawQuery": True,
                    "rawSql": self.sql.strip(),
                }
            ],
        }
        if self.interval:
            panel["interval"] = self.interval
        return panel


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    tags: tuple[str, ...] = ()
    time_from: str = "now-6h"
    refresh: str = "30s"

    def layout(self) -> list[tuple[Panel, int, int]]:
        """(panel, x, y): panels fill rows left to right; a row is as tall as its tallest."""
        placed = []
        x = y = row_height = 0
        for panel in self.panels:
            if x + panel.width > GRID_WIDTH:
                x, y, row_height = 0, y + row_height, 0
            placed.append((panel, x, y))
            x += panel.width
            row_height = max(row_height, panel.height)
        return placed

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": sorted({"ioc", *self.tags}),
            "timezone": TIMEZONE,
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "editable": False,
            "graphTooltip": 1,
            "refresh": self.refresh,
            "time": {"from": self.time_from, "to": "now"},
            "timepicker": {},
            "fiscalYearStartMonth": 0,
            "liveNow": False,
            "weekStart": "monday",
            "annotations": {"list": []},
            "templating": {"list": []},
            "links": [],
            "panels": [
                panel.to_json(index, x, y)
                for index, (panel, x, y) in enumerate(self.layout(), start=1)
            ],
        }


def render(dashboard: Dashboard) -> str:
    """The committed file's exact text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(dashboard.to_json(), ensure_ascii=False, indent=2, sort_keys=True) + "\n"
