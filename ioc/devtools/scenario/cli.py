"""`ioc demo`, `ioc chaos` and `ioc scenario publish`: the bounded scenarios."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ioc.assets import SAMPLES_DIR
from ioc.commandline import clean_up_on_sigterm, console, fail
from ioc.config import get_settings
from ioc.devtools.stack import StackError
from ioc.runtime import run_async

SamplesOption = Annotated[Path, typer.Option(help="Folder with frames/ and tickets_1022.jsonl.")]


scenario_app = typer.Typer(help="Publish sample inputs.", no_args_is_help=True)


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

    clean_up_on_sigterm()

    settings = get_settings()
    if duration is not None:
        settings.demo.duration_s = duration
    try:
        code = run_demo(settings, samples, keep_stack, console)
    except StackError as error:
        fail(error)
    raise typer.Exit(code)


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

    clean_up_on_sigterm()
    try:
        result = run_chaos(kills, seed, min_gap_s, max(min_gap_s, max_gap_s), console)
    except StackError as error:
        fail(error)
    render(result, seed, console)
    raise typer.Exit(0 if result.ok else 1)


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
