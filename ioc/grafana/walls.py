"""The six IOC walls. Titles are Vietnamese (what operators read), descriptions say in English
what each panel computes. Everything is read from the tables in `ioc/store/migrations`.

Sensor thresholds are configuration, not data: they are taken from the sensor registry and the
rules (`ioc/assets/sensors.toml`, `ioc/rules/sensor/sensor_rules.toml`) when the dashboards are
generated, as one series override per sensor, so each sensor's line is drawn with its own alert
(orange) and danger (red) levels. A registry or rules change means `ioc grafana generate` again;
a test fails until the committed JSON matches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ioc.grafana.dashboards import SEVERITY_COLORS, Dashboard, Panel, Step, override
from ioc.models import SensorRegistry, load_sensor_registry
from ioc.rules.sensor.registry import RuleSet

OPEN_TICKET = "status NOT IN ('resolved', 'duplicate')"
SEVERITY_LEVEL = "CASE severity WHEN 'urgent' THEN 3 WHEN 'high' THEN 2 ELSE 1 END"
TODAY_ICT = (
    "date_trunc('day', now() AT TIME ZONE 'Asia/Ho_Chi_Minh') AT TIME ZONE 'Asia/Ho_Chi_Minh'"
)

LEGEND = {
    "legend": {
        "calcs": ["lastNotNull", "max"],
        "displayMode": "table",
        "placement": "right",
        "showLegend": True,
    },
    "tooltip": {"mode": "multi", "sort": "desc"},
}
LINES = {
    "drawStyle": "line",
    "fillOpacity": 10,
    "lineWidth": 2,
    "showPoints": "never",
    "spanNulls": False,
    "thresholdsStyle": {"mode": "off"},
}
BARS = LINES | {
    "drawStyle": "bars",
    "fillOpacity": 80,
    "stacking": {"group": "A", "mode": "normal"},
}
TABLE = {"cellHeight": "sm", "showHeader": True}
SEVERITY_MAPPING = {
    "type": "value",
    "options": {
        name: {"color": color, "index": index, "text": name}
        for index, (name, color) in enumerate(SEVERITY_COLORS.items())
    },
}


def stat(title: str, sql: str, description: str, steps: tuple[Step, ...], **extra: Any) -> Panel:
    return Panel(
        title,
        "stat",
        sql,
        "stat",
        description,
        width=extra.pop("width", 5),
        height=4,
        steps=steps,
        options={
            "colorMode": "background",
            "graphMode": "none",
            "justifyMode": "center",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "value",
        },
        **extra,
    )


def series(title: str, sql: str, description: str, *, bars: bool = False, **extra: Any) -> Panel:
    return Panel(
        title,
        "timeseries",
        sql,
        "time_series",
        description,
        custom=(BARS if bars else LINES) | extra.pop("custom", {}),
        options=LEGEND,
        interval=extra.pop("interval", "1m"),
        **extra,
    )


def table(title: str, sql: str, description: str, columns: tuple[str, ...], **extra: Any) -> Panel:
    return Panel(
        title,
        "table",
        sql,
        "table",
        description,
        columns=columns,
        mappings=(SEVERITY_MAPPING,),
        overrides=(
            override("severity", **{"custom.cellOptions": {"type": "color-background"}}),
            *extra.pop("overrides", ()),
        ),
        options=TABLE,
        **extra,
    )


def bars(title: str, sql: str, description: str, columns: tuple[str, str], **extra: Any) -> Panel:
    """Counts by a text column (a category, a status), as horizontal bars."""
    return Panel(
        title,
        "barchart",
        sql,
        "table",
        description,
        columns=columns,
        custom={"fillOpacity": 80, "lineWidth": 1},
        options={
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": False},
            "orientation": "horizontal",
            "showValue": "auto",
            "tooltip": {"mode": "single", "sort": "none"},
            "xField": columns[0],
        },
        **extra,
    )


# --- 1. IOC overview -----------------------------------------------------------------------------


def overview() -> Dashboard:
    kpis = (
        stat(
            "Sự cố đang mở",
            "SELECT count(*) AS value FROM incidents WHERE status = 'open'",
            "Open incidents, all sources (hotline, sensors, cameras).",
            (Step("green"), Step("orange", 1), Step("red", 10)),
        ),
        stat(
            "Phản ánh hôm nay",
            f"SELECT count(*) AS value FROM tickets WHERE requested_at >= {TODAY_ICT}",
            "1022 tickets received since midnight, Vietnam time (duplicates included).",
            (Step("blue"),),
        ),
        stat(
            "Quá hạn SLA",
            f"SELECT count(*) AS value FROM tickets WHERE {OPEN_TICKET} AND sla_due < now()",
            "Open 1022 tickets past their SLA deadline now.",
            (Step("green"), Step("red", 1)),
        ),
        stat(
            "Cảm biến mất kết nối",
            "SELECT count(DISTINCT source_key) AS value FROM incidents"
            " WHERE kind = 'sensor_offline' AND status = 'open'",
            "Sensors with an open sensor_offline incident (no reading for 15 min; 30 for "
            "weather and noise).",
            (Step("green"), Step("orange", 1)),
        ),
        stat(
            "Camera trực tuyến",
            "SELECT count(DISTINCT camera_id) AS value FROM camera_frames"
            " WHERE processed_at > now() - interval '5 minutes'",
            "Cameras with a frame processed in the last 5 minutes (every processed frame has a "
            "row in camera_frames, with or without detections).",
            (Step("orange"), Step("green", 1)),
            width=4,
        ),
    )
    geomap = Panel(
        "Bản đồ sự cố đang mở",
        "geomap",
        f"""
