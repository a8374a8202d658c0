"""The shipped routing tree on a real Alertmanager, driven through `AlertmanagerClient`: what
reaches the hotline desk's webhook and mailbox, the district desks and the duty supervisor, what
silences and inhibitions hold back, and when a "resolved" message goes out."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest

from ioc.alerts.alertmanager import AlertmanagerClient, AlertmanagerError, AmAlert
from ioc.devtools.stack.alertmanager import AlertmanagerService
from ioc.devtools.stack.process import free_port
from tests.alerts.conftest import WebhookSink, alertmanager_missing
from tests.conftest import wait_for
from tests.smtp import SmtpSink

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(alertmanager_missing() is not None, reason=str(alertmanager_missing())),
]

T = TypeVar("T")
Run = Callable[[Awaitable[T]], T]
HOTLINE_MAIL = "hotline-duty@example.invalid"
SUPERVISOR_MAIL = "duty-supervisor@example.invalid"
SETTLE_S = 2.5  # > two group intervals (1 s in the test tree) plus a flush


def new_id(prefix: str = "inc") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def incident(
    incident_id: str,
    *,
    kind: str = "fire",
    severity: str = "urgent",
    district: str = "Phường Phan Đình Phùng",
    scope: str = "local",
    sources: str = "1",
    alertname: str = "IOCIncident",
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
) -> AmAlert:
    return AmAlert(
        labels={
            "alertname": alertname,
            "incident_id": incident_id,
            "kind": kind,
            "severity": severity,
            "district": district,
            "sources": sources,
            "scope": scope,
        },
        annotations={
            "summary_vi": f"Cháy tại chợ Thái ({incident_id})",
            "summary_en": f"Fire at Thai market ({incident_id})",
            "location": "Chợ Thái, đường Hoàng Văn Thụ",
            "wall": f"http://127.0.0.1:3000/d/ioc-overview?var-incident={incident_id}",
        },
        starts_at=starts_at or datetime.now(UTC) - timedelta(seconds=5),
        ends_at=ends_at,
        generator_url=f"http://ioc.example/incidents/{incident_id}",
    )


def count(probe: Callable[[], list[T]], n: int) -> Callable[[], list[T] | None]:
    """For `wait_for`: the items once there are exactly `n` of them."""

    def probed() -> list[T] | None:
        items = probe()
        return items if len(items) == n else None

    return probed


def stays(probe: Callable[[], bool], seconds: float = SETTLE_S, what: str = "condition") -> None:
    """`probe` holds for `seconds` (to show that a second notification does not come)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert probe(), f"{what} stopped holding"
        time.sleep(0.1)


@pytest.fixture
def am(alertmanager: AlertmanagerService, run: Run[Any]) -> Iterator[AlertmanagerClient]:
    client = AlertmanagerClient(alertmanager.url)
    yield client
    run(client.close())


def test_urgent_alert_reaches_the_hotline_webhook_and_mailbox_once(
    am: AlertmanagerClient, run: Run[Any], webhook_sink: WebhookSink, smtp_sink: SmtpSink
) -> None:
    incident_id = new_id()
    alert = incident(incident_id)
    run(am.post([alert]))

    (note,) = wait_for(lambda: webhook_sink.about(incident_id), 15, "the hotline webhook")
    (mail,) = wait_for(lambda: smtp_sink.about(incident_id), 15, "the hotline e-mail")
    stays(lambda: len(webhook_sink.about(incident_id)) == 1, what="one webhook notification")
    assert len(smtp_sink.about(incident_id)) == 1

    assert note.path == "/hotline"
    assert note.payload["receiver"] == "hotline-duty"
    assert note.payload["status"] == "firing"
    assert note.payload["groupLabels"] == {"incident_id": incident_id}
    (sent,) = note.payload["alerts"]
    assert sent["labels"] == alert.labels
    assert sent["annotations"] == alert.annotations
    assert sent["generatorURL"] == alert.generator_url

    assert mail.recipients == [HOTLINE_MAIL]
    assert mail.subject == (
        f"[IOC FIRING] {alert.annotations['summary_vi']} / {alert.annotations['summary_en']}"
    )
    body = mail.text()
    for text in [*alert.annotations.values(), "Phường Phan Đình Phùng", "urgent · fire"]:
        assert text in body


