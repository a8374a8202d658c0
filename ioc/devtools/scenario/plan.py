"""A bounded, deterministic scenario of real inputs: sample frames from three cameras, the 1022
sample tickets, simulated water-level and PM2.5 sensors (one crosses its alert level), and a few
deliberately bad messages that must end in the dead-letter topic."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ioc.kafka import topics
from ioc.models import FrameHeaders, SensorSpec, load_sensor_registry
from ioc.models.base import utc_now
from ioc.sensors import fiware


@dataclass(frozen=True)
class Scheduled:
    """One message to publish `at_s` seconds into the scenario."""

    at_s: float
    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    bad: bool = False  # deliberately invalid: expected in the dead-letter topic


@dataclass(frozen=True)
class Camera:
    camera_id: str
    frames: tuple[Path, ...]


def sample_cameras(samples_dir: Path) -> list[Camera]:
    frames = samples_dir / "frames"
    negative = tuple(sorted((frames / "negative").glob("*.jpg")))
    fire = tuple(sorted((frames / "fire").glob("*.jpg")))
    traffic = tuple(sorted((frames / "traffic").glob("*.jpg")))
    if not (negative and fire and traffic):
        raise FileNotFoundError(f"sample frames missing under {frames}")
    return [
        # A quiet market camera that later sees a fire.
        Camera("cam-tn-cho-thai", negative[:3] + fire),
        Camera("cam-tn-ql3-gia-sang", traffic),
        Camera("cam-tn-kcn-song-cong", negative),
    ]


def sensor_value(spec: SensorSpec, progress: float) -> float:
    """The Gia Bảy water level rises steadily through its alert level halfway through the run;
    the other sensors stay below theirs, with a little deterministic wobble."""
    wobble = 0.02 * math.sin(progress * 20)
    if spec.type == "FloodMonitoring" and spec.id == "tn-wl-cau-gia-bay":
        return round(spec.alert_level * (0.8 + 0.4 * progress) + wobble, 3)
    if spec.type == "FloodMonitoring":
        return round(spec.alert_level * 0.7 + wobble, 3)
    return round(spec.alert_level * (0.35 + 0.1 * math.sin(progress * 6)), 1)


def sensor_event(spec: SensorSpec, value: float, observed: datetime) -> bytes:
    """A FIWARE entity as the device sends it; water levels in cm with their unit code, so the
    pipeline's unit normalisation is exercised on every reading."""
    measured: float | dict[str, object] = value
    if spec.property == "currentLevel":
        measured = {"value": round(value * 100, 1), "unitCode": "CMT"}
    return json.dumps(
        fiware.entity(spec.id, spec.type, observed, **{spec.property: measured})
    ).encode()


def live_ticket(sample: dict[str, Any], run_tag: str, received: datetime) -> dict[str, Any]:
    """A sample ticket as a new report arriving now: a fresh id per run (the portal numbers each
    report) and the time it is sent, in the sample's own time zone."""
    zone = datetime.fromisoformat(sample["requested_datetime"]).tzinfo
    return sample | {
        "service_request_id": f"{sample['service_request_id']}-{run_tag}",
        "requested_datetime": received.astimezone(zone).isoformat(),
    }


def ticket_message(at_s: float, ticket: dict[str, Any]) -> Scheduled:
    return Scheduled(
        at_s,
        topics.HOTLINE_TICKETS,
        ticket["service_request_id"].encode(),
        json.dumps(ticket, ensure_ascii=False).encode(),
    )


def second_report(sample: dict[str, Any]) -> dict[str, Any]:
    """A neighbour calling about the same event from 60 m away: it must join the first report's
    incident, not open another."""
    return sample | {
        "service_request_id": f"{sample['service_request_id']}-2",
        "channel": "phone",
        "description": "Bên cạnh nhà tôi đang cháy to, khói đen mù mịt, gọi cứu hỏa giúp",
        "lat": round(sample["lat"] + 0.00054, 6),
        "phone": "0900000001",
    }