SELECT lat, lon, severity, {SEVERITY_LEVEL} AS severity_level, kind, source, title,
       event_time AS time
FROM incidents
WHERE status = 'open' AND lat IS NOT NULL AND lon IS NOT NULL
ORDER BY severity_level DESC, event_time DESC
LIMIT 500""",
        "geomap",
        "Open incidents with a location, coloured by severity (red urgent, orange high, green "
        "normal). Camera incidents have no coordinates yet and appear only in the table.",
        columns=("lat", "lon", "severity", "severity_level", "kind", "source", "title", "time"),
        width=12,
        height=14,
        steps=(Step("green"), Step("orange", 2), Step("red", 3)),
        options={
            "basemap": {"config": {}, "name": "Basemap", "type": "default"},
            "controls": {"mouseWheelZoom": True, "showAttribution": True, "showZoom": True},
            "layers": [
                {
                    "config": {
                        "showLegend": False,
                        "style": {
                            "color": {"field": "severity_level", "fixed": "red"},
                            "opacity": 0.8,
                            "size": {"fixed": 9, "max": 15, "min": 2},
                            "symbol": {"fixed": "img/icons/marker/circle.svg", "mode": "fixed"},
                        },
                    },
                    "location": {"latitude": "lat", "longitude": "lon", "mode": "coords"},
                    "name": "Sự cố",
                    "tooltip": True,
                    "type": "markers",
                }
            ],
            "tooltip": {"mode": "details"},
            "view": {"allLayers": True, "id": "coords", "lat": 21.6, "lon": 105.85, "zoom": 10},
        },
    )
    open_table = table(
        "Danh sách sự cố đang mở",
        f"""
SELECT event_time AS time, severity, kind, source, district, reports, title,
       updated_at
FROM incidents
WHERE status = 'open'
ORDER BY {SEVERITY_LEVEL} DESC, event_time DESC
LIMIT 200""",
        "Open incidents, most severe first; reports counts the citizens who reported a hotline "
        "incident; district is the sensor's district or the ticket's reported address.",
        ("time", "severity", "kind", "source", "district", "reports", "title", "updated_at"),
        height=14,
    )
    raised = series(
        "Sự cố mới theo nguồn",
        """
SELECT $__timeGroupAlias(opened_at, $__interval), source AS metric, count(*) AS value
FROM incidents
WHERE $__timeFilter(opened_at)
GROUP BY 1, 2
ORDER BY 1""",
        "Incidents opened per interval, by source.",
        bars=True,
        width=24,
    )
    return Dashboard(
        "ioc-overview",
        "IOC Thái Nguyên · Tổng quan",
        "IOC overview wall: KPIs, open incidents on a map and in a list, incidents over time.",
        (*kpis, geomap, open_table, raised),
        tags=("overview",),
        time_from="now-24h",
    )


# --- 2. Hotline 1022 -----------------------------------------------------------------------------


def per_interval(column: str, label: str, table_name: str = "tickets") -> str:
    return f"""
