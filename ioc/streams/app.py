"""The Faust app: one agent per input flow.

Each agent reads raw bytes, so a malformed message can never crash it: validation happens here,
and what fails goes to `ioc.dlq` with the reason. The source agents write their candidate
incidents to the database, then publish them to `ioc.incidents.candidates`; the fusion agent folds
them into the incidents staff act on and publishes each version to `ioc.incidents`, so an alert
never refers to an incident the walls cannot show.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from functools import partial
from typing import Any

import faust
from pydantic import ValidationError

from ioc import topics
from ioc.alerts import lifecycle as incident_lifecycle
from ioc.alerts.fusion import FusionRules, fuse, unfused_candidates
from ioc.config import Settings
from ioc.dlq import DeadLetter, RecordedDeadLetter, describe_validation_error
from ioc.hotline import lifecycle
from ioc.hotline.attributes import raise_for_danger
from ioc.hotline.privacy import redact_ticket_bytes, reporter_of
from ioc.hotline.triage import Triage
from ioc.kafka_clients import MAX_MESSAGE_BYTES, faust_credentials, hide_produced_payloads
from ioc.lag import consumer_lag
from ioc.models import FusedIncident, Incident, Ticket, load_sensor_registry
from ioc.models.base import utc_now
from ioc.models.registry import load_camera_registry
from ioc.retry import ATTEMPTS, retried
from ioc.scenario.workers import worker_specs
from ioc.sensors.engine import RuleSet
from ioc.store.sink import CopySink, SinkError, sink_from_settings
from ioc.store.writer import READING_COLUMNS, READING_KEY, ReadingRow, Store
from ioc.streams.acks import BatchWork, EventWork, acknowledge_batches, concurrently, one_by_one
from ioc.streams.cameras import CameraFlow, CameraOutput
from ioc.streams.consumer import consume_at_least_once
from ioc.streams.sensors import TICK_HEADER, Message, SensorFlow, is_tick
from ioc.vision.rules import CameraRuleSet

log = logging.getLogger(__name__)


class Rejected(Exception):
    """The message is permanently bad; its reason goes to the dead-letter topic."""


def _broker_url(bootstrap_servers: str) -> str:
    return ";".join(f"kafka://{server.strip()}" for server in bootstrap_servers.split(","))


def _raw_topic(app: faust.App, name: str) -> faust.TopicT:
    return app.topic(
        name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )


def _ingested_ms(event: faust.EventT) -> int:
    return int(event.message.timestamp * 1000)


def _gave_up(error: Exception) -> str:
    return f"processing failed {ATTEMPTS}x: {error!r}"


def create_app(settings: Settings) -> faust.App:
    """Build the app and its agents from settings (no module-level state: tests build their own)."""
    hide_produced_payloads()
    app = faust.App(
        settings.streams.app_id,
        broker=_broker_url(settings.kafka.bootstrap_servers),
        broker_credentials=faust_credentials(settings.kafka),
        store="memory://",
        autodiscover=False,
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        consumer_auto_offset_reset="earliest",
        # Frequent commits keep lag near zero between sensor clock ticks (drain checks read it).
        broker_commit_interval=1.0,
        producer_acks=-1,
        # Dead letters carry up to KEPT_VALUE_BYTES of the original (Faust's default is 1 MB).
        producer_max_request_size=MAX_MESSAGE_BYTES + 64 * 1024,
        web_enabled=settings.streams.web_port is not None,
        web_port=settings.streams.web_port or 6066,
    )
    consume_at_least_once(app)
    store = Store(settings.database.dsn, settings.database.pool_max_size)

    def readings_sink() -> CopySink:
        return sink_from_settings(
            settings.database.dsn,
            settings.storage,
            "sensor_readings",
            READING_COLUMNS,
            READING_KEY,
            copy=settings.database.bulk_copy,
        )

    # Readings go through the sink: batched idempotent COPY, and through a database outage it
    # waits and retries (the agent waits with it, Kafka keeps the rest) instead of failing.
    sinks = {"readings": readings_sink()}

    async def write_readings(rows: Sequence[ReadingRow]) -> None:
        sink = sinks["readings"]
        try:
            await sink.put_many(row.values() for row in rows)
            await sink.flush()  # committed before the state is written and offsets committed
        except SinkError:  # a non-transient error stopped it: a fresh sink for what follows
            await sink.abort()
            sinks["readings"] = readings_sink()
            raise

    registry = load_sensor_registry(settings.streams.sensor_registry)
    streams = settings.streams
    hotline = settings.hotline
    triage = Triage.load(hotline.triage_rules, hotline.sla_table, hotline.triage_model)

    topic = settings.kafka.topic
    tickets_topic = _raw_topic(app, topic(topics.HOTLINE_TICKETS))
    sensors_topic = _raw_topic(app, topic(topics.SENSOR_EVENTS))
    detections_topic = _raw_topic(app, topic(topics.VISION_DETECTIONS))
    candidates_topic = _raw_topic(app, topic(topics.INCIDENT_CANDIDATES))
    incidents_topic = _raw_topic(app, topic(topics.INCIDENTS))
    dlq_topic = _raw_topic(app, topic(topics.DLQ))

    # Per-sensor engine state (JSON), keyed like the sensor topic so that the changelog
    # partition is the sensor's partition; written once per batch, outside any one event.
    def state_table(name: str) -> faust.TableT[bytes, bytes]:
        return app.Table(
            name,
            key_type=bytes,
            value_type=bytes,
            partitions=settings.kafka.partitions,
            use_partitioner=True,
        )

    sensor_states = state_table("sensor-state")
    sensor_flow = SensorFlow(
        registry,
        RuleSet.load(streams.sensor_rules),
        settings.kafka.partitions,
        stored_state=lambda sensor_id: sensor_states.get(sensor_id.encode()),
        max_future=timedelta(seconds=streams.sensor_max_future_s),
    )
    # Per-camera rule state (JSON), keyed like the detections topic, as the sensors' is.
    camera_states = state_table("camera-state")
    camera_flow = CameraFlow(
        load_camera_registry(settings.cameras.registry),
        CameraRuleSet.load(settings.cameras.rules),
        settings.kafka.partitions,
        stored_state=lambda camera_id: camera_states.get(camera_id.encode()),
    )

    async def dead_letter(event: faust.EventT, reason: str, consumer: str) -> None:
        letter = DeadLetter.of(event.message, reason, consumer)
        if letter.source_topic == topic(topics.HOTLINE_TICKETS):  # reporter contact stays on intake
            letter = replace(letter, value=redact_ticket_bytes(letter.value))
        await dlq_topic.send(
            key=letter.source_topic.encode(), value=letter.value, headers=letter.headers()
        )

    region = settings.fusion.region.encode()
    fusion_rules = FusionRules.load(settings.fusion.rules)

    async def announce(incident: Incident) -> None:
        """To fusion, once stored. A crash before this leaves the candidate unfused, and the
        sweep in `watch_incidents` publishes it again."""
        await candidates_topic.send(key=region, value=incident.to_bytes())

    async def raise_incident(incident: Incident) -> None:
        await store.upsert_incident(incident)
        await announce(incident)

    async def publish(versions: Sequence[FusedIncident]) -> None:
        for version in versions:
            await incidents_topic.send(key=version.id.encode(), value=version.to_bytes())

    async def handle(
        event: faust.EventT, consumer: str, process: Callable[[faust.EventT], Awaitable[None]]
    ) -> None:
        """Process one event; bad input and exhausted retries become dead letters, never a crash."""
        try:
            failure = await retried(
                lambda: process(event), consumer, permanent=(Rejected, ValidationError)
            )
        except Rejected as error:
            await dead_letter(event, str(error), consumer)
            return
        except ValidationError as error:
            await dead_letter(event, describe_validation_error(error), consumer)
            return
        if failure is not None:
            log.error(
                "giving up on %s@%s", event.message.topic, event.message.offset, exc_info=failure
            )
            await dead_letter(event, _gave_up(failure), consumer)

    # Reports of one incident are linked in turn (in SQL) but announced from concurrent tasks,
    # which could send the 10th report's state before the 9th's; fusion folds states in the
    # order it receives them. So announcements go one at a time, each the row as it is then.
    announcing = asyncio.Lock()

    async def process_ticket(event: faust.EventT) -> None:
        ticket = Ticket.model_validate_json(event.value or b"")
        result = raise_for_danger(
            triage.classify(ticket.description, ticket.service_code),
            ticket.service_code,
            ticket.attributes,
        )
        async with store.connection() as conn:
            linked = await lifecycle.record_ticket(
                conn,
                ticket,
                result,
                sla_due=triage.sla_due(result, ticket.requested_datetime),
                reporter=reporter_of(ticket, streams.pii_key),
                ingested_ms=_ingested_ms(event),
                radius_m=hotline.duplicate_radius_m,
                window=timedelta(minutes=hotline.duplicate_window_minutes),
            )
        # Also on a replay: the first delivery may have crashed before it published. Fusion
        # folds the incident's latest state, so a second message changes nothing.
        async with announcing:
            async with store.connection() as conn:
                latest = await lifecycle.current_incident(
                    conn, linked.incident.id, _ingested_ms(event)
                )
            await announce(latest or linked.incident)

    def message_of(event: faust.EventT) -> Message:
        return Message(
            value=event.value or b"",
            partition=event.message.partition,
            offset=event.message.offset,
            timestamp_ms=_ingested_ms(event),
            tick=is_tick(event.message.headers),
        )

    async def store_camera_output(output: CameraOutput) -> None:
        """Frames and incidents first, then the states: a crash in between replays the frame."""
        try:
            for frame in output.frames:
                await store.insert_frame(frame)
            for incident in output.incidents:  # opened, better frame, resolved
                await raise_incident(incident)
        except Exception:
            camera_flow.forget(output.changed)  # a retry judges again from the table's state
            raise
        for crossing in output.crossings:
            log.info(
                "camera %s line %s: %s #%d crossed %s (%d so far)",
                crossing.camera_id,
                crossing.line,
                crossing.class_name,
                crossing.track_id,
                crossing.direction,
                crossing.total,
            )
        for camera_id, state in output.changed.items():
            camera_states[camera_id.encode()] = state.model_dump_json().encode()

    async def process_detections(event: faust.EventT) -> None:
        output = camera_flow.process([message_of(event)])
        for _, reason in output.rejected:
            raise Rejected(reason)
        await store_camera_output(output)

    async def process_camera_tick(event: faust.EventT) -> None:
        """A failed tick is logged, never dead-lettered: the next one judges again."""
        failure = await retried(
            lambda: store_camera_output(camera_flow.process([message_of(event)])), "camera tick"
        )
        if failure is not None:
            log.error("giving up on a camera clock tick", exc_info=failure)

    def agent(
        topic: faust.TopicT,
        name: str,
        work: BatchWork,
        size: int = streams.event_batch_size,
        wait_s: float = streams.event_batch_wait_s,
    ) -> None:
        """Batches acknowledged once all of each is done (see `acks`)."""

        async def run(stream: faust.StreamT[Any]) -> None:
            await acknowledge_batches(stream, work, name, size, wait_s)

        app.agent(topic, name=f"ioc.streams.{name}")(run)

    def each_event(name: str, process: Callable[[faust.EventT], Awaitable[None]]) -> EventWork:
        return partial(handle, consumer=name, process=process)

    async def process_candidate(event: faust.EventT) -> None:
        candidate = Incident.model_validate_json(event.value or b"")
        try:
            async with store.connection() as conn:
                versions = await fuse(conn, candidate, fusion_rules, settings.fusion.region)
        except LookupError as error:
            raise Rejected(str(error)) from None
        await publish(versions)

    # Tickets are independent of each other (linking is serialised in SQL), so several are
    # processed at once to overlap database round trips, and acknowledged in offset order.
    agent(
        tickets_topic,
        "hotline",
        concurrently(each_event("hotline", process_ticket), streams.hotline_concurrency),
    )
    # One region's candidates in order, one at a time: fusion sees each in turn.
    agent(candidates_topic, "fusion", one_by_one(each_event("fusion", process_candidate)))

    async def process_sensor_batch(events: Sequence[faust.EventT]) -> None:
        output = sensor_flow.process(message_of(event) for event in events)

        async def store_output() -> None:
            await write_readings(output.readings)
            await store.upsert_windows(output.windows)
            for incident in output.incidents:
                await raise_incident(incident)

        reasons = dict(output.rejected)
        failure = await retried(store_output, "sensors")
        if failure is not None:
            log.error("giving up on a batch of %d sensor messages", len(events), exc_info=failure)
            sensor_flow.forget(output.changed)  # the table keeps the state before it
            output.changed.clear()
            reasons = {
                index: reasons.get(index, _gave_up(failure))
                for index, event in enumerate(events)
                if not is_tick(event.message.headers)
            }
        for index, reason in reasons.items():
            await dead_letter(events[index], reason, "sensors")
        for sensor_id, state in output.changed.items():
            sensor_states[sensor_id.encode()] = state.model_dump_json().encode()

    # Sensor messages in batches: one database round trip and one state write per sensor per
    # batch, instead of per reading.
    agent(
        sensors_topic,
        "sensors",
        process_sensor_batch,
        streams.sensor_batch_size,
        streams.sensor_batch_wait_s,
    )

    def wall_clock_timer(interval: float, on_leader: bool = False) -> Callable[[Any], Any]:
        """Faust's timer; none in a replay sandbox, where the recording's own clock ticks and
        event times stand in for the wall clock (`streams.wall_clock_timers`)."""
        if streams.wall_clock_timers:
            return app.timer(interval=interval, on_leader=on_leader)
        return lambda function: function

    @wall_clock_timer(interval=streams.sensor_tick_s, on_leader=True)
    async def tick() -> None:
        """One clock tick per partition of the sensor and detections topics, through the topics,
        ordered after the messages there."""
        for topic in (sensors_topic, detections_topic):
            for partition in range(settings.kafka.partitions):
                await topic.send(value=b"", partition=partition, headers={TICK_HEADER: b"1"})

    async def record_dead_letters(events: Sequence[faust.EventT]) -> None:
        """Each dead letter as a row for the walls (the bytes stay on the topic). A failure
        here is retried, never dead-lettered: that would feed the DLQ to itself."""
        letters = [
            RecordedDeadLetter.of(
                event.message.partition,
                event.message.offset,
                _ingested_ms(event),
                event.message.headers or (),
                event.value,
            )
            for event in events
        ]
        await until_stored(partial(store.record_dead_letters, letters), "dead letters")

    agent(dlq_topic, "dead-letters", record_dead_letters, 1000, 1.0)

    @wall_clock_timer(interval=streams.lag_sample_s, on_leader=True)
    async def sample_lag() -> None:
        """Consumer lag of every `ioc` group into the database, for the pipeline-health wall."""
        groups = {g: t for spec in worker_specs(settings) for g, t in spec.groups().items()}
        try:
            lags = await asyncio.to_thread(consumer_lag, settings.kafka, groups)
            await store.record_lag(utc_now(), lags)
        except Exception:  # Kafka or the database may be restarting: the next sample tries
            log.exception("lag sample failed")

    async def until_stored(write: Callable[[], Awaitable[None]], what: str) -> None:
        delay = 0.5
        while True:
            try:
                await write()
                return
            except Exception:
                log.exception("storing %s failed; retrying in %.1f s", what, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    @app.on_partitions_revoked.connect
    async def forget_states(_app: faust.App, _revoked: Any, **_: Any) -> None:
        sensor_flow.forget()
        camera_flow.forget()

    async def process_camera_event(event: faust.EventT) -> None:
        """One frame at a time, in each camera's order; clock ticks for the offline check."""
        if is_tick(event.message.headers):
            await process_camera_tick(event)
        else:
            await handle(event, "camera", process_detections)

    agent(detections_topic, "camera", one_by_one(process_camera_event))

    @wall_clock_timer(interval=hotline.sla_check_interval_s)
    async def watch_sla() -> None:
        """Open tickets past their deadline become SLA-breach incidents (claimed once in SQL)."""
        try:
            async with store.connection() as conn:
                breaches = await lifecycle.claim_sla_breaches(conn)
            for incident in breaches:  # stored with the claim
                await announce(incident)
        except Exception:  # the database may be restarting: the next tick tries again
            log.exception("SLA check failed")

    @wall_clock_timer(interval=settings.fusion.check_interval_s, on_leader=True)
    async def watch_incidents() -> None:
        """Incidents whose sources all cleared resolve; urgent ones nobody acknowledged escalate;
        candidates a crash left unpublished go to fusion again."""
        hold = timedelta(seconds=settings.fusion.resolve_hold_s)
        republish_after = timedelta(seconds=settings.fusion.republish_after_s)
        limits = settings.alerts.escalate_after_s
        try:
            async with store.connection() as conn:
                versions = await incident_lifecycle.auto_resolve(conn, hold)
                versions += await incident_lifecycle.escalate(conn, limits)
                unfused = await unfused_candidates(conn, republish_after)
            await publish(versions)
            for incident in unfused:
                await announce(incident)
        except Exception:  # the database may be restarting: the next tick tries again
            log.exception("incident check failed")

    @app.on_before_shutdown.connect
    async def close_store(_app: faust.App, **_: Any) -> None:
        await sinks["readings"].close()
        await store.close()

    return app


def run_worker(settings: Settings) -> None:
    """Run the agents until SIGTERM/SIGINT (Faust's worker handles the signals)."""
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True)
    worker.execute_from_commandline()


__all__ = ["create_app", "run_worker"]
