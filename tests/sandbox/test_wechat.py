"""The WeChat Pay simulator's API itself: it checks the merchant's signature and signs as WeChat does."""

from __future__ import annotations

import json
import uuid

from wechatpayv3.utils import load_public_key, rsa_verify

from tests.payment import wechat_helpers as w
from tongka.payment.providers.keys import pem


def test_the_simulator_checks_signatures_and_answers_in_wechats_format(client, settings) -> None:
    path = "/sandbox/wechat/v3/pay/transactions/native"
    body = json.dumps(
        {
            "appid": settings.wechat_appid,
            "mchid": settings.wechat_mch_id,
            "description": "tongka",
            "out_trade_no": uuid.uuid4().hex,
            "notify_url": "http://testserver/api/v1/payments/callbacks/wechat",
            "amount": {"total": 100, "currency": "CNY"},
        }
    )
    for bad in (
        w.merchant_headers(settings, "POST", path, body, key=w.other_private_key()),
        w.merchant_headers(settings, "POST", path, body, serial="0" * 40),
        w.merchant_headers(settings, "POST", path, body.replace("100", "1")),
    ):  # body not what was signed
        r = client.post(path, content=body, headers=bad)
        assert r.status_code == 401 and r.json()["code"] == "SIGN_ERROR"
    r = client.post(path, content=body, headers=w.merchant_headers(settings, "POST", path, body))
    assert r.status_code == 200 and r.json()["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")
    platform = load_public_key(pem(str(settings.wechat_platform_public_key)).decode())
    assert rsa_verify(
        r.headers["wechatpay-timestamp"],
        r.headers["wechatpay-nonce"],
        r.text,
        r.headers["wechatpay-signature"],
        platform,
    )
    hkd = body.replace('"CNY"', '"HKD"')
    r = client.post(path, content=hkd, headers=w.merchant_headers(settings, "POST", path, hkd))
    assert (r.status_code, r.json()["code"]) == (400, "PARAM_ERROR")