SELECT $__timeGroupAlias({column}, $__interval), {label} AS metric, count(*) AS value
FROM {table_name}
WHERE $__timeFilter({column})
GROUP BY 1, 2
ORDER BY 1"""


def hotline() -> Dashboard:
    panels = (
        stat(
            "Tồn đọng",
            f"SELECT count(*) AS value FROM tickets WHERE {OPEN_TICKET}",
            "Backlog: tickets not yet resolved (new, triaged, assigned, in progress).",
            (Step("green"), Step("orange", 20), Step("red", 50)),
            width=6,
        ),
        stat(
            "Quá hạn SLA",
            f"SELECT count(*) AS value FROM tickets WHERE {OPEN_TICKET} AND sla_due < now()",
            "Open tickets past their SLA deadline now.",
            (Step("green"), Step("red", 1)),
            width=6,
        ),
        stat(
            "Đúng hạn SLA",
            """
SELECT coalesce(round(100.0 * count(*) FILTER (WHERE sla_breached_at IS NULL)
                      / nullif(count(*), 0), 1), 100) AS value
FROM tickets
WHERE $__timeFilter(requested_at) AND sla_due IS NOT NULL""",
            "Share of the tickets received in the time range that have not breached their SLA "
            "(100 when there are none).",
            (Step("red"), Step("orange", 80), Step("green", 95)),
            width=6,
            unit="percent",
        ),
        stat(
            "Phản ánh hôm nay",
            f"SELECT count(*) AS value FROM tickets WHERE requested_at >= {TODAY_ICT}",
            "Tickets received since midnight, Vietnam time.",
            (Step("blue"),),
            width=6,
        ),
        series(
            "Phản ánh theo lĩnh vực",
            per_interval("requested_at", "coalesce(category, 'chua_phan_loai')"),
            "Tickets received per interval, by triaged category.",
            bars=True,
        ),
        series(
            "Phản ánh theo kênh",
            per_interval("requested_at", "channel"),
            "Tickets received per interval, by channel (phone, app, web, zalo, email).",
            bars=True,
        ),
        bars(
            "Phản ánh theo địa bàn",
            """
SELECT area, count(*) AS tickets
FROM ticket_areas
WHERE $__timeFilter(requested_at)
GROUP BY 1
ORDER BY 2 DESC
LIMIT 20""",
            "Tickets by area in the time range: the ward, commune or district named in the "
            "reported address (e.g. 'Xã Sơn Cẩm'; view ticket_areas: the walls may not read "
            "the address itself).",
            ("area", "tickets"),
        ),
        series(
            "Tiếp nhận và xử lý xong",
            """
SELECT time, metric, value FROM (
    SELECT $__timeGroup(requested_at, $__interval) AS time, 'tiếp nhận' AS metric,
           count(*) AS value
    FROM tickets
    WHERE $__timeFilter(requested_at)
    GROUP BY 1
    UNION ALL
    SELECT $__timeGroup(at, $__interval) AS time, 'xử lý xong' AS metric, count(*) AS value
    FROM ticket_events
    WHERE status = 'resolved' AND $__timeFilter(at)
    GROUP BY 1
) AS flow
ORDER BY 1""",
            "Tickets received and resolved per interval: the backlog grows while the first "
            "outpaces the second.",
        ),
        bars(
            "Tồn đọng theo trạng thái",
            f"""
SELECT status, count(*) AS tickets
FROM tickets
WHERE {OPEN_TICKET}
GROUP BY status
ORDER BY status""",
            "Open tickets by lifecycle status now.",
            ("status", "tickets"),
        ),
        table(
            "SLA theo lĩnh vực",
            f"""
SELECT coalesce(category, 'chua_phan_loai') AS category,
       count(*) AS tickets,
       count(*) FILTER (WHERE {OPEN_TICKET}) AS open,
       count(*) FILTER (WHERE {OPEN_TICKET} AND sla_due < now()) AS overdue,
       count(*) FILTER (WHERE sla_breached_at IS NOT NULL) AS breached
FROM tickets
WHERE $__timeFilter(requested_at)
GROUP BY 1
ORDER BY overdue DESC, tickets DESC""",
            "Per category, tickets received in the time range: still open, open past the SLA "
            "deadline now, and ever breached.",
            ("category", "tickets", "open", "overdue", "breached"),
        ),
        table(
            "Sửa phân loại theo lĩnh vực",
            """
WITH first_correction AS (
    SELECT DISTINCT ON (service_request_id) service_request_id, from_category, from_urgent,
           to_urgent
    FROM triage_corrections
    ORDER BY service_request_id, at, id
)
SELECT coalesce(c.from_category, t.category, 'chua_phan_loai') AS category,
       count(*) AS tickets,
       count(c.service_request_id) AS corrected,
       round(100.0 * count(c.service_request_id) / count(*), 1) AS corrected_pct,
       count(*) FILTER (WHERE c.to_urgent AND NOT c.from_urgent) AS made_urgent,
       count(*) FILTER (WHERE c.from_urgent AND NOT c.to_urgent) AS made_calm