def test_alerts_of_one_incident_within_group_wait_make_one_notification(
    am: AlertmanagerClient, run: Run[Any], webhook_sink: WebhookSink
) -> None:
    incident_id = new_id()
    # group_wait runs from the alert's startsAt, not from its arrival: an alert that started
    # longer ago than group_wait is sent at once, alone. These three start now.
    started = datetime.now(UTC)
    for sources in ("1", "2", "3"):  # three label sets: three alerts, one incident
        run(am.post([incident(incident_id, sources=sources, starts_at=started)]))

    (note,) = wait_for(lambda: webhook_sink.about(incident_id), 15, "the hotline webhook")
    stays(lambda: len(webhook_sink.about(incident_id)) == 1, what="one notification")
    assert sorted(a["labels"]["sources"] for a in note.payload["alerts"]) == ["1", "2", "3"]


def test_silence_holds_back_an_acknowledged_incident_and_its_expiry_lets_resolution_out(
    am: AlertmanagerClient, run: Run[Any], webhook_sink: WebhookSink
) -> None:
    incident_id, control_id = new_id(), new_id("control")
    first = incident(incident_id)
    run(am.post([first]))
    wait_for(lambda: webhook_sink.about(incident_id), 15, "the first notification")

    # Acknowledged: a silence bound to the incident. A new alert of it (a second source joined)
    # is held back, while an unrelated incident posted at the same time still goes out.
    silence_id = run(
        am.silence(
            {"incident_id": incident_id},
            ends_at=datetime.now(UTC) + timedelta(hours=1),
            created_by="operator-7",
            comment="acknowledged in the IOC console",
        )
    )
    second = incident(incident_id, sources="2")
    run(am.post([second, incident(control_id)]))
    held = run(am.alerts({"incident_id": incident_id}))
    assert len(held) == 2
    assert all(a["status"]["state"] == "suppressed" for a in held)
    assert all(a["status"]["silencedBy"] == [silence_id] for a in held)
    assert run(am.alerts({"incident_id": incident_id}, silenced=False)) == []
    wait_for(lambda: webhook_sink.about(control_id), 15, "the control incident's notification")
    stays(lambda: len(webhook_sink.about(incident_id)) == 1, what="the silence")

    (listed,) = [s for s in run(am.silences()) if s["id"] == silence_id]
    assert listed["status"]["state"] == "active"
    assert listed["createdBy"] == "operator-7"
    assert listed["matchers"] == [
        {"name": "incident_id", "value": incident_id, "isRegex": False, "isEqual": True}
    ]

    # Resolved: expire the silence first, then end the alerts; the desk hears "resolved".
    run(am.expire_silence(silence_id))
    run(am.expire_silence(silence_id))  # already expired: not an error
    run(am.expire_silence(str(uuid.uuid4())))  # unknown: not an error either
    now = datetime.now(UTC)
    run(
        am.post(
            [incident(incident_id, ends_at=now), incident(incident_id, sources="2", ends_at=now)]
        )
    )

    def resolved() -> bool:
        last = webhook_sink.about(incident_id)[-1].payload
        return last["status"] == "resolved"

    wait_for(resolved, 15, "the resolved notification")
    last = webhook_sink.about(incident_id)[-1].payload
    assert all(a["status"] == "resolved" for a in last["alerts"])
    (expired,) = [s for s in run(am.silences()) if s["id"] == silence_id]
    assert expired["status"]["state"] == "expired"


def test_a_resolution_posted_under_an_active_silence_is_never_notified(
    am: AlertmanagerClient, run: Run[Any], webhook_sink: WebhookSink
) -> None:
    """Why the silence must be expired before the resolution is posted: Alertmanager mutes the
    resolved alert, drops it from its group at the next flush, and expiring the silence later
    does not bring it back."""
    incident_id = new_id()
    run(am.post([incident(incident_id)]))
    wait_for(lambda: webhook_sink.about(incident_id), 15, "the firing notification")
    silence_id = run(
        am.silence({"incident_id": incident_id}, datetime.now(UTC) + timedelta(hours=1), "t", "")
    )
    run(am.post([incident(incident_id, ends_at=datetime.now(UTC))]))
    stays(lambda: len(webhook_sink.about(incident_id)) == 1, what="the silence")
    run(am.expire_silence(silence_id))
    stays(lambda: len(webhook_sink.about(incident_id)) == 1, what="the lost resolution")


def test_ending_an_alert_sends_a_resolved_notification(
    am: AlertmanagerClient, run: Run[Any], webhook_sink: WebhookSink, smtp_sink: SmtpSink
) -> None:
    incident_id = new_id()
    run(am.post([incident(incident_id)]))
    wait_for(lambda: webhook_sink.about(incident_id), 15, "the firing notification")
    wait_for(lambda: smtp_sink.about(incident_id), 15, "the firing e-mail")

    run(am.post([incident(incident_id, ends_at=datetime.now(UTC))]))
    firing, resolved = wait_for(
        count(lambda: webhook_sink.about(incident_id), 2),
        15,
        "the resolved notification",
    )
    assert firing.payload["status"] == "firing"
    assert resolved.payload["status"] == "resolved"
    (alert,) = resolved.payload["alerts"]
    assert alert["status"] == "resolved"
    assert not alert["endsAt"].startswith("0001")
    _, mail = wait_for(
        count(lambda: smtp_sink.about(incident_id), 2),
        15,
        "the resolved e-mail",
    )
    assert mail.subject.startswith("[IOC RESOLVED]")
    assert run(am.alerts({"incident_id": incident_id})) == []


