"""`ioc demo`: stack up, workers up, a bounded live scenario, then what happened and a verdict."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from ioc.config import Settings
from ioc.devtools.scenario.plan import build_plan
from ioc.devtools.scenario.publisher import publish
from ioc.devtools.scenario.report import problems, render, snapshot, summarize
from ioc.devtools.scenario.workers import Workers
from ioc.devtools.stack import stack_down, stack_status, stack_up
from ioc.runtime import run_async

WORKER_START_TIMEOUT_S = 240.0  # the vision worker imports torch and loads the model first


def run_demo(settings: Settings, samples_dir: Path, keep_stack: bool, console: Console) -> int:
    was_running = all(health.healthy for health in stack_status(settings))
    with console.status("starting the local stack (first run downloads Kafka)…"):
        services, _, report = stack_up(settings)
    console.print(f"stack: {', '.join(f'{k} {v}' for k, v in services.items())}; {report.storage}")
    workers = Workers(settings, env={"IOC_STREAMS__SENSOR_RULES": str(settings.demo.sensor_rules)})
    try:
        with console.status("starting streams, vision and alert workers…"):
            workers.start()
            workers.wait_ready(WORKER_START_TIMEOUT_S)
        console.print(f"workers ready (logs in {workers.log_dir})")
        plan = build_plan(
            samples_dir,
            settings.demo.duration_s,
            settings.demo.frame_interval_s,
            settings.demo.sensor_interval_s,
        )
        expected_dead = sum(item.bad for item in plan)
        before = snapshot(settings)
        console.print(f"publishing {len(plan)} messages over {settings.demo.duration_s:.0f}s…")
        run_async(publish(plan, settings.kafka))
        with console.status("waiting for the pipeline to drain…"):
            lag = workers.wait_drained(settings.demo.drain_timeout_s)
        summary = summarize(settings, before, snapshot(settings))
        summary.lag = lag
    finally:
        workers.stop()
        if not keep_stack and not was_running:
            stack_down(settings)
    render(summary, console)
    found = problems(summary, expected_dead)
    for problem in found:
        console.print(f"[bold red]✗[/] {problem}")
    if not found:
        console.print(
            "[bold green]✓ demo passed:[/] every flow raised incidents, every urgent or high one "
            "was alerted, a second citizen's report joined its incident, every bad input is in "
            "the dead-letter topic with its reason"
        )
    return 1 if found else 0
