"""An RTSP camera that drops and returns, end to end: GStreamer's RTSP server, `ioc cameras run`,
the vision worker and the streams worker's camera rules. The drop opens a `camera_offline`
incident (tests/data/camera_rules.toml: no frame for 6 s) and the return resolves it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ioc.config import Settings
from ioc.devtools.bench import rtsp_camera as rtsp
from tests.conftest import REPO, wait_for

pytestmark = pytest.mark.integration

MISSING = rtsp.missing()
CAMERA = "cam-test-rtsp"  # in tests/data/cameras.toml, so the workers know it


@contextmanager
def ingesting(url: str, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """`ioc cameras run` on the camera until the block ends (2 frames a second)."""
    registry = tmp_path / "cameras.toml"
    registry.write_text(
        f'[[cameras]]\nid = "{CAMERA}"\nname = "RTSP"\nurl = "{url}"\n'
        'district = "Test district"\nlat = 21.40\nlon = 105.70\nfps = 2\n'
    )
    log = (tmp_path / "cameras.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "ioc", "cameras", "run", "--camera", CAMERA],
        cwd=REPO,
        env=os.environ
        | {
            "IOC_CAMERAS__REGISTRY": str(registry),
            "IOC_CAMERAS__RECONNECT_INITIAL_S": "0.2",
            "IOC_CAMERAS__RECONNECT_MAX_S": "1.0",
            "COLUMNS": "200",
        },
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def offline_incidents(db: psycopg.Connection, since: datetime) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT id, status, event_time FROM incidents WHERE source_key = %s"
        " AND kind = 'camera_offline' AND event_time >= %s ORDER BY event_time",
        (CAMERA, since),
    ).fetchall()


def frames_since(db: psycopg.Connection, since: datetime) -> int:
    row = db.execute(
        "SELECT count(*) FROM camera_frames WHERE camera_id = %s AND ingested_at >= %s",
        (CAMERA, since),
    ).fetchone()
    return row[0] if row else 0


@pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
def test_a_camera_that_drops_opens_an_offline_incident_that_resolves_when_it_returns(
    workers: Settings, db: psycopg.Connection, tmp_path: Path
) -> None:
    # The workers judged this registered camera silent from their start: an offline episode that
    # its first frame resolved may precede the test. Only episodes that began after are this drop.
    started = datetime.now(UTC)
    with rtsp.RtspCamera("h264") as server, ingesting(server.url(), tmp_path) as camera:
        wait_for(lambda: frames_since(db, started) >= 3, 120, "frames from the RTSP camera")
        server.stop()
        opened = wait_for(
            lambda: [i for i in offline_incidents(db, started) if i],
            60,
            "the camera offline incident after the drop",
        )
        assert opened[-1][1] == "open"
        server.start()
        returned = datetime.now(UTC)
        wait_for(lambda: frames_since(db, returned) >= 1, 120, "frames after the return")
        resolved = wait_for(
            lambda: [
                i
                for i in offline_incidents(db, started)
                if i[0] == opened[-1][0] and i[1] == "resolved"
            ],
            60,
            "the offline incident resolved by the return",
        )
        assert camera.poll() is None, "the camera process rode out the drop"
    assert len(resolved) == 1
    assert len(offline_incidents(db, started)) == 1, "one drop, one incident"
