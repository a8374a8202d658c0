"""Open311 GeoReport v2 on the wire: services, intake fields, request bodies and errors.

Shared by the HTTP API and the file importer so both accept and reject the same things. Error
texts name the field and never echo the value sent: reporter contact data must not reach logs,
responses or import reports.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ValidationError

from ioc.hotline.categories import CATEGORY_NAMES, Category
from ioc.hotline.lifecycle import CLOSED_STATES
from ioc.models.base import VIETNAM_TIME
from ioc.models.events import MAX_DESCRIPTION, VIETNAM_LAT, VIETNAM_LON, Channel, Ticket

CHANNELS: tuple[str, ...] = get_args(Channel)

# Fields a citizen-facing system may send when creating a request.
INTAKE_FIELDS = frozenset(
    {
        "service_code",
        "description",
        "lat",
        "long",
        "address_string",
        "media_url",
        "email",
        "first_name",
        "last_name",
        "phone",
        "requested_datetime",
        "channel",
    }
)
# Defined by GeoReport v2 but meaningless here (one jurisdiction, no address ids, no devices).
IGNORED_FIELDS = frozenset({"jurisdiction_id", "address_id", "device_id", "account_id"})


SERVICE_GROUPS: dict[Category, str] = {
    Category.CHAY_NO: "Khẩn cấp",
    Category.NGAP_LUT_THIEN_TAI: "Khẩn cấp",
    Category.AN_NINH_TRAT_TU: "Khẩn cấp",
    Category.GIAO_THONG: "Hạ tầng",
    Category.DIEN_NUOC_CHIEU_SANG: "Hạ tầng",
    Category.MOI_TRUONG: "Đô thị, môi trường",
    Category.TRAT_TU_DO_THI: "Đô thị, môi trường",
    Category.Y_TE_VE_SINH_THUC_PHAM: "Dịch vụ",
    Category.DICH_VU_CONG: "Dịch vụ",
    Category.KHAC: "Dịch vụ",
}

SERVICE_KEYWORDS: dict[Category, str] = {
    Category.CHAY_NO: "cháy,nổ,khói,rò rỉ gas,cứu hỏa",
    Category.GIAO_THONG: "tai nạn,ùn tắc,đèn tín hiệu,ổ gà,đường hỏng",
    Category.NGAP_LUT_THIEN_TAI: "ngập,lũ,bão,cây đổ,sạt lở",
    Category.MOI_TRUONG: "rác,ô nhiễm,mùi hôi,xả thải,khói bụi",
    Category.TRAT_TU_DO_THI: "lấn chiếm vỉa hè,xây dựng trái phép,quảng cáo",
    Category.AN_NINH_TRAT_TU: "đánh nhau,trộm cắp,gây rối,tiếng ồn",
    Category.DIEN_NUOC_CHIEU_SANG: "mất điện,mất nước,đèn đường,cấp nước",
    Category.Y_TE_VE_SINH_THUC_PHAM: "y tế,ngộ độc,vệ sinh thực phẩm",
    Category.DICH_VU_CONG: "thủ tục,dịch vụ công,cổng thông tin,ứng dụng",
    Category.KHAC: "khác",
}


class Service(BaseModel):
    """One entry of services.json."""

    service_code: str
    service_name: str
    description: str
    metadata: bool = False
    type: Literal["realtime", "batch", "blackbox"] = "realtime"
    keywords: str
    group: str


def services() -> list[Service]:
    return [
        Service(
            service_code=category.value,
            service_name=CATEGORY_NAMES[category][0],
            description=CATEGORY_NAMES[category][1],
            keywords=SERVICE_KEYWORDS[category],
            group=SERVICE_GROUPS[category],
        )
        for category in Category
    ]


class ServiceRequest(BaseModel):
    """One request as GET answers it: Open311 fields plus `priority` and `incident_id`.

    Reporter contact data (phone, e-mail, names, their hash and masked forms) is never here.
    """

    service_request_id: str
    status: Literal["open", "closed"]
    status_notes: str | None
    service_name: str | None
    service_code: str | None
    description: str
    requested_datetime: datetime
    updated_datetime: datetime | None
    expected_datetime: datetime | None
    address: str | None
    lat: float | None
    long: float | None
    media_url: str | None
    priority: int | None
    incident_id: str | None


# The `tickets` columns a ServiceRequest is made of (nothing personal).
REQUEST_COLUMNS = (
    "service_request_id, requested_at, description, address, lat, lon, service_code, category,"
    " priority, status, status_notes, sla_due, media_url, incident_id, updated_at"
)


def open311_status(internal: str | None) -> Literal["open", "closed"]:
    return "closed" if internal in CLOSED_STATES else "open"


def service_name(code: str | None) -> str | None:
    try:
        return CATEGORY_NAMES[Category(code)][0] if code else None
    except ValueError:
        return None


def request_from_row(row: Mapping[str, Any]) -> ServiceRequest:
    """Map a `tickets` row (REQUEST_COLUMNS); category and priority may still be NULL."""
    code = row["category"] or row["service_code"]
    return ServiceRequest(
        service_request_id=row["service_request_id"],
        status=open311_status(row["status"]),
        status_notes=row["status_notes"],
        service_name=service_name(code),
        service_code=code,
        description=row["description"],
        requested_datetime=row["requested_at"],
        updated_datetime=row["updated_at"],
        expected_datetime=row["sla_due"],
        address=row["address"],
        lat=row["lat"],
        long=row["lon"],
        media_url=row["media_url"],
        priority=row["priority"],
        incident_id=row["incident_id"],
    )


class IntakeError(ValueError):
    """Input that cannot become a ticket; each problem names its field, never its value."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def new_request_id(now: datetime) -> str:
    """`TN-YYYYMMDD-<8 hex>`, the date in Vietnam time."""
    return f"TN-{now.astimezone(VIETNAM_TIME):%Y%m%d}-{secrets.token_hex(4)}"


