"""The console's ticket page: a 1022 report's triage (category, priority, urgency, how sure,
which model), the evidence triage matched in its words, every correction staff made, and the
form hotline staff correct it with. A correction goes through the same service as the Open311
correction API: audited with who and why, it pages at once when it makes a ticket urgent, and
`ioc triage train` learns from it."""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from psycopg.rows import dict_row
from pydantic import ValidationError

from ioc.api.context import database, runtime_of, staff_actions
from ioc.console.web import (
    CONSOLE_PATH,
    MAX_REASON,
    Refused,
    check_csrf,
    form_of,
    page,
    session_of,
    words,
)
from ioc.hotline.corrections import Correction, CorrectionError
from ioc.hotline.tickets import UnknownTicket
from ioc.hotline.triage import Triage, TriageResult
from ioc.models.categories import CATEGORY_NAMES, Category

log = logging.getLogger(__name__)
router = APIRouter()

TICKET = (
    "SELECT service_request_id, requested_at, channel, description, address, category,"
    " service_code, priority, urgent, triage_confidence, urgency_confidence, triage_model,"
    " status, sla_due, incident_id, (SELECT fused_id FROM incidents i WHERE i.id = t.incident_id)"
    " AS fused_id FROM tickets t WHERE service_request_id = %s"
)
CORRECTIONS = (
    "SELECT at, corrected_by, reason, from_category, from_priority, from_urgent, to_category,"
    " to_priority, to_urgent FROM triage_corrections WHERE service_request_id = %s ORDER BY at"
)


@cache
def _triage(rules: Path | None, sla: Path | None, model: Path | None) -> Triage:
    return Triage.load(rules, sla, model)


def evidence(request: Request, ticket: dict[str, Any]) -> TriageResult:
    """Triage's reading of the stored words (contacts masked at intake), by the model now
    loaded: what it matched, for staff to judge the verdict by."""
    hotline = runtime_of(request).settings.hotline
    triage = _triage(hotline.triage_rules, hotline.sla_table, hotline.triage_model)
    code = Category(ticket["service_code"]) if ticket["service_code"] else None
    return triage.classify(ticket["description"], code)


@router.get("/tickets/{ticket_id}", response_class=HTMLResponse)
async def ticket_page(ticket_id: str, request: Request) -> HTMLResponse:
    return await _ticket(request, ticket_id, error=None)


async def _ticket(
    request: Request, ticket_id: str, error: str | None, status: int = 200
) -> HTMLResponse:
    session = await session_of(request)
    async with database(runtime_of(request)) as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(TICKET, (ticket_id,))
        ticket = await cur.fetchone()
        if ticket is None:
            raise Refused(404, "Không có phản ánh {id}.", id=ticket_id)
        await cur.execute(CORRECTIONS, (ticket_id,))
        corrections = await cur.fetchall()
    context = {
        "session": session,
        "ticket": ticket,
        "corrections": corrections,
        "reading": evidence(request, ticket),
        "categories": {category.value: names for category, names in CATEGORY_NAMES.items()},
        "error": error,
    }
    return page(request, "ticket.html", context, status_code=status)


@router.post("/tickets/{ticket_id}/triage", response_class=HTMLResponse)
async def correct(ticket_id: str, request: Request) -> Response:
    """Sửa phân loại: the category, urgency and priority staff judge right, and why."""
    session = await session_of(request)
    form = await form_of(request)
    check_csrf(session, form)
    fields: dict[str, Any] = {
        "corrected_by": session.staff.username,
        "reason": form.get("reason", "").strip()[:MAX_REASON],
    }
    if form.get("category"):
        fields["category"] = form["category"]
    if form.get("urgent") in ("true", "false"):
        fields["urgent"] = form["urgent"] == "true"
    if form.get("priority"):
        fields["priority"] = form["priority"]
    try:
        correction = Correction.model_validate(fields)
    except ValidationError as invalid:
        problem = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'form'}: {e['msg']}" for e in invalid.errors()
        )
        message = words(request)("Không sửa được: {why}", why=problem)
        return await _ticket(request, ticket_id, message, status=400)
    runtime = runtime_of(request)
    try:
        await staff_actions(runtime).correct_ticket(ticket_id, correction, runtime.sla)
    except UnknownTicket:
        raise Refused(404, "Không có phản ánh {id}.", id=ticket_id) from None
    except CorrectionError as unchanged:
        message = words(request)("Không sửa được: {why}", why=unchanged)
        return await _ticket(request, ticket_id, message, status=409)
    log.info("ticket %s triage corrected by %s (console)", ticket_id, session.staff.username)
    return RedirectResponse(f"{CONSOLE_PATH}/tickets/{quote(ticket_id)}", status_code=303)
