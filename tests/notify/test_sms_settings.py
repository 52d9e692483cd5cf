"""TONGKA_SMPP_URL and TONGKA_SMS_SENDER: read, checked without showing the password, and what
`sms_sender_from` makes of them."""

from __future__ import annotations

import secrets

import pytest
from pydantic import ValidationError

from tests.notify.sms_helpers import (
    PASSWORD,
    SYSTEM_ID,
    server,  # noqa: F401  (a fixture)
    sms,
)
from tongka import config
from tongka.config import Settings, smpp_address
from tongka.notify.sms import sms_sender_from
from tongka.sandbox import smsc


def settings(**values: object) -> Settings:
    return Settings(
        secret_key=secrets.token_urlsafe(32),
        env="dev",
        sandbox_payment_secret=secrets.token_urlsafe(32),
        **values,
        _env_file=None,  # type: ignore[call-arg]
    )


def test_the_url_is_a_secret_and_its_parts_are_read() -> None:
    configured = settings(smpp_url="smpp://tongka:p%40ss%3Aw@smsc.example.net:2776")
    assert "p@ss:w" not in repr(configured) and "p%40ss" not in repr(configured)
    assert config.problems(configured) == []
    address = smpp_address(configured.smpp_url.get_secret_value())  # type: ignore[union-attr]
    assert (address.host, address.port, address.system_id, address.password) == (
        "smsc.example.net",
        2776,
        "tongka",
        "p@ss:w",
    )
    assert "p@ss:w" not in repr(address)
    assert smpp_address("smpp://tongka:pw@smsc.example.net").port == 2775  # SMPP's port


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://tongka:hunter22@smsc.example.net:2775", "must look like smpp://"),
        ("smpp://smsc.example.net:2775", "must look like smpp://"),
        ("smpp://tongka:hunter22@smsc.example.net:99999", "port"),
        ("smpp://tongka:hunter2233@smsc.example.net", "at most 8"),
        ("smpp://a-system-id-too-long:hunter22@smsc.example.net", "at most 15"),
        ("smpp://tongka:hunter22@[2001:db8::1]:2775", "IPv6"),
    ],
)
def test_a_wrong_url_stops_the_start_without_showing_the_password(url: str, says: str) -> None:
    found = [p for p in config.problems(settings(smpp_url=url)) if "SMPP" in p]
    assert len(found) == 1 and says in found[0]
    assert "hunter22" not in found[0]
    with pytest.raises(config.UnsafeSettings) as refused:
        config.check(settings(smpp_url=url))
    assert "hunter22" not in str(refused.value)


@pytest.mark.parametrize("sender", ["tongka", "+85260000000", "10690000", "Tongka HK"])
def test_a_sender_is_a_number_or_an_alphanumeric_id(sender: str) -> None:
    assert settings(sms_sender=sender).sms_sender == sender


@pytest.mark.parametrize("sender", ["", "a-sender-too-long", "通卡", "+85-2600"])
def test_a_wrong_sender_is_refused(sender: str) -> None:
    with pytest.raises(ValidationError, match="TONGKA_SMS_SENDER"):
        settings(sms_sender=sender)


@pytest.mark.parametrize("unset", [{}, {"smpp_url": ""}])
def test_no_url_no_sms_sender(unset: dict[str, str]) -> None:
    assert sms_sender_from(settings(**unset), lambda _id, _status, _at: True) is None


def test_the_sender_the_settings_describe_delivers(server: smsc.Smsc) -> None:
    sender = sms_sender_from(
        settings(
            smpp_url=f"smpp://{SYSTEM_ID}:{PASSWORD.replace('!', '%21')}@127.0.0.1:{server.port}",
            sms_sender="+85260000000",
            smpp_response_timeout_seconds=2,
        ),
        lambda _id, _status, _at: True,
    )
    assert sender is not None
    try:
        sender.send(sms("hello"))
    finally:
        sender.close()
    [got] = server.received
    assert got.source == "85260000000" and got.text == "hello"
