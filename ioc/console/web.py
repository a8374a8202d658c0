"""The console's pages, server-rendered (Jinja2) with htmx from the package: sign-in, the queue
of open and acknowledged incidents (all, or one unit's), an incident's page with its evidence,
history and the actions staff take (Nhận, Giao đơn vị, Đã xử lý, Báo nhầm, Mở lại), and the page
a signed alert link opens.

A page needs a session (a cookie made at sign-in); without one it sends the browser to the
sign-in page. Every form carries the session's CSRF token, and a POST without it is refused
(403), so another site cannot act in a signed-in browser's name. Actions go through the same
incident service as the API and the terminal, with the staff member's username as the actor.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from ioc.api.context import Runtime, database, runtime_of, staff_actions
from ioc.api.evidence import evidence_file
from ioc.console import accounts, drawn, links
from ioc.console.accounts import Role, Session
from ioc.console.i18n import LANGUAGES, Language, Translate, translator
from ioc.console.links import LinkClaim, LinkRefused
from ioc.dispatch import pager
from ioc.incidents import lifecycle
from ioc.models import FusedStatus, IncidentKind
from ioc.models.base import VIETNAM_TIME
from ioc.models.kinds import KINDS

log = logging.getLogger(__name__)

CONSOLE_PATH = "/console"
COOKIE = "ioc_session"
LANGUAGE_COOKIE = "ioc_lang"
MAX_FORM_BYTES = 16 * 1024
MAX_REASON = 1000
STATIC_DIR = Path(__file__).resolve().parent / "static"
ACTIONS = {
    "ack": "ack",
    "in-progress": "start",
    "resolve": "resolve",
    "false-alarm": "false_alarm",
    "reopen": "reopen",
}
SEVERITY_VI = {"urgent": "Khẩn cấp", "high": "Cao", "normal": "Thường"}
STATUS_VI = {
    "open": "Mới",
    "acknowledged": "Đã nhận",
    "resolved": "Đã xử lý",
    "merged": "Đã gộp",
}
KIND_NAMES: dict[str, dict[str, str]] = {
    "vi": {kind: meta.title_vi for kind, meta in KINDS.items()},
    "en": {kind: meta.title_en for kind, meta in KINDS.items()},
}
IN_PROGRESS_VI = "Đang xử lý"  # acknowledged, and its unit reported work started

router = APIRouter()
templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")
templates.env.filters["local"] = lambda moment, pattern="%d/%m %H:%M": moment.astimezone(
    VIETNAM_TIME
).strftime(pattern)
templates.env.globals |= {
    "console": CONSOLE_PATH,
    "severity_vi": SEVERITY_VI,
    "status_vi": STATUS_VI,
    "status_of": lambda incident: (
        IN_PROGRESS_VI
        if incident.status == FusedStatus.ACKNOWLEDGED and incident.work_started_at
        else STATUS_VI[incident.status]
    ),
    "notice_vi": {"received": "đã tiếp nhận", "assigned": "đã giao", "resolved": "đã xử lý"},
}


class SignInNeeded(Exception):
    """A page asked for without a live session: the browser goes to the sign-in page."""

    def __init__(self, path: str) -> None:
        self.path = path


class Refused(Exception):
    """A request the console refuses: answered with a page saying why, in the reader's language
    (`message` is the Vietnamese text of `i18n`, its placeholders filled from `values`)."""

    def __init__(self, status: int, message: str, **values: object) -> None:
        self.status, self.message, self.values = status, message, values


def sign_in_needed(request: Request, error: Exception) -> Response:
    assert isinstance(error, SignInNeeded)
    target = f"{CONSOLE_PATH}/login?next={quote(error.path)}"
    if request.headers.get("hx-request"):  # an htmx refresh: the whole page goes to sign-in
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def refused(request: Request, error: Exception) -> Response:
    assert isinstance(error, Refused)
    message = words(request)(error.message, **error.values)
    return page(request, "error.html", {"message": message}, status_code=error.status)


HANDLERS = {SignInNeeded: sign_in_needed, Refused: refused}


async def session_of(request: Request) -> Session:
    token = request.cookies.get(COOKIE)
    if token:
        async with database(runtime_of(request)) as conn:
            session = await accounts.session_of(conn, token)
        if session is not None:
            return session
    raise SignInNeeded(request.url.path)


async def form_of(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise Refused(413, "Biểu mẫu quá lớn (tối đa {limit} byte).", limit=MAX_FORM_BYTES)
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        raise Refused(400, "Biểu mẫu không đúng mã UTF-8.") from None
    return {name: values[-1] for name, values in fields.items()}


def check_csrf(session: Session, form: Mapping[str, str]) -> None:
    """The form must echo the session's token: a page of another site cannot know it."""
    sent = form.get("csrf", "")
    if not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
        raise Refused(403, "Biểu mẫu không thuộc phiên làm việc này. Hãy tải lại trang.")


