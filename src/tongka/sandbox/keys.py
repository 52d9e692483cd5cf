"""Key material for sandbox mode, made on this machine at install time (never committed).

`tongka keys generate` prints it as `TONGKA_*=value` lines for `var/tongka.env`: both
sides of every provider's keys, so the real signing and verification code runs in the
demo and the tests. PEM keys are written on one line with `\\n` escapes, which
`payment/providers/keys.pem` reads back.
"""

from __future__ import annotations

import base64
import secrets

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def _rsa_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def generate() -> dict[str, str]:
    merchant_private, merchant_public = _rsa_pair()
    platform_private, platform_public = _rsa_pair()
    app_private, app_public = _rsa_pair()
    alipay_private, alipay_public = _rsa_pair()
    return {
        "TONGKA_SECRET_KEY": secrets.token_urlsafe(32),
        "TONGKA_SANDBOX_PAYMENT_SECRET": secrets.token_urlsafe(32),
        "TONGKA_RECEIPT_SIGNING_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "TONGKA_WECHAT_MCH_ID": "1900000109",
        "TONGKA_WECHAT_APPID": "wxd678efh567hg6787",
        "TONGKA_WECHAT_APIV3_KEY": secrets.token_hex(16),  # 32 characters, as WeChat's are
        "TONGKA_WECHAT_MERCHANT_PRIVATE_KEY": merchant_private,
        "TONGKA_WECHAT_MERCHANT_SERIAL": secrets.token_hex(20).upper(),
        "TONGKA_WECHAT_PLATFORM_PUBLIC_KEY": platform_public,
        "TONGKA_WECHAT_PLATFORM_SERIAL": secrets.token_hex(20).upper(),
        "TONGKA_SANDBOX_WECHAT_PLATFORM_PRIVATE_KEY": platform_private,
        "TONGKA_SANDBOX_WECHAT_MERCHANT_PUBLIC_KEY": merchant_public,
        "TONGKA_ALIPAY_APP_ID": "2021000000000001",
        "TONGKA_ALIPAY_APP_PRIVATE_KEY": app_private,
        "TONGKA_ALIPAY_PUBLIC_KEY": alipay_public,
        "TONGKA_SANDBOX_ALIPAY_PRIVATE_KEY": alipay_private,
        "TONGKA_SANDBOX_ALIPAY_APP_PUBLIC_KEY": app_public,
        "TONGKA_STRIPE_SECRET_KEY": "sk_test_" + secrets.token_urlsafe(24),
        "TONGKA_STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_urlsafe(24),
        "TONGKA_PAYPAL_CLIENT_ID": "sandbox-" + secrets.token_urlsafe(16),
        "TONGKA_PAYPAL_CLIENT_SECRET": secrets.token_urlsafe(24),
        "TONGKA_PAYPAL_WEBHOOK_ID": "WH-" + secrets.token_hex(8).upper(),
    }


def env_lines(values: dict[str, str]) -> str:
    return "".join(f"{k}={v.replace(chr(10), chr(92) + 'n')}\n" for k, v in values.items())
