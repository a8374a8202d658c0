"""Open311 GeoReport v2 on the wire: services and their attributes (the questions of
`ioc.hotline.attributes` as service definitions, and `attribute[code]` answers checked against
them), intake fields, request bodies, errors, discovery, and the XML the spec defaults to.

Shared by the HTTP API and the file importer so both accept and reject the same things. Error
texts name the field and never echo the value sent: reporter contact data must not reach logs,
responses or import reports.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal, get_args
from xml.etree import ElementTree

from pydantic import BaseModel, Field, ValidationError

from ioc.dispatch.units import Units
from ioc.hotline.attributes import (
    MAX_STRING_ANSWER,
    MAX_TEXT_ANSWER,
    QUESTIONS,
    Datatype,
    Question,
)
from ioc.hotline.tickets import CLOSED_STATES
from ioc.models.base import VIETNAM_TIME
from ioc.models.categories import CATEGORY_NAMES, Category
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
# Defined by GeoReport v2 but meaningless here (no address ids, no devices, no accounts); the API
# checks `jurisdiction_id` against the one it serves before intake, the importer ignores it.
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
    """One entry of services.json; `metadata` says it has a service definition to fetch."""

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
            metadata=bool(QUESTIONS.get(category)),
            keywords=SERVICE_KEYWORDS[category],
            group=SERVICE_GROUPS[category],
        )
        for category in Category
    ]


class AttributeValue(BaseModel):
    """One choice of a list attribute."""

    key: str
    name: str


class Attribute(BaseModel):
    """A question a service asks beyond the standard fields (GeoReport v2 service definition)."""

    variable: bool = True
    code: str
    datatype: Datatype
    required: bool = False
    datatype_description: str | None = None
    order: int
    description: str
    values: list[AttributeValue] = Field(default_factory=list)


class ServiceDefinition(BaseModel):
    service_code: str
    attributes: list[Attribute]


def _attribute(question: Question) -> Attribute:
    return Attribute(
        code=question.code,
        datatype=question.datatype,
        required=question.required,
        datatype_description=question.datatype_description,
        order=question.order,
        description=question.description,
        values=[AttributeValue(key=choice.key, name=choice.name) for choice in question.choices],
    )


def service_definition(code: str) -> ServiceDefinition | None:
    """The definition of a known service (an empty attribute list when it asks nothing)."""
    try:
        category = Category(code)
    except ValueError:
        return None
    return ServiceDefinition(
        service_code=category.value,
        attributes=[_attribute(question) for question in QUESTIONS.get(category, ())],
    )


_ATTRIBUTE_KEY = re.compile(r"attribute\[([A-Za-z0-9_.-]{1,64})\](\[\])?")
AttributeAnswer = str | list[str]


def split_attributes(
    fields: Mapping[str, object],
) -> tuple[dict[str, object], dict[str, AttributeAnswer], list[str]]:
    """(the other fields, `attribute[code]` / `attribute[code][]` answers, problems)."""
    rest: dict[str, object] = {}
    answers: dict[str, AttributeAnswer] = {}
    problems: list[str] = []
    for name, value in fields.items():
        match = _ATTRIBUTE_KEY.fullmatch(name)
        if match is None:
            if name.startswith("attribute"):
                problems.append(f"{field_label(name)}: write attribute[code] or attribute[code][]")
            else:
                rest[name] = value
            continue
        code, many = match.group(1), match.group(2) is not None
        label = f"attribute[{code}]"
        items = value if isinstance(value, list) else [value]
        if any(isinstance(item, bool) or not isinstance(item, str | int | float) for item in items):
            problems.append(f"{label}: must be text or a number")
        elif code in answers:
            problems.append(f"{label}: given more than once")
        else:
            texts = [str(item).strip() for item in items]
            answers[code] = texts if many or isinstance(value, list) else texts[0]
    return rest, answers, problems


def check_attributes(
    category: Category, answers: Mapping[str, AttributeAnswer]
) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """Validate answers against the category's questions: (the answers for `Ticket.attributes`,
    in the questions' order, list keys once each; problems naming `attribute[code]`)."""
    questions = sorted(QUESTIONS.get(category, ()), key=lambda question: question.order)
    known = {question.code for question in questions}
    problems = [
        f"attribute[{name}]: not an attribute of service_code {category.value}"
        for name in answers
        if name not in known
    ]
    checked: dict[str, tuple[str, ...]] = {}
    for question in questions:
        label = f"attribute[{question.code}]"
        given = answers.get(question.code)
        given_list = [item for item in (given if isinstance(given, list) else [given]) if item]
        if not given_list:
            if question.required:
                problems.append(f"{label}: required")
            continue
        try:
            checked[question.code] = _checked(question, given_list, label)
        except IntakeError as error:
            problems.extend(error.problems)
    return checked, problems


