"""A reporter's contact, kept for the loop only and only encrypted (AES-256-GCM).

The key comes from `citizens.contact_key`, stretched by SHA-256 with a purpose label, so the
same secret never serves two purposes (the reopen links use another label). The ticket's id is
the associated data: a sealed contact copied onto another ticket does not open. Destroying the
row destroys the contact; nothing else holds it past intake (the intake topic aside, which its
retention bounds).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from ioc.hotline.privacy import normalise_phone
from ioc.models import Ticket
from ioc.notify.channels import AddressKind

NONCE_BYTES = 12


@dataclass(frozen=True)
class Contact:
    kind: AddressKind
    address: str


class UnreadableContact(ValueError):
    """A sealed contact that does not open under this key and ticket."""


def derived_key(secret: SecretStr, purpose: str) -> bytes:
    return hashlib.sha256(
        f"ioc.citizens.{purpose}:".encode() + secret.get_secret_value().encode()
    ).digest()


def contact_of(ticket: Ticket) -> Contact | None:
    """The phone if there is one (the loop's usual channel), else the e-mail; None when
    anonymous."""
    if ticket.phone and (digits := normalise_phone(ticket.phone)):
        return Contact(AddressKind.PHONE, digits)
    if ticket.email and ticket.email.strip():
        return Contact(AddressKind.EMAIL, ticket.email.strip())
    return None


@dataclass(frozen=True)
class ContactBox:
    """Seals and opens contacts under one key."""

    key: bytes

    @classmethod
    def of(cls, secret: SecretStr) -> ContactBox:
        return cls(derived_key(secret, "contacts"))

    def seal(self, ticket_id: str, contact: Contact) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        plain = f"{contact.kind}:{contact.address}".encode()
        return nonce + AESGCM(self.key).encrypt(nonce, plain, ticket_id.encode())

    def open(self, ticket_id: str, sealed: bytes) -> Contact:
        try:
            plain = AESGCM(self.key).decrypt(
                sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], ticket_id.encode()
            )
        except (InvalidTag, ValueError):
            raise UnreadableContact(f"the contact of {ticket_id} does not open") from None
        kind, _, address = plain.decode().partition(":")
        return Contact(AddressKind(kind), address)
