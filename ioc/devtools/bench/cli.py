"""`ioc bench …`: each benchmark against its baseline, measured in the same run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ioc.commandline import clean_up_on_sigterm, console, fail
from ioc.config import get_settings
from ioc.devtools.stack import StackError

bench_app = typer.Typer(
    help="Benchmarks against a baseline measured in the same run.", no_args_is_help=True
)


@bench_app.command("stream")
def bench_stream_command(
    count: Annotated[int, typer.Option(min=1, help="Tickets per round and side.")] = 20_000,
    rounds: Annotated[int, typer.Option(min=1, help="Rounds per side (median).")] = 3,
) -> None:
    """Messages/s through a Faust agent doing the hotline intake's validate → forward or
    dead-letter step vs a plain aiokafka loop doing the same, same run, Kafka only."""
    from ioc.devtools.bench.stream import run_bench

    clean_up_on_sigterm()

    try:
        run_bench(count, rounds, console)
    except StackError as error:
        fail(error)


@bench_app.command("tickets")
def bench_tickets_command(
    count: Annotated[int, typer.Option(help="Tickets per throughput round.")] = 2000,
    rounds: Annotated[int, typer.Option(help="Throughput rounds per side (median).")] = 3,
    rate: Annotated[float, typer.Option(help="Tickets/s for the latency phase.")] = 50.0,
    seconds: Annotated[float, typer.Option(help="Length of the latency phase.")] = 10.0,
) -> None:
    """Tickets/s and latency through intake → triage → DB vs a plain aiokafka+INSERT loop."""
    from ioc.devtools.bench.tickets import run_bench

    clean_up_on_sigterm()

    try:
        run_bench(count, rounds, rate, seconds, console)
    except StackError as error:
        fail(error)


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

    clean_up_on_sigterm()

    try:
        run_bench(count, rounds, sensors, rate, seconds, console, workers, partitions)
    except StackError as error:
        fail(error)


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
        fail(error)


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

    clean_up_on_sigterm()
    if codec not in ("h264", "h265"):
        fail(ValueError("--codec: h264 or h265"))
    try:
        run_bench(frames, fps, codec, console)
    except (RtspUnavailable, StackError) as error:
        fail(error)


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

    clean_up_on_sigterm()

    try:
        run_bench(rows, rounds, batch_rows, console, dsn)
    except StackError as error:
        fail(error)


@bench_app.command("console")
def bench_console_command(
    incidents: Annotated[int, typer.Option(min=1, help="Open incidents seeded.")] = 500,
    requests: Annotated[int, typer.Option(min=1, help="Requests per round and side.")] = 100,
    rounds: Annotated[int, typer.Option(min=1, help="Rounds per side (median).")] = 3,
) -> None:
    """The console's queue refresh and incident page vs their database queries alone."""
    from ioc.devtools.bench.console import run_bench

    clean_up_on_sigterm()
    try:
        run_bench(incidents, requests, rounds, console)
    except StackError as error:
        fail(error)


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

    clean_up_on_sigterm()

    try:
        run_bench(probes, load, console, as_json)
    except StackError as error:
        fail(error)


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

    clean_up_on_sigterm()
    try:
        run_bench(minutes, rounds, console, as_json)
    except StackError as error:
        fail(error)


@bench_app.command("all")
def bench_all_command(
    quick: Annotated[
        bool, typer.Option(help="Small sizes, one round: a smoke run of a few minutes.")
    ] = False,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the figures and machine as JSON.")
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option(help="Run only this bench (repeat for more), e.g. --only store --only e2e."),
    ] = None,
) -> None:
    """Every bench (stream, tickets, sensors, vision, store, e2e, replay) in turn, each against
    its baseline in the same run, then one table with ratios and the machine (~10–15 min on 2
    cores). Exits 1 if any bench failed; the others still run."""
    from ioc.devtools.bench.all import BENCHES, DEFAULT, QUICK, bench_names, run_all

    try:
        names = bench_names(only or tuple(BENCHES))
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--only") from None
    clean_up_on_sigterm()
    result = run_all(QUICK if quick else DEFAULT, console, json_path, names)
    if result.failed:
        raise typer.Exit(1)
