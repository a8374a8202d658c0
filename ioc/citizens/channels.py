"""How a citizen is told: one interface, a channel per way of reaching people.

`CitizenChannel` is the extension point: a channel names the kind of contact it reaches and
sends one `Notice`; it raises `DeliveryFailed` with a reason a member of staff can act on (never
the address). E-mail goes through SMTP; a phone number through an SMS gateway (a JSON POST, the
shape most Vietnamese gateways take behind a small adapter) or Zalo's notification service
(ZNS: an approved template, sent to the number).
"""

from __future__ import annotations

import asyncio
import smtplib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from email.header import Header
from email.mime.text import MIMEText
from email.utils import formataddr, make_msgid, parseaddr
from typing import ClassVar

import httpx

from ioc.citizens.contacts import ContactKind
from ioc.config import CitizenSettings

TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Notice:
    """One message to one reporter: `id` is stable across retries (a receiver can drop a copy)."""

    id: str
    ticket_id: str
    subject: str
    text: str
    status_vi: str


class DeliveryFailed(RuntimeError):
    """The channel could not hand the notice over; the message says why, without the address."""


class CitizenChannel(ABC):
    """A way to reach reporters who left one kind of contact."""

    name: ClassVar[str]
    reaches: ClassVar[ContactKind]

    @abstractmethod
    async def send(self, address: str, notice: Notice) -> None:
        """Hand the notice over, or raise `DeliveryFailed`."""

    async def close(self) -> None:
        return None


class EmailChannel(CitizenChannel):
    """Plain-text UTF-8 e-mail through an SMTP server (smtplib, in a thread). Built with the
    legacy `Header`: the modern policy folds a long Vietnamese subject into encoded words that
    drop the space at the fold (RFC 2047 ignores whitespace between encoded words)."""

    name = "email"
    reaches = ContactKind.EMAIL

    def __init__(self, settings: CitizenSettings) -> None:
        assert settings.smtp_host is not None
        self.settings = settings
        self.host = settings.smtp_host

    async def send(self, address: str, notice: Notice) -> None:
        message = MIMEText(notice.text, "plain", "utf-8")
        message["From"] = formataddr(parseaddr(self.settings.smtp_sender), charset="utf-8")
        message["To"] = address
        message["Subject"] = Header(notice.subject, "utf-8")
        message["Message-ID"] = make_msgid(idstring=notice.id)
        message["X-IOC-Notice"] = notice.id
        try:
            await asyncio.to_thread(self._submit, message)
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


class HttpChannel(CitizenChannel):
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
    reaches = ContactKind.PHONE

    def __init__(self, settings: CitizenSettings) -> None:
        assert settings.sms_url is not None
        token = settings.sms_token
        headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
        super().__init__(settings.sms_url, headers)

    async def send(self, address: str, notice: Notice) -> None:
        await self.post({"to": international(address), "text": notice.text, "id": notice.id})


class ZaloChannel(HttpChannel):
    """Zalo ZNS: a template message to the phone number; Zalo answers 200 with `error` 0 when it
    took the message, another code (and a message) when not."""

    name = "zalo"
    reaches = ContactKind.PHONE

    def __init__(self, settings: CitizenSettings) -> None:
        assert settings.zalo_access_token is not None and settings.zalo_template_id is not None
        self.template_id = settings.zalo_template_id
        super().__init__(
            settings.zalo_url, {"access_token": settings.zalo_access_token.get_secret_value()}
        )

    async def send(self, address: str, notice: Notice) -> None:
        response = await self.post(
            {
                "phone": international(address),
                "template_id": self.template_id,
                "template_data": {
                    "ma_phan_anh": notice.ticket_id,
                    "trang_thai": notice.status_vi,
                    "noi_dung": notice.text,
                },
                "tracking_id": notice.id,
            }
        )
        try:
            answer = response.json()
        except ValueError:
            raise DeliveryFailed("zalo: the answer is not JSON") from None
        if answer.get("error") != 0:
            raise DeliveryFailed(f"zalo: error {answer.get('error')}: {answer.get('message')}")


def channels_from_settings(settings: CitizenSettings) -> dict[ContactKind, CitizenChannel]:
    """The configured channel for each kind of contact; a kind without one is not told."""
    channels: dict[ContactKind, CitizenChannel] = {}
    if settings.smtp_host:
        channels[ContactKind.EMAIL] = EmailChannel(settings)
    if settings.phone_channel == "sms" and settings.sms_url:
        channels[ContactKind.PHONE] = SmsGatewayChannel(settings)
    if (
        settings.phone_channel == "zalo"
        and settings.zalo_access_token is not None
        and settings.zalo_template_id
    ):
        channels[ContactKind.PHONE] = ZaloChannel(settings)
    return channels