def _checked(question: Question, given: list[str], label: str) -> tuple[str, ...]:
    """One question's answer in its stored form (choice keys, a number as `%g`, an ISO 8601
    date-time); IntakeError naming `label` when invalid."""
    if question.datatype != "multivaluelist" and len(given) > 1:
        raise IntakeError([f"{label}: takes one value"])
    if question.datatype in ("singlevaluelist", "multivaluelist"):
        keys = [choice.key for choice in question.choices]
        if any(item not in keys for item in given):
            raise IntakeError([f"{label}: must be one of {', '.join(keys)}"])
        return tuple(dict.fromkeys(given))
    value = given[0]
    if question.datatype == "number":
        low, high = question.bounds or (-math.inf, math.inf)
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not low <= number <= high:
            raise IntakeError([f"{label}: must be a number from {low:g} to {high:g}"])
        return (f"{number:g}",)
    if question.datatype == "datetime":
        return (parse_datetime(value, label).isoformat(),)
    limit = MAX_STRING_ANSWER if question.datatype == "string" else MAX_TEXT_ANSWER
    if len(value) > limit:
        raise IntakeError([f"{label}: longer than {limit} characters"])
    return (value,)


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
    agency_responsible: str | None
    requested_datetime: datetime
    updated_datetime: datetime | None
    expected_datetime: datetime | None
    address: str | None
    lat: float | None
    long: float | None
    media_url: str | None
    priority: int | None
    incident_id: str | None


# The `tickets` columns a ServiceRequest is made of (nothing personal), and the unit its
# incident is given to (`ioc.dispatch`): the agency responsible.
REQUEST_COLUMNS = (
    "service_request_id, requested_at, description, address, lat, lon, service_code, category,"
    " priority, status, status_notes, sla_due, media_url, incident_id, updated_at,"
    " (SELECT f.unit FROM incidents AS i JOIN fused_incidents AS f ON f.id = i.fused_id"
    "  WHERE i.id = tickets.incident_id) AS unit"
)


def open311_status(internal: str | None) -> Literal["open", "closed"]:
    return "closed" if internal in CLOSED_STATES else "open"


def service_name(code: str | None) -> str | None:
    try:
        return CATEGORY_NAMES[Category(code)][0] if code else None
    except ValueError:
        return None


def request_from_row(row: Mapping[str, Any], units: Units) -> ServiceRequest:
    """Map a `tickets` row (REQUEST_COLUMNS); category and priority may still be NULL, and
    the agency is unknown until the incident is given to a unit."""
    code = row["category"] or row["service_code"]
    unit = units.get(row["unit"]) if row["unit"] else None
    return ServiceRequest(
        service_request_id=row["service_request_id"],
        status=open311_status(row["status"]),
        status_notes=row["status_notes"],
        service_name=service_name(code),
        service_code=code,
        description=row["description"],
        agency_responsible=unit.name if unit else row["unit"],
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


SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
# When this endpoint's behaviour last changed: integrators re-read the discovery when it moves.
CHANGESET = "2026-12-05T00:00:00Z"
FORMATS = ("text/xml", "application/json")


class DiscoveryEndpoint(BaseModel):
    specification: str = SPECIFICATION
    url: str
    changeset: str = CHANGESET
    type: Literal["production", "test"]
    formats: list[str] = Field(default_factory=lambda: list(FORMATS))


class Discovery(BaseModel):
    """The GeoReport v2 service discovery document."""

    changeset: str = CHANGESET
    contact: str
    key_service: str
    endpoints: list[DiscoveryEndpoint]


# XML element of each item of a list, by the list's element (the spec's examples).
XML_ITEMS = {
    "services": "service",
    "service_requests": "request",
    "errors": "error",
    "attributes": "attribute",
    "values": "value",
    "endpoints": "endpoint",
    "formats": "format",
}


# The spec asks for the declaration with encoding="UTF-8" before the root element.
XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
# Characters XML 1.0 cannot carry (control characters other than tab and newlines).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


XML_TYPE = "text/xml; charset=utf-8"  # as the spec's discovery names it


def error_document(path: str, status: int, problems: Iterable[str]) -> tuple[bytes, str]:
    """Open311's error list and its content type: XML for a `.xml` URL (the format the client
    asked for), else JSON. One renderer for every error, the rate limiter's and a 500 included."""
    body = error_body(status, problems)
    if path.endswith(".xml"):
        return to_xml("errors", body), XML_TYPE
    return json.dumps(body, ensure_ascii=False).encode(), "application/json"


def to_xml(root: str, document: object) -> bytes:
    """JSON-shaped data (dicts, lists, scalars) as XML: a list's items take the element name of
    XML_ITEMS, booleans read true/false and None is an empty element, as in the spec."""
    element = ElementTree.Element(root)
    _fill(element, document)
    return XML_DECLARATION + ElementTree.tostring(element, encoding="unicode").encode()


def _fill(element: ElementTree.Element, value: object) -> None:
    if isinstance(value, Mapping):
        for name, item in value.items():
            _fill(ElementTree.SubElement(element, str(name)), item)
    elif isinstance(value, list | tuple):
        for item in value:
            _fill(ElementTree.SubElement(element, XML_ITEMS[element.tag]), item)
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    elif value is not None:
        element.text = _NOT_XML.sub("", str(value))


def image_type(data: bytes) -> str | None:
    """The photo's media type (JPEG, PNG or WebP) from its magic bytes, never from the name or
    type the client declares; None for anything else."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None
