"""`ioc record` and `ioc replay`: recordings, labelled sets and replays into a sandbox."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ioc.commandline import clean_up_on_sigterm, console, fail
from ioc.config import Settings, get_settings
from ioc.devtools.stack import StackError
from ioc.runtime import run_async


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
        fail(error)
    if start >= end:
        fail(ValueError(f"--from {from_} is not before --to {to}"))
    if labels:
        if topics:
            fail(ValueError("--labels records the detections topic; leave out --topics"))
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
        fail(error)

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
        fail(error)
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

    from ioc.devtools.replay.record import parse_time
    from ioc.devtools.replay.recording import RecordingError, open_recording
    from ioc.devtools.replay.replay import Pace
    from ioc.devtools.replay.report import render_result
    from ioc.devtools.replay.runs import compare as compare_rules
    from ioc.devtools.replay.runs import from_kafka as kafka_recording
    from ioc.devtools.replay.runs import replay_once
    from ioc.devtools.replay.sandbox import RulesFile, Sandbox, SandboxError

    clean_up_on_sigterm()
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
        fail(error)
