"""What a reporter is told, and when: pure functions of their report's state.

A report's state is its ticket and the incident it ended up in (followed through a merge). Each
notice has a key that says what it tells (`received`, `assigned:<episode>:<unit>`,
`resolved:<episode>`), so a notice is sent once, a transfer to another unit is told, and a report
reopened and resolved again is told again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ioc.models.base import VIETNAM_TIME, deterministic_id
from ioc.models.categories import CATEGORY_NAMES, Category
from ioc.notify.channels import Message

SIGNATURE = "Trung tâm Điều hành thông minh (IOC) tỉnh Thái Nguyên"


@dataclass(frozen=True)
class ReportState:
    """One report as the loop sees it."""

    ticket_id: str
    category: str | None
    incident_id: str | None
    status: str | None  # the incident's: open | acknowledged | resolved (None: not fused yet)
    episode: int
    unit_name: str | None
    resolution: str | None
    resolved_note: str | None
    resolved_at: datetime | None


def due(state: ReportState) -> list[str]:
    """The notices this state calls for, oldest news first."""
    keys = ["received"]
    if state.status in ("open", "acknowledged") and state.unit_name:
        keys.append(f"assigned:{state.episode}:{state.unit_name}")
    if state.status == "resolved":
        keys.append(f"resolved:{state.episode}")
    return keys


def reopen_until(state: ReportState, reopen: timedelta) -> datetime | None:
    return state.resolved_at + reopen if state.resolved_at else None


def notice(state: ReportState, key: str, reopen_url: str | None, until: datetime | None) -> Message:
    """The notice `key` for this report, in Vietnamese."""
    ticket, stage = state.ticket_id, key.partition(":")[0]
    names = CATEGORY_NAMES.get(Category(state.category)) if state.category else None
    about = f" ({names[0].lower()})" if names else ""
    if stage == "received":
        status = "Đã tiếp nhận"
        text = (
            f"Phản ánh {ticket}{about} đã được tiếp nhận. Chúng tôi sẽ báo khi có đơn vị "
            "xử lý và khi xử lý xong."
        )
    elif stage == "assigned":
        status = "Đã giao xử lý"
        text = f"Phản ánh {ticket} đã được giao cho {state.unit_name} xử lý."
    else:
        status = "Đã xử lý"
        if state.resolution == "false_alarm":
            text = f"Phản ánh {ticket}: lực lượng chức năng đã kiểm tra và không phát hiện sự cố."
        elif state.resolution == "cleared":
            text = f"Phản ánh {ticket}: sự việc đã kết thúc."
        else:
            text = f"Phản ánh {ticket} đã được xử lý xong."
        if state.resolved_note:
            text += f" Kết quả: {state.resolved_note.strip().rstrip('.')}."
        if reopen_url and until:
            deadline = until.astimezone(VIETNAM_TIME).strftime("%H:%M %d/%m/%Y")
            text += (
                f" Nếu vấn đề vẫn còn, bạn có thể mở lại phản ánh trước {deadline}: {reopen_url}"
            )
    return Message(
        id=deterministic_id("notice", ticket, key),
        reference=ticket,
        subject=f"[1022] Phản ánh {ticket}: {status.lower()}",
        text=f"{text}\n\n{SIGNATURE}",
        status_vi=status,
    )
