"""How a person is reached: one interface, a channel per way of reaching people.

`MessageChannel` is the extension point: a channel names the kind of address it takes and sends
one `Message`; it raises `DeliveryFailed` with a reason a member of staff can act on (never the
address). E-mail goes through SMTP; a phone number through an SMS gateway (a JSON POST, the shape
most Vietnamese gateways take behind a small adapter) or Zalo's notification service (ZNS: an
approved template, sent to the number).
"""

from __future__ import annotations

import asyncio
import smtplib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from email.header import Header
from email.mime.text import MIMEText
from email.utils import formataddr, make_msgid, parseaddr
from enum import StrEnum
from typing import ClassVar

import httpx

from ioc.config import NotifySettings

TIMEOUT_S = 10.0


class AddressKind(StrEnum):
    PHONE = "phone"
    EMAIL = "email"


@dataclass(frozen=True)
class Message:
    """One message to one person: `id` is stable across retries (a receiver can drop a copy);
    `reference` (a report's or an incident's id) and `status_vi` fill a template's fields."""

    id: str
    reference: str
    subject: str
    text: str
    status_vi: str


class DeliveryFailed(RuntimeError):
    """The channel could not hand the message over; the error says why, without the address."""


class MessageChannel(ABC):
    """A way to reach people at one kind of address."""

    name: ClassVar[str]
    reaches: ClassVar[AddressKind]

    @abstractmethod
    async def send(self, address: str, message: Message) -> None:
        """Hand the message over, or raise `DeliveryFailed`."""

    async def close(self) -> None:
        return None


class EmailChannel(MessageChannel):
    """Plain-text UTF-8 e-mail through an SMTP server (smtplib, in a thread). Built with the
    legacy `Header`: the modern policy folds a long Vietnamese subject into encoded words that
    drop the space at the fold (RFC 2047 ignores whitespace between encoded words)."""

    name = "email"
    reaches = AddressKind.EMAIL

    def __init__(self, settings: NotifySettings) -> None:
        assert settings.smtp_host is not None
        self.settings = settings
        self.host = settings.smtp_host

    async def send(self, address: str, message: Message) -> None:
        mail = MIMEText(message.text, "plain", "utf-8")
        mail["From"] = formataddr(parseaddr(self.settings.smtp_sender), charset="utf-8")
        mail["To"] = address
        mail["Subject"] = Header(message.subject, "utf-8")
        mail["Message-ID"] = make_msgid(idstring=message.id)
        mail["X-IOC-Message"] = message.id
        try:
            await asyncio.to_thread(self._submit, mail)
        except (OSError, smtplib.SMTPException) as error:
            raise DeliveryFailed(f"SMTP {self.host}: {smtp_reason(error)}") from None

    def _submit(self, message: MIMEText) -> None:
        settings = self.settings
        with smtplib.SMTP(self.host, settings.smtp_port, timeout=TIMEOUT_S) as smtp:
            if settings.smtp_starttls:
                smtp.starttls()
            if settings.smtp_username and settings.smtp_password:
                smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())
            smtp.send_message(message)


def smtp_reason(error: OSError | smtplib.SMTPException) -> str:
    """What went wrong, as the server said it, without the recipient's address (smtplib puts
    it in a refusal's message)."""
    name = type(error).__name__
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        replies = sorted(
            {f"{code} {text.decode(errors='replace')}" for code, text in error.recipients.values()}
        )
        return f"{name}: {'; '.join(replies)}"
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{name}: {error.smtp_code} {error.smtp_error.decode(errors='replace')}"
    return f"{name}: {error}"


def international(phone: str) -> str:
    """`0912345678` → `84912345678`: gateways and Zalo take the country code, no plus."""
    return "84" + phone[1:] if phone.startswith("0") else phone


class HttpChannel(MessageChannel):
    """A channel that POSTs JSON to a service and reads its verdict."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.url = url
        self.client = httpx.AsyncClient(timeout=TIMEOUT_S, headers=headers)

    async def post(self, payload: dict[str, object]) -> httpx.Response:
        try:
            response = await self.client.post(self.url, json=payload)
        except httpx.HTTPError as error:
            raise DeliveryFailed(f"{self.name}: {type(error).__name__}") from None
        if not response.is_success:
            raise DeliveryFailed(f"{self.name}: HTTP {response.status_code}")
        return response

    async def close(self) -> None:
        await self.client.aclose()


class SmsGatewayChannel(HttpChannel):
    """An SMS gateway: `{"to": "849…", "text": …, "id": …}`, any 2xx is accepted."""

    name = "sms"
    reaches = AddressKind.PHONE

    def __init__(self, settings: NotifySettings) -> None:
        assert settings.sms_url is not None
        token = settings.sms_token
        headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
        super().__init__(settings.sms_url, headers)

    async def send(self, address: str, message: Message) -> None:
        await self.post({"to": international(address), "text": message.text, "id": message.id})


class ZaloChannel(HttpChannel):
    """Zalo ZNS: a template message to the phone number; Zalo answers 200 with `error` 0 when it
    took the message, another code (and a message) when not."""

    name = "zalo"
    reaches = AddressKind.PHONE

    def __init__(self, settings: NotifySettings) -> None:
        assert settings.zalo_access_token is not None and settings.zalo_template_id is not None
        self.template_id = settings.zalo_template_id
        super().__init__(
            settings.zalo_url, {"access_token": settings.zalo_access_token.get_secret_value()}
        )

    async def send(self, address: str, message: Message) -> None:
        response = await self.post(
            {
                "phone": international(address),
                "template_id": self.template_id,
                "template_data": {
                    "ma_phan_anh": message.reference,
                    "trang_thai": message.status_vi,
                    "noi_dung": message.text,
                },
                "tracking_id": message.id,
            }
        )
        try:
            answer = response.json()
        except ValueError:
            raise DeliveryFailed("zalo: the answer is not JSON") from None
        if answer.get("error") != 0:
            raise DeliveryFailed(f"zalo: error {answer.get('error')}: {answer.get('message')}")


def configured(settings: NotifySettings) -> dict[str, MessageChannel]:
    """Every channel the settings configure, by name (`email`, `sms`, `zalo`)."""
    channels: list[MessageChannel] = []
    if settings.smtp_host:
        channels.append(EmailChannel(settings))
    if settings.sms_url:
        channels.append(SmsGatewayChannel(settings))
    if settings.zalo_access_token is not None and settings.zalo_template_id:
        channels.append(ZaloChannel(settings))
    return {channel.name: channel for channel in channels}
