"""The page a resolved notice links to: the reporter reopens their report, once, within the
window. No account: the signed link is the reporter's right to reopen this one report. What the
reporter types is redacted (phone numbers, e-mails) before staff see it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from ioc.api.context import database, runtime_of, staff_actions
from ioc.citizens.reopen import ReopenClaim, read_reopen
from ioc.console.links import LinkRefused
from ioc.hotline.privacy import redact_text
from ioc.incidents import lifecycle

log = logging.getLogger(__name__)

CITIZEN_PATH = "/citizen"
MAX_FORM_BYTES = 4 * 1024
MAX_WHY = 500
REFUSED = {
    403: "Liên kết không hợp lệ. Nếu cần, hãy gọi tổng đài 1022.",
    410: "Đã quá thời hạn mở lại phản ánh này. Hãy gửi phản ánh mới hoặc gọi tổng đài 1022.",
}

router = APIRouter()
templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")


class CannotReopen(Exception):
    def __init__(self, status: int, message: str, ticket_id: str | None = None) -> None:
        self.status, self.message, self.ticket_id = status, message, ticket_id


def _page(request: Request, status: int = 200, **context: object) -> HTMLResponse:
    context = {"message": None, "done": False, "ticket_id": None} | context
    response = templates.TemplateResponse(request, "reopen.html", context, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    response.headers["Referrer-Policy"] = "no-referrer"  # the link is the reporter's right
    return response


async def _claim(request: Request, token: str) -> ReopenClaim:
    """A genuine, unexpired link to a report whose incident is still resolved in the episode
    the link was sent for."""
    runtime = runtime_of(request)
    key = runtime.settings.citizens.contact_key
    if key is None:
        raise CannotReopen(404, "Máy chủ này không nhận mở lại phản ánh qua liên kết.")
    try:
        claim = read_reopen(key, token, datetime.now(UTC))
    except LinkRefused as refusal:
        log.warning("reopen link refused: %s", refusal.reason)
        raise CannotReopen(refusal.status, REFUSED.get(refusal.status, refusal.reason)) from None
    async with database(runtime) as conn:
        try:
            incident = await lifecycle.get(conn, claim.incident_id)
        except lifecycle.UnknownIncident:
            raise CannotReopen(404, "Không tìm thấy phản ánh.") from None
    if incident.status != "resolved" or incident.episode != claim.episode:
        raise CannotReopen(
            409, "Phản ánh này đã được mở lại hoặc đang được xử lý.", claim.ticket_id
        )
    return claim


@router.get("/reopen/{token}", response_class=HTMLResponse)
async def reopen_page(token: str, request: Request) -> HTMLResponse:
    try:
        claim = await _claim(request, token)
    except CannotReopen as cannot:
        return _page(request, cannot.status, message=cannot.message, ticket_id=cannot.ticket_id)
    return _page(request, ticket_id=claim.ticket_id)


@router.post("/reopen/{token}", response_class=HTMLResponse)
async def reopen(token: str, request: Request) -> HTMLResponse:
    """Reopen the incident the report is part of, as the reporter of that report."""
    try:
        claim = await _claim(request, token)
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            raise CannotReopen(413, "Nội dung quá dài.", claim.ticket_id)
        why = parse_qs(body.decode(errors="replace")).get("why", [""])[-1].strip()[:MAX_WHY]
        reason = f"người phản ánh {claim.ticket_id} báo chưa xử lý xong"
        if why:
            reason += f": {redact_text(why)}"
        try:
            await staff_actions(runtime_of(request)).change_incident(
                claim.incident_id, "reopen", f"citizen:{claim.ticket_id}", reason
            )
        except lifecycle.IncidentTransitionError:
            raise CannotReopen(
                409, "Phản ánh này đã được mở lại hoặc đang được xử lý.", claim.ticket_id
            ) from None
    except CannotReopen as cannot:
        return _page(request, cannot.status, message=cannot.message, ticket_id=cannot.ticket_id)
    log.info("incident %s reopened by the reporter of %s", claim.incident_id, claim.ticket_id)
    return _page(request, done=True, ticket_id=claim.ticket_id)
