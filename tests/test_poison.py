"""Poison (invalid JSON, wrong schema, invalid UTF-8, NaN, a huge payload) from an outside client
(kcat, Debian's Kafka command-line producer) and through the MQTT edge ends in the dead-letter
topic with its reason while the agents go on; at the HTTP edges it gets a 4xx with the reason and
nothing is published."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from ioc.api.app import create_app
from ioc.config import Settings
from ioc.devtools.stack.mosquitto import MosquittoService
from ioc.kafka import topics
from ioc.kafka.clients import MAX_MESSAGE_BYTES
from ioc.kafka.dlq import KEPT_VALUE_BYTES

from .conftest import (
    TEST_REGISTRY,
    BridgeThread,
    dead_letters,
    end_offsets,
    publish,
    published_since,
    wait_for,
)

pytestmark = pytest.mark.integration
KCAT = shutil.which("kcat")


def kcat(settings: Settings, topic: str, key: str, payload: Path) -> None:
    """One message whose value is the file's bytes, exactly (no delimiter parsing)."""
    assert KCAT is not None
    subprocess.run(
        [
            *(KCAT, "-P", "-X", "message.max.bytes=9000000"),
            *("-b", settings.kafka.bootstrap_servers, "-t", topic, "-k", key, str(payload)),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )


@pytest.mark.skipif(KCAT is None, reason="kcat not installed (make install does it as root)")
def test_poison_from_kcat_is_dead_lettered_with_reasons_and_the_agents_go_on(
    workers: Settings, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    now = datetime.now(UTC).isoformat()
    sensor = TEST_REGISTRY.read_text().split('id = "', 1)[1].split('"', 1)[0]
    cases: dict[str, tuple[str, bytes, str]] = {
        # name: (topic, value, words the reason must contain)
        "json": (
            topics.HOTLINE_TICKETS,
            b'{"service_request_id": "P-json-%s", ' % run.encode(),
            "JSON",
        ),
        "schema": (
            topics.SENSOR_EVENTS,
            json.dumps(
                {"id": sensor, "type": "FloodMonitoring", "note": f"P-schema-{run}"}
            ).encode(),
            "invalid",
        ),
        "utf8": (
            topics.HOTLINE_TICKETS,
            b"\xff\xfe\xfa P-utf8-%s \xc3\x28" % run.encode(),
            "invalid",
        ),
        "nan": (
            topics.SENSOR_EVENTS,
            b'{"id": "%s", "type": "FloodMonitoring", "dateObserved": "%s", "currentLevel": NaN,'
            b' "note": "P-nan-%s"}' % (sensor.encode(), now.encode(), run.encode()),
            "",
        ),
        "huge": (
            topics.VISION_DETECTIONS,
            b'{"camera_id": "P-huge-%s", "pad": "%s"}' % (run.encode(), b"x" * (3 * 1024 * 1024)),
            "invalid",
        ),
    }
    for name, (topic, value, _) in cases.items():
        path = tmp_path / name
        path.write_bytes(value)
        kcat(workers, topic, f"P-{name}-{run}", path)

    for name, (topic, _, words) in cases.items():
        marker = f"P-{name}-{run}".encode()
        letters = wait_for(lambda m=marker: dead_letters(workers, m), 60, f"{name} dead letter")
        assert len(letters) == 1, name
        headers = letters[0].headers
        assert headers["source_topic"] == topic, name
        assert headers["reason"] and words.lower() in headers["reason"].lower(), headers
    huge = dead_letters(workers, f"P-huge-{run}".encode())[0]
    assert int(huge.headers["value_bytes"]) == len(cases["huge"][1])
    assert len(huge.value) == KEPT_VALUE_BYTES  # the head; the whole stays on its topic

    # The agents go on: after the poison, the hotline agent stores a good ticket, and the sensor
    # and camera agents still judge what comes (an unknown sensor and camera: dead-lettered).
    good_ticket = f"P-good-{run}"
    after: dict[str, tuple[str, bytes]] = {
        good_ticket: (
            topics.HOTLINE_TICKETS,
            json.dumps(
                {
                    "service_request_id": good_ticket,
                    "requested_datetime": now,
                    "channel": "phone",
                    "description": "Cây đổ chắn ngang đường tổ 3",
                    "lat": 21.59,
                    "long": 105.84,
                }
            ).encode(),
        ),
        f"P-sensor-after-{run}": (
            topics.SENSOR_EVENTS,
            json.dumps(
                {
                    "id": f"P-sensor-after-{run}",
                    "type": "FloodMonitoring",
                    "dateObserved": now,
                    "currentLevel": 0.5,
                }
            ).encode(),
        ),
        f"P-camera-after-{run}": (
            topics.VISION_DETECTIONS,
            json.dumps({"camera_id": f"P-camera-after-{run}"}).encode(),
        ),
    }
    for key, (topic, value) in after.items():
        path = tmp_path / key
        path.write_bytes(value)
        kcat(workers, topic, key, path)

    def stored() -> bool:
        with psycopg.connect(workers.database.dsn) as conn:
            row = conn.execute(
                "SELECT count(*) FROM tickets WHERE service_request_id = %s", (good_ticket,)
            ).fetchone()
        return bool(row and row[0])

    wait_for(stored, 60, "the good ticket after the poison")
    for key in list(after)[1:]:
        wait_for(lambda k=key: dead_letters(workers, k.encode()), 60, f"{key} judged")


def poison_bodies(sensor: str, now: str) -> dict[str, tuple[bytes, str]]:
    """The same kinds of poison for the HTTP edges: name: (body, field the reason names)."""
    return {
        "json": (b'{"id": "%s", "currentLevel": ' % sensor.encode(), "JSON"),
        "schema": (json.dumps({"sensor": sensor, "level": 1.0}).encode(), ""),
        "utf8": (b'{"id": "\xff\xfe\xfa", "type": "FloodMonitoring"}', ""),
        "nan": (
            b'{"id": "%s", "type": "FloodMonitoring", "dateObserved": "%s", "currentLevel": NaN}'
            % (sensor.encode(), now.encode()),
            "",
        ),
        "huge": (b'{"pad": "%s"}' % (b"x" * (1024 * 1024)), ""),
    }


@pytest.fixture(scope="module")
def api(workers: Settings) -> Iterator[TestClient]:
    keys = {"hotline": {"api_keys": {"poison-test": "k-poison"}}}
    with TestClient(create_app(Settings(**keys))) as client:
        yield client


@pytest.mark.parametrize("case", ["json", "schema", "utf8", "nan", "huge"])
@pytest.mark.parametrize(
    ("url", "topic"),
    [
        ("/open311/v2/requests.json", topics.HOTLINE_TICKETS),
        ("/sensors/v1/observations", topics.SENSOR_EVENTS),
    ],
    ids=["open311", "sensors"],
)
def test_poison_at_the_http_edge_is_refused_with_a_reason_and_nothing_is_published(
    api: TestClient, workers: Settings, url: str, topic: str, case: str
) -> None:
    sensor = TEST_REGISTRY.read_text().split('id = "', 1)[1].split('"', 1)[0]
    body, words = poison_bodies(sensor, datetime.now(UTC).isoformat())[case]
    before = end_offsets(workers, topic)
    response = api.post(
        url, content=body, headers={"X-API-Key": "k-poison", "Content-Type": "application/json"}
    )
    assert 400 <= response.status_code < 500, (case, response.status_code, response.text)
    assert response.text.strip() and words in response.text, response.text
    assert published_since(workers, topic, before) == [], "a refused body publishes nothing"


@pytest.mark.skipif(
    shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
    reason="mosquitto not installed (make install does it as root)",
)
def test_poison_through_the_mqtt_edge_is_dead_lettered_with_reasons(
    workers: Settings, broker: MosquittoService, bridge: BridgeThread
) -> None:
    run = uuid.uuid4().hex[:8]
    now = datetime.now(UTC).isoformat()
    sensor = TEST_REGISTRY.read_text().split('id = "', 1)[1].split('"', 1)[0]
    payloads = {
        "json": b'{"id": "%s", "note": "M-json-%s", ' % (sensor.encode(), run.encode()),
        "schema": json.dumps(
            {"id": sensor, "type": "FloodMonitoring", "note": f"M-schema-{run}"}
        ).encode(),
        "utf8": b"\xff\xfe M-utf8-%s \xc3\x28" % run.encode(),
        "nan": b'{"id": "%s", "type": "FloodMonitoring", "dateObserved": "%s",'
        b' "currentLevel": NaN, "note": "M-nan-%s"}'
        % (sensor.encode(), now.encode(), run.encode()),
        "huge": b"M-huge-%s " % run.encode() + b"x" * (MAX_MESSAGE_BYTES + 1),
    }
    for payload in payloads.values():
        publish(broker, f"ioc/sensors/{sensor}", payload)
    for name in payloads:
        marker = f"M-{name}-{run}".encode()
        letters = wait_for(lambda m=marker: dead_letters(workers, m), 60, f"{name} dead letter")
        assert len(letters) == 1, name
        assert letters[0].headers["reason"], name
