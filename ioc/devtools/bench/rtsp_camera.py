"""A real RTSP camera for the tests and `ioc bench rtsp` (`rtsp_server.py`, GStreamer's RTSP
server, in a child process of the system Python) and the clock its frames carry."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from ioc.devtools.stack.process import free_port

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER = Path(__file__).with_name("rtsp_server.py")
BITS, BLOCK, TOP = 44, 7, 8  # as rtsp_server.py draws them


def missing() -> str | None:
    """Why the tests cannot start a server here, or None."""
    probe = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
        "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
        "missing = [e for e in ('x264enc', 'x265enc', 'rtph264pay', 'rtph265pay', 'appsrc')"
        " if Gst.ElementFactory.find(e) is None]; print(' '.join(missing))"
    )
    try:
        found = subprocess.run(
            [SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=60
        )
    except FileNotFoundError:
        return f"{SYSTEM_PYTHON} not found"
    if found.returncode != 0:
        return "GStreamer's RTSP server is not installed (Debian: gir1.2-gst-rtsp-server-1.0)"
    if found.stdout.strip():
        return (
            f"GStreamer elements missing: {found.stdout.strip()} (Debian: "
            "gstreamer1.0-plugins-ugly for x264, gstreamer1.0-plugins-bad for x265)"
        )
    return None


def clock_of(image: np.ndarray) -> int:
    """The wall-clock milliseconds the server wrote into a frame (BGR, at its size)."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    row = TOP + BLOCK // 2
    value = 0
    for bit in range(BITS):
        value = value << 1 | int(grey[row, BLOCK + bit * BLOCK + BLOCK // 2] > 128)
    return value


class RtspCamera:
    """`with RtspCamera("h264") as camera:` serves rtsp://127.0.0.1:PORT/cam until the block
    ends; `stop()` and `start()` take it away and bring it back on the same port."""

    def __init__(self, codec: str, user: str | None = None, password: str | None = None) -> None:
        self.codec = codec
        self.credentials = [user, password] if user and password else []
        self.port = free_port()
        self.process: subprocess.Popen[str] | None = None

    def url(self, user: str | None = None, password: str | None = None) -> str:
        login = f"{user}:{password}@" if user else ""
        return f"rtsp://{login}127.0.0.1:{self.port}/cam"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [SYSTEM_PYTHON, str(SERVER), str(self.port), self.codec, *self.credentials],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,  # GStreamer is quiet unless something is wrong
            text=True,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":  # else pytest's timeout
            self.process.kill()
            _, errors = self.process.communicate(timeout=10)
            self.process = None
            raise RuntimeError(f"the RTSP server did not start: {errors[-2000:]}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def __enter__(self) -> RtspCamera:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()