FROM tickets AS t
LEFT JOIN first_correction AS c USING (service_request_id)
WHERE $__timeFilter(t.requested_at)
GROUP BY 1
ORDER BY corrected_pct DESC, tickets DESC""",
            "Per category as triage first gave it, tickets received in the time range and the "
            "share staff corrected (category or urgency); made_urgent counts the emergencies "
            "triage missed. A rising share means the model needs `ioc triage train`.",
            ("category", "tickets", "corrected", "corrected_pct", "made_urgent", "made_calm"),
        ),
        series(
            "Vi phạm SLA",
            """
SELECT $__timeGroupAlias(sla_breached_at, $__interval), count(*) AS breaches
FROM tickets
WHERE $__timeFilter(sla_breached_at)
GROUP BY 1
ORDER BY 1""",
            "Tickets that went past their SLA deadline, per interval (when the breach was "
            "detected).",
            bars=True,
            width=24,
        ),
    )
    return Dashboard(
        "ioc-hotline-1022",
        "Đường dây nóng 1022",
        "Hotline 1022 wall: tickets by category, area and channel over time, backlog and SLA.",
        panels,
        tags=("hotline",),
        time_from="now-7d",
    )


# --- 3. Environment sensors ----------------------------------------------------------------------


def level_overrides(
    registry: SensorRegistry, rules: RuleSet, sensor_type: str
) -> tuple[dict[str, Any], ...]:
    """One override per sensor of the type: its own levels as dashed threshold lines."""
    found = []
    for spec in sorted(registry.sensors, key=lambda spec: spec.id):
        levels = rules.for_sensor(spec).levels if spec.type == sensor_type else None
        if levels is None:
            continue
        steps = [Step("green")] + [
            Step(SEVERITY_COLORS[level.severity], level.above) for level in levels.levels
        ]
        found.append(
            override(
                spec.id,
                **{
                    "custom.thresholdsStyle": {"mode": "dashed"},
                    "displayName": spec.name,
                    "thresholds": {"mode": "absolute", "steps": [s.to_json() for s in steps]},
                },
            )
        )
    return tuple(found)


def readings(prop: str) -> str:
    return f"""
SELECT $__timeGroupAlias(observed_at, $__interval), sensor_id AS metric, max(value) AS value
FROM sensor_readings
WHERE property = '{prop}' AND $__timeFilter(observed_at)
GROUP BY 1, 2
ORDER BY 1"""


def environment(registry: SensorRegistry, rules: RuleSet) -> Dashboard:
    panels = (
        series(
            "Mực nước",
            readings("currentLevel"),
            "Water level per sensor (highest reading per interval), with each sensor's alert "
            "level (orange, from the registry) and danger level (red, alert + the rules' "
            "offset) as dashed lines.",
            unit="lengthm",
            decimals=2,
            overrides=level_overrides(registry, rules, "FloodMonitoring"),
            width=24,
            height=10,
        ),
        series(
            "Bụi mịn PM2.5",
            readings("pm25"),
            "PM2.5 per sensor (highest reading per interval), with the rules' level (150 "
            "µg/m³ by default) as a dashed line.",
            unit="conμgm3",
            decimals=0,
            overrides=level_overrides(registry, rules, "AirQualityObserved"),
            width=24,
            height=10,
        ),
        table(
            "Giá trị mới nhất",
            """
SELECT DISTINCT ON (sensor_id, property)
       sensor_id, property, sensor_type, observed_at AS time, value
FROM sensor_readings
WHERE $__timeFilter(observed_at)
ORDER BY sensor_id, property, observed_at DESC""",
            "The latest reading of each sensor and property in the time range.",
            ("sensor_id", "property", "sensor_type", "time", "value"),
        ),
        table(
            "Sự cố cảm biến đang mở",
            """
SELECT event_time AS time, source_key AS sensor_id, kind, severity, district, title
FROM incidents
WHERE source = 'sensor' AND status = 'open'
ORDER BY event_time DESC""",
            "Open sensor incidents: levels, rate of rise, stuck (sensor_fault) and offline.",
            ("time", "sensor_id", "kind", "severity", "district", "title"),
        ),
    )
    return Dashboard(
        "ioc-environment",
        "Cảm biến môi trường",
        "Environment sensors wall: water level and PM2.5 with their thresholds, latest values "
        "and open sensor incidents.",
        panels,
        tags=("sensors",),
    )


# --- 4. Cameras and AI ---------------------------------------------------------------------------


def cameras() -> Dashboard:
    panels = (
        series(
            "Phát hiện mỗi phút theo camera",
            """