_PRINTABLE_NAME = re.compile(r"[A-Za-z0-9_.\[\]-]{1,64}")


def field_label(name: object) -> str:
    """A field name safe to show: anything odd (a value pasted as a key) is not echoed."""
    text = str(name)
    return text if _PRINTABLE_NAME.fullmatch(text) else "(unnamed field)"


def parse_datetime(value: object, field: str) -> datetime:
    """A timezone-aware ISO 8601 date-time, or an IntakeError naming `field`."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value
    problem = f"{field}: must be an ISO 8601 date-time with a timezone"
    if not isinstance(value, str):
        raise IntakeError([problem])
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise IntakeError([problem]) from None
    if parsed.tzinfo is None:
        raise IntakeError([f"{field}: needs a timezone (e.g. +07:00 or Z)"])
    return parsed


def intake_values(
    fields: Mapping[str, object], allowed: Iterable[str] = INTAKE_FIELDS
) -> tuple[dict[str, object], list[str]]:
    """The known fields with blanks dropped and strings stripped, plus problems found so far."""
    known = frozenset(allowed)
    values: dict[str, object] = {}
    problems: list[str] = []
    for name, value in fields.items():
        if name in IGNORED_FIELDS:
            continue
        if name not in known:
            problems.append(f"{field_label(name)}: unknown field")
            continue
        if isinstance(value, str):
            value = value.strip()
        if value is None or value == "":
            continue
        if name == "requested_datetime":
            try:
                value = parse_datetime(value, name)
            except IntakeError as error:
                problems.extend(error.problems)
                continue
        values[name] = value
    return values, problems


def make_ticket(values: Mapping[str, object], problems: Iterable[str] = ()) -> Ticket:
    """Validate as a Ticket; raises IntakeError with every problem (earlier ones first)."""
    found = list(problems)
    try:
        ticket = Ticket.model_validate(dict(values))
    except ValidationError as error:
        found.extend(describe(error.errors(include_input=False, include_url=False)))
    else:
        if not found:
            return ticket
    raise IntakeError(found)


def describe(errors: Iterable[Mapping[str, Any]], skip_loc: int = 0) -> list[str]:
    """`field: what is wrong` for pydantic error dicts, without the input values."""
    out = []
    for item in errors:
        loc = [str(part) for part in item["loc"][skip_loc:]]
        field = field_label(".".join(loc)) if loc else ""
        kind = item["type"]
        message = str(item["msg"]).removeprefix("Value error, ")
        if kind == "missing":
            message = "required"
        elif kind == "extra_forbidden":
            message = "unknown field"
        elif field in ("lat", "long") and kind in ("greater_than_equal", "less_than_equal"):
            low, high = VIETNAM_LAT if field == "lat" else VIETNAM_LON
            message = f"outside Vietnam (must be between {low} and {high})"
        elif field in ("lat", "long") and kind.startswith("float"):
            message = "must be a number (decimal degrees, WGS84)"
        elif field == "service_code" and kind == "enum":
            message = "unknown service_code (see services.json)"
        elif field == "channel" and kind == "literal_error":
            message = f"must be one of {', '.join(CHANNELS)}"
        elif field == "description" and kind == "string_too_long":
            message = f"longer than {MAX_DESCRIPTION} characters"
        elif not field and "lat and long" in message:
            field = "lat, long"
        out.append(f"{field}: {message}" if field else message)
    return out


def error_body(code: int, problems: Iterable[str]) -> list[dict[str, object]]:
    """Open311's error format: one `{code, description}` per problem."""
    return [{"code": code, "description": problem} for problem in problems]
