"""`ioc bench vision`: JPEG bytes → detections through the worker's path (`Detector.detect_jpegs`
in micro-batches) against the naive Ultralytics loop (`cv2.imdecode`, then `model.predict(frame)`
one frame at a time), with the same model on the same device, in the same run.

The naive loop runs as Ultralytics sets it up, its thread count included (cores − 1, at most 8:
one thread on two cores); the worker path uses every core. So that the gain of threads alone
shows, the naive loop's throughput on every core is measured too, where that differs.

Frames: the sample JPEGs (608 and 640 px squares) and the same scenes re-encoded at 1280x720, as
cameras send them, cycled to `frames`. Throughput: all frames as fast as each side goes (the
worker path in batches of `batch`), frames/s, median over rounds, rotating which side goes first
so drift hits all. Latency: frames arrive on a clock at `rate` frames/s (by default 80 %
of what the naive loop sustains, so the naive loop keeps up and the comparison is fair); the
worker path runs them in micro-batches flushed at `batch` frames or `batch_wait_ms` after the
oldest waiting frame arrived, the naive loop one by one (queueing when it falls behind); a
frame's latency is the time its detections are ready minus its arrival time.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from ioc.assets import SAMPLES_DIR
from ioc.config import VisionSettings
from ioc.devtools.bench.common import cpu_name, percentile
from ioc.vision.detector import Detector

Process = Callable[[Sequence[bytes]], object]
CAMERA_SIZE = (1280, 720)
CAMERA_QUALITY = 90
RATE_SHARE = 0.8  # default offered rate: this share of the naive loop's throughput
GPU_TARGET_FPS = 2000.0
P99_TARGET_MS = 250.0


def bench_frames(samples: Path = SAMPLES_DIR) -> list[bytes]:
    """The sample JPEGs, then each scene again at 1280x720."""
    originals = [path.read_bytes() for path in sorted((samples / "frames").glob("*/*.jpg"))]
    camera = []
    for data in originals:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
        resized = cv2.resize(image, CAMERA_SIZE, interpolation=cv2.INTER_AREA)
        _, encoded = cv2.imencode(".jpg", resized, [cv2.IMWRITE_JPEG_QUALITY, CAMERA_QUALITY])
        camera.append(encoded.tobytes())
    return originals + camera


@dataclass
class Side:
    """One side's figures, one entry per round."""

    throughput: list[float] = field(default_factory=list)  # frames/s
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.throughput)


@dataclass(frozen=True)
class VisionBenchResult:
    """What one run measured, for the table and for tests."""

    worker: Side
    naive: Side  # Ultralytics' defaults, its thread count included
    naive_all: Side  # the same loop on every core (throughput only; empty if that is the same)
    rate: float  # frames/s offered in the latency phase
    frames: int
    batch: int
    rounds: int
    device: str
    machine: str

    @property
    def ratio(self) -> float:
        return self.worker.median / self.naive.median


def throughput(process: Process, frames: list[bytes], batch: int) -> float:
    """Frames/s through `process`, called on consecutive slices of `batch` frames."""
    started = time.perf_counter()
    for start in range(0, len(frames), batch):
        process(frames[start : start + batch])
    return len(frames) / (time.perf_counter() - started)


def clocked_latencies(
    process: Process,
    frames: list[bytes],
    rate: float,
    batch: int,
    wait_s: float,
) -> list[float]:
    """Frame k arrives `k / rate` s after the start; whenever `process` is free it takes the
    waiting frames, as soon as `batch` are waiting or `wait_s` after the oldest arrived. One ms
    figure per frame: done − arrived."""
    started = time.perf_counter() + 0.05  # the first frame lands just after the clock starts

    def arrival(index: int) -> float:
        return started + index / rate

    def arrived_by(moment: float) -> int:
        return min(len(frames), int((moment - started) * rate) + 1)

    latencies: list[float] = []
    first = 0
    while first < len(frames):
        _sleep_until(arrival(first))
        full = min(len(frames), first + batch) - 1  # the frame that fills the batch
        _sleep_until(min(arrival(full), arrival(first) + wait_s))
        last = min(first + batch, arrived_by(time.perf_counter()))
        process(frames[first:last])
        done = time.perf_counter()
        latencies += [(done - arrival(index)) * 1000 for index in range(first, last)]
        first = last
    return latencies


def _sleep_until(moment: float) -> None:
    delay = moment - time.perf_counter()
    if delay > 0:
        time.sleep(delay)


def machine_line(device: str, cores: int, naive_threads: int) -> str:
    """The CPU, the cores this process may use (the worker path's threads), the naive loop's
    threads, and the GPU if any."""
    line = (
        f"{cpu_name()}, {cores} cores; torch {torch.__version__}, threads: worker path {cores},"
        f" naive loop {naive_threads} (Ultralytics' default)"
    )
    if device.startswith("cuda"):
        return f"{line}; {torch.cuda.get_device_name(torch.device(device))}"
    return f"{line}; device {device}"