SELECT $__timeGroupAlias(event_time, $__interval), camera_id AS metric,
       count(*) * 60000.0 / $__interval_ms AS value
FROM detections
WHERE $__timeFilter(event_time)
GROUP BY 1, 2
ORDER BY 1""",
            "Objects detected per minute, per camera (all classes).",
            width=24,
        ),
        bars(
            "Sự cố theo loại",
            """
SELECT source || ' · ' || kind AS kind, count(*) AS incidents
FROM incidents
WHERE $__timeFilter(event_time)
GROUP BY 1
ORDER BY 2 DESC""",
            "Incidents in the time range by source and kind.",
            ("kind", "incidents"),
        ),
        bars(
            "Phát hiện theo lớp",
            """
SELECT class_name, count(*) AS detections
FROM detections
WHERE $__timeFilter(event_time)
GROUP BY 1
ORDER BY 2 DESC""",
            "Detections in the time range by class (fire, smoke, person, car, ...).",
            ("class_name", "detections"),
        ),
        series(
            "Khung hình xử lý / giây",
            """
SELECT $__timeGroupAlias(event_time, $__interval),
       count(*) * 1000.0 / $__interval_ms AS processed,
       sum(dropped) * 1000.0 / $__interval_ms AS dropped
FROM camera_frames
WHERE $__timeFilter(event_time)
GROUP BY 1
ORDER BY 1""",
            "Frames the inference worker processed per second, and frames it skipped because a "
            "newer frame of the same camera was waiting (overload: the worker keeps the present, "
            "never a backlog). Dropped above zero for long means more workers or a GPU.",
            unit="suffix: fps",
        ),
        table(
            "Tình trạng camera",
            """
SELECT f.camera_id,
       max(f.event_time) AS last_frame,
       round(extract(epoch FROM now() - max(f.event_time)))::int AS age_s,
       count(*) AS frames,
       sum(f.dropped) AS dropped,
       round(avg(f.inference_ms)::numeric, 1) AS inference_ms,
       round(percentile_cont(0.95) WITHIN GROUP (
           ORDER BY extract(epoch FROM f.processed_at - f.ingested_at) * 1000)::numeric)
           AS p95_latency_ms,
       round(avg(f.luma_mean)::numeric) AS brightness,
       (SELECT string_agg(i.kind, ', ' ORDER BY i.kind) FROM incidents AS i
        WHERE i.source = 'vision' AND i.source_key = f.camera_id AND i.status = 'open')
           AS open_incidents
FROM camera_frames AS f
WHERE $__timeFilter(f.event_time)
GROUP BY f.camera_id
ORDER BY age_s DESC""",
            "Per camera in the time range: the last frame and its age, frames processed and "
            "dropped, mean inference time, p95 latency from Kafka to detections, mean brightness "
            "(near 0: dark or covered) and the camera's open incidents (offline, frozen, "
            "blackout, tamper, fire, crowding, stopped vehicle).",
            (
                "camera_id",
                "last_frame",
                "age_s",
                "frames",
                "dropped",
                "inference_ms",
                "p95_latency_ms",
                "brightness",
                "open_incidents",
            ),
            width=24,
        ),
        table(
            "Sự cố camera và ảnh bằng chứng",
            """
SELECT i.event_time, i.kind, i.severity, i.status, i.source_key AS camera_id, i.title,
       s.score, s.path AS snapshot
FROM incidents AS i
LEFT JOIN incident_snapshots AS s ON s.incident_id = i.id
WHERE i.source = 'vision' AND $__timeFilter(i.event_time)
ORDER BY i.event_time DESC
LIMIT 100""",
            "Camera incidents, newest first, with the annotated best frame saved for each "
            "(path on the vision worker's evidence volume).",
            ("event_time", "kind", "severity", "status", "camera_id", "title", "score", "snapshot"),
            width=24,
        ),
        table(
            "Độ chính xác theo camera và quy tắc",
            """
