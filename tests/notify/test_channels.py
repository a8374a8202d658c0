"""Each way of reaching a person against a real server: e-mail through a real SMTP server
(aiosmtpd), the SMS gateway and Zalo ZNS through a real HTTP server that answers as they do. A
failure says why without the address."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from ioc.config import NotifySettings
from ioc.devtools.stack.process import free_port
from ioc.notify.channels import (
    DeliveryFailed,
    EmailChannel,
    Message,
    SmsGatewayChannel,
    ZaloChannel,
    configured,
)
from tests.conftest import wait_for
from tests.gateway import Gateway
from tests.smtp import SmtpSink

NOTICE = Message(
    id="notice-1",
    reference="1022-A7",
    subject="[1022] Phản ánh 1022-A7: đã tiếp nhận",
    text="Phản ánh 1022-A7 (cháy, nổ) đã được tiếp nhận.",
    status_vi="Đã tiếp nhận",
)


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    served = Gateway()
    yield served
    served.close()


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    yield sink
    sink.close()


def test_email_goes_through_smtp_in_vietnamese(smtp: SmtpSink) -> None:
    settings = NotifySettings(smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_starttls=False)
    asyncio.run(EmailChannel(settings).send("lan@example.vn", NOTICE))
    mail = wait_for(lambda: smtp.received[:1], 10, "the e-mail")[0]
    assert mail.recipients == ["lan@example.vn"]
    assert mail.subject == NOTICE.subject
    assert mail.message["X-IOC-Message"] == "notice-1"
    assert "đã được tiếp nhận" in mail.text()


def test_an_smtp_server_that_is_not_there_fails_without_naming_the_address() -> None:
    settings = NotifySettings(smtp_host="127.0.0.1", smtp_port=free_port(), smtp_starttls=False)
    with pytest.raises(DeliveryFailed) as failure:
        asyncio.run(EmailChannel(settings).send("lan@example.vn", NOTICE))
    assert "ConnectionRefusedError" in str(failure.value)
    assert "lan@" not in str(failure.value)


def test_the_sms_gateway_gets_the_number_with_its_country_code_and_the_token(
    gateway: Gateway,
) -> None:
    settings = NotifySettings(sms_url=gateway.url, sms_token=SecretStr("sms-token"))
    channel = SmsGatewayChannel(settings)
    asyncio.run(channel.send("0912345678", NOTICE))
    headers, body = gateway.posts[0]
    assert headers["Authorization"] == "Bearer sms-token"
    assert body == {"to": "84912345678", "text": NOTICE.text, "id": "notice-1"}
    gateway.reply = (503, {})
    with pytest.raises(DeliveryFailed, match="HTTP 503") as failure:
        asyncio.run(SmsGatewayChannel(settings).send("0912345678", NOTICE))
    assert "0912" not in str(failure.value)


def test_zalo_sends_the_template_and_reads_zalos_error_code(gateway: Gateway) -> None:
    settings = NotifySettings(
        zalo_url=gateway.url,
        zalo_access_token=SecretStr("oa-token"),
        zalo_template_id="231512",
    )
    assert isinstance(configured(settings)["zalo"], ZaloChannel)
    asyncio.run(ZaloChannel(settings).send("0912345678", NOTICE))
    headers, body = gateway.posts[0]
    assert headers["access_token"] == "oa-token"
    assert body["phone"] == "84912345678" and body["template_id"] == "231512"
    assert body["template_data"]["ma_phan_anh"] == "1022-A7"
    assert body["template_data"]["trang_thai"] == "Đã tiếp nhận"
    assert body["tracking_id"] == "notice-1"
    gateway.reply = (200, {"error": -124, "message": "Access token invalid"})
    with pytest.raises(DeliveryFailed, match=r"error -124: Access token invalid"):
        asyncio.run(ZaloChannel(settings).send("0912345678", NOTICE))


def test_only_configured_channels_are_used() -> None:
    assert configured(NotifySettings()) == {}
    both = configured(NotifySettings(smtp_host="mail", sms_url="http://sms"))
    assert sorted(both) == ["email", "sms"]
    # A token without its template is not Zalo configured.
    assert "zalo" not in configured(NotifySettings(zalo_access_token=SecretStr("t")))