def language_of(request: Request) -> Language:
    """Vietnamese unless the reader asked for English (`?lang=en`, then its cookie)."""
    asked = request.query_params.get("lang") or request.cookies.get(LANGUAGE_COOKIE)
    return "en" if asked == "en" else "vi"


def words(request: Request) -> Translate:
    return translator(language_of(request))


def page(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    language = language_of(request)
    kind_name = KIND_NAMES[language]
    context = context | {"_": translator(language), "lang": language, "kind_name": kind_name}
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie(LANGUAGE_COOKIE, language, path=CONSOLE_PATH, samesite="lax")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        f"default-src 'self'; img-src 'self' data: blob: {_tile_origin(request)};"
        " style-src 'self' 'unsafe-inline'"
    )
    return response


def _tile_origin(request: Request) -> str:
    """Where the map's tiles may come from: the tile server's origin, or nowhere else."""
    tiles = runtime_of(request).settings.console.tile_url
    if tiles is None:
        return ""
    parts = urlsplit(tiles.replace("{s}", "*"))  # {s}.tile.example: any of its subdomains
    return f"{parts.scheme}://{parts.netloc.split('@')[-1]}"


# --- Sign-in ---------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str = CONSOLE_PATH + "/") -> HTMLResponse:
    return page(request, "login.html", {"next": _local(next), "error": None})


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    runtime = runtime_of(request)
    form = await form_of(request)
    username = form.get("username", "").strip().lower()
    target = _local(form.get("next", ""))
    cost = runtime.settings.console.password_cost
    async with database(runtime) as conn:
        staff = await accounts.authenticate(conn, username, form.get("password", ""), cost)
        if staff is None:
            log.warning("console sign-in refused for %r", username[:64])
            context = {"next": target, "error": "Sai tên đăng nhập hoặc mật khẩu."}
            return page(request, "login.html", context, status_code=401)
        lifetime = timedelta(hours=runtime.settings.console.session_hours)
        token, _ = await accounts.open_session(conn, staff, lifetime)
    log.info("console sign-in: %s (%s)", staff.username, staff.role)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(lifetime.total_seconds()),
        path=CONSOLE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    session = await session_of(request)
    check_csrf(session, await form_of(request))
    async with database(runtime_of(request)) as conn:
        await accounts.close_session(conn, request.cookies.get(COOKIE, ""))
    response = RedirectResponse(f"{CONSOLE_PATH}/login", status_code=303)
    response.delete_cookie(COOKIE, path=CONSOLE_PATH)
    return response


def _local(target: str) -> str:
    """Only a console path: a sign-in link must not send the browser elsewhere."""
    if target.startswith(CONSOLE_PATH + "/") and not target.startswith("//"):
        return target
    return CONSOLE_PATH + "/"


# --- The queue -------------------------------------------------------------------------------


KindFilter = Annotated[IncidentKind | None, Query()]
UnitFilter = Annotated[str | None, Query(max_length=100)]
AreaFilter = Annotated[str | None, Query(max_length=200)]


@router.get("/", response_class=HTMLResponse)
async def queue_page(
    request: Request, kind: KindFilter = None, unit: UnitFilter = None, area: AreaFilter = None
) -> HTMLResponse:
    session = await session_of(request)
    context = await _queue(runtime_of(request), kind, unit, area) | {"session": session}
    return page(request, "queue.html", context)


@router.get("/queue", response_class=HTMLResponse)
async def queue_rows(
    request: Request, kind: KindFilter = None, unit: UnitFilter = None, area: AreaFilter = None
) -> HTMLResponse:
    """The queue's rows alone: what the page's htmx refresh swaps in."""
    await session_of(request)
    context = await _queue(runtime_of(request), kind, unit, area)
    return page(request, "_queue_rows.html", context)