SELECT camera_id, rule, precision, confirmed, false_alarms, unjudged, last_seen
FROM camera_rule_precision
ORDER BY precision NULLS LAST, false_alarms DESC, camera_id, rule""",
            "Each camera rule on each camera, judged by staff: incidents resolved as handled "
            "(confirmed) or as a false alarm (Báo nhầm), and those that cleared unjudged. "
            "Precision = confirmed / judged; the worst first. All time, not the time range: "
            "a rule's record is its whole history.",
            (
                "camera_id",
                "rule",
                "precision",
                "confirmed",
                "false_alarms",
                "unjudged",
                "last_seen",
            ),
            width=24,
        ),
        series(
            "Độ trễ camera → cảnh báo",
            """
SELECT $__timeGroupAlias(a.delivered_at, $__interval),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY a.latency_ms) AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY a.latency_ms) AS p95
FROM alerts AS a
JOIN incidents AS i ON i.id = a.incident_id
WHERE i.source = 'vision' AND a.ok AND $__timeFilter(a.delivered_at)
GROUP BY 1
ORDER BY 1""",
            "Latency from the frame reaching Kafka to the alert being delivered, for camera "
            "incidents (alerts.latency_ms): median and 95th percentile per interval.",
            unit="ms",
            custom={"showPoints": "always"},
        ),
    )
    return Dashboard(
        "ioc-cameras-ai",
        "Camera và AI",
        "Cameras and AI wall: detections per minute per camera, incidents by kind, worker "
        "throughput and drops, camera health, evidence snapshots, precision per camera and rule "
        "and latency.",
        panels,
        tags=("vision",),
    )


# --- 5. Pipeline health --------------------------------------------------------------------------

SINKS = (
    # (table, time column, what the time is)
    ("tickets", "ingested_at", "ingested"),
    ("sensor_readings", "ingested_at", "ingested"),
    ("sensor_windows", "closed_at", "closed"),
    ("camera_frames", "processed_at", "processed"),
    ("incidents", "updated_at", "last update"),
    ("alerts", "delivered_at", "delivered"),
)


def throughput_sql() -> str:
    parts = [
        f"    SELECT $__timeGroup({column}, $__interval) AS time, '{name}' AS metric,\n"
        f"           count(*) * 60000.0 / $__interval_ms AS value\n"
        f"    FROM {name}\n"
        f"    WHERE $__timeFilter({column})\n"
        f"    GROUP BY 1"
        for name, column, _ in SINKS
    ]
    return (
        "\nSELECT time, metric, value FROM (\n"
        + "\n    UNION ALL\n".join(parts)
        + "\n) AS written\nORDER BY 1"
    )


def freshness_sql() -> str:
    parts = [
        f"    SELECT '{name}' AS sink, max({column}) AS last_row FROM {name}"
        f" WHERE $__timeFilter({column})"
        for name, column, _ in SINKS
    ]
    return (
        "\nSELECT sink, last_row AS time, extract(epoch FROM now() - last_row) AS seconds_ago\n"
        "FROM (\n" + "\n    UNION ALL\n".join(parts) + "\n) AS sinks\nORDER BY sink"
    )


def pipeline() -> Dashboard:
    sinks = "; ".join(f"{name}: {what}" for name, _, what in SINKS)
    panels = (
        series(
            "Thông lượng ghi CSDL",
            throughput_sql(),
            f"Sink throughput: rows written per minute per table ({sinks}).",
            unit="wpm",
            width=24,
        ),
        series(
            "Độ trễ hàng đợi Kafka (consumer lag)",
            """
SELECT $__timeGroupAlias(at, $__interval), group_id || ' · ' || topic AS metric,
       max(lag) AS value
FROM consumer_lag
WHERE $__timeFilter(at)
GROUP BY 1, 2
ORDER BY 1""",
            "Messages each consumer group has not yet committed, per topic (sampled by the "
            "streams leader every streams.lag_sample_s). A line that keeps rising is a "
            "worker that cannot keep up or has stopped.",
        ),
        series(
            "Độ trễ sự kiện → CSDL (p95)",
            """
SELECT time, metric, value FROM (
    SELECT $__timeGroup(ingested_at, $__interval) AS time, 'sensor_readings' AS metric,
           percentile_cont(0.95) WITHIN GROUP (
               ORDER BY extract(epoch FROM ingested_at - observed_at)) AS value
    FROM sensor_readings
    WHERE $__timeFilter(ingested_at) AND NOT late
    GROUP BY 1
    UNION ALL
    SELECT $__timeGroup(ingested_at, $__interval) AS time, 'tickets' AS metric,
           percentile_cont(0.95) WITHIN GROUP (
               ORDER BY extract(epoch FROM ingested_at - requested_at)) AS value
    FROM tickets
    WHERE $__timeFilter(ingested_at)
    GROUP BY 1
) AS delay
ORDER BY 1""",
            "95th percentile of event time to database write, in seconds (readings in time; "
            "tickets): how far behind the city the walls are.",
            unit="s",
        ),
        series(
            "Độ trễ đầu vào → cảnh báo (p95)",
            """
