"""WeChat Pay's side, written for the tests from its published algorithm: callbacks signed with
the SDK's own `rsa_sign` (over "timestamp\\nnonce\\nbody\\n") and resources encrypted with
AES-256-GCM by `cryptography`, so the provider is checked against the SDK, not against itself."""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from wechatpayv3.utils import build_authorization, load_private_key, rsa_sign

from tongka.config import Settings
from tongka.payment.providers.keys import pem

CALLBACK = "/api/v1/payments/callbacks/wechat"


def other_private_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def platform_key(settings: Settings) -> str:
    assert settings.sandbox_wechat_platform_private_key is not None
    return pem(settings.sandbox_wechat_platform_private_key.get_secret_value()).decode()


def transaction(settings: Settings, payment: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A decrypted TRANSACTION.SUCCESS resource for one of our payments, as WeChat documents it."""
    resource = {
        "appid": settings.wechat_appid,
        "mchid": settings.wechat_mch_id,
        "out_trade_no": uuid.UUID(payment["id"]).hex,
        "transaction_id": "4200000000" + "".join(secrets.choice("0123456789") for _ in range(18)),
        "trade_type": "NATIVE",
        "trade_state": "SUCCESS",
        "trade_state_desc": "支付成功",
        "bank_type": "OTHERS",
        "attach": "",
        "success_time": "2025-06-08T10:34:56+08:00",
        "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
        "amount": {
            "total": payment["amount"],
            "payer_total": payment["amount"],
            "currency": "CNY",
            "payer_currency": "CNY",
        },
    }
    return {**resource, **changes}


def encrypt(apiv3_key: str, resource: dict[str, Any], associated_data: str) -> dict[str, str]:
    nonce = secrets.token_hex(6)  # 12 characters, as WeChat's
    plain = json.dumps(resource, ensure_ascii=False).encode()
    cipher = AESGCM(apiv3_key.encode()).encrypt(nonce.encode(), plain, associated_data.encode())
    return {
        "original_type": associated_data,
        "algorithm": "AEAD_AES_256_GCM",
        "ciphertext": base64.b64encode(cipher).decode(),
        "associated_data": associated_data,
        "nonce": nonce,
    }


def callback(
    settings: Settings,
    resource: dict[str, Any],
    *,
    event_type: str = "TRANSACTION.SUCCESS",
    original_type: str = "transaction",
    notify_id: str | None = None,
    signing_key: str | None = None,
    apiv3_key: str | None = None,
    timestamp: int | None = None,
    serial: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A notification body and its headers, exactly as WeChat would POST it."""
    assert settings.wechat_apiv3_key is not None
    body = json.dumps(
        {
            "id": notify_id or str(uuid.uuid4()),
            "create_time": "2025-06-08T10:34:56+08:00",
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": "支付成功",
            "resource": encrypt(
                apiv3_key or settings.wechat_apiv3_key.get_secret_value(), resource, original_type
            ),
        },
        ensure_ascii=False,
    ).encode()
    ts, nonce = str(timestamp or int(time.time())), secrets.token_hex(16).upper()
    key = load_private_key(signing_key or platform_key(settings))
    signature = rsa_sign(key, f"{ts}\n{nonce}\n{body.decode()}\n")
    return body, {
        "Content-Type": "application/json",
        "Wechatpay-Timestamp": ts,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": signature,
        "Wechatpay-Serial": serial or str(settings.wechat_platform_serial),
        "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
    }


def merchant_headers(
    settings: Settings,
    method: str,
    path: str,
    body: str,
    key: str | None = None,
    serial: str | None = None,
) -> dict[str, str]:
    """A merchant request's Authorization, made by the SDK's own build_authorization."""
    assert settings.wechat_merchant_private_key is not None
    private = load_private_key(
        key or pem(settings.wechat_merchant_private_key.get_secret_value()).decode()
    )
    auth = build_authorization(
        path,
        method,
        settings.wechat_mch_id,
        serial or settings.wechat_merchant_serial,
        private,
        data=body,
    )
    return {"Authorization": auth, "Content-Type": "application/json", "Accept": "application/json"}
