"""What happened during a run, read back from Kafka and the database (not from the publisher's
own counters), so the summary shows what the system really did."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from rich.console import Console
from rich.table import Table

from ioc.config import Settings
from ioc.kafka import clients as kafka_clients
from ioc.kafka import topics
from ioc.models import Severity
from ioc.models.base import utc_now

TABLES = (
    "tickets",
    "sensor_readings",
    "sensor_windows",
    "camera_frames",
    "detections",
    "incidents",
    "incident_snapshots",
    "incident_clips",
    "alerts",
)


@dataclass(frozen=True)
class Snapshot:
    at: datetime
    end_offsets: dict[tuple[str, int], int]
    rows: dict[str, int]


@dataclass
class Summary:
    messages: dict[str, int]
    rows: dict[str, int]
    incidents: list[tuple[str, str, str, int]]  # source, kind, severity, count
    alerts: dict[tuple[str, bool], int]  # (channel, ok) -> count
    dead_letters: list[tuple[str, str]]  # source topic, reason
    latency_ms: dict[str, tuple[float, float, int]]  # source -> (median, p95, n)
    open_without_alert: int
    recent: list[tuple[str, str, str, str, str]]  # time, source, status, reports, title
    max_reports: int  # most citizens linked to one hotline incident
    cameras: list[tuple[str, int, int, float]]  # camera, frames, dropped, p95 Kafka → detection ms
    without_snapshot: int  # camera incidents naming a best frame that has no saved snapshot
    fused: tuple[int, int] = (0, 0)  # incidents staff act on, the candidates in them
    lag: dict[str, int] = field(default_factory=dict)


def snapshot(settings: Settings) -> Snapshot:
    from kafka import TopicPartition

    reader = kafka_clients.reader(settings.kafka)
    try:
        partitions = [
            TopicPartition(spec.name, p)
            for spec in topics.TOPICS
            for p in reader.partitions_for_topic(spec.name) or ()
        ]
        ends = {
            (tp.topic, tp.partition): offset
            for tp, offset in reader.end_offsets(partitions).items()
        }
    finally:
        reader.close()
    with psycopg.connect(settings.database.dsn) as conn:
        rows = {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES
        }  # type: ignore[index]
    return Snapshot(utc_now(), ends, rows)


def read_dead_letters(
    settings: Settings, before: Snapshot, after: Snapshot
) -> list[tuple[str, str]]:
    from kafka import TopicPartition

    reader = kafka_clients.reader(settings.kafka, enable_auto_commit=False)
    letters = []
    try:
        ranges = {
            TopicPartition(topic, partition): (before.end_offsets.get((topic, partition), 0), end)
            for (topic, partition), end in after.end_offsets.items()
            if topic == topics.DLQ and end > before.end_offsets.get((topic, partition), 0)
        }
        if not ranges:
            return []
        reader.assign(list(ranges))
        for tp, (start, _) in ranges.items():
            reader.seek(tp, start)
        remaining = {tp: end - start for tp, (start, end) in ranges.items()}
        while any(count > 0 for count in remaining.values()):
            batch = reader.poll(timeout_ms=2000)
            if not batch:
                break
            for tp, records in batch.items():
                for record in records[: max(remaining[tp], 0)]:
                    headers = {key: value.decode(errors="replace") for key, value in record.headers}
                    letters.append((headers.get("source_topic", "?"), headers.get("reason", "?")))
                remaining[tp] -= len(records)
    finally:
        reader.close()
    return letters


def summarize(settings: Settings, before: Snapshot, after: Snapshot) -> Summary:
    alertable = [severity.value for severity in Severity.at_least(settings.alerts.min_severity)]
    messages: Counter[str] = Counter()
    for (topic, partition), end in after.end_offsets.items():
        messages[topic] += end - before.end_offsets.get((topic, partition), 0)
    rows = {table: after.rows[table] - before.rows.get(table, 0) for table in TABLES}
    with psycopg.connect(settings.database.dsn) as conn:
        incidents = [
            (str(source), str(kind), str(severity), int(count))
            for source, kind, severity, count in conn.execute(
                "SELECT source, kind, severity, count(*) FROM incidents AS i"
                " WHERE i.updated_at >= %s OR (i.source = 'vision' AND i.status = 'open'"
                " AND EXISTS (SELECT 1 FROM camera_frames AS f WHERE f.camera_id = i.source_key"
                " AND f.processed_at >= %s)) GROUP BY 1, 2, 3 ORDER BY 1, 2",
                (before.at, before.at),
            )
        ]
        alerts = {
            (str(channel), bool(ok)): int(count)
            for channel, ok, count in conn.execute(
                "SELECT channel, ok, count(*) FROM alerts WHERE delivered_at >= %s GROUP BY 1, 2",
                (before.at,),
            )
        }
        latency = {
            str(source): (float(p50), float(p95), int(n))
            for source, p50, p95, n in conn.execute(
                "SELECT coalesce(i.source, 'all'),"
                " percentile_cont(0.5) WITHIN GROUP (ORDER BY a.latency_ms),"
                " percentile_cont(0.95) WITHIN GROUP (ORDER BY a.latency_ms), count(*)"
                " FROM alerts a JOIN incidents i ON i.id = a.incident_id"
                " WHERE a.delivered_at >= %s AND a.ok GROUP BY ROLLUP (i.source)",
                (before.at,),
            )
            if n  # no alert at all: the rollup still returns an empty 'all' row
        }
        recent = [
            (f"{event_time:%d/%m %H:%M:%S}", str(source), str(status), str(reports), str(title))
            for event_time, source, status, reports, title in conn.execute(
                "SELECT event_time AT TIME ZONE 'Asia/Ho_Chi_Minh', source, status, reports, title"
                " FROM incidents WHERE updated_at >= %s ORDER BY CASE severity WHEN 'urgent' THEN 0"
                " WHEN 'high' THEN 1 ELSE 2 END, updated_at DESC LIMIT 12",
                (before.at,),
            )
        ]
        max_reports = conn.execute(
            "SELECT coalesce(max(reports), 0) FROM incidents WHERE updated_at >= %s"
            " AND source = 'hotline'",
            (before.at,),
        ).fetchone()[0]  # type: ignore[index]
        cameras = [
            (str(camera), int(frames), int(dropped), float(p95))
            for camera, frames, dropped, p95 in conn.execute(
                "SELECT camera_id, count(*), sum(dropped), percentile_cont(0.95) WITHIN GROUP"
                " (ORDER BY extract(epoch FROM processed_at - ingested_at) * 1000)"
                " FROM camera_frames WHERE processed_at >= %s GROUP BY 1 ORDER BY 1",
                (before.at,),
            )
        ]
        without_snapshot = conn.execute(
            "SELECT count(*) FROM incidents i WHERE i.updated_at >= %s AND i.source = 'vision'"
            " AND i.evidence ? 'frame'"
            " AND NOT EXISTS (SELECT 1 FROM incident_snapshots s WHERE s.incident_id = i.id)",
            (before.at,),
        ).fetchone()[0]  # type: ignore[index]
        open_without_alert = conn.execute(
            "SELECT count(*) FROM incidents i WHERE i.updated_at >= %s AND i.status = 'open'"
            " AND i.severity = ANY(%s)"
            " AND NOT EXISTS (SELECT 1 FROM alerts a"
            "                 WHERE a.incident_id = coalesce(i.fused_id, i.id) AND a.ok)",
            (before.at, alertable),
        ).fetchone()[0]  # type: ignore[index]
        fused = conn.execute(
            "SELECT count(DISTINCT fused_id), count(*) FROM incidents"
            " WHERE updated_at >= %s AND fused_id IS NOT NULL",
            (before.at,),
        ).fetchone()
    return Summary(
        messages=dict(messages),
        rows=rows,
        incidents=incidents,
        alerts=alerts,
        dead_letters=read_dead_letters(settings, before, after),
        latency_ms=latency,
        open_without_alert=int(open_without_alert),
        recent=recent,
        max_reports=int(max_reports),
        cameras=cameras,
        without_snapshot=int(without_snapshot),
        fused=(int(fused[0]), int(fused[1])) if fused else (0, 0),
    )


def render(summary: Summary, console: Console) -> None:
    flow = Table("topic", "messages", title="Kafka topics (this run)")
    for spec in topics.TOPICS:
        flow.add_row(spec.name, str(summary.messages.get(spec.name, 0)))
    rows = Table("table", "new rows", title="Database")
    for table, count in summary.rows.items():
        rows.add_row(table, str(count))
    incidents = Table(
        "source",
        "kind",
        "severity",
        "incidents",
        title="Candidates raised or updated this run (cameras: or still open and watched)",
        caption=f"fused into {summary.fused[0]} incident(s) for staff"
        f" from {summary.fused[1]} candidate(s)",
    )
    for source, kind, severity, count in summary.incidents:
        incidents.add_row(source, kind, severity, str(count))
    alerts = Table("channel", "delivered", "failed", title="Alerts")
    for channel in sorted({channel for channel, _ in summary.alerts}):
        alerts.add_row(
            channel,
            str(summary.alerts.get((channel, True), 0)),
            str(summary.alerts.get((channel, False), 0)),
        )
    recent = Table(
        "event time (ICT)",
        "source",
        "status",
        "reports",
        "incident",
        title="Most severe incidents (this run)",
    )
    for row in summary.recent:
        recent.add_row(*row)
    latency = Table("source", "median ms", "p95 ms", "alerts", title="Latency, input → alert")
    for source, (p50, p95, n) in sorted(
        summary.latency_ms.items(), key=lambda item: item[0] == "all"
    ):
        latency.add_row(source, f"{p50:,.0f}", f"{p95:,.0f}", str(n))
    cameras = Table(
        "camera", "frames", "dropped (stale)", "p95 ms Kafka → detections", title="Cameras"
    )
    for camera, frames, dropped, p95 in summary.cameras:
        cameras.add_row(camera, str(frames), str(dropped), f"{p95:,.0f}")
    dead = Table("source topic", "reason", title=f"Dead letters ({len(summary.dead_letters)})")
    for source_topic, reason in summary.dead_letters:
        dead.add_row(source_topic, reason[:110])
    for table in (flow, rows, incidents, recent, alerts, cameras, latency, dead):
        console.print(table)
    if summary.lag:
        console.print(
            "consumer lag at the end: " + ", ".join(f"{k}={v}" for k, v in summary.lag.items())
        )


def problems(summary: Summary, expected_dead_letters: int) -> list[str]:
    """What a correct run must show; each failure is one line a person can act on."""
    found = []
    sources = {source for source, _, _, _ in summary.incidents}
    for source in ("hotline", "sensor", "vision"):
        if source not in sources:
            found.append(f"no incident raised from the {source} flow")
    if summary.max_reports < 2:
        found.append("the second citizen's report of the same fire was not linked to its incident")
    if summary.without_snapshot:
        found.append(f"{summary.without_snapshot} camera incident(s) without a saved snapshot")
    if summary.open_without_alert:
        found.append(f"{summary.open_without_alert} open alertable incident(s) without an alert")
    if len(summary.dead_letters) != expected_dead_letters:
        found.append(
            f"{len(summary.dead_letters)} dead letters, expected {expected_dead_letters}"
            " (the bad inputs sent)"
        )
    if any(summary.lag.values()):
        found.append(f"pipeline did not drain: lag {summary.lag}")
    return found
