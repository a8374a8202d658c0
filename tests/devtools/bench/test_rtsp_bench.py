"""`ioc bench rtsp` on a short run: both sides read the real server's clock from their frames."""

from __future__ import annotations

import pytest
from rich.console import Console

from ioc.devtools.bench import rtsp_camera
from ioc.devtools.bench.rtsp import run_bench

MISSING = rtsp_camera.missing()


@pytest.mark.slow
@pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
def test_the_rtsp_bench_reads_the_age_of_every_frame_on_both_sides() -> None:
    console = Console(record=True, width=140)
    result = run_bench(frames=10, fps=2.0, codec="h264", console=console)
    assert len(result.ioc.ms) == len(result.naive.ms) == 10
    # Ages are positive (the clock is drawn before the frame is read) and ioc's stay fresh.
    assert min(result.ioc.ms) > 0 and min(result.naive.ms) > 0
    assert result.ioc.p99 < 1500
    text = console.export_text()
    assert "ioc cameras → Kafka" in text and "naive cv2 loop" in text and "fresher" in text
