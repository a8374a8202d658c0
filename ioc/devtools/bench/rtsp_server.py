"""A real RTSP server for the camera tests and `ioc bench rtsp`: GStreamer's gst-rtsp-server,
through the system Python's `gi` (Debian: python3-gi, gir1.2-gst-rtsp-server-1.0), run as a child
process.

It serves rtsp://127.0.0.1:PORT/cam, H.264 or H.265, over TCP and UDP, optionally behind basic
authentication. Each frame is drawn here with the wall-clock time it was made, in milliseconds,
written as a row of black and white blocks (`ioc.vision` never sees this code: the test decodes
the blocks from what reached Kafka), so the latency from the "glass" to Kafka is measured, not
guessed.

    /usr/bin/python3 rtsp_server.py PORT h264|h265 [USER PASSWORD]

Prints "ready" once it listens. Runs until killed.
"""

from __future__ import annotations

import sys
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

WIDTH, HEIGHT, FPS = 320, 240, 10
BITS = 44  # milliseconds since the epoch fit in 44 bits until the year 2527
BLOCK = 7  # pixels per bit, wide and high: survives the encoder at the quality used here
TOP = 8  # rows above the blocks
GREY = 128
PAYLOADERS = {
    "h264": "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 bitrate=2000 "
    "! rtph264pay name=pay0 pt=96 config-interval=1",
    "h265": "x265enc tune=zerolatency speed-preset=ultrafast key-int-max=10 bitrate=2000 "
    "! rtph265pay name=pay0 pt=96 config-interval=1",
}


def frame(now_ms: int) -> bytes:
    """A grey GRAY8 image with `now_ms` in blocks, most significant bit first."""
    row = bytearray([GREY] * WIDTH)
    for bit in range(BITS):
        value = 255 if now_ms >> (BITS - 1 - bit) & 1 else 0
        start = BLOCK + bit * BLOCK
        row[start : start + BLOCK] = bytes([value]) * BLOCK
    grey = bytes([GREY]) * WIDTH
    return grey * TOP + bytes(row) * BLOCK + grey * (HEIGHT - TOP - BLOCK)


class ClockFactory(GstRtspServer.RTSPMediaFactory):
    def __init__(self, codec: str) -> None:
        super().__init__()
        self.codec = codec

    def do_create_element(self, url: object) -> Gst.Element:
        pipeline = Gst.parse_launch(
            f"appsrc name=clock is-live=true do-timestamp=true format=time "
            f"caps=video/x-raw,format=GRAY8,width={WIDTH},height={HEIGHT},framerate={FPS}/1 "
            f"! videoconvert ! video/x-raw,format=I420 ! {PAYLOADERS[self.codec]}"
        )
        source = pipeline.get_by_name("clock")
        source.connect("need-data", self.need_data)
        return pipeline

    @staticmethod
    def need_data(source: Gst.Element, _length: int) -> None:
        time.sleep(1 / FPS)  # a live camera: one frame per interval, each of its moment
        buffer = Gst.Buffer.new_wrapped(frame(time.time_ns() // 1_000_000))
        buffer.duration = Gst.SECOND // FPS
        source.emit("push-buffer", buffer)


def main() -> None:
    port, codec = sys.argv[1], sys.argv[2]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = ClockFactory(codec)
    factory.set_shared(True)
    if len(sys.argv) > 4:
        user, password = sys.argv[3], sys.argv[4]
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "camera")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("camera", "media.factory.access", True)
        permissions.add_permission_for_role("camera", "media.factory.construct", True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
