"""`ioc vision` (the inference worker, detection on files) and `ioc cameras` (camera ingest)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

import typer
from rich.table import Table

from ioc.commandline import console, fail, setup_logging
from ioc.config import get_settings
from ioc.models.registry import load_camera_registry

vision_app = typer.Typer(help="The YOLO inference worker.", no_args_is_help=True)


cameras_app = typer.Typer(
    help="Camera ingest: the registry's cameras to ioc.camera.frames.", no_args_is_help=True
)


@vision_app.command("run")
def vision_run_command() -> None:
    """Run the YOLO inference worker on camera frames until stopped."""
    from ioc.vision.worker import run_worker

    setup_logging()
    run_worker(get_settings())


@vision_app.command("detect")
def vision_detect_command(
    paths: Annotated[list[Path], typer.Argument(help="Image files or folders of images.")],
    model: Annotated[
        str | None, typer.Option(help="Any Ultralytics model (default: vision.model_path).")
    ] = None,
    conf: Annotated[
        float | None,
        typer.Option(
            min=0,
            max=1,
            help="Flag threshold (default: the camera rules' fire min_score, as the pipeline).",
        ),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda:0, … (default: vision.device).")
    ] = None,
) -> None:
    """Detect on images with the worker's code: one JSON line per image (path, detections,
    fire/smoke flags). Exits 2 if any file could not be read as an image."""
    from ioc.rules.camera.registry import CameraRuleSet
    from ioc.vision.detect import FrameFlags, detect_lines, image_paths, to_json
    from ioc.vision.detector import Detector

    settings = get_settings()
    fire = CameraRuleSet.load(settings.cameras.rules).fire
    threshold = fire.min_score if conf is None else conf
    try:
        detector = Detector(
            model or settings.vision.model_path,
            device=device or settings.vision.device,
            image_size=settings.vision.image_size,
            min_score=min(settings.vision.min_score, threshold),
            class_min_scores=settings.vision.class_min_scores,
            half=settings.vision.half,
        )
    except FileNotFoundError as error:
        fail(error)
    flags = FrameFlags(fire.classes, threshold)
    failed = False
    for line in detect_lines(detector, image_paths(paths), flags, settings.vision.batch_size):
        failed |= "error" in line
        print(to_json(line), flush=True)
    raise typer.Exit(2 if failed else 0)


def _without_password(url: str) -> str:
    """Stream URLs may carry credentials; a listing must not show them."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


@cameras_app.command("list")
def cameras_list_command() -> None:
    """The cameras of the registry (cameras.registry, default bundled) with their zones."""
    try:
        registry = load_camera_registry(get_settings().cameras.registry)
    except (OSError, ValueError) as error:
        fail(error)
    table = Table("id", "name", "url", "district", "fps", "zones")
    for camera in registry.cameras:
        zones = ", ".join(f"{zone.name} ({zone.kind})" for zone in camera.zones)
        table.add_row(
            camera.id,
            camera.name,
            _without_password(camera.url),
            camera.district,
            f"{camera.fps:g}",
            zones,
        )
    console.print(table)


@cameras_app.command("run")
def cameras_run_command(
    camera: Annotated[
        list[str] | None, typer.Option(help="Only this camera id (repeatable; default all).")
    ] = None,
    duration: Annotated[
        float | None, typer.Option(min=0.1, help="Stop after this many seconds.")
    ] = None,
    frames: Annotated[
        int | None, typer.Option(min=1, help="Stop each camera after this many frames.")
    ] = None,
) -> None:
    """Read each camera (RTSP, HTTP MJPEG, video file, image folder) at its fps and publish JPEG
    frames to ioc.camera.frames until stopped. Exits 1 if any frame could not be published."""
    from aiokafka.errors import KafkaError
    from rich.live import Live

    from ioc.runtime import run_until_signal
    from ioc.vision.capture import CameraIngest, stats_table

    settings = get_settings()
    try:
        registry = load_camera_registry(settings.cameras.registry)
    except (OSError, ValueError) as error:
        fail(error)
    wanted = camera or [spec.id for spec in registry.cameras]
    unknown = [camera_id for camera_id in wanted if registry.get(camera_id) is None]
    if unknown:
        known = ", ".join(spec.id for spec in registry.cameras)
        fail(ValueError(f"unknown camera(s) {', '.join(unknown)}; known: {known}"))
    cameras = [spec for spec in registry.cameras if spec.id in wanted]
    ingest = CameraIngest(settings, registry, cameras, max_frames=frames, duration_s=duration)
    try:
        with Live(
            get_renderable=lambda: stats_table(ingest.stats.values()),
            console=console,
            transient=True,
        ):
            setup_logging()  # inside Live, so log lines print above the status table
            run_until_signal(lambda: ingest)
    except KafkaError as error:
        fail(error)
    console.print(stats_table(ingest.stats.values()))
    raise typer.Exit(1 if any(stats.lost for stats in ingest.stats.values()) else 0)
