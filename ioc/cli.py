"""The `ioc` command."""

from __future__ import annotations

import json
import logging
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

import typer
from rich.console import Console
from rich.table import Table

from ioc.alerts.commands import incidents_app
from ioc.assets import SAMPLES_DIR
from ioc.config import Settings, get_settings
from ioc.devtools.stack import StackError, stack_down, stack_status, stack_up
from ioc.hotline.commands import triage_app
from ioc.models.registry import load_camera_registry
from ioc.runtime import run_async

# Piped into a file or a CI log, rich would wrap every table at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
SamplesOption = Annotated[Path, typer.Option(help="Folder with frames/ and tickets_1022.jsonl.")]
app = typer.Typer(
    help="ioc: an Intelligent Operations Centre stream processor.", no_args_is_help=True
)
stack_app = typer.Typer(
    help="The native local stack (Kafka, PostgreSQL; optionally Mosquitto, Alertmanager).",
    no_args_is_help=True,
)
streams_app = typer.Typer(help="The Faust stream agents.", no_args_is_help=True)
vision_app = typer.Typer(help="The YOLO inference worker.", no_args_is_help=True)
alerts_app = typer.Typer(help="Alert delivery to hotline staff.", no_args_is_help=True)
scenario_app = typer.Typer(help="Publish sample inputs.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(streams_app, name="streams")
app.add_typer(vision_app, name="vision")
app.add_typer(alerts_app, name="alerts")
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
tickets_app = typer.Typer(help="1022 hotline tickets.", no_args_is_help=True)
sensors_app = typer.Typer(help="IoT sensors.", no_args_is_help=True)
app.add_typer(sensors_app, name="sensors")
bench_app = typer.Typer(
    help="Benchmarks against a baseline measured in the same run.", no_args_is_help=True
)
app.add_typer(tickets_app, name="tickets")
app.add_typer(bench_app, name="bench")
app.add_typer(scenario_app, name="scenario")
app.add_typer(db_app, name="db")
grafana_app = typer.Typer(
    help="Grafana walls: generate the JSON, push to a Grafana.", no_args_is_help=True
)
app.add_typer(grafana_app, name="grafana")
cameras_app = typer.Typer(
    help="Camera ingest: the registry's cameras to ioc.camera.frames.", no_args_is_help=True
)
app.add_typer(cameras_app, name="cameras")
app.add_typer(incidents_app, name="incidents")
app.add_typer(triage_app, name="triage")


class _OriginOnly(logging.Filter):
    """httpx logs each request's full URL at INFO; a webhook's path or query and a URL's
    password are credentials, so only scheme, host and port reach the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 2:
            url = urlsplit(str(args[1]))
            if url.scheme and url.hostname:
                port = f":{url.port}" if url.port else ""
                record.args = (args[0], f"{url.scheme}://{url.hostname}{port}", *args[2:])
        return True


def _setup_logging() -> None:
    level = get_settings().log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").addFilter(_OriginOnly())


def _clean_up_on_sigterm() -> None:
    """For commands that start a stack and workers: SIGTERM unwinds like Ctrl-C, so they stop
    what they started instead of leaving Kafka and PostgreSQL running."""

    def terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)


def _fail(error: Exception) -> None:
    console.print(f"[bold red]error:[/] {error}", soft_wrap=True)  # one line, for scripts
    raise typer.Exit(1)


@stack_app.command("up")
def stack_up_command(
    brokers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Kafka nodes (default: stack.kafka_brokers, 1). 3 runs a KRaft cluster like "
            "docker-compose.yml's (replication factor 3, min.insync.replicas 2, PLAINTEXT): "
            "one broker can be lost without losing an acknowledged write.",
        ),
    ] = None,
) -> None:
    """Start Kafka and PostgreSQL (and Mosquitto, Alertmanager when enabled) if not running,
    create topics, apply migrations."""
    settings = get_settings() if brokers is None else Settings(stack={"kafka_brokers": brokers})
    try:
        with console.status("starting the local stack…") as status:
            services, topics, report = stack_up(settings, progress=status.update)
    except StackError as error:
        _fail(error)
    for name, outcome in services.items():
        console.print(f"[green]✓[/] {name}: {outcome}")
    if settings.stack.kafka_brokers > 1:
        console.print(
            "  [dim]every ioc process sees the cluster with "
            f"IOC_STACK__KAFKA_BROKERS={settings.stack.kafka_brokers}[/]"
        )
    if "alertmanager" in services and not settings.alerts.alertmanager_url:
        console.print(
            "  [dim]alerts go to it with "
            f"IOC_ALERTS__ALERTMANAGER_URL=http://127.0.0.1:{settings.stack.alertmanager_port}[/]"
        )
    created = [name for name, outcome in topics.items() if outcome == "created"]
    console.print(f"[green]✓[/] topics: {len(topics)} ({len(created)} created)")
    console.print(
        f"[green]✓[/] schema: {len(report.applied)} migration(s) applied; {report.storage}"
    )


@stack_app.command("down")
def stack_down_command() -> None:
    """Stop what `ioc stack up` started, and nothing else."""
    try:
        stopped = stack_down(get_settings())
    except StackError as error:
        _fail(error)
    for name, was_running in stopped.items():
        console.print(f"{name}: {'stopped' if was_running else 'was not running'}")


@stack_app.command("status")
def stack_status_command() -> None:
    """Each local service, its address and health. Exits 1 if any is unhealthy."""
    table = Table("service", "address", "running", "healthy", "detail")
    healths = stack_status(get_settings())
    for health in healths:
        table.add_row(
            health.service,
            health.address,
            "yes" if health.running else "no",
            "[green]yes[/]" if health.healthy else "[red]no[/]",
            health.detail,
        )
    console.print(table)
    if not all(health.healthy for health in healths):
        raise typer.Exit(1)


@streams_app.command("run")
def streams_run_command() -> None:
    """Run the Faust agents (hotline, sensors, camera rules) until stopped."""
    from ioc.config import MissingSecret
    from ioc.hotline.model import TriageModelError
    from ioc.streams.app import run_worker

    try:
        run_worker(get_settings())
    except (TriageModelError, MissingSecret) as error:
        _fail(error)


@vision_app.command("run")
def vision_run_command() -> None:
    """Run the YOLO inference worker on camera frames until stopped."""
    from ioc.vision.worker import run_worker

    _setup_logging()
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
        _fail(error)
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
        _fail(error)
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
        _fail(error)
    wanted = camera or [spec.id for spec in registry.cameras]
    unknown = [camera_id for camera_id in wanted if registry.get(camera_id) is None]
    if unknown:
        known = ", ".join(spec.id for spec in registry.cameras)
        _fail(ValueError(f"unknown camera(s) {', '.join(unknown)}; known: {known}"))
    cameras = [spec for spec in registry.cameras if spec.id in wanted]
    ingest = CameraIngest(settings, registry, cameras, max_frames=frames, duration_s=duration)
    try:
        with Live(
            get_renderable=lambda: stats_table(ingest.stats.values()),
            console=console,
            transient=True,
        ):
            _setup_logging()  # inside Live, so log lines print above the status table
            run_until_signal(lambda: ingest)
    except KafkaError as error:
        _fail(error)
    console.print(stats_table(ingest.stats.values()))
    raise typer.Exit(1 if any(stats.lost for stats in ingest.stats.values()) else 0)


@alerts_app.command("run")
def alerts_run_command() -> None:
    """Deliver each new incident to the console and the configured webhook until stopped."""
    from ioc.alerts.consumer import run_consumer

    _setup_logging()
    run_consumer(get_settings())


@app.command("record")
def record_command(
    from_: Annotated[
        str,
        typer.Option(
            "--from",
            metavar="TIME",
            help="Start of the window (inclusive), ISO 8601. A time without an offset is Vietnam "
            "time (UTC+7): 2026-03-01T08:00 is 2026-03-01T01:00:00Z.",
        ),
    ],
    to: Annotated[
        str,
        typer.Option(
            "--to",
            metavar="TIME",
            help="End of the window (exclusive), ISO 8601 like --from, or 'now'.",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", metavar="DIR", help="A new (or empty) directory for the recording."),
    ],
    topics: Annotated[
        list[str] | None,
        typer.Option(
            "--topics",
            metavar="TOPIC[,TOPIC…]",
            help="Topics to record: repeat the option and/or separate names with commas "
            "(default: the four input topics ioc.camera.frames, ioc.vision.detections, "
            "ioc.hotline.tickets, ioc.sensor.events).",
        ),
    ] = None,
    labels: Annotated[
        bool,
        typer.Option(
            "--labels",
            help="Record the labelled set instead: the detections of every camera incident "
            "staff resolved in [--from, --to) as handled or false alarm, each camera within "
            "--margin of its incident's start, and labels.json; `ioc replay --compare` scores "
            "rule sets on it.",
        ),
    ] = False,
    margin: Annotated[
        float,
        typer.Option(min=1, help="With --labels: seconds recorded before and after each start."),
    ] = 120.0,
) -> None:
    """Export the messages of Kafka topics whose timestamp lies in [--from, --to) to a portable
    recording: manifest.json (written last), topics/<topic>/<partition>.jsonl.gz and camera
    frames as .jpg files, verified when it is replayed. Exits 1 on a bad time or topic."""
    import time

    from aiokafka.errors import KafkaError
    from rich.filesize import decimal
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Column

    from ioc.devtools.replay.record import parse_time, record
    from ioc.devtools.replay.recording import RecordingError
    from ioc.devtools.replay.replay import INPUT_TOPICS
    from ioc.models.base import VIETNAM_TIME

    settings = get_settings()
    names = [name.strip() for option in topics or [] for name in option.split(",")]
    names = list(dict.fromkeys(name for name in names if name)) or [
        settings.kafka.topic(name) for name in INPUT_TOPICS
    ]
    try:
        start = parse_time(from_)
        end = parse_time(to, now_ok=True)
    except ValueError as error:
        _fail(error)
    if start >= end:
        _fail(ValueError(f"--from {from_} is not before --to {to}"))
    if labels:
        if topics:
            _fail(ValueError("--labels records the detections topic; leave out --topics"))
        _record_labels(settings, start, end, out, margin)
        return
    began = time.monotonic()
    try:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TextColumn("{task.completed:,.0f} messages written"),
            TextColumn("{task.fields[rate]} msg/s"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task(f"recording {', '.join(names)}", total=None, rate="0")

            def on_progress(written: int) -> None:
                rate = written / max(time.monotonic() - began, 1e-3)
                progress.update(task, completed=written, rate=f"{rate:,.0f}")

            manifest = run_async(record(settings.kafka, names, start, end, out, on_progress))
    except (RecordingError, KafkaError, OSError) as error:
        _fail(error)

    def local(ms: int | None) -> str:
        if ms is None:
            return "-"
        return datetime.fromtimestamp(ms / 1000, VIETNAM_TIME).strftime("%Y-%m-%d %H:%M:%S")

    def disk_bytes(topic: str) -> int:
        entries = [entry for entry in manifest.partitions if entry.topic == topic]
        frames = sum(path.stat().st_size for path in (out / "frames" / topic).rglob("*.jpg"))
        return sum(entry.bytes for entry in entries) + frames

    table = Table(
        "topic",
        *(Column(name, justify="right") for name in ("partitions", "messages", "frames")),
        "first (UTC+7)",
        "last (UTC+7)",
        Column("bytes", justify="right"),
        title=f"{out}: {start.astimezone(VIETNAM_TIME):%Y-%m-%d %H:%M:%S} → "
        f"{end.astimezone(VIETNAM_TIME):%Y-%m-%d %H:%M:%S} (UTC+7)",
    )
    for topic in names:
        entries = [entry for entry in manifest.partitions if entry.topic == topic]
        table.add_row(
            topic,
            str(len(entries)),
            f"{sum(entry.count for entry in entries):,}",
            f"{sum(entry.frames for entry in entries):,}",
            local(min((entry.first_timestamp_ms for entry in entries), default=None)),
            local(max((entry.last_timestamp_ms for entry in entries), default=None)),
            decimal(disk_bytes(topic)),
        )
    table.add_section()
    table.add_row(
        "total",
        str(len(manifest.partitions)),
        f"{manifest.count:,}",
        f"{manifest.frames:,}",
        local(manifest.first_timestamp_ms),
        local(manifest.last_timestamp_ms),
        decimal(sum(disk_bytes(topic) for topic in names)),
    )
    console.print(table)
    rate = manifest.count / max(time.monotonic() - began, 1e-3)
    console.print(f"[green]✓[/] {manifest.count:,} messages recorded ({rate:,.0f} msg/s)")


def _record_labels(
    settings: Settings, start: datetime, end: datetime, out: Path, margin: float
) -> None:
    import psycopg
    from aiokafka.errors import KafkaError
    from rich.table import Table

    from ioc.devtools.replay.labels import labelled_set
    from ioc.devtools.replay.recording import RecordingError

    try:
        with console.status("recording the judged camera incidents' detections…"):
            found, kept = run_async(
                labelled_set(settings, start, end, out, timedelta(seconds=margin))
            )
    except (RecordingError, KafkaError, OSError, psycopg.Error) as error:
        _fail(error)
    table = Table("incident", "camera", "rule", "staff said", "window (UTC)", title=str(out))
    for label in found:
        window = f"{label.start:%Y-%m-%d %H:%M:%S} → {label.end:%H:%M:%S}"
        table.add_row(label.incident_id, label.camera_id, label.rule, label.resolution, window)
    console.print(table)
    false = sum(label.resolution == "false_alarm" for label in found)
    console.print(
        f"[green]✓[/] {len(found)} labels ({false} false alarms, {len(found) - false} confirmed),"
        f" {kept:,} detections recorded"
    )


@app.command("demo")
def demo_command(
    duration: Annotated[
        float | None, typer.Option(help="Seconds of live input (default: demo.duration_s).")
    ] = None,
    samples: SamplesOption = SAMPLES_DIR,
    keep_stack: Annotated[
        bool, typer.Option(help="Leave Kafka and PostgreSQL running afterwards.")
    ] = False,
) -> None:
    """Run the bounded end-to-end scenario and print what happened. Exits 1 if anything is off."""
    from ioc.devtools.scenario.demo import run_demo

    _clean_up_on_sigterm()

    settings = get_settings()
    if duration is not None:
        settings.demo.duration_s = duration
    try:
        code = run_demo(settings, samples, keep_stack, console)
    except StackError as error:
        _fail(error)
    raise typer.Exit(code)


@app.command("chaos")
def chaos_command(
    kills: Annotated[
        int,
        typer.Option(min=3, help="SIGKILLs in all, shared in turn by streams, vision and alerts."),
    ] = 21,
    seed: Annotated[int, typer.Option(help="Seeds the kill order and the moments.")] = 1,
    min_gap_s: Annotated[
        float, typer.Option(min=0, help="Shortest wait after a restart before the next kill.")
    ] = 3.0,
    max_gap_s: Annotated[
        float, typer.Option(min=0, help="Longest wait after a restart before the next kill.")
    ] = 15.0,
) -> None:
    """Kill -9 the workers at random moments under steady mixed load, on a stack of its own,
    then check that every input was stored once, no incident is missing and nobody was paged
    twice. Exits 1 if any check fails."""
    from ioc.devtools.scenario.chaos import render, run_chaos

    _clean_up_on_sigterm()
    try:
        result = run_chaos(kills, seed, min_gap_s, max(min_gap_s, max_gap_s), console)
    except StackError as error:
        _fail(error)
    render(result, seed, console)
    raise typer.Exit(0 if result.ok else 1)


@app.command("replay")
def replay_command(
    recording: Annotated[
        Path | None,
        typer.Argument(metavar="[DIR]", help="A recording made by `ioc record`."),
    ] = None,
    from_kafka: Annotated[
        bool,
        typer.Option(
            "--kafka",
            help="Replay a range of the live topics instead of a recording (recorded to a "
            "temporary folder first); needs --from and --to.",
        ),
    ] = False,
    from_: Annotated[
        str | None,
        typer.Option("--from", metavar="TIME", help="With --kafka: as `ioc record --from`."),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option("--to", metavar="TIME", help="With --kafka: as `ioc record --to`."),
    ] = None,
    speed: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            help="Recorded seconds per wall second: 1 keeps the original pacing, 20 compresses "
            "it twentyfold.",
        ),
    ] = None,
    as_fast: Annotated[
        bool,
        typer.Option("--max", help="As fast as the sandbox takes it (the default)."),
    ] = False,
    sandbox: Annotated[
        str,
        typer.Option(
            help="Sandbox NAME: topics sandbox.NAME.*, schema sandbox_NAME, group "
            "ioc-sandbox-NAME; emptied at the start of each replay, kept afterwards to inspect.",
        ),
    ] = "replay",
    rules: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="A settings file (IOC_SETTINGS_FILE format) laid over the current settings "
            "for this replay: the rule change to try.",
        ),
    ] = None,
    drop: Annotated[
        bool,
        typer.Option(
            "--drop", help="Delete the sandbox (its topics, offsets and schema) and exit."
        ),
    ] = False,
    compare: Annotated[
        tuple[Path, Path] | None,
        typer.Option(
            metavar="RULES_A RULES_B",
            help="Replay twice, under each settings file (sandboxes NAME-a and NAME-b), and "
            "print the incident diff: opened only in A, only in B, changed timing or severity.",
        ),
    ] = None,
) -> None:
    """Republish a recording (or a range of the live topics) into a sandbox and run the streams
    app there, with the original event times: windows, holds and rules behave as they did.
    Never writes to the live topics or tables; never pages anyone. The recording is verified
    against its manifest first: a truncated or edited one is refused, naming file and offset."""
    from contextlib import nullcontext

    from ioc.devtools.replay.commands import compare as compare_rules
    from ioc.devtools.replay.commands import from_kafka as kafka_recording
    from ioc.devtools.replay.commands import replay_once
    from ioc.devtools.replay.record import parse_time
    from ioc.devtools.replay.recording import RecordingError, open_recording
    from ioc.devtools.replay.replay import Pace
    from ioc.devtools.replay.report import render_result
    from ioc.devtools.replay.sandbox import RulesFile, Sandbox, SandboxError

    _clean_up_on_sigterm()
    settings = get_settings()
    try:
        if drop:
            Sandbox(sandbox).drop(settings)
            console.print(f"sandbox {sandbox} dropped")
            return
        if speed is not None and as_fast:
            raise typer.BadParameter("give --speed or --max, not both")
        if compare is not None and rules is not None:
            raise typer.BadParameter("--compare takes both rule files; leave out --rules")
        if from_kafka == (recording is not None):
            raise typer.BadParameter("give a recording DIR or --kafka, not both or neither")
        if from_kafka and (from_ is None or to is None):
            raise typer.BadParameter("--kafka needs --from and --to")
        pace = Pace(speed)
        if from_kafka:
            assert from_ is not None and to is not None
            source = kafka_recording(
                settings, parse_time(from_), parse_time(to, now_ok=True), console
            )
        else:
            assert recording is not None
            with console.status("verifying the recording against its manifest…"):
                source = nullcontext(open_recording(recording))
        with source as opened:
            if compare is not None:
                compare_rules(settings, opened, sandbox, compare, pace, console)
                return
            loaded = RulesFile.load(rules, settings) if rules is not None else None
            result = replay_once(settings, opened, Sandbox(sandbox), pace, loaded, console)
        render_result(result, console)
    except (RecordingError, SandboxError, StackError, ValueError) as error:
        _fail(error)


@scenario_app.command("publish")
def scenario_publish_command(
    duration: Annotated[
        float, typer.Option(help="Seconds over which to spread the scenario.")
    ] = 60.0,
    samples: SamplesOption = SAMPLES_DIR,
) -> None:
    """Publish the sample scenario (frames, tickets, sensors, bad inputs) in real time."""

    from ioc.devtools.scenario.plan import build_plan
    from ioc.devtools.scenario.publisher import publish

    settings = get_settings()
    plan = build_plan(
        samples, duration, settings.demo.frame_interval_s, settings.demo.sensor_interval_s
    )
    sent = run_async(publish(plan, settings.kafka))
    for topic, count in sorted(sent.items()):
        console.print(f"{topic}: {count}")


@db_app.command("migrate")
def db_migrate_command() -> None:
    """Apply schema migrations to database.dsn; with TimescaleDB: hypertables, continuous
    aggregates, compression and retention per storage settings."""
    from ioc.store.migrate import migrate

    settings = get_settings()
    report = migrate(settings.database.dsn, settings.storage)
    console.print(f"{len(report.applied)} migration(s) applied; {report.storage}")


@sensors_app.command("bridge")
def sensors_bridge_command() -> None:
    """Forward MQTT sensor messages (mqtt.topic_filter) to ioc.sensor.events until stopped."""
    from ioc.sensors.bridge import run_bridge

    _setup_logging()
    run_bridge(get_settings())


@sensors_app.command("check")
def sensors_check_command(
    source: Annotated[
        str, typer.Argument(metavar="FILE|-", help="A JSON file, or - to read standard input.")
    ],
    registry: Annotated[
        Path | None,
        typer.Option(
            help="Sensor registry that entity ids resolve through (default: "
            "streams.sensor_registry, i.e. the one the intake uses, else the bundled one)."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per entity, one per line.")
    ] = False,
) -> None:
    """Check FIWARE payloads offline, exactly as the intake would judge them (no stack needed).

    Takes one entity, a JSON list of entities, or an Orion / Orion-LD notification. Per entity:
    accepted (sensor id, values in the canonical unit, dropped attributes as warnings) or
    rejected with the reason. An id that the registry does not resolve is rejected ("id: unknown
    sensor id …"): register it, or list it in a sensor's `entity_ids`. With --json each line is
    {"id", "sensor", "accepted", "reason", "measurements", "warnings"}. Exit 0 only when every
    entity is accepted; 1 otherwise (also for a body that is not JSON or none of the forms).
    """
    from ioc.models import load_sensor_registry
    from ioc.models.base import utc_now
    from ioc.sensors.fiware import ObservationError, decode
    from ioc.sensors.ngsi import judge, unwrap

    settings = get_settings()
    try:
        raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
        payload = unwrap(decode(raw))
    except (OSError, ObservationError) as error:
        _fail(error)
    max_future = timedelta(seconds=settings.streams.sensor_max_future_s)
    sensors = load_sensor_registry(registry or settings.streams.sensor_registry)
    judged = judge(payload, sensors, utc_now(), max_future)
    if as_json:
        for item in judged:
            line = {
                "id": item.entity_id,
                "sensor": item.event.id if item.event else None,
                "accepted": item.event is not None,
                "reason": item.reason,
                "measurements": item.event.measurements if item.event else {},
                "warnings": list(item.event.warnings) if item.event else [],
            }
            typer.echo(json.dumps(line, ensure_ascii=False))
    else:
        table = Table("#", "entity id", "sensor", "result", "observed (UTC)", "measurements")
        for item in judged:
            if item.event is None:
                table.add_row(
                    str(item.index),
                    item.entity_id or "-",
                    "-",
                    f"[red]rejected[/]: {item.reason}",
                    "",
                    "",
                )
                continue
            values = ", ".join(
                f"{name}={value:g}" for name, value in item.event.measurements.items()
            )
            result = "[green]accepted[/]" + "".join(
                f"\n[yellow]warning[/]: {w}" for w in item.event.warnings
            )
            observed = item.event.date_observed.astimezone(UTC).isoformat()
            table.add_row(
                str(item.index), item.entity_id or "-", item.event.id, result, observed, values
            )
        console.print(table)
    raise typer.Exit(0 if all(item.event is not None for item in judged) else 1)


@app.command("api")
def api_command() -> None:
    """Serve the Open311 GeoReport v2 intake (hotline.api_host:api_port) until stopped."""
    from ioc.api.server import serve

    _setup_logging()
    serve(get_settings())


@tickets_app.command("import")
def tickets_import_command(
    path: Annotated[Path, typer.Argument(help="A .csv (Open311 field names) or .jsonl file.")],
) -> None:
    """Bulk-load tickets onto the intake topic; prints accepted and rejected rows with reasons."""
    from ioc.api.importer import import_tickets

    if not path.is_file():
        _fail(FileNotFoundError(f"no such file: {path}"))
    try:
        report = import_tickets(path, get_settings())
    except ValueError as error:  # the whole file is unusable (type, encoding, header)
        _fail(error)
    raise typer.Exit(1 if report.rejected and not report.accepted else 0)


@tickets_app.command("set-status")
def tickets_set_status_command(
    ticket_id: Annotated[str, typer.Argument(help="service_request_id")],
    status: Annotated[str, typer.Argument(help="assigned, in_progress, resolved or triaged")],
    note: Annotated[str | None, typer.Option(help="Status notes shown to the citizen.")] = None,
) -> None:
    """Move a ticket through its lifecycle (resolving the first report resolves its incident)."""

    from ioc.hotline.tickets import TicketTransitionError
    from ioc.incidents.service import terminal_actions

    async def move() -> None:
        async with terminal_actions(get_settings()) as actions:
            incident = await actions.set_ticket_status(ticket_id, status, note)
        if incident is not None:
            console.print(f"incident {incident.id}: {incident.status}")

    try:
        run_async(move())
    except TicketTransitionError as error:
        _fail(error)
    console.print(f"{ticket_id}: {status}")


@bench_app.command("stream")
def bench_stream_command(
    count: Annotated[int, typer.Option(min=1, help="Tickets per round and side.")] = 20_000,
    rounds: Annotated[int, typer.Option(min=1, help="Rounds per side (median).")] = 3,
) -> None:
    """Messages/s through a Faust agent doing the hotline intake's validate → forward or
    dead-letter step vs a plain aiokafka loop doing the same, same run, Kafka only."""
    from ioc.devtools.bench.stream import run_bench

    _clean_up_on_sigterm()

    try:
        run_bench(count, rounds, console)
    except StackError as error:
        _fail(error)


@bench_app.command("tickets")
def bench_tickets_command(
    count: Annotated[int, typer.Option(help="Tickets per throughput round.")] = 2000,
    rounds: Annotated[int, typer.Option(help="Throughput rounds per side (median).")] = 3,
    rate: Annotated[float, typer.Option(help="Tickets/s for the latency phase.")] = 50.0,
    seconds: Annotated[float, typer.Option(help="Length of the latency phase.")] = 10.0,
) -> None:
    """Tickets/s and latency through intake → triage → DB vs a plain aiokafka+INSERT loop."""
    from ioc.devtools.bench.tickets import run_bench

    _clean_up_on_sigterm()

    try:
        run_bench(count, rounds, rate, seconds, console)
    except StackError as error:
        _fail(error)


@bench_app.command("sensors")
def bench_sensors_command(
    count: Annotated[int, typer.Option(min=1, help="Readings per throughput round.")] = 200_000,
    rounds: Annotated[int, typer.Option(min=1, help="Throughput rounds per side (median).")] = 3,
    sensors: Annotated[
        int, typer.Option(min=1, help="Synthetic sensors (flood level, air quality) reporting.")
    ] = 500,
    rate: Annotated[
        float, typer.Option(min=1, help="Readings/s for the latency phase (below capacity).")
    ] = 1000.0,
    seconds: Annotated[float, typer.Option(min=1, help="Length of the latency phase.")] = 20.0,
    workers: Annotated[
        int, typer.Option(min=1, max=8, help="Streams worker processes (one consumer group).")
    ] = 1,
    partitions: Annotated[
        int | None,
        typer.Option(min=1, help="Partitions of every topic (default: kafka.partitions)."),
    ] = None,
) -> None:
    """Events/s through sensor topic → agent → DB vs a plain aiokafka+COPY loop; p50/p99
    event-to-incident latency."""
    from ioc.devtools.bench.sensors import run_bench

    _clean_up_on_sigterm()

    try:
        run_bench(count, rounds, sensors, rate, seconds, console, workers, partitions)
    except StackError as error:
        _fail(error)


@bench_app.command("vision")
def bench_vision_command(
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda, cuda:1, … (default: vision.device).")
    ] = None,
    frames: Annotated[int, typer.Option(min=1, help="Frames per round and side.")] = 96,
    batch: Annotated[
        int | None,
        typer.Option(min=1, help="The worker path's batch size (default: vision.batch_size)."),
    ] = None,
    rounds: Annotated[int, typer.Option(min=1, help="Rounds per side (median).")] = 3,
    rate: Annotated[
        float | None,
        typer.Option(
            min=0.1, help="Frames/s offered for latency (default: 80 % of the naive loop's)."
        ),
    ] = None,
) -> None:
    """Frames/s and p50/p99 latency, JPEG bytes → detections, through the worker's batched path
    vs the naive Ultralytics loop (imdecode + predict per frame), same run, same device."""
    from ioc.devtools.bench.vision import run_bench

    vision = get_settings().vision
    size = batch or vision.batch_size
    try:
        run_bench(vision, device or vision.device, frames, size, rounds, rate, console)
    except FileNotFoundError as error:
        _fail(error)


@bench_app.command("rtsp")
def bench_rtsp_command(
    frames: Annotated[int, typer.Option(min=5, help="Frames sampled per side.")] = 60,
    fps: Annotated[
        float, typer.Option(min=0.5, max=10, help="Samples per second (the camera sends 10).")
    ] = 2.0,
    codec: Annotated[str, typer.Option(help="h264 or h265.")] = "h264",
) -> None:
    """Glass → Kafka age of a real RTSP camera's frames (GStreamer's server draws its clock in
    each frame) through `ioc cameras run`, vs the naive cv2.VideoCapture loop, same run."""
    from ioc.devtools.bench.rtsp import RtspUnavailable, run_bench

    _clean_up_on_sigterm()
    if codec not in ("h264", "h265"):
        _fail(ValueError("--codec: h264 or h265"))
    try:
        run_bench(frames, fps, codec, console)
    except (RtspUnavailable, StackError) as error:
        _fail(error)


@bench_app.command("store")
def bench_store_command(
    rows: Annotated[int, typer.Option(min=1, help="Rows per round and side.")] = 200_000,
    rounds: Annotated[int, typer.Option(min=1, help="Rounds per side (median).")] = 3,
    batch_rows: Annotated[int, typer.Option(min=1, help="The sink's batch size.")] = 5000,
    dsn: Annotated[
        str | None,
        typer.Option(help="Bench this server (twin tables, dropped after); default a private one."),
    ] = None,
) -> None:
    """Rows/s through the idempotent COPY sink vs a raw COPY of the same rows (target ≥ 60 %)."""
    from ioc.devtools.bench.store import run_bench

    _clean_up_on_sigterm()

    try:
        run_bench(rows, rounds, batch_rows, console, dsn)
    except StackError as error:
        _fail(error)


@bench_app.command("e2e")
def bench_e2e_command(
    probes: Annotated[
        int, typer.Option(min=1, help="Probes per kind (fire ticket, sensor breach, fire camera).")
    ] = 20,
    load: Annotated[
        bool, typer.Option(help="Steady background tickets and in-range readings meanwhile.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Input → webhook notification p50/p99 for a 1022 fire ticket, a water-level breach and a
    fire camera, through every worker, vs a plain aiokafka produce → consume round trip."""
    from ioc.devtools.bench.e2e import run_bench

    _clean_up_on_sigterm()

    try:
        run_bench(probes, load, console, as_json)
    except StackError as error:
        _fail(error)


@bench_app.command("replay")
def bench_replay_command(
    minutes: Annotated[
        float, typer.Option(min=1, help="Recorded time of the demo's mix to replay.")
    ] = 60,
    rounds: Annotated[int, typer.Option(min=1, help="Rounds; medians are reported.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """A recorded stretch of the demo's mix replayed with --max through a sandbox (× real time,
    events/s) vs a raw aiokafka topic copy of the same messages, on an ephemeral stack."""
    from ioc.devtools.bench.replay import run_bench

    _clean_up_on_sigterm()
    try:
        run_bench(minutes, rounds, console, as_json)
    except StackError as error:
        _fail(error)


@bench_app.command("all")
def bench_all_command(
    quick: Annotated[
        bool, typer.Option(help="Small sizes, one round: a smoke run of a few minutes.")
    ] = False,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the figures and machine as JSON.")
    ] = None,
) -> None:
    """Every bench (stream, tickets, sensors, vision, store, e2e, replay) in turn, each against
    its baseline in the same run, then one table with ratios and the machine (~10–15 min on 2
    cores). Exits 1 if any bench failed; the others still run."""
    from ioc.devtools.bench.all import DEFAULT, QUICK, run_all

    _clean_up_on_sigterm()

    result = run_all(QUICK if quick else DEFAULT, console, json_path)
    if result.failed:
        raise typer.Exit(1)


@grafana_app.command("generate")
def grafana_generate_command(
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for the JSON (default: the repo's grafana/dashboards)."),
    ] = None,
    check: Annotated[
        bool, typer.Option(help="Write nothing; exit 1 if the files differ from the generator.")
    ] = False,
) -> None:
    """Write the six walls (dashboards as code) to grafana/dashboards/*.json."""
    from ioc.grafana.publish import REPO_DASHBOARDS, stale_files, write_dashboards
    from ioc.grafana.walls import walls

    directory = out or REPO_DASHBOARDS
    dashboards = walls()
    if check:
        stale = stale_files(dashboards, directory)
        for name in stale:
            console.print(f"[red]out of date:[/] {directory / name}")
        raise typer.Exit(1 if stale else 0)
    changed = write_dashboards(dashboards, directory)
    console.print(f"{len(dashboards)} dashboards in {directory}; {len(changed)} file(s) changed")


@grafana_app.command("push")
def grafana_push_command(
    url: Annotated[
        str | None, typer.Option(help="Grafana base URL (default: grafana.url).")
    ] = None,
    token: Annotated[
        str | None, typer.Option(help="Service-account token (default: grafana.token).")
    ] = None,
    folder: Annotated[
        str | None, typer.Option(help="Folder title (default: grafana.folder).")
    ] = None,
) -> None:
    """Upload the datasource and the six walls to an existing Grafana (overwriting them)."""
    from grafana_client.client import GrafanaException

    from ioc.grafana.publish import datasource_payload, push
    from ioc.grafana.walls import walls

    settings = get_settings()
    config = settings.grafana
    try:
        report = push(
            url or config.url,
            token or (config.token.get_secret_value() if config.token else None),
            walls(),
            datasource_payload(config.datasource_dsn or settings.database.dsn, config.timescaledb),
            folder or config.folder,
            config.folder_uid,
        )
    except (GrafanaException, OSError, ValueError) as error:
        _fail(error)
    console.print(f"[green]✓[/] datasource {report.datasource}; folder {report.folder}")
    for link in report.dashboards:
        console.print(f"[green]✓[/] {link}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