SELECT $__timeGroupAlias(a.delivered_at, $__interval), i.source AS metric,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY a.latency_ms) AS value
FROM alerts AS a
JOIN incidents AS i ON i.id = a.incident_id
WHERE a.ok AND $__timeFilter(a.delivered_at)
GROUP BY 1, 2
ORDER BY 1""",
            "95th percentile of input (Kafka timestamp) to delivered alert, by source.",
            unit="ms",
            custom={"showPoints": "always"},
        ),
        series(
            "Lỗi: cảnh báo thất bại, dữ liệu trễ",
            """
SELECT time, metric, value FROM (
    SELECT $__timeGroup(delivered_at, $__interval) AS time, 'cảnh báo thất bại' AS metric,
           count(*) FILTER (WHERE NOT ok) AS value
    FROM alerts
    WHERE $__timeFilter(delivered_at)
    GROUP BY 1
    UNION ALL
    SELECT $__timeGroup(ingested_at, $__interval) AS time, 'số đo trễ' AS metric,
           count(*) FILTER (WHERE late) AS value
    FROM sensor_readings
    WHERE $__timeFilter(ingested_at)
    GROUP BY 1
) AS trouble
ORDER BY 1""",
            "Failed alert deliveries and sensor readings that arrived after their window closed, "
            "per interval.",
            bars=True,
        ),
        series(
            "Thư lỗi (DLQ) theo nguồn",
            """
SELECT $__timeGroupAlias(failed_at, $__interval), source_topic AS metric, count(*) AS value
FROM dead_letters
WHERE $__timeFilter(failed_at)
GROUP BY 1, 2
ORDER BY 1""",
            "Messages sent to ioc.dlq per interval, by the topic they came from: bad input "
            "refused with a reason, or processing that failed after retries.",
            bars=True,
        ),
        table(
            "Thư lỗi gần nhất",
            """
SELECT failed_at AS time, source_topic, consumer, reason
FROM dead_letters
WHERE $__timeFilter(failed_at)
ORDER BY failed_at DESC
LIMIT 50""",
            "The latest dead letters and why; the bytes are on ioc.dlq (partition/offset in "
            "the dead_letters table) for replay once fixed.",
            ("time", "source_topic", "consumer", "reason"),
        ),
        table(
            "Dữ liệu mới nhất theo bảng",
            freshness_sql(),
            "When each table last received a row in the time range, and how long ago: a sink "
            "that stops moving is a stalled consumer.",
            ("sink", "time", "seconds_ago"),
            overrides=(override("seconds_ago", unit="s"),),
        ),
    )
    return Dashboard(
        "ioc-pipeline-health",
        "Sức khỏe hệ thống xử lý",
        "Pipeline health wall: sink throughput, event-to-database delay (a stand-in for "
        "consumer lag), alert latency, failures and freshness per table.",
        panels,
        tags=("pipeline",),
        time_from="now-3h",
    )


# --- 6. Fused incidents (what staff act on) ------------------------------------------------------

ACTIVE = "status IN ('open', 'acknowledged')"


def incidents() -> Dashboard:
    """The incidents staff act on: what is active and in which state, who took it, what was
    escalated, and how long acknowledging takes."""
    kpis = (
        stat(
            "Sự cố đang xử lý",
            f"SELECT count(*) AS value FROM fused_incidents WHERE {ACTIVE}",
            "Fused incidents open or acknowledged: what staff act on (candidates from cameras, "
            "sensors and 1022 reports fused into one incident each).",
            (Step("green"), Step("orange", 1), Step("red", 10)),
        ),
        stat(
            "Khẩn cấp chưa tiếp nhận",
            "SELECT count(*) AS value FROM fused_incidents"
            " WHERE status = 'open' AND severity = 'urgent'",
            "Urgent incidents nobody has acknowledged yet.",
            (Step("green"), Step("red", 1)),
        ),
        stat(
            "Nhiều nguồn xác nhận",
            f"SELECT count(*) AS value FROM fused_incidents WHERE {ACTIVE} AND sources >= 2",
            "Active incidents confirmed by two or more kinds of source (camera, sensor, 1022).",
            (Step("blue"),),
        ),
        stat(
            "Báo vượt cấp hôm nay",
            f"SELECT count(*) AS value FROM fused_incidents WHERE escalated_at >= {TODAY_ICT}",
            "Incidents escalated since midnight, Vietnam time: urgent and not acknowledged in "
            "time (alerts.escalate_after_s).",
            (Step("green"), Step("orange", 1)),
        ),
        stat(
            "Đã xử lý xong hôm nay",
            f"SELECT count(*) AS value FROM fused_incidents WHERE resolved_at >= {TODAY_ICT}",
            "Incidents resolved since midnight, Vietnam time, by staff or automatically.",
            (Step("blue"),),
            width=4,
        ),
    )
    active = table(
        "Danh sách sự cố đang xử lý",
        f"""