def build_plan(
    samples_dir: Path,
    duration_s: float,
    frame_interval_s: float,
    sensor_interval_s: float,
    start: datetime | None = None,
) -> list[Scheduled]:
    start = start or utc_now()
    plan: list[Scheduled] = []

    for camera_index, camera in enumerate(sample_cameras(samples_dir)):
        steps = int(duration_s / frame_interval_s)
        for seq in range(steps):
            at_s = seq * frame_interval_s + camera_index * frame_interval_s / 3
            frame = camera.frames[seq % len(camera.frames)]
            headers = FrameHeaders(
                camera_id=camera.camera_id, event_time=start + timedelta(seconds=at_s), seq=seq
            )
            plan.append(
                Scheduled(
                    at_s,
                    topics.CAMERA_FRAMES,
                    camera.camera_id.encode(),
                    frame.read_bytes(),
                    tuple(headers.to_kafka()),
                )
            )

    tickets = (samples_dir / "tickets_1022.jsonl").read_text().splitlines()
    run_tag = f"{start:%y%m%d%H%M%S}"
    for index, line in enumerate(tickets):
        at_s = (index + 0.5) * duration_s / len(tickets)
        plan.append(
            ticket_message(
                at_s, live_ticket(json.loads(line), run_tag, start + timedelta(seconds=at_s))
            )
        )

    first = json.loads(tickets[0])
    at_s = 0.5 * duration_s / len(tickets) + min(20.0, duration_s / 10)
    echo = live_ticket(second_report(first), run_tag, start + timedelta(seconds=at_s))
    plan.append(ticket_message(at_s, echo))

    steps = int(duration_s / sensor_interval_s)
    for spec in load_sensor_registry().sensors:
        for step in range(steps):
            at_s = step * sensor_interval_s
            value = sensor_value(spec, step / max(steps - 1, 1))
            observed = start + timedelta(seconds=at_s)
            plan.append(
                Scheduled(
                    at_s,
                    topics.SENSOR_EVENTS,
                    spec.id.encode(),
                    sensor_event(spec, value, observed),
                )
            )

    plan.extend(bad_messages(duration_s, start))
    return sorted(plan, key=lambda item: item.at_s)


def bad_messages(duration_s: float, start: datetime) -> list[Scheduled]:
    """One of each kind of bad input an IOC really receives."""
    at = duration_s * 0.3
    frame_headers = FrameHeaders(camera_id="cam-tn-broken", event_time=start, seq=0).to_kafka()
    return [
        Scheduled(
            at, topics.HOTLINE_TICKETS, b"S-BAD-1", b'{"service_request_id": "S-BAD-1", ', bad=True
        ),
        Scheduled(
            at + 1,
            topics.HOTLINE_TICKETS,
            b"S-BAD-2",
            json.dumps(
                {
                    "service_request_id": "S-BAD-2",
                    "channel": "phone",
                    "requested_datetime": start.isoformat(),
                }
            ).encode(),
            bad=True,
        ),
        Scheduled(
            at + 2,
            topics.SENSOR_EVENTS,
            b"tn-unknown",
            json.dumps(
                fiware.entity("tn-unknown", "FloodMonitoring", start, currentLevel=1.0)
            ).encode(),
            bad=True,
        ),
        Scheduled(
            at + 3,
            topics.SENSOR_EVENTS,
            b"tn-wl-thac-huong",
            b'{"id": "tn-wl-thac-huong", "type": "FloodMonitoring", "dateObserved": "2026-11-20",'
            b' "currentLevel": {"value": 1.2, "unit": "km"}}',
            bad=True,
        ),
        Scheduled(
            at + 4,
            topics.CAMERA_FRAMES,
            b"cam-tn-broken",
            b"\x00not a jpeg\x00",
            tuple(frame_headers),
            bad=True,
        ),
    ]
