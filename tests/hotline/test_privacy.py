import json

from ioc.hotline.privacy import (
    mask_email,
    mask_phone,
    redact_answers,
    redact_text,
    redact_ticket_bytes,
    reporter_of,
)
from ioc.models import Ticket

BASE = {
    "service_request_id": "S-1",
    "requested_datetime": "2026-11-20T08:00:00+07:00",
    "channel": "phone",
    "description": "Cây đổ",
}


def test_masks_show_only_the_ends() -> None:
    assert mask_phone("0992174218") == "09******18"
    assert mask_phone("+84 992 174 218") == "09******18"
    assert mask_email("nguyen.an@gmail.com") == "n***@gmail.com"


def test_reporter_is_identified_by_phone_then_email_and_keyed() -> None:
    by_phone = reporter_of(Ticket.model_validate(BASE | {"phone": "0992 174 218"}), "k")
    same = reporter_of(Ticket.model_validate(BASE | {"phone": "+84992174218"}), "k")
    other_key = reporter_of(Ticket.model_validate(BASE | {"phone": "0992174218"}), "k2")
    assert by_phone == same and by_phone.masked == "09******18"
    assert other_key.hash != by_phone.hash
    by_email = reporter_of(Ticket.model_validate(BASE | {"email": "An@Mail.vn"}), "k")
    assert by_email.masked == "A***@Mail.vn" and by_email.hash
    assert reporter_of(Ticket.model_validate(BASE), "k").hash is None


def test_free_text_phone_numbers_and_emails_are_masked() -> None:
    text = "Gọi lại số 0912 345 678 hoặc +84987654321, mail an@x.vn; nhà số 12, tổ 5, 2026"
    redacted = redact_text(text)
    assert "345 678" not in redacted and "987654321" not in redacted and "an@x.vn" not in redacted
    assert "nhà số 12, tổ 5, 2026" in redacted, "short numbers (addresses, years) stay"


def test_rejected_intake_bytes_are_redacted_even_when_not_json() -> None:
    valid = json.dumps(
        BASE
        | {
            "phone": "0992174218",
            "first_name": "An",
            "email": "a@b.vn",
            "description": "lh 0987654321",
        }
    ).encode()
    redacted = json.loads(redact_ticket_bytes(valid))
    assert redacted["phone"] == "09******18" and redacted["first_name"] == "***"
    assert redacted["email"] == "a***@b.vn" and "0987654321" not in redacted["description"]
    broken = b'{"phone": "0992174218", "last_name": "Tran", "description": "lh 0987654321"'
    out = redact_ticket_bytes(broken)
    assert b"0992174218" not in out and b"Tran" not in out and b"0987654321" not in out


def test_free_text_answers_are_masked_as_the_description() -> None:
    answers = {
        "co_so_gay_o_nhiem": ("Xưởng Hòa Bình, lh 0987654321",),
        "tu_khi_nao": ("2026-11-20T08:00:00+07:00",),
    }
    assert redact_answers(answers) == {
        "co_so_gay_o_nhiem": ["Xưởng Hòa Bình, lh 09******21"],
        "tu_khi_nao": ["2026-11-20T08:00:00+07:00"],
    }
    rejected = json.dumps(BASE | {"attributes": {"dien_bien": ["mail an@x.vn"]}}).encode()
    redacted = json.loads(redact_ticket_bytes(rejected))["attributes"]
    assert redacted == {"dien_bien": ["mail a***@x.vn"]}
