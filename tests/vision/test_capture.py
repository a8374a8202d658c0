"""Camera ingest on real video: clips written with OpenCV from the sample frames, an image folder
and an HTTP MJPEG server, read through the same reader as a camera, published to the real Kafka."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from ioc.config import CameraSettings, Settings
from ioc.kafka import topics
from ioc.models import FrameHeaders
from ioc.models.registry import CameraRegistry, CameraSpec
from ioc.vision.capture import (
    Backoff,
    CameraIngest,
    CameraReader,
    CapturedFrame,
    FrameTooLarge,
    Sampler,
    encode_frame,
)
from tests.conftest import REPO, end_offsets, published_since

SIDE = 320
FAST_RETRY = {"reconnect_initial_s": 0.05, "reconnect_max_s": 0.4}


def camera(camera_id: str, url: str, fps: float) -> CameraSpec:
    return CameraSpec(
        id=camera_id, name=camera_id, url=url, district="Test", lat=21.59, lon=105.84, fps=fps
    )


@pytest.fixture(scope="module")
def images(samples_dir: Path) -> list[np.ndarray]:
    """Eight distinct sample frames (fire, traffic, negative) at one clip size."""
    paths = sorted((samples_dir / "frames").glob("*/*.jpg"))[::3][:8]
    return [cv2.resize(cv2.imread(str(path)), (SIDE, SIDE)) for path in paths]


def write_clip(path: Path, fourcc: str, fps: float, frames: list[np.ndarray]) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (SIDE, SIDE))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def nearest(jpeg: bytes, candidates: list[np.ndarray]) -> int:
    """Which candidate a published frame shows (codecs blur, distinct scenes stay apart)."""
    image = cv2.resize(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), (SIDE, SIDE))
    errors = [np.abs(image.astype(int) - c.astype(int)).mean() for c in candidates]
    return int(np.argmin(errors))


def read_all(reader: CameraReader) -> None:
    reader.run(threading.Event())


def reader_for(
    url: str,
    fps: float,
    sink: list[CapturedFrame],
    max_frames: int | None = None,
    **settings: object,
) -> CameraReader:
    cameras = CameraSettings(**(FAST_RETRY | settings))
    return CameraReader(
        camera("cam-test", url, fps), url, cameras, sink.append, max_frames=max_frames
    )


def test_an_mp4_clip_is_sampled_by_its_own_timestamps(
    images: list[np.ndarray], tmp_path: Path
) -> None:
    frames = [images[i % len(images)] for i in range(25)]
    clip = write_clip(tmp_path / "clip.mp4", "mp4v", 25, frames)
    sink: list[CapturedFrame] = []
    reader = reader_for(str(clip), 5, sink, loop_files=False)
    read_all(reader)
    assert [nearest(f.jpeg, images) for f in sink] == [i % len(images) for i in (0, 5, 10, 15, 20)]
    assert [f.headers.seq for f in sink] == [0, 1, 2, 3, 4]
    assert reader.stats.state == "ended"
    assert reader.stats.reconnects == 0


def test_an_mjpeg_avi_loops_and_stops_after_n_frames(
    images: list[np.ndarray], tmp_path: Path
) -> None:
    clip = write_clip(tmp_path / "clip.avi", "MJPG", 10, images[:6])
    sink: list[CapturedFrame] = []
    reader = reader_for(str(clip), 10, sink, max_frames=9, loop_files=True)
    read_all(reader)
    assert [nearest(f.jpeg, images) for f in sink] == [0, 1, 2, 3, 4, 5, 0, 1, 2]
    assert [f.headers.seq for f in sink] == list(range(9))
    assert reader.stats.state == "done"


def test_an_image_folder_plays_in_name_order_and_wide_frames_are_resized(
    images: list[np.ndarray], tmp_path: Path
) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), images[0])
    cv2.imwrite(str(folder / "b.png"), cv2.resize(images[1], (2400, 1200)))
    (folder / "c.jpg").write_bytes(b"not a jpeg")
    cv2.imwrite(str(folder / "d.jpg"), images[2])
    (folder / "notes.txt").write_text("ignored")
    sink: list[CapturedFrame] = []
    reader = reader_for(str(folder), 20, sink, loop_files=False, max_width=640)
    read_all(reader)
    assert [nearest(f.jpeg, images) for f in sink] == [0, 1, 2]
    wide = cv2.imdecode(np.frombuffer(sink[1].jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert wide.shape[:2] == (320, 640)
    assert reader.stats.resized == 1


def test_a_frame_too_large_lowers_quality_then_is_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    noise = np.random.default_rng(7).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    best = len(cv2.imencode(".jpg", noise, [cv2.IMWRITE_JPEG_QUALITY, 85])[1])
    encoded = encode_frame(noise, 1280, 85, max_bytes=best - 1)
    assert encoded.quality < 85
    assert len(encoded.jpeg) < best
    with pytest.raises(FrameTooLarge):
        encode_frame(noise, 1280, 85, max_bytes=1000)

    folder = tmp_path / "noise"
    folder.mkdir()
    cv2.imwrite(str(folder / "noise.png"), noise)
    sink: list[CapturedFrame] = []
    cameras = CameraSettings(loop_files=False)
    reader = CameraReader(
        camera("cam-noise", str(folder), 10), str(folder), cameras, sink.append, max_bytes=1000
    )
    read_all(reader)
    assert sink == []
    assert reader.stats.too_large == 1
    assert "cam-noise: frame not published" in caplog.text


def test_sampling_and_backoff_rules() -> None:
    sampler = Sampler(fps=2, frame_interval_s=0.1)
    assert [i for i in range(30) if sampler.take(i / 10)] == [0, 5, 10, 15, 20, 25]
    backoff = Backoff(1, 5)
    assert [backoff.next_wait() for _ in range(5)] == [1, 2, 4, 5, 5]
    backoff.reset()
    assert backoff.next_wait() == 1


class MjpegServer:
    """A camera's HTTP MJPEG endpoint: 404 for the first `missing` requests, then a stream; the
    first stream drops the connection after `first_frames`."""

    def __init__(self, jpegs: list[bytes], missing: int, first_frames: int | None) -> None:
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                if server.requests <= missing:
                    self.send_error(404)
                    return
                count = first_frames if server.requests == missing + 1 and first_frames else 2000
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    for index in range(count):
                        jpeg = jpegs[index % len(jpegs)]
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\n"
                            + f"Content-Length: {len(jpeg)}\r\n\r\n".encode()
                            + jpeg
                            + b"\r\n"
                        )
                        time.sleep(0.04)
                except (BrokenPipeError, ConnectionResetError):
                    return

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/camera.mjpg"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jpegs(images: list[np.ndarray]) -> list[bytes]:
    return [cv2.imencode(".jpg", image)[1].tobytes() for image in images]


@pytest.fixture
def mjpeg_server(request: pytest.FixtureRequest, jpegs: list[bytes]) -> Iterator[MjpegServer]:
    missing, first_frames = request.param
    server = MjpegServer(jpegs, missing, first_frames)
    yield server
    server.close()


@pytest.mark.parametrize("mjpeg_server", [(0, 5)], indirect=True)
def test_an_mjpeg_stream_that_drops_is_reconnected_and_frames_go_on(
    mjpeg_server: MjpegServer,
) -> None:
    sink: list[CapturedFrame] = []
    reader = reader_for(mjpeg_server.url, 10, sink, max_frames=8)
    read_all(reader)
    assert [f.headers.seq for f in sink] == list(range(8))
    assert reader.stats.reconnects == 1
    assert reader.stats.last_error == "stream lost"
    assert mjpeg_server.requests == 2
    times = [f.headers.event_time for f in sink]
    assert times == sorted(times)


@pytest.mark.parametrize("mjpeg_server", [(3, None)], indirect=True)
def test_a_stream_that_appears_later_is_waited_for_with_growing_backoff(
    mjpeg_server: MjpegServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "ioc.vision.capture")
    sink: list[CapturedFrame] = []
    reader = reader_for(mjpeg_server.url, 10, sink, max_frames=3)
    read_all(reader)
    assert len(sink) == 3
    assert reader.stats.reconnects == 3
    waits = [
        r.getMessage().rpartition("reconnecting in ")[2]
        for r in caplog.records
        if r.name == "ioc.vision.capture"
    ]
    assert waits == ["0.05 s", "0.1 s", "0.2 s"]


def frames_of(records: list, camera_id: str) -> list:
    return sorted((r for r in records if r.key == camera_id.encode()), key=lambda r: r.offset)


@pytest.mark.integration
def test_cameras_publish_keyed_frames_with_headers_to_kafka(
    live_stack: Settings, images: list[np.ndarray], tmp_path: Path
) -> None:
    tag = f"{time.time_ns() % 10**9}"
    write_clip(tmp_path / "clip.mp4", "mp4v", 25, [images[i % 8] for i in range(50)])
    folder = tmp_path / "wide"
    folder.mkdir()
    cv2.imwrite(str(folder / "wide.jpg"), cv2.resize(images[3], (2400, 1600)))
    clip_camera, wide_camera = (
        camera(f"cam-clip-{tag}", "clip.mp4", 5),
        camera(f"cam-wide-{tag}", "wide", 10),
    )
    registry = CameraRegistry(cameras=[clip_camera, wide_camera], base_dir=tmp_path)
    settings = live_stack.model_copy(update={"cameras": CameraSettings(max_width=800)})
    before = end_offsets(live_stack, topics.CAMERA_FRAMES)

    ingest = CameraIngest(settings, registry, registry.cameras, max_frames=5)
    asyncio.run(ingest.run(asyncio.Event()))

    records = published_since(live_stack, topics.CAMERA_FRAMES, before)
    clip_frames = frames_of(records, clip_camera.id)
    headers = [FrameHeaders.from_kafka(r.headers) for r in clip_frames]
    assert [h.camera_id for h in headers] == [clip_camera.id] * 5
    assert [h.seq for h in headers] == [0, 1, 2, 3, 4]
    assert [nearest(r.value, images) for r in clip_frames] == [0, 5 % 8, 10 % 8, 15 % 8, 20 % 8]
    times = [h.event_time for h in headers]
    assert all(t.tzinfo is not None for t in times)
    assert (times[-1] - times[0]).total_seconds() >= 4 / 5 * 0.9  # paced like a live camera

    wide_frames = frames_of(records, wide_camera.id)
    assert [FrameHeaders.from_kafka(r.headers).seq for r in wide_frames] == [0, 1, 2, 3, 4]
    for record in wide_frames:
        image = cv2.imdecode(np.frombuffer(record.value, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape[:2] == (533, 800)
    assert ingest.stats[wide_camera.id].resized == 5
    assert ingest.stats[clip_camera.id].published == 5


@pytest.mark.integration
def test_ioc_cameras_run_publishes_n_frames_and_prints_a_summary(
    live_stack: Settings, images: list[np.ndarray], tmp_path: Path
) -> None:
    camera_id = f"cam-cli-{time.time_ns() % 10**9}"
    (tmp_path / "frames").mkdir()
    for index in range(3):
        cv2.imwrite(str(tmp_path / "frames" / f"{index}.jpg"), images[index])
    registry = tmp_path / "cameras.toml"
    registry.write_text(
        f'[[cameras]]\nid = "{camera_id}"\nname = "CLI"\nurl = "frames"\n'
        'district = "Test"\nlat = 21.59\nlon = 105.84\nfps = 10\n\n'
        '[[cameras]]\nid = "cam-other"\nname = "Other"\nurl = "/nowhere"\n'
        'district = "Test"\nlat = 21.59\nlon = 105.84\n'
    )
    env = os.environ | {"IOC_CAMERAS__REGISTRY": str(registry)}
    before = end_offsets(live_stack, topics.CAMERA_FRAMES)

    def ioc(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ioc", "cameras", *args],
            cwd=REPO,
            env=env | {"COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=120,
        )

    listed = ioc("list")
    assert listed.returncode == 0, listed.stderr
    assert camera_id in listed.stdout and "cam-other" in listed.stdout
    unknown = ioc("run", "--camera", "cam-nope")
    assert unknown.returncode == 1
    assert "unknown camera(s) cam-nope" in unknown.stdout
    result = ioc("run", "--camera", camera_id, "--frames", "4")
    assert result.returncode == 0, result.stdout + result.stderr
    summary = next(line for line in result.stdout.splitlines() if camera_id in line)
    assert re.split(r"\s*[│|]\s*", summary)[1:4] == [camera_id, "done", "4"]

    records = frames_of(published_since(live_stack, topics.CAMERA_FRAMES, before), camera_id)
    headers = [FrameHeaders.from_kafka(r.headers) for r in records]
    assert [h.seq for h in headers] == [0, 1, 2, 3]
    assert [nearest(r.value, images) for r in records] == [0, 1, 2, 0]
