"""The labelled set: staff judgements of the camera rules, as a recording to score rules on.

Staff resolve each camera incident as handled (it was real) or as a false alarm (Báo nhầm). `ioc
replay labels` turns those judgements into a recording of the detections each judged incident
came from: for every label, the camera's messages on `ioc.vision.detections` from `margin` before
the incident's start to `margin` after, with `labels.json` beside the manifest naming the camera,
the rule (the incident kind), the staff judgement and the window.

`ioc replay --compare A B` on such a recording scores each rule set against the labels: a false
alarm that a rule set raises again is a false alarm it keeps; a confirmed incident it no longer
raises is one it would miss. Detections are recorded, not frames: the rules judge detections, and
a set of weeks of frames would be gigabytes. Kafka keeps detections for `kafka.retention_hours`
only, so export the labels at least that often (the command takes `--since`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from ioc.config import KafkaSettings, Settings
from ioc.devtools.replay.record import record
from ioc.devtools.replay.recording import Manifest, RecordedMessage, RecordingError
from ioc.devtools.replay.replay import Outcome
from ioc.kafka import topics
from ioc.models import Resolution
from ioc.models.base import epoch_ms

LABELS_FILE = "labels.json"
JUDGED = (Resolution.FALSE_ALARM, Resolution.HANDLED)


@dataclass(frozen=True)
class Label:
    """Staff's judgement of one camera rule's incident on one camera."""

    incident_id: str
    camera_id: str
    rule: str  # the incident kind the camera rule raises
    resolution: str  # false_alarm or handled
    start: datetime
    end: datetime

    def raised_by(self, outcome: Outcome) -> bool:
        """Whether a replay raised this rule's incident on this camera within the window."""
        return any(
            candidate.source == "vision"
            and candidate.source_key == self.camera_id
            and candidate.kind == self.rule
            and self.start <= candidate.event_time <= self.end
            for candidate in outcome.candidates
        )


async def judged_labels(
    conn: AsyncConnection, since: datetime, until: datetime, margin: timedelta
) -> list[Label]:
    """A label per camera candidate of every incident staff resolved in [since, until) as
    handled or false alarm, oldest first."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT f.id, f.resolution, m->>'source_key' AS camera_id, m->>'kind' AS rule,"
            " (m->>'event_time')::timestamptz AS started"
            " FROM fused_incidents AS f CROSS JOIN LATERAL jsonb_array_elements(f.members) AS m"
            " WHERE f.status = 'resolved' AND f.resolution = ANY(%s)"
            " AND f.resolved_at >= %s AND f.resolved_at < %s AND m->>'source' = 'vision'"
            " ORDER BY started, f.id, camera_id",
            ([str(r) for r in JUDGED], since, until),
        )
        rows = await cur.fetchall()
    return [
        Label(
            incident_id=row["id"],
            camera_id=row["camera_id"],
            rule=row["rule"],
            resolution=row["resolution"],
            start=row["started"] - margin,
            end=row["started"] + margin,
        )
        for row in rows
    ]


async def export_labelled_set(
    kafka: KafkaSettings, labels: Sequence[Label], out: Path
) -> tuple[Manifest, int]:
    """Record the labels' detections into `out` (one pass over the span they cover, keeping each
    label's camera within its window) and write `labels.json`; returns the manifest and how many
    detections were kept."""
    if not labels:
        raise RecordingError("no camera incident was judged (handled or false alarm) in the range")
    windows: dict[bytes, list[tuple[int, int]]] = {}
    for label in labels:
        windows.setdefault(label.camera_id.encode(), []).append(
            (epoch_ms(label.start), epoch_ms(label.end))
        )

    def wanted(message: RecordedMessage) -> bool:
        return any(
            first <= message.timestamp_ms <= last for first, last in windows.get(message.key, [])
        )

    start = min(label.start for label in labels)
    end = max(label.end for label in labels) + timedelta(milliseconds=1)
    detections = kafka.topic(topics.VISION_DETECTIONS)
    manifest = await record(kafka, [detections], start, end, out, keep=wanted)
    document = {"labels": [asdict(label) for label in labels]}
    (out / LABELS_FILE).write_text(json.dumps(document, default=str, ensure_ascii=False, indent=1))
    return manifest, sum(entry.count for entry in manifest.partitions)


def read_labels(recording_dir: Path) -> list[Label]:
    """The labels beside a recording; none for a recording that is not a labelled set."""
    path = recording_dir / LABELS_FILE
    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text())["labels"]
        return [
            Label(
                **entry
                | {
                    "start": datetime.fromisoformat(entry["start"]),
                    "end": datetime.fromisoformat(entry["end"]),
                }
            )
            for entry in entries
        ]
    except (ValueError, KeyError, TypeError) as error:
        raise RecordingError(f"{path}: not a labels file ({error})") from None


@dataclass(frozen=True)
class LabelScore:
    """How a rule set fares on a labelled set."""

    false_alarms: int
    false_alarms_raised: int  # kept: raised again
    confirmed: int
    confirmed_raised: int  # still caught

    @property
    def precision(self) -> float | None:
        """Of the labelled incidents this rule set raises, the share that were real."""
        raised = self.false_alarms_raised + self.confirmed_raised
        return self.confirmed_raised / raised if raised else None


def score(labels: Sequence[Label], outcome: Outcome) -> LabelScore:
    false = [label for label in labels if label.resolution == Resolution.FALSE_ALARM]
    real = [label for label in labels if label.resolution == Resolution.HANDLED]
    return LabelScore(
        false_alarms=len(false),
        false_alarms_raised=sum(label.raised_by(outcome) for label in false),
        confirmed=len(real),
        confirmed_raised=sum(label.raised_by(outcome) for label in real),
    )


async def labelled_set(
    settings: Settings, since: datetime, until: datetime, out: Path, margin: timedelta
) -> tuple[list[Label], int]:
    """The labels of incidents resolved in [since, until), exported to `out`; with the number of
    detections recorded."""
    async with await AsyncConnection.connect(settings.database.dsn) as conn:
        labels = await judged_labels(conn, since, until, margin)
    _, kept = await export_labelled_set(settings.kafka, labels, out)
    return labels, kept
