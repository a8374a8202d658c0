"""A real SMTP server for the tests that send e-mail (Alertmanager's, the citizen loop's)."""

from __future__ import annotations

import email
import email.policy
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from ioc.devtools.stack.process import free_port


@dataclass
class Mail:
    recipients: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def text(self) -> str:
        """Every text part, decoded (the plain body and the HTML one)."""
        parts = self.message.walk() if self.message.is_multipart() else [self.message]
        return "\n".join(
            part.get_content() for part in parts if part.get_content_maintype() == "text"
        )


@dataclass
class SmtpSink:
    """A real SMTP server (aiosmtpd) on a loopback port that keeps every message it accepts, and
    refuses recipients whose address contains `refuse` (a mailbox that does not exist)."""

    received: list[Mail] = field(default_factory=list)
    refuse: str | None = None

    def __post_init__(self) -> None:
        from aiosmtpd.controller import Controller

        self._lock = threading.Lock()
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        self.smarthost = f"127.0.0.1:{self.port}"

    async def handle_RCPT(
        self, _server: Any, _session: Any, envelope: Any, address: str, _options: Any
    ) -> str:
        if self.refuse and self.refuse in address:
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    def to(self, recipient: str) -> list[Mail]:
        with self._lock:
            return [m for m in self.received if recipient in m.recipients]

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.received.append(Mail(list(envelope.rcpt_tos), message))
        return "250 OK"

    def about(self, incident_id: str, recipient: str | None = None) -> list[Mail]:
        with self._lock:
            return [
                m
                for m in self.received
                if incident_id in m.text() and (recipient is None or recipient in m.recipients)
            ]

    def close(self) -> None:
        self._controller.stop()