SELECT opened_at AS time, severity, status, kind, title, district, sources, reports, episode,
       acknowledged_by, status_since
FROM fused_incidents
WHERE {ACTIVE}
ORDER BY {SEVERITY_LEVEL} DESC, (status = 'open') DESC, opened_at DESC
LIMIT 200""",
        "Active fused incidents, most severe and unacknowledged first: how many kinds of source "
        "confirm each, how many citizens reported it, its episode (one more each time it "
        "reopened) and who acknowledged it.",
        (
            "time",
            "severity",
            "status",
            "kind",
            "title",
            "district",
            "sources",
            "reports",
            "episode",
            "acknowledged_by",
            "status_since",
        ),
        width=24,
        height=12,
    )
    by_state = bars(
        "Đang xử lý theo trạng thái",
        f"""
SELECT status || ' · ' || severity AS state, count(*) AS value
FROM fused_incidents
WHERE {ACTIVE}
GROUP BY 1
ORDER BY 2 DESC""",
        "Active incidents by state and severity.",
        ("state", "value"),
        width=8,
    )
    opened = series(
        "Sự cố mới theo loại",
        """
SELECT $__timeGroupAlias(opened_at, $__interval), kind AS metric, count(*) AS value
FROM fused_incidents
WHERE $__timeFilter(opened_at)
GROUP BY 1, 2
ORDER BY 1""",
        "Fused incidents opened per interval, by kind.",
        bars=True,
        width=8,
    )
    changes = series(
        "Thay đổi trạng thái",
        """
SELECT $__timeGroupAlias(at, $__interval), change AS metric, count(*) AS value
FROM fused_incident_events
WHERE $__timeFilter(at)
GROUP BY 1, 2
ORDER BY 1""",
        "Every change of a fused incident per interval: opened, updated, merged, acknowledged, "
        "escalated, resolved, reopened.",
        bars=True,
        width=8,
    )
    to_acknowledge = series(
        "Thời gian tiếp nhận",
        """
SELECT $__timeGroupAlias(acknowledged_at, $__interval),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM acknowledged_at - opened_at))
           / 60 AS "p50",
       percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM acknowledged_at - opened_at))
           / 60 AS "p90"
FROM fused_incidents
WHERE acknowledged_at IS NOT NULL AND $__timeFilter(acknowledged_at)
GROUP BY 1
ORDER BY 1""",
        "Minutes from an incident opening to staff acknowledging it, by when it was "
        "acknowledged: median and 90th percentile.",
        unit="m",
        custom={"showPoints": "always"},
    )
    log = table(
        "Nhật ký xử lý",
        """
SELECT e.at AS time, e.incident_id, i.title, e.change, e.status, e.severity, e.actor, e.reason
FROM fused_incident_events AS e
JOIN fused_incidents AS i ON i.id = e.incident_id
WHERE $__timeFilter(e.at)
ORDER BY e.at DESC
LIMIT 200""",
        "The latest changes, newest first: who (a staff member, or ioc for fusion and timers) "
        "changed what, and why.",
        ("time", "incident_id", "title", "change", "status", "severity", "actor", "reason"),
        width=12,
    )
    return Dashboard(
        "ioc-incidents",
        "IOC Thái Nguyên · Sự cố hợp nhất",
        "Fused incidents wall: what staff act on, their state, who took them, escalations, time "
        "to acknowledge and every change.",
        (*kpis, active, by_state, opened, changes, to_acknowledge, log),
        tags=("incidents",),
        time_from="now-24h",
    )


def walls(registry_path: Path | None = None, rules_path: Path | None = None) -> list[Dashboard]:
    """Every wall; sensor thresholds from the given (default: bundled) registry and rules."""
    registry = load_sensor_registry(registry_path)
    rules = RuleSet.load(rules_path)
    return [overview(), incidents(), hotline(), environment(registry, rules), cameras(), pipeline()]
