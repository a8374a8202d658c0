"""As an operator would see it: a camera films a fire, and the running system turns the video into
an alerted incident with an annotated snapshot (ingest → vision worker → camera rules → alerts)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import psycopg
import pytest

from ioc.config import Settings
from tests.conftest import REPO, WebhookReceiver, wait_for

pytestmark = pytest.mark.integration
CAMERA = "cam-test-video"  # in tests/data/cameras.toml, so the workers know where it is


def film(frames: list[Path], clip: Path, fps: float) -> Path:
    """An MP4 clip of the frames, one after the other, as a camera's recording."""
    first = cv2.imread(str(frames[0]))
    size = (first.shape[1], first.shape[0])
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for path in frames:
        writer.write(cv2.resize(cv2.imread(str(path)), size))
    writer.release()
    return clip


def test_a_filmed_fire_becomes_one_alerted_incident_with_a_snapshot(
    workers: Settings, webhook: WebhookReceiver, samples_dir: Path, tmp_path: Path, db: Any
) -> None:
    clip = film(sorted((samples_dir / "frames" / "fire").glob("*.jpg")), tmp_path / "fire.mp4", 2)
    registry = tmp_path / "cameras.toml"
    registry.write_text(
        f'[[cameras]]\nid = "{CAMERA}"\nname = "Video"\nurl = "{clip}"\n'
        'district = "Test district"\nlat = 21.59\nlon = 105.84\nfps = 2\n'
    )
    ingest = subprocess.run(
        [sys.executable, "-m", "ioc", "cameras", "run", "--camera", CAMERA, "--frames", "8"],
        cwd=REPO,
        env=os.environ | {"IOC_CAMERAS__REGISTRY": str(registry), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr

    def snapshot() -> tuple[str, str, str, str] | None:
        return db.execute(
            "SELECT i.id, i.kind, i.severity, s.path FROM incidents AS i"
            " JOIN incident_snapshots AS s ON s.incident_id = i.id"
            " WHERE i.source = 'vision' AND i.source_key = %s AND i.status = 'open'",
            (CAMERA,),
        ).fetchone()

    incident_id, kind, severity, path = wait_for(snapshot, 180, "a fire incident with a snapshot")
    assert (kind, severity) == ("fire", "urgent")
    saved = cv2.imread(path)
    filmed = cv2.VideoCapture(str(clip))
    ok, first = filmed.read()
    filmed.release()
    assert ok and saved is not None and saved.shape == first.shape, "the frame, boxes drawn"
    # Paged as the incident it was fused into (earlier test fires nearby may have opened it).
    fused_id = wait_for(
        lambda: db.execute(
            "SELECT fused_id FROM incidents WHERE id = %s AND fused_id IS NOT NULL",
            (incident_id,),
        ).fetchone(),
        60,
        "the fire fused into an incident",
    )[0]
    wait_for(
        lambda: any(incident["id"] == fused_id for incident in webhook.incidents()),
        60,
        "the alert for the filmed fire",
    )

    # Real time, by design: a frame still waiting when a newer one of its camera arrives is
    # replaced, and counted on the frame that replaced it. None may go unaccounted for. The alert
    # can come before the last frames are judged (the fire is seen in earlier ones), so the
    # accounting is awaited, not read once.
    def accounted() -> tuple[int, int, int] | None:
        with psycopg.connect(workers.database.dsn) as conn:
            frames, replaced, opened = conn.execute(
                "SELECT count(*), coalesce(sum(dropped), 0),"
                " (SELECT count(*) FROM incidents WHERE source_key = %s AND kind = 'fire')"
                " FROM camera_frames WHERE camera_id = %s",
                (CAMERA, CAMERA),
            ).fetchone()
        return (frames, replaced, opened) if frames + replaced >= 8 else None

    frames, replaced, opened = wait_for(accounted, 60, "all 8 filmed frames judged or replaced")
    assert frames >= 1 and frames + replaced == 8, (
        f"{frames} frames judged + {replaced} replaced by newer ones, of 8 filmed"
    )
    assert opened == 1, "one fire, one incident"
