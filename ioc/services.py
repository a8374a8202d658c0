"""The `ioc` services a deployment runs (streams, vision, alerts): the command that starts each and
the consumer groups it runs, with the topics they read. The lag sampler, the workers' readiness
and drain checks, and the benchmarks all read the groups from here."""

from __future__ import annotations

from dataclasses import dataclass

from ioc.config import Settings
from ioc.kafka import topics


@dataclass(frozen=True)
class WorkerSpec:
    name: str
    command: tuple[str, ...]
    group_id: str
    topics: tuple[str, ...]
    side_groups: tuple[tuple[str, tuple[str, ...]], ...] = ()  # more consumers in the process

    def groups(self) -> dict[str, tuple[str, ...]]:
        """Every consumer group the worker runs, with the topics it reads."""
        return {self.group_id: self.topics, **dict(self.side_groups)}


def worker_specs(settings: Settings) -> list[WorkerSpec]:
    topic = settings.kafka.topic
    return [
        WorkerSpec(
            "streams",
            ("streams", "run"),
            settings.streams.app_id,
            (topic(topics.INCIDENT_CANDIDATES), topic(topics.DLQ)),
            side_groups=(
                (settings.streams.group_of("hotline"), (topic(topics.HOTLINE_TICKETS),)),
                (settings.streams.group_of("sensors"), (topic(topics.SENSOR_EVENTS),)),
                (settings.streams.group_of("cameras"), (topic(topics.VISION_DETECTIONS),)),
            ),
        ),
        WorkerSpec(
            "vision",
            ("vision", "run"),
            settings.vision.group_id,
            (topic(topics.CAMERA_FRAMES),),
            side_groups=(
                (settings.vision.evidence_group_id, (topic(topics.INCIDENT_CANDIDATES),)),
            ),
        ),
        WorkerSpec(
            "alerts", ("alerts", "run"), settings.alerts.group_id, (topic(topics.INCIDENTS),)
        ),
    ]


__all__ = ["WorkerSpec", "worker_specs"]
