"""Reporter contact data stops at intake: a keyed hash (to link repeat callers) and a masked
form (for staff) replace it everywhere downstream. Names are not kept at all."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ioc.models import Ticket


def normalise_phone(phone: str) -> str:
    """Digits only, Vietnamese +84 / 84 prefixes folded to the national 0 form."""
    digits = re.sub(r"\D", "", phone)
    if digits.startswith("84") and len(digits) >= 11:
        digits = "0" + digits[2:]
    return digits


def mask_phone(phone: str) -> str:
    """`0992174218` → `09******18`: enough for staff to confirm a caller, useless to a leak."""
    digits = normalise_phone(phone)
    if len(digits) <= 4:
        return "*" * len(digits)
    return digits[:2] + "*" * (len(digits) - 4) + digits[-2:]


def mask_email(email: str) -> str:
    local, _, domain = email.strip().partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def keyed_hash(value: str, key: str) -> str:
    return hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()[:24]


@dataclass(frozen=True)
class Reporter:
    hash: str | None
    masked: str | None


def reporter_of(ticket: Ticket, key: str) -> Reporter:
    """The phone identifies a reporter, else the e-mail; None when the report is anonymous."""
    if ticket.phone and normalise_phone(ticket.phone):
        return Reporter(keyed_hash(normalise_phone(ticket.phone), key), mask_phone(ticket.phone))
    if ticket.email:
        return Reporter(keyed_hash(ticket.email.strip().casefold(), key), mask_email(ticket.email))
    return Reporter(None, None)


PHONE_IN_TEXT = re.compile(r"(?<![\d+])(?:\+84|84|0)(?:[ .-]?\d){8,10}(?!\d)")
EMAIL_IN_TEXT = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
PERSONAL_FIELDS = ("phone", "email", "first_name", "last_name")
PERSONAL_FIELD_IN_TEXT = re.compile(r'"(phone|email|first_name|last_name)"\s*:\s*"[^"]*"?')


def redact_text(text: str) -> str:
    """Mask phone numbers and e-mail addresses that citizens type into free text."""
    text = PHONE_IN_TEXT.sub(lambda match: mask_phone(match.group()), text)
    return EMAIL_IN_TEXT.sub(lambda match: mask_email(match.group()), text)


def redact_answers(answers: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """A ticket's answers as stored: free-text ones (the polluter's name, what happened) may
    quote a phone number or an e-mail address, masked as in the description."""
    return {code: [redact_text(value) for value in values] for code, values in answers.items()}


def redact_ticket_bytes(value: bytes | None) -> bytes | None:
    """A rejected intake message as it may be kept outside the intake topic (the DLQ):
    personal fields masked, free text redacted, even when the message is not valid JSON."""
    if value is None:
        return None
    try:
        data = json.loads(value)
    except ValueError:
        text = PERSONAL_FIELD_IN_TEXT.sub(r'"\1": "***"', value.decode(errors="replace"))
        return redact_text(text).encode()
    if not isinstance(data, dict):
        return redact_text(json.dumps(data, ensure_ascii=False)).encode()
    for field in PERSONAL_FIELDS:
        if data.get(field) is not None:  # a phone sent as a JSON number is a phone all the same
            given = str(data[field])
            data[field] = (
                mask_email(given)
                if field == "email"
                else (mask_phone(given) if field == "phone" else "***")
            )
    if isinstance(data.get("description"), str):
        data["description"] = redact_text(data["description"])
    if isinstance(data.get("attributes"), dict):  # free-text answers, as the description
        redacted = redact_text(json.dumps(data["attributes"], ensure_ascii=False))
        data["attributes"] = json.loads(redacted)
    return json.dumps(data, ensure_ascii=False).encode()
