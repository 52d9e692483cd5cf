"""Alipay's side, written for the tests with python-alipay-sdk (`import alipay`): notifications
signed by the SDK's own `sign_data`, answers verified by its own sync-response check, so the
provider (which uses `cryptography`) is checked against an independent implementation."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qsl, urlencode

from alipay import AliPay
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tongka.config import Settings
from tongka.payment.providers.alipay import beijing_now
from tongka.payment.providers.keys import pem

CALLBACK = "/api/v1/payments/callbacks/alipay"
GATEWAY = "/sandbox/alipay/gateway.do"


def other_private_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def alipay_side(settings: Settings, signing_key: str | None = None) -> AliPay:
    """The SDK holding Alipay's private key: it signs as Alipay signs."""
    assert (
        settings.sandbox_alipay_private_key is not None
        and settings.sandbox_alipay_app_public_key is not None
    )
    key = signing_key or pem(settings.sandbox_alipay_private_key.get_secret_value()).decode()
    return AliPay(
        appid=settings.alipay_app_id,
        app_private_key_string=key,
        alipay_public_key_string=pem(settings.sandbox_alipay_app_public_key).decode(),
        sign_type="RSA2",
    )


def merchant_side(settings: Settings, app_key: str | None = None) -> AliPay:
    """The SDK as a merchant would use it: our app's key signs, Alipay's public key verifies."""
    assert settings.alipay_app_private_key is not None and settings.alipay_public_key is not None
    key = app_key or pem(settings.alipay_app_private_key.get_secret_value()).decode()
    return AliPay(
        appid=settings.alipay_app_id,
        app_private_key_string=key,
        alipay_public_key_string=pem(settings.alipay_public_key).decode(),
        sign_type="RSA2",
    )


def notification(
    settings: Settings, payment: dict[str, Any], trade_no: str, **changes: str
) -> dict[str, str]:
    """A TRADE_SUCCESS trade_status_sync notification for one of our payments, as Alipay documents it."""
    amount = f"{payment['amount'] // 100}.{payment['amount'] % 100:02d}"
    params = {
        "notify_time": beijing_now(),
        "notify_type": "trade_status_sync",
        "notify_id": uuid.uuid4().hex,
        "app_id": settings.alipay_app_id or "",
        "charset": "utf-8",
        "version": "1.0",
        "trade_no": trade_no,
        "out_trade_no": uuid.UUID(payment["id"]).hex,
        "seller_id": "2088102177846880",
        "buyer_id": "2088102177296610",
        "buyer_logon_id": "tes***@sandbox.com",
        "trade_status": "TRADE_SUCCESS",
        "total_amount": amount,
        "receipt_amount": amount,
        "subject": "tongka hk-5gb-30d",
        "gmt_create": "2025-06-08 10:30:01",
        "gmt_payment": "2025-06-08 10:34:56",
        "fund_bill_list": f'[{{"amount":"{amount}","fundChannel":"ALIPAYACCOUNT"}}]',
    }
    if payment["currency"] != "CNY":
        params |= {"trans_currency": payment["currency"], "settle_currency": payment["currency"]}
    return {**params, **changes}


def signed(sdk: AliPay, params: dict[str, str]) -> bytes:
    """The form body Alipay POSTs: `sign` by the SDK over all but sign_type, which is added after."""
    return (sdk.sign_data(dict(params)) + "&sign_type=RSA2").encode()


def tamper(body: bytes, **changes: str) -> bytes:
    pairs = [(k, changes.get(k, v)) for k, v in parse_qsl(body.decode(), keep_blank_values=True)]
    return urlencode(pairs).encode()


def drop(body: bytes, name: str) -> bytes:
    return urlencode(
        [(k, v) for k, v in parse_qsl(body.decode(), keep_blank_values=True) if k != name]
    ).encode()