def test_a_district_wide_flood_inhibits_local_water_alerts_of_its_district_only(
    am: AlertmanagerClient, run: Run[Any], webhook_sink: WebhookSink
) -> None:
    suffix = uuid.uuid4().hex[:6]
    flooded, dry = f"Phường Túc Duyên {suffix}", f"Phường Gia Sàng {suffix}"
    flood_id, local_id, elsewhere_id = new_id("flood"), new_id("gauge"), new_id("gauge")
    # The flood first: a target alert whose group flushes before the inhibitor has seen the
    # source slips through (posted in one request, about a third of such pairs did).
    run(am.post([incident(flood_id, kind="flood", district=flooded, scope="district")]))
    (flood_note,) = wait_for(lambda: webhook_sink.about(flood_id), 15, "the flood")
    run(
        am.post(
            [
                incident(local_id, kind="water_level_high", severity="high", district=flooded),
                incident(elsewhere_id, kind="water_level_high", severity="high", district=dry),
            ]
        )
    )

    (elsewhere_note,) = wait_for(lambda: webhook_sink.about(elsewhere_id), 15, "the other gauge")
    assert flood_note.path == "/hotline"
    assert elsewhere_note.path == "/district-desk"
    assert elsewhere_note.payload["groupLabels"] == {"district": dry, "kind": "water_level_high"}

    (flood,) = run(am.alerts({"incident_id": flood_id}))
    (local,) = run(am.alerts({"incident_id": local_id}))
    assert local["status"]["state"] == "suppressed"
    assert local["status"]["inhibitedBy"] == [flood["fingerprint"]]
    assert run(am.alerts({"incident_id": local_id}, inhibited=False)) == []
    stays(lambda: not webhook_sink.about(local_id), what="the inhibition")


def test_escalation_goes_to_the_supervisor_and_not_the_hotline_desk(
    am: AlertmanagerClient, run: Run[Any], webhook_sink: WebhookSink, smtp_sink: SmtpSink
) -> None:
    incident_id = new_id()
    run(am.post([incident(incident_id)]))
    wait_for(lambda: webhook_sink.about(incident_id, "/hotline"), 15, "the hotline notification")

    run(am.post([incident(incident_id, alertname="IOCIncidentEscalated")]))
    (note,) = wait_for(lambda: webhook_sink.about(incident_id, "/escalation"), 15, "the escalation")
    (mail,) = wait_for(
        lambda: smtp_sink.about(incident_id, SUPERVISOR_MAIL), 15, "the supervisor's e-mail"
    )
    stays(lambda: len(webhook_sink.about(incident_id)) == 2, what="no further notification")

    assert note.payload["receiver"] == "escalation"
    assert [a["labels"]["alertname"] for a in note.payload["alerts"]] == ["IOCIncidentEscalated"]
    (hotline,) = webhook_sink.about(incident_id, "/hotline")
    assert [a["labels"]["alertname"] for a in hotline.payload["alerts"]] == ["IOCIncident"]
    assert mail.recipients == [SUPERVISOR_MAIL]
    assert mail.subject.startswith("[IOC ESCALATED FIRING] Cháy tại chợ Thái")
    assert len(smtp_sink.about(incident_id, HOTLINE_MAIL)) == 1


def test_client_reports_refusals_and_outages_apart(am: AlertmanagerClient, run: Run[Any]) -> None:
    assert run(am.ready())
    bad = AmAlert(labels={"bad-label": "x"}, annotations={}, starts_at=datetime.now(UTC))
    with pytest.raises(AlertmanagerError) as refused:
        run(am.post([bad]))
    assert refused.value.status == 400
    assert "bad-label" in refused.value.reason

    with pytest.raises(ValueError, match="time zone"):
        run(am.post([AmAlert({"alertname": "x"}, {}, starts_at=datetime(2026, 1, 1))]))

    down = AlertmanagerClient(f"http://127.0.0.1:{free_port()}", timeout_s=1, retries=2)
    down.backoff_s = 0.01
    try:
        assert not run(down.ready())
        with pytest.raises(httpx.TransportError):
            run(down.post([incident(new_id())]))
    finally:
        run(down.close())
