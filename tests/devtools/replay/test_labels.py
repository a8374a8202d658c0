"""The labelled set: staff's judgements of camera incidents, read from the database, recorded with
exactly the judged cameras' detections of their windows, and scored against a replay's outcome."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaProducer

from ioc.config import Settings
from ioc.devtools.replay.labels import LABELS_FILE, Label, read_labels, score
from ioc.devtools.replay.recording import RecordingError, open_recording
from ioc.devtools.replay.replay import CandidateView, Outcome
from ioc.incidents import lifecycle
from ioc.incidents.composition import FusionRules
from ioc.incidents.fusion import fuse
from ioc.kafka import topics
from ioc.models import FrameDetections, Incident
from ioc.models.base import deterministic_id, epoch_ms
from ioc.store.writer import Store

T = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


def label(camera: str, rule: str, resolution: str, minutes: int = 0) -> Label:
    start = T + timedelta(minutes=minutes)
    end = start + timedelta(minutes=4)
    return Label(f"inc-{camera}-{rule}", camera, rule, resolution, start, end)


def candidate(camera: str, kind: str, minutes: float, source: str = "vision") -> CandidateView:
    return CandidateView(
        id=f"c-{camera}-{kind}-{minutes}",
        source=source,
        source_key=camera,
        kind=kind,
        severity="high",
        status="open",
        event_time=T + timedelta(minutes=minutes),
        reports=1,
    )


def test_a_label_counts_only_its_rule_on_its_camera_within_its_window() -> None:
    labels = [
        label("cam-a", "fire", "false_alarm"),
        label("cam-b", "fire", "false_alarm"),
        label("cam-a", "stopped_vehicle", "handled"),
        label("cam-c", "crowding", "handled"),
    ]
    outcome = Outcome(
        candidates=(
            candidate("cam-a", "fire", 2),  # cam-a's false alarm, raised again
            candidate("cam-b", "fire", 9),  # after cam-b's window: not that label
            candidate("cam-b", "crowding", 2),  # another rule
            candidate("cam-a", "stopped_vehicle", 0),  # the confirmed one, still caught
            candidate("cam-c", "crowding", 1, source="hotline"),  # not a camera's
        ),
        incidents=(),
        rows={},
    )
    found = score(labels, outcome)
    assert (found.false_alarms_raised, found.false_alarms) == (1, 2)
    assert (found.confirmed_raised, found.confirmed) == (1, 2)
    assert found.precision == 0.5
    assert score(labels, Outcome((), (), {})).precision is None


def test_labels_round_trip_beside_a_recording_and_a_bad_file_is_refused(tmp_path: Path) -> None:
    assert read_labels(tmp_path) == []  # a plain recording
    labels = [label("cam-a", "fire", "false_alarm"), label("cam-b", "loitering", "handled", 7)]
    document = {"labels": [vars(entry) for entry in labels]}
    (tmp_path / LABELS_FILE).write_text(json.dumps(document, default=str))
    assert read_labels(tmp_path) == labels
    (tmp_path / LABELS_FILE).write_text('{"labels": [{"camera_id": "x"}]}')
    with pytest.raises(RecordingError, match="not a labels file"):
        read_labels(tmp_path)


def camera_incident(camera: str, started: datetime) -> Incident:
    return Incident(
        id=deterministic_id("inc", "labels", camera),
        kind="fire",
        severity="urgent",
        source="vision",
        source_key=camera,
        title=f"Camera {camera}: fire",
        event_time=started,
        ingested_at_ms=epoch_ms(started),
    )


def detections(camera: str, at: datetime) -> FrameDetections:
    return FrameDetections(
        camera_id=camera,
        event_time=at,
        seq=int(at.timestamp()),
        frame_partition=0,
        frame_offset=0,
        ingested_at_ms=epoch_ms(at),
        model="labels-test",
        inference_ms=1.0,
        width=640,
        height=360,
        detections=[],
    )


@pytest.mark.integration
def test_record_labels_keeps_the_judged_cameras_detections_of_their_windows(
    live_stack: Settings, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    false_cam, real_cam, open_cam, other_cam = (
        f"cam-lbl-{name}-{tag}" for name in ("false", "real", "open", "other")
    )
    # The recorder reads a partition on to the first message `OUT_OF_ORDER_MS` (5 min) past the
    # span's end, so these back-dated detections must not be older than that compared with what
    # the session's other tests wrote just before them: -200 s .. +200 s around 4 min ago.
    started = datetime.now(UTC) - timedelta(minutes=4)
    judged = {false_cam: "false_alarm", real_cam: "resolve", open_cam: None}  # open: unjudged

    async def judge() -> None:
        store = Store(live_stack.database.dsn, 1)
        try:
            for camera, action in judged.items():
                incident = camera_incident(camera, started)
                await store.upsert_incident(incident)
                async with store.connection() as conn:
                    await fuse(conn, incident, FusionRules.load(), "labels-test")
                    if action is not None:
                        await lifecycle.change_status(conn, incident.id, action, "lan", None)
        finally:
            await store.close()

    asyncio.run(judge())
    offsets = [-200, -90, 0, 90, 200]  # seconds from the start; the margin is 120 s
    sent = [(camera, started + timedelta(seconds=s)) for camera in judged for s in offsets]
    sent += [(other_cam, started)]
    with KafkaProducer(bootstrap_servers=live_stack.kafka.bootstrap_servers, acks="all") as client:
        for camera, at in sent:
            client.send(
                topics.VISION_DETECTIONS,
                key=camera.encode(),
                value=detections(camera, at).to_bytes(),
                timestamp_ms=epoch_ms(at),
            ).get(30)

    out = tmp_path / "labelled"
    run = subprocess.run(
        [
            *(sys.executable, "-m", "ioc", "record", "--labels", "--margin", "120"),
            *("--from", (started - timedelta(minutes=1)).isoformat(), "--to", "now"),
            *("--out", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ) | {"COLUMNS": "200"},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert false_cam in run.stdout and "false alarms" in run.stdout
    mine = {
        (entry.camera_id, entry.resolution)
        for entry in read_labels(out)
        if entry.camera_id.endswith(tag)
    }
    assert mine == {(false_cam, "false_alarm"), (real_cam, "handled")}
    kept = [
        (message.key.decode(), message.timestamp_ms)
        for message in open_recording(out).messages()
        if message.key and message.key.decode().endswith(tag)
    ]
    expected = [
        (camera, epoch_ms(started + timedelta(seconds=s)))
        for camera in (false_cam, real_cam)
        for s in (-90, 0, 90)
    ]
    assert sorted(kept) == sorted(expected)

    nothing = subprocess.run(
        [
            *(sys.executable, "-m", "ioc", "record", "--labels"),
            *("--from", "2020-01-01T00:00", "--to", "2020-01-02T00:00"),
            *("--out", str(tmp_path / "none")),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert nothing.returncode == 1 and "no camera incident was judged" in nothing.stdout
