"""`ioc sensors`: the MQTT bridge and the check of a reading against the rules."""

from __future__ import annotations

import json
import sys
from datetime import UTC, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ioc.commandline import console, fail, setup_logging
from ioc.config import get_settings

sensors_app = typer.Typer(help="IoT sensors.", no_args_is_help=True)


@sensors_app.command("bridge")
def sensors_bridge_command() -> None:
    """Forward MQTT sensor messages (mqtt.topic_filter) to ioc.sensor.events until stopped."""
    from ioc.sensors.bridge import run_bridge

    setup_logging()
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
        fail(error)
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
