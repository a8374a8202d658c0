"""The `ioc` command: it only composes the commands each package owns (`<package>/cli.py`)."""

from __future__ import annotations

import sys

import typer

from ioc.alerts.cli import alerts_app
from ioc.api.cli import api_command
from ioc.console.cli import console_app
from ioc.devtools.bench.cli import bench_app
from ioc.devtools.replay.cli import record_command, replay_command
from ioc.devtools.scenario.cli import chaos_command, demo_command, scenario_app
from ioc.devtools.stack.cli import stack_app
from ioc.grafana.cli import grafana_app
from ioc.hotline.cli import tickets_app, triage_app
from ioc.incidents.cli import incidents_app
from ioc.sensors.cli import sensors_app
from ioc.store.cli import db_app
from ioc.streams.cli import streams_app
from ioc.vision.cli import cameras_app, vision_app

app = typer.Typer(
    help="ioc: an Intelligent Operations Centre stream processor.", no_args_is_help=True
)
for name, group in (
    ("stack", stack_app),
    ("streams", streams_app),
    ("vision", vision_app),
    ("alerts", alerts_app),
    ("sensors", sensors_app),
    ("tickets", tickets_app),
    ("bench", bench_app),
    ("scenario", scenario_app),
    ("db", db_app),
    ("grafana", grafana_app),
    ("cameras", cameras_app),
    ("incidents", incidents_app),
    ("triage", triage_app),
    ("console", console_app),
):
    app.add_typer(group, name=name)
for name, command in (
    ("record", record_command),
    ("demo", demo_command),
    ("chaos", chaos_command),
    ("replay", replay_command),
    ("api", api_command),
):
    app.command(name)(command)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
