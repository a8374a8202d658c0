"""What a reporter is told follows their report's state: once each, in order, in Vietnamese."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ioc.citizens.notices import ReportState, due, notice, reopen_until

RESOLVED_AT = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)


def state(**changes: object) -> ReportState:
    base: dict[str, object] = {
        "ticket_id": "1022-A7",
        "category": "chay_no",
        "incident_id": "inc-1",
        "status": "open",
        "episode": 1,
        "unit_name": None,
        "resolution": None,
        "resolved_note": None,
        "resolved_at": None,
    }
    return ReportState(**(base | changes))  # type: ignore[arg-type]


def test_each_step_of_the_incident_calls_for_its_notice() -> None:
    assert due(state(status=None)) == ["received"]  # stored, not fused yet
    assert due(state()) == ["received"]
    pccc = "Phòng Cảnh sát PCCC và CNCH"
    assert due(state(status="acknowledged", unit_name=pccc)) == ["received", f"assigned:1:{pccc}"]
    # Resolved: the assignment is no longer news; reopened and resolved again: told again.
    assert due(state(status="resolved", unit_name=pccc)) == ["received", "resolved:1"]
    assert due(state(status="resolved", episode=2)) == ["received", "resolved:2"]


def test_a_resolved_notice_says_what_was_done_and_how_to_reopen_until_when() -> None:
    resolved = state(
        status="resolved",
        resolution="handled",
        resolved_note="Đã dập tắt đám cháy, không có người bị thương.",
        resolved_at=RESOLVED_AT,
    )
    until = reopen_until(resolved, timedelta(days=7))
    told = notice(resolved, "resolved:1", "https://ioc.example/citizen/reopen/t0k", until)
    assert "Phản ánh 1022-A7 đã được xử lý xong" in told.text
    assert "Kết quả: Đã dập tắt đám cháy, không có người bị thương." in told.text
    assert "mở lại phản ánh trước 10:00 13/12/2026: https://ioc.example/citizen/reopen/t0k" in (
        told.text
    ), "Vietnam's time, a week on"
    assert told.subject == "[1022] Phản ánh 1022-A7: đã xử lý"
    assert told.id == notice(resolved, "resolved:1", None, until).id, "stable across retries"
    assert told.id != notice(resolved, "resolved:2", None, until).id


def test_a_false_alarm_is_told_as_checked_not_as_fixed() -> None:
    checked = state(status="resolved", resolution="false_alarm", resolved_at=RESOLVED_AT)
    told = notice(checked, "resolved:1", None, None)
    assert "đã kiểm tra và không phát hiện sự cố" in told.text
    assert "xử lý xong" not in told.text and "mở lại" not in told.text


def test_received_names_the_category_and_assigned_the_unit() -> None:
    assert "(cháy, nổ) đã được tiếp nhận" in notice(state(), "received", None, None).text
    given = state(unit_name="Phòng Cảnh sát PCCC và CNCH")
    text = notice(given, "assigned:1:x", None, None).text
    assert "đã được giao cho Phòng Cảnh sát PCCC và CNCH xử lý" in text
