"""Where camera frames come from: live streams, video files and image folders behind one `read()`,
so that the camera reader samples, paces and reconnects them all the same way."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from ioc.models.registry import RtspTransport

log = logging.getLogger(__name__)

STREAM_TIMEOUT_MS = 10_000
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


@dataclass(frozen=True)
class Frame:
    """A BGR image and where it sits on its source's timeline: media time (seconds) for files and
    folders, the monotonic clock for live streams."""

    image: np.ndarray
    position_s: float


class SourceError(Exception):
    """The source cannot be opened now; the reader backs off and tries again."""


class FrameSource(Protocol):
    """Live sources are read as fast as they deliver; the others are paced to their positions."""

    live: bool
    frame_interval_s: float | None

    def read(self) -> Frame | None:
        """The next frame; None when a live stream is lost or a file or folder has ended."""
        ...

    def close(self) -> None: ...


def capture_options(url: str, transport: RtspTransport) -> str:
    """FFmpeg's options for a live stream, in OpenCV's `key;value|…` form.

    Without `nobuffer`, FFmpeg's stream probing queued about 3 s of frames at open that the reader
    then decoded in order, so the first frames of every (re)connection were seconds old
    (tests/vision/test_rtsp.py measures the age of each frame). `rtsp_transport` picks interleaved
    TCP or UDP media."""
    options = ["fflags;nobuffer", "flags;low_delay"]
    if url.lower().startswith("rtsp"):
        options.insert(0, f"rtsp_transport;{transport}")
    return "|".join(options)


# OpenCV reads FFmpeg's options from the environment when a stream opens, and cameras open in
# threads of their own: one opens at a time, with its own options.
_OPENING = threading.Lock()
OPTIONS_VARIABLE = "OPENCV_FFMPEG_CAPTURE_OPTIONS"


class StreamSource:
    """rtsp:// or http(s):// (MJPEG) through FFmpeg, with timeouts so a stalled camera is noticed
    instead of blocking its reader for ever, and without buffering, so each frame read is the
    newest."""

    live: bool = True
    frame_interval_s: float | None = None

    def __init__(self, url: str, transport: RtspTransport = "tcp") -> None:
        with _OPENING:
            saved = os.environ.get(OPTIONS_VARIABLE)
            os.environ[OPTIONS_VARIABLE] = capture_options(url, transport)
            try:
                self._capture = cv2.VideoCapture(
                    url,
                    cv2.CAP_FFMPEG,
                    [
                        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                        STREAM_TIMEOUT_MS,
                        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                        STREAM_TIMEOUT_MS,
                    ],
                )
            finally:
                if saved is None:
                    os.environ.pop(OPTIONS_VARIABLE, None)
                else:
                    os.environ[OPTIONS_VARIABLE] = saved
        if not self._capture.isOpened():
            raise SourceError("cannot open the stream")

    def read(self) -> Frame | None:
        ok, image = self._capture.read()
        return Frame(image, time.monotonic()) if ok else None

    def close(self) -> None:
        self._capture.release()


class VideoFileSource:
    """A video file on its own timestamps. With `loop` it starts over at the end and positions
    keep growing, so sampling and pacing run on as over an endless file."""

    live: bool = False

    def __init__(self, path: Path, loop: bool) -> None:
        self._path = path
        self._loop = loop
        self._capture = self._open()
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.frame_interval_s: float | None = 1 / fps if fps > 0 else None
        self._offset_s = 0.0
        self._last_s: float | None = None

    def _open(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(str(self._path))
        if not capture.isOpened():
            raise SourceError(f"not a readable video: {self._path}")
        return capture

    def read(self) -> Frame | None:
        ok, image = self._capture.read()
        if not ok and self._loop and self._last_s is not None:
            self._offset_s += self._last_s + (self.frame_interval_s or 0.0)
            self._last_s = None
            self._capture.release()
            self._capture = self._open()
            ok, image = self._capture.read()
        if not ok:
            return None
        self._last_s = self._capture.get(cv2.CAP_PROP_POS_MSEC) / 1000
        return Frame(image, self._offset_s + self._last_s)

    def close(self) -> None:
        self._capture.release()


class ImageFolderSource:
    """A folder's images in name order, played as a video of one image per `interval_s`."""

    live: bool = False

    def __init__(self, folder: Path, interval_s: float, loop: bool) -> None:
        self._paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._paths:
            raise SourceError(f"no images in {folder}")
        self.frame_interval_s: float | None = interval_s
        self._interval_s = interval_s
        self._loop = loop
        self._next = 0

    def read(self) -> Frame | None:
        for _ in self._paths:
            lap, index = divmod(self._next, len(self._paths))
            if lap and not self._loop:
                return None
            position_s = self._next * self._interval_s
            self._next += 1
            image = cv2.imread(str(self._paths[index]), cv2.IMREAD_COLOR)
            if image is not None:
                return Frame(image, position_s)
            log.warning("skipping %s: not a decodable image", self._paths[index])
        return None

    def close(self) -> None:
        return None


def open_source(
    url: str, interval_s: float, loop: bool, transport: RtspTransport = "tcp"
) -> FrameSource:
    """A live stream for any URL, else a folder of images or a video file."""
    if "://" in url:
        return StreamSource(url, transport)
    path = Path(url)
    if path.is_dir():
        return ImageFolderSource(path, interval_s, loop)
    if path.is_file():
        return VideoFileSource(path, loop)
    raise SourceError(f"no such file or folder: {path}")
