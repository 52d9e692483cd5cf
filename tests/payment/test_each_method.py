"""A new subscriber renews in the app with each of its payment methods, through that provider's
simulator, and gets a receipt that verifies."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests import factories as f
from tongka.payment import providers


@pytest.mark.parametrize(
    ("method", "currency", "provider"),
    [("wechat_pay", "CNY", "wechat"), ("alipay", "HKD", "alipay")],
)
def test_renew_in_the_app_and_verify_the_receipt(
    client, sessions, demo, method, currency, provider
) -> None:
    assert method in providers.CHANNEL_METHODS["app"]
    headers, line, _ = f.new_subscriber(client, sessions)
    order = f.order(
        client, headers, line["id"], code="both-5gb-30d", currency=currency, method=method
    )
    assert order["payment"]["provider"] == provider and order["payment"]["checkout_url"]
    assert (
        client.get(
            urlsplit(order["payment"]["checkout_url"]).path
            + "?"
            + urlsplit(order["payment"]["checkout_url"]).query
        ).status_code
        == 200
    )
    f.pay(client, order["payment"]["id"])
    assert (
        client.get(f"/api/v1/orders/{order['id']}", headers=headers).json()["status"] == "fulfilled"
    )
    [receipt] = client.get("/api/v1/receipts", headers=headers).json()
    assert receipt["content"]["payment"]["provider"] == provider
    verify = urlsplit(receipt["verify_url"])
    page = client.get(f"{verify.path}?{verify.query}")
    assert 'data-verdict="genuine"' in page.text
