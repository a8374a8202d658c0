"""Camera ingest against a real RTSP server (GStreamer's, started here): H.264 and H.265 over TCP
and UDP; each frame the newest, not one queued seconds ago; a camera that drops and comes back is
read again; its password never reaches a log.

Each frame carries the wall-clock time the server made it (`rtsp.clock_of`), so a frame's age when
the reader hands it over is measured, not assumed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import cv2
import numpy as np
import pytest

from ioc.config import CameraSettings
from ioc.devtools.bench import rtsp_camera as rtsp
from ioc.models.registry import CameraSpec, RtspTransport
from ioc.vision.capture import CameraReader, CapturedFrame
from tests.conftest import wait_for

pytestmark = pytest.mark.integration

MISSING = rtsp.missing()
needs_server = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

# The reader's hand-over of a frame, at most this long after the server made it. Measured here:
# about 0.2 s; FFmpeg's probe buffer made the first frames of each connection about 3 s old.
FRESH_S = 1.5
SETTINGS = CameraSettings(reconnect_initial_s=0.2, reconnect_max_s=1.0)


def camera(transport: RtspTransport = "tcp", fps: float = 5.0) -> CameraSpec:
    return CameraSpec(
        id="cam-rtsp",
        name="Ngã tư thử nghiệm",
        url="set per test",
        district="Phường Phan Đình Phùng",
        lat=21.59,
        lon=105.85,
        fps=fps,
        rtsp_transport=transport,
    )


class Frames:
    """What a reader handed over, decoded, with the age of each frame at hand-over."""

    def __init__(self) -> None:
        self.images: list[np.ndarray] = []
        self.ages_s: list[float] = []

    def __call__(self, frame: CapturedFrame) -> None:
        image = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
        made_ms = rtsp.clock_of(image)
        self.images.append(image)
        self.ages_s.append(frame.headers.event_time.timestamp() - made_ms / 1000)


@contextmanager
def reading(reader: CameraReader) -> Iterator[threading.Thread]:
    """The reader in its thread, as `ioc cameras run` runs it; stopped at the block's end."""
    stop = threading.Event()
    thread = threading.Thread(target=reader.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(timeout=30)


@needs_server
@pytest.mark.parametrize("codec", ["h264", "h265"])
@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_frames_from_a_real_rtsp_server_are_the_newest(codec: str, transport: str) -> None:
    frames = Frames()
    with rtsp.RtspCamera(codec) as server:
        reader = CameraReader(
            camera(transport),  # type: ignore[arg-type]
            server.url(),
            SETTINGS,
            frames,
            max_frames=8,
        )
        with reading(reader) as thread:
            thread.join(timeout=60)
    assert not thread.is_alive() and reader.stats.state == "done", reader.stats
    assert len(frames.images) == 8
    assert frames.images[0].shape == (240, 320, 3)
    # Each is of its moment, the first ones of the connection too, and the clock moves on.
    assert all(0 <= age < FRESH_S for age in frames.ages_s), frames.ages_s
    made = [rtsp.clock_of(image) for image in frames.images]
    assert made == sorted(made) and made[-1] - made[0] >= 1000  # 8 frames at 5 fps


@needs_server
def test_a_camera_that_drops_is_read_again_when_it_returns_and_its_password_is_never_logged(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    password = "Mk-9f2c1e"
    frames = Frames()
    with rtsp.RtspCamera("h264", "operator", password) as server:
        reader = CameraReader(
            camera(), server.url("operator", password), SETTINGS, frames, max_frames=12
        )
        with reading(reader) as thread:
            wait_for(lambda: len(frames.images) >= 4, timeout=60, what="frames before the drop")
            server.stop()
            dropped_at = datetime.now(UTC)
            wait_for(lambda: reader.stats.reconnects >= 2, timeout=60, what="reconnect tries")
            before = len(frames.images)
            server.start()
            thread.join(timeout=60)
    assert reader.stats.state == "done" and len(frames.images) == 12, reader.stats
    assert reader.stats.last_error == "cannot open the stream"
    # The frames after the return were made after it: nothing stale was kept across the drop.
    after = frames.images[before:]
    assert after and all(rtsp.clock_of(image) / 1000 > dropped_at.timestamp() for image in after)
    assert all(age < FRESH_S for age in frames.ages_s), frames.ages_s
    logged = caplog.text + "".join(capfd.readouterr())
    assert "reconnecting" in logged
    assert password not in logged


@needs_server
def test_a_wrong_password_is_retried_without_reaching_a_log(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    wrong = "not-the-password-77"
    frames = Frames()
    with rtsp.RtspCamera("h264", "operator", "the-password") as server:
        reader = CameraReader(camera(), server.url("operator", wrong), SETTINGS, frames)
        with reading(reader):
            wait_for(lambda: reader.stats.reconnects >= 2, timeout=60, what="refused tries")
    assert not frames.images
    logged = caplog.text + "".join(capfd.readouterr())
    assert "cannot open the stream" in logged and wrong not in logged
