"""Contacts are kept sealed: they open only under the key, for the ticket they were sealed for."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from ioc.citizens.contacts import Contact, ContactBox, UnreadableContact, contact_of
from ioc.models import Ticket
from ioc.notify.channels import AddressKind

KEY = SecretStr("contacts-" + "x" * 40)


def ticket(**contact: str) -> Ticket:
    return Ticket(
        service_request_id="1022-T-1",
        requested_datetime="2026-12-06T08:00:00+07:00",
        description="Cháy nhà dân",
        channel="phone",
        **contact,
    )


def test_a_phone_is_preferred_and_kept_in_its_national_form() -> None:
    both = ticket(phone="+84 912 345 678", email="lan@example.vn")
    assert contact_of(both) == Contact(AddressKind.PHONE, "0912345678")
    assert contact_of(ticket(email=" lan@example.vn ")) == Contact(
        AddressKind.EMAIL, "lan@example.vn"
    )
    assert contact_of(ticket()) is None


def test_a_sealed_contact_opens_only_for_its_ticket_under_its_key() -> None:
    box = ContactBox.of(KEY)
    contact = Contact(AddressKind.EMAIL, "lan@example.vn")
    sealed = box.seal("1022-T-1", contact)
    assert b"lan@example.vn" not in sealed
    assert box.seal("1022-T-1", contact) != sealed, "a fresh nonce each time"
    assert box.open("1022-T-1", sealed) == contact
    with pytest.raises(UnreadableContact):
        box.open("1022-T-2", sealed)  # copied onto another ticket
    with pytest.raises(UnreadableContact):
        ContactBox.of(SecretStr("another-" + "y" * 40)).open("1022-T-1", sealed)
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(UnreadableContact):
        box.open("1022-T-1", tampered)


def test_the_contact_key_is_long_or_absent() -> None:
    from pydantic import ValidationError

    from ioc.config import CitizenSettings

    assert CitizenSettings(contact_key="").contact_key is None, "empty (Compose's unset) is off"
    with pytest.raises(ValidationError, match="at least 32 characters"):
        CitizenSettings(contact_key="short")