async def _queue(
    runtime: Runtime, kind: IncidentKind | None, unit: str | None, area: str | None
) -> dict[str, Any]:
    """Open and acknowledged incidents, the most severe and recent first, of a kind, a unit
    (that unit's queue, each against its SLA clock) and an area (commune or ward)."""
    async with database(runtime) as conn:
        incidents = await lifecycle.listed(conn, [FusedStatus.OPEN, FusedStatus.ACKNOWLEDGED], 500)
    shown = [
        incident
        for incident in incidents
        if (kind is None or incident.kind == kind)
        and (unit is None or incident.unit == unit)
        and (area is None or incident.district == area)
    ]
    chosen = (("kind", kind), ("unit", unit), ("area", area))
    filters = [(name, value) for name, value in chosen if value]
    return {
        "incidents": shown,
        "kind": kind,
        "unit": unit,
        "area": area,
        "areas": sorted({incident.district for incident in incidents if incident.district}),
        "kinds": sorted({incident.kind for incident in incidents}),
        "units": runtime.units,
        "due": {incident.id: runtime.units.due(incident) for incident in shown},
        "now": datetime.now(UTC),
        "query": "?" + urlencode(filters) if filters else "",
        "refresh_s": runtime.settings.console.queue_refresh_s,
    }


# --- An incident -----------------------------------------------------------------------------


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
async def incident_page(incident_id: str, request: Request) -> HTMLResponse:
    session = await session_of(request)
    return await _incident(request, session, incident_id, error=None)


async def _incident(
    request: Request, session: Session, incident_id: str, error: str | None, status: int = 200
) -> HTMLResponse:
    async with database(runtime_of(request)) as conn:
        try:
            incident = await lifecycle.get(conn, incident_id)
        except lifecycle.UnknownIncident:
            raise Refused(404, "Không có sự cố {id}.", id=incident_id) from None
        history = await lifecycle.history(conn, incident_id)
        files = await lifecycle.evidence_files(conn, incident)
        tickets = await lifecycle.tickets(conn, incident)
        pages = await pager.pages_of(conn, incident_id)
        sent = await lifecycle.deliveries(conn, incident_id)
        points = await drawn.map_points(conn, incident, tickets)
        sparklines = await drawn.sensor_sparklines(conn, incident)
        sees_contacts = session.staff.role.at_least(Role.SUPERVISOR)  # to call a reporter back
        if sees_contacts:
            tickets = await _with_reporters(conn, tickets)
    units = runtime_of(request).units
    console_settings = runtime_of(request).settings.console
    commune = runtime_of(request).communes.of(incident.district, incident.lat, incident.lon)
    suggested = units.suggested(incident, (ticket["category"] for ticket in tickets), commune)
    context = {
        "session": session,
        "incident": incident,
        "history": history,
        "files": files,
        "tickets": tickets,
        "error": error,
        "units": units,
        "suggested": suggested,
        "others": [unit for unit in units.units.values() if unit not in suggested],
        "due": units.due(incident),
        "pages": pages,
        "deliveries": sent,
        "sees_contacts": sees_contacts,
        "sparklines": sparklines,
        "map_data": {
            "tiles": console_settings.tile_url,
            "attribution": console_settings.tile_attribution,
            "points": [asdict(point) for point in points],
        },
        "roster": runtime_of(request).roster,
    }
    return page(request, "incident.html", context, status_code=status)


@router.get("/incidents/{incident_id}/{kind}")
async def incident_evidence(
    incident_id: str,
    kind: Literal["snapshot", "clip"],
    request: Request,
    member: Annotated[str | None, Query(max_length=200)] = None,
) -> FileResponse:
    session = await session_of(request)
    runtime = runtime_of(request)
    return await evidence_file(runtime, session.staff.username, incident_id, kind, member)


@router.post("/incidents/{incident_id}/assign", response_class=HTMLResponse)
async def assign(incident_id: str, request: Request) -> Response:
    """Giao đơn vị: hand the incident to a unit of `units.toml`, or transfer it."""
    session = await session_of(request)
    form = await form_of(request)
    check_csrf(session, form)
    runtime = runtime_of(request)
    unit = runtime.units.get(form.get("unit", ""))
    if unit is None:
        raise Refused(400, "Hãy chọn một đơn vị trong danh sách.")
    reason = form.get("reason", "").strip()[:MAX_REASON] or None
    staff = session.staff.username
    try:
        await staff_actions(runtime).assign_unit(incident_id, unit.id, staff, reason)
    except lifecycle.UnknownIncident:
        raise Refused(404, "Không có sự cố {id}.", id=incident_id) from None
    except lifecycle.IncidentTransitionError as transition:
        message = words(request)("Không giao được: {why}", why=transition)
        return await _incident(request, session, incident_id, error=message, status=409)
    log.info("incident %s: given to %s by %s (console)", incident_id, unit.id, staff)
    return RedirectResponse(f"{CONSOLE_PATH}/incidents/{quote(incident_id)}", status_code=303)