def naive_loop(model: Any, vision: VisionSettings, device: str, threads: int) -> Process:
    """The loop a user writes first: decode, `predict` one frame, next; torch on `threads`."""

    def process(chunk: Sequence[bytes]) -> None:
        torch.set_num_threads(threads)
        for data in chunk:
            image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
            model.predict(
                image, imgsz=vision.image_size, conf=vision.min_score, device=device, verbose=False
            )

    return process


def run_bench(
    vision: VisionSettings,
    device: str,
    frames: int,
    batch: int,
    rounds: int,
    rate: float | None,
    console: Console,
) -> VisionBenchResult:
    from ultralytics import YOLO
    from ultralytics.utils import NUM_THREADS

    detector = Detector(
        vision.model_path,
        device=device,
        image_size=vision.image_size,
        min_score=vision.min_score,
        class_min_scores=vision.class_min_scores,
        half=vision.half,
    )
    model = YOLO(vision.model_path)
    cores = detector.pipeline.threads
    pool = bench_frames()
    sample = [pool[index % len(pool)] for index in range(frames)]
    worker, naive, naive_all = Side(), Side(), Side()
    sides: list[tuple[Side, Process, int]] = [
        (naive, naive_loop(model, vision, detector.device, NUM_THREADS), 1),
        (worker, detector.detect_jpegs, batch),
    ]
    if cores != NUM_THREADS:  # the naive loop with every core too: how much is threads alone
        sides.append((naive_all, naive_loop(model, vision, detector.device, cores), 1))
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("bench vision", total=(2 * len(sides) - 1) * rounds + 1)
        warm = pool[:batch] + pool[-batch:]  # both frame shapes, full and partial batches
        for _, process, size in sides:
            throughput(process, warm, size)
            process(warm[:1])
        bar.advance(task)
        for index in range(rounds):  # rotate, so drift hits all
            for side, process, size in sides[index % len(sides) :] + sides[: index % len(sides)]:
                side.throughput.append(throughput(process, sample, size))
                bar.advance(task)
        offered = rate or RATE_SHARE * naive.median
        wait_s = vision.batch_wait_ms / 1000
        for index in range(rounds):
            for side, process, size in sides[:2][:: 1 if index % 2 else -1]:
                latencies = clocked_latencies(process, sample, offered, size, wait_s)
                side.p50_ms.append(percentile(latencies, 0.5))
                side.p99_ms.append(percentile(latencies, 0.99))
                bar.advance(task)
    result = VisionBenchResult(
        worker,
        naive,
        naive_all,
        offered,
        frames,
        batch,
        rounds,
        detector.device,
        machine_line(detector.device, cores, NUM_THREADS),
    )
    render(result, Path(vision.model_path).name, vision.batch_wait_ms, console)
    return result


def render(result: VisionBenchResult, model: str, wait_ms: int, console: Console) -> None:
    worker, naive = result.worker, result.naive
    table = Table(
        "metric",
        f"worker path (detect_jpegs, batch ≤ {result.batch}, wait {wait_ms} ms)",
        "naive loop (imdecode + predict per frame)",
        "worker / naive",
        title=(
            f"ioc bench vision · {model} on {result.device} · {result.frames:,} frames × "
            f"{result.rounds} rounds; latency at {result.rate:,.1f} frames/s offered"
        ),
    )
    table.add_row(
        "throughput, median frames/s",
        f"{worker.median:,.1f}",
        f"{naive.median:,.1f}",
        f"{result.ratio:.2f}×",
    )
    table.add_row(
        "frames/s per round",
        ", ".join(f"{v:,.1f}" for v in worker.throughput),
        ", ".join(f"{v:,.1f}" for v in naive.throughput),
        "",
    )
    if result.naive_all.throughput:
        table.add_row(
            "naive loop on every core, median frames/s",
            "",
            f"{result.naive_all.median:,.1f}",
            f"{worker.median / result.naive_all.median:.2f}×",
        )
    for label, worker_ms, naive_ms in (
        ("frame → detections p50 ms, median", worker.p50_ms, naive.p50_ms),
        ("frame → detections p99 ms, median", worker.p99_ms, naive.p99_ms),
    ):
        table.add_row(
            label,
            f"{statistics.median(worker_ms):,.1f}",
            f"{statistics.median(naive_ms):,.1f}",
            f"{statistics.median(worker_ms) / statistics.median(naive_ms):.2f}×",
        )
    console.print(table)
    console.print(f"machine: {result.machine}")
    p99 = statistics.median(worker.p99_ms)
    targets = [
        (result.ratio > 1, f"worker path faster than the naive loop ({result.ratio:.2f}×)"),
        (p99 < P99_TARGET_MS, f"worker p99 < {P99_TARGET_MS:.0f} ms at the offered rate"),
    ]
    if result.device.startswith("cuda"):
        targets.append(
            (worker.median >= GPU_TARGET_FPS, f"≥ {GPU_TARGET_FPS:,.0f} frames/s on one GPU")
        )
    for met, text in targets:
        console.print(f"target {text}: " + ("[green]met[/]" if met else "[red]not met[/]"))
