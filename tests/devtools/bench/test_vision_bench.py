"""`ioc bench vision`: its frames, its micro-batching clock, and one tiny run on the CPU that
prints every figure (never asserting speed)."""

from __future__ import annotations

import io
import time
from collections.abc import Sequence

import cv2
import numpy as np
from rich.console import Console

from ioc.config import VisionSettings
from ioc.devtools.bench.vision import bench_frames, clocked_latencies, run_bench


def test_frames_are_the_samples_then_the_same_scenes_at_camera_size() -> None:
    frames = bench_frames()
    half = len(frames) // 2
    shapes = [cv2.imdecode(np.frombuffer(f, np.uint8), cv2.IMREAD_COLOR).shape for f in frames]
    assert half > 0 and len(frames) == 2 * half
    assert all(shape[:2] in {(608, 608), (640, 640)} for shape in shapes[:half])
    assert all(shape == (720, 1280, 3) for shape in shapes[half:])


def test_the_clock_batches_what_has_arrived_and_measures_every_frame_once() -> None:
    """A model slower than the arrivals: batches fill up to the limit, never beyond, in order."""
    seen: list[list[bytes]] = []

    def slow(chunk: Sequence[bytes]) -> None:
        seen.append(list(chunk))
        time.sleep(0.02)

    frames = [bytes([i]) for i in range(30)]
    latencies = clocked_latencies(slow, frames, rate=500.0, batch=4, wait_s=0.005)
    assert [f for chunk in seen for f in chunk] == frames
    assert max(len(chunk) for chunk in seen) == 4
    assert len(latencies) == len(frames) and min(latencies) >= 0


def test_a_tiny_run_prints_both_sides_the_ratio_and_the_machine() -> None:
    out = io.StringIO()
    result = run_bench(
        VisionSettings(),
        "cpu",
        frames=4,
        batch=2,
        rounds=1,
        rate=None,
        console=Console(file=out, width=240),
    )
    text = out.getvalue()
    for figure in (
        "throughput, median frames/s",
        "p50 ms",
        "p99 ms",
        "worker / naive",
        f"{result.ratio:.2f}×",
        "machine:",
        "cores",
    ):
        assert figure in text, figure
    assert result.worker.throughput and result.naive.throughput
    assert len(result.worker.p99_ms) == len(result.naive.p99_ms) == 1
    assert result.rate > 0 and result.device == "cpu"