@router.post("/incidents/{incident_id}/{action}", response_class=HTMLResponse)
async def act(incident_id: str, action: str, request: Request) -> Response:
    session = await session_of(request)
    form = await form_of(request)
    check_csrf(session, form)
    if action not in ACTIONS:
        raise Refused(404, "Không có thao tác {action}.", action=action)
    reason = form.get("reason", "").strip()[:MAX_REASON] or None
    staff = session.staff.username
    try:
        await staff_actions(runtime_of(request)).change_incident(
            incident_id, ACTIONS[action], staff, reason
        )
    except lifecycle.UnknownIncident:
        return await _incident(request, session, incident_id, error=None)
    except lifecycle.IncidentTransitionError as transition:
        message = words(request)("Không thực hiện được: {why}", why=transition)
        return await _incident(request, session, incident_id, error=message, status=409)
    log.info("incident %s: %s by %s (console)", incident_id, action, staff)
    return RedirectResponse(f"{CONSOLE_PATH}/incidents/{quote(incident_id)}", status_code=303)


# --- Acting from an alert's link --------------------------------------------------------------


@router.get("/a/{token}", response_class=HTMLResponse)
async def link_page(token: str, request: Request) -> HTMLResponse:
    """What the alert's link opens: the incident and one button, Nhận."""
    runtime = runtime_of(request)
    claim = _claim(runtime, token)
    async with database(runtime) as conn:
        try:
            incident = await lifecycle.get(conn, claim.incident_id)
        except lifecycle.UnknownIncident:
            raise Refused(404, "Không có sự cố {id}.", id=claim.incident_id) from None
    return page(request, "link.html", {"incident": incident, "token": token, "done": None})


@router.post("/a/{token}", response_class=HTMLResponse)
async def link_acknowledge(token: str, request: Request) -> HTMLResponse:
    """Acknowledge through the link, once: as the signed-in member of staff if there is one,
    else as the recipient the link was sent to."""
    runtime = runtime_of(request)
    claim = _claim(runtime, token)
    try:
        actor = (await session_of(request)).staff.username
    except SignInNeeded:
        actor = f"{claim.recipient} (liên kết)"
    used = "SELECT used_by FROM console_link_uses WHERE nonce = %s"
    async with database(runtime) as conn:
        if await (await conn.execute(used, (claim.nonce,))).fetchone() is not None:
            raise Refused(409, "Liên kết này đã được dùng. Hãy mở sự cố trong bảng điều hành.")
    # Recorded once the acknowledgement is done, so a failure leaves the link usable; two taps
    # at once cannot both act: the second finds the incident acknowledged.
    try:
        incident = await staff_actions(runtime).change_incident(
            claim.incident_id, "ack", actor, "nhận từ liên kết trong cảnh báo"
        )
    except lifecycle.UnknownIncident:
        raise Refused(404, "Không có sự cố {id}.", id=claim.incident_id) from None
    except lifecycle.IncidentTransitionError as transition:
        raise Refused(409, "Không nhận được: {why}", why=transition) from None
    async with database(runtime) as conn:
        await conn.execute(
            "INSERT INTO console_link_uses (nonce, incident_id, recipient, used_by)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (nonce) DO NOTHING",
            (claim.nonce, claim.incident_id, claim.recipient, actor),
        )
    log.info("incident %s acknowledged by %s through a link", incident.id, actor)
    context = {"incident": incident, "token": token, "done": actor}
    return page(request, "link.html", context)


def _claim(runtime: Runtime, token: str) -> LinkClaim:
    key = runtime.settings.console.link_key
    if key is None:
        raise Refused(404, "Máy chủ này không dùng liên kết trong cảnh báo.")
    try:
        return links.read(key, token, datetime.now(UTC))
    except LinkRefused as refusal:
        log.warning("alert link refused: %s", refusal.reason)
        raise Refused(refusal.status, refusal.reason) from None


async def _with_reporters(conn: Any, tickets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tickets with their reporters' contacts as masked at intake."""
    rows = await (
        await conn.execute(
            "SELECT service_request_id, reporter_masked FROM tickets"
            " WHERE service_request_id = ANY(%s)",
            ([ticket["service_request_id"] for ticket in tickets],),
        )
    ).fetchall()
    masked = {row["service_request_id"]: row["reporter_masked"] for row in rows}
    return [
        ticket | {"reporter_masked": masked.get(ticket["service_request_id"])} for ticket in tickets
    ]
